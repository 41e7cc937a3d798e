"""CKKS parameters and TenSEAL contexts of :mod:`gibench.he`: :class:`HEParams` (FedML's defaults),
the secret context and the public copy the server gets, the context fingerprint that stops
decryption under a wrong key, and :class:`HEError`, raised by every refused step."""
from __future__ import annotations

import hashlib
import os
import tempfile
import weakref
from dataclasses import asdict, dataclass
from typing import Any, Mapping


import tenseal as ts


class HEError(RuntimeError):
    """A homomorphic-encryption step was refused: wrong key/context, mismatched masks,
    malformed ciphertexts or messages."""


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class HEParams:
    """CKKS parameters.  Defaults: FedML's TenSEAL context (N=8192, [60,40,40,60], 2^52)."""

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 40, 60)
    global_scale_bits: int = 52
    n_threads: int | None = None     # TenSEAL's own pool (unused for <= N/2-slot vectors)

    def __post_init__(self):
        n = int(self.poly_modulus_degree)
        if n < 1024 or n & (n - 1):
            raise ValueError(f"poly_modulus_degree must be a power of two >= 1024, got {n}")
        sizes = tuple(int(b) for b in self.coeff_mod_bit_sizes)
        if len(sizes) < 2 or any(not 1 <= b <= 60 for b in sizes):
            raise ValueError(f"coeff_mod_bit_sizes must be >= 2 sizes in [1, 60], got {sizes}")
        object.__setattr__(self, "coeff_mod_bit_sizes", sizes)
        data_bits = sum(sizes[:-1])            # the last prime is the special (key) prime
        if not 1 <= int(self.global_scale_bits) < data_bits:
            raise ValueError(f"global_scale_bits={self.global_scale_bits} must be in "
                             f"[1, {data_bits}) for coefficient moduli {sizes}")

    @property
    def global_scale(self) -> float:
        return float(2 ** int(self.global_scale_bits))

    @property
    def slots(self) -> int:
        return int(self.poly_modulus_degree) // 2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["coeff_mod_bit_sizes"] = list(self.coeff_mod_bit_sizes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "HEParams":
        d = dict(d or {})
        unknown = set(d) - {"poly_modulus_degree", "coeff_mod_bit_sizes", "global_scale_bits",
                            "n_threads"}
        if unknown:
            raise ValueError(f"unknown HE parameter(s): {sorted(unknown)}")
        if "coeff_mod_bit_sizes" in d:
            d["coeff_mod_bit_sizes"] = tuple(d["coeff_mod_bit_sizes"])
        return cls(**d)


# --------------------------------------------------------------------------- contexts
def make_context(params: HEParams | None = None, seed: int | None = None) -> ts.Context:
    """A fresh secret CKKS context (public + secret key; no Galois/relinearisation keys are
    needed for FedAvg).  ``seed`` is accepted for a uniform call signature but cannot seed
    TenSEAL's key generation, which uses the OS's randomness (see :mod:`gibench.he`)."""
    del seed
    params = params or HEParams()
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=params.poly_modulus_degree,
                     coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
                     n_threads=params.n_threads)
    ctx.global_scale = params.global_scale
    return ctx


def public_context(ctx: ts.Context) -> bytes:
    """The context as the server receives it: public key and parameters only (no secret,
    relinearisation or Galois keys), serialised."""
    return ctx.serialize(save_public_key=True, save_secret_key=False,
                         save_galois_keys=False, save_relin_keys=False)


def load_context(ctx: ts.Context | bytes | bytearray | memoryview) -> ts.Context:
    """A context from serialised bytes (or the context itself)."""
    if isinstance(ctx, ts.Context):
        return ctx
    if isinstance(ctx, (bytes, bytearray, memoryview)):
        try:
            return ts.context_from(bytes(ctx))
        except Exception as e:  # noqa: BLE001 - TenSEAL raises several types
            raise HEError(f"cannot load a TenSEAL context from {len(ctx)} bytes: {e}") from e
    raise TypeError(f"expected a tenseal.Context or its serialised bytes, got {type(ctx)!r}")


_FP_CACHE: "weakref.WeakKeyDictionary[ts.Context, str]" = weakref.WeakKeyDictionary()


def context_fingerprint(ctx: ts.Context | bytes) -> str:
    """sha256 of the serialised public key (which embeds SEAL's parameter id) and the global
    scale.  Identical for a secret context and its public copy; differs between keys."""
    ctx = load_context(ctx)
    cached = _FP_CACHE.get(ctx)
    if cached is not None:
        return cached
    try:
        pk = ctx.public_key().data
    except Exception as e:  # noqa: BLE001
        raise HEError(f"context has no public key: {e}") from e
    with tempfile.TemporaryDirectory(prefix="gibench-he-") as d:
        path = os.path.join(d, "pk")
        pk.save(path)
        with open(path, "rb") as f:
            pk_bytes = f.read()
    h = hashlib.sha256(b"gibench-he-context-v1\0")
    h.update(pk_bytes)
    h.update(repr(float(ctx.global_scale)).encode())
    fp = h.hexdigest()
    _FP_CACHE[ctx] = fp
    return fp


def slot_count(ctx: ts.Context) -> int:
    """N/2, the number of CKKS slots of one ciphertext under ``ctx``."""
    parms = ctx.seal_context().data.key_context_data().parms()
    return int(parms.poly_modulus_degree()) // 2
