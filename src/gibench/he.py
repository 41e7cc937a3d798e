"""Selective homomorphic encryption of client updates (FedML-HE style) on TenSEAL CKKS.

What a round looks like (update rule of FedML-HE, arXiv 2303.10837)::

    [W] = sum_i w_i [[M * U_i]]  +  sum_i w_i (1 - M) * U_i

* A *mask* ``M`` over the named gradient tensors (True = the entry is encrypted) is
  global: every client uses the same one and the server knows it.  Accepted forms: a
  ``dict[str, BoolTensor]`` or any object with a ``.bits`` dict (``gibench.masks.Mask``;
  its ``.names`` order is used when present, else the dict order).
* **Client** (:func:`encrypt_update`): multiplies its update by its FedAvg weight in
  plaintext (as FedML does, so the server only has to add), gathers the masked entries in
  a fixed order (mask tensor order, row-major inside a tensor, packed across tensor
  boundaries), packs them into SIMD ``ts.ckks_vector`` ciphertexts of at most N/2 slots
  each and serialises each one.  The plaintext part is the weighted update with the masked
  entries set to 0; on the wire (:meth:`EncryptedUpdate.to_bytes`) only the *unmasked*
  entries are sent, so no masked value is ever in the clear.
* **Server** (:func:`aggregate`): holds only the public context (no secret key; refused
  otherwise), adds the ciphertexts as ciphertexts and the plaintext parts in the clear.
* **Key holder** (:func:`decrypt_aggregate`): decrypts, scatters the sums into the masked
  positions and adds the plaintext sum.

Parameters (:class:`HEParams`) default to FedML's TenSEAL context (``context.pickle``):
N = 8192, coefficient moduli [60, 40, 40, 60] bits, global scale 2^52.  A 52-bit scale
with 40-bit middle primes would be a problem only for ciphertext multiplication (rescaling
by a 40-bit prime would leave a 2^64 scale); FedAvg here uses additions only (weights are
applied in plaintext before encryption), and a fresh ciphertext at the top level has
60 + 40 + 40 = 140 bits of modulus for 52-bit-scaled values, so 2^52 works.  Measured on
this project's CPU (tenseal 0.3.18): max abs error of one fresh ciphertext on values in
[-1, 1] is about 2e-12, of a 3-client sum about 5e-12 (versus about 1e-8 at scale 2^40).
The CKKS error is absolute (independent of the values' magnitude) and is far below the
float32 resolution of the returned update.

Cost (same machine, one core; TenSEAL holds the GIL, so threads do not help): about
2.1 s to encrypt and 0.7 s to serialise one million entries, 331.4 KB per ciphertext of
4096 slots (80.9 B per entry, 20x fp32).  Run ``benchmarks/bench_he.py`` for current
figures.

Integrity: CKKS decryption under the wrong secret key silently returns garbage (of order
1e27), and TenSEAL does not notice when the parameters match.  Every encrypted update and
aggregate therefore carries a *context fingerprint* (sha256 of the serialised public key,
which also encodes SEAL's parameter id, plus the global scale) and a *mask fingerprint*
(sha256 of the names, shapes and packed mask bits); any mismatch raises :class:`HEError`.
The fingerprints are integrity checks against mix-ups, not authentication against an
active adversary.

Reproducibility: TenSEAL/SEAL key generation and encryption draw from the operating
system's randomness and cannot be seeded from Python.  Ciphertext bytes therefore differ
from run to run; decrypted aggregates are reproducible to the CKKS noise (~1e-11
absolute), not bit for bit.  ``make_context(seed=...)`` records nothing and changes
nothing; the argument exists so callers can pass their seed uniformly.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import struct
import tempfile
import time
import weakref
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

import tenseal as ts

__all__ = [
    "HEError", "HEParams", "EncryptedUpdate", "AggregatedUpdate",
    "make_context", "public_context", "load_context", "context_fingerprint",
    "mask_fingerprint", "slot_count",
    "encrypt_update", "aggregate", "decrypt_aggregate",
    "iter_masked_values", "encrypt_chunks", "sum_ciphertexts", "decrypt_ciphertext",
    "measure_overhead", "device_string",
]

_MAGIC = b"GIBHE\x01\r\n"          # 8 bytes, first bytes of EncryptedUpdate.to_bytes()
_BLOCK = 1 << 20                    # entries per streaming block when walking a tensor


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
    TenSEAL's key generation, which uses the OS's randomness (see the module docstring)."""
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


# --------------------------------------------------------------------------- masks
class _Layout:
    """The mask, normalised: tensor order, shapes, flat numpy bool arrays, fingerprint."""

    def __init__(self, mask: Any):
        bits = getattr(mask, "bits", mask)
        if not isinstance(bits, Mapping):
            raise TypeError("mask must be a dict[str, BoolTensor] or an object with a .bits "
                            f"dict, got {type(mask)!r}")
        names = list(getattr(mask, "names", None) or bits.keys())
        if sorted(names) != sorted(bits.keys()):
            raise HEError("mask.names and mask.bits name different tensors")
        self.names: list[str] = names
        self.shapes: list[tuple[int, ...]] = []
        self.flat: dict[str, np.ndarray] = {}
        self.tensors: dict[str, torch.Tensor] = {}
        for name in names:
            b = bits[name]
            if isinstance(b, np.ndarray):
                b = torch.from_numpy(b)
            if not isinstance(b, torch.Tensor) or b.dtype != torch.bool:
                raise TypeError(f"mask entry {name!r} must be a bool tensor, got "
                                f"{getattr(b, 'dtype', type(b))}")
            b = b.detach().to("cpu").contiguous()
            self.tensors[name] = b
            self.shapes.append(tuple(int(s) for s in b.shape))
            self.flat[name] = b.reshape(-1).numpy()
        self.counts = {n: int(np.count_nonzero(self.flat[n])) for n in names}
        self.n_entries = sum(int(self.flat[n].size) for n in names)
        self.n_encrypted = sum(self.counts.values())
        h = hashlib.sha256(b"gibench-he-mask-v1\0")
        for name, shape in zip(names, self.shapes):
            h.update(name.encode() + b"\0" + json.dumps(list(shape)).encode() + b"\0")
            h.update(np.packbits(self.flat[name]).tobytes())
        self.fingerprint = h.hexdigest()

    def packed(self) -> bytes:
        """All mask bits in packing order, concatenated and bit-packed (big-endian bits)."""
        return np.packbits(np.concatenate([self.flat[n] for n in self.names])
                           if self.names else np.zeros(0, bool)).tobytes()

    def check_update(self, update: Mapping[str, torch.Tensor], what: str = "update") -> None:
        if set(update.keys()) != set(self.names):
            missing = sorted(set(self.names) - set(update))
            extra = sorted(set(update) - set(self.names))
            raise HEError(f"{what} and mask name different tensors (missing from {what}: "
                          f"{missing[:5]}, not in mask: {extra[:5]})")
        for name, shape in zip(self.names, self.shapes):
            t = update[name]
            if tuple(t.shape) != shape:
                raise HEError(f"{what}[{name!r}] has shape {tuple(t.shape)}, mask {shape}")
            if not torch.is_floating_point(t):
                raise HEError(f"{what}[{name!r}] must be floating point, got {t.dtype}")


def mask_fingerprint(mask: Any) -> str:
    """sha256 over the mask's names, shapes and packed bits (packing order)."""
    return mask if isinstance(mask, str) else _Layout(mask).fingerprint


def _layout(mask: Any) -> _Layout:
    return mask if isinstance(mask, _Layout) else _Layout(mask)


def _plain_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _flat_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().to("cpu")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t.contiguous().reshape(-1).numpy()


# --------------------------------------------------------------------------- streaming
def iter_masked_values(update: Mapping[str, torch.Tensor], mask: Any, weight: float = 1.0,
                       chunk_slots: int = 4096) -> Iterator[np.ndarray]:
    """The weighted masked entries ``weight * update[M]`` as float64 arrays of
    ``chunk_slots`` values (the last one shorter), in packing order: mask tensor order,
    row-major, continuing across tensor boundaries.  Walks each tensor in blocks, so only a
    block and one chunk are materialised at a time."""
    lay = _layout(mask)
    lay.check_update(update)
    if chunk_slots < 1:
        raise ValueError("chunk_slots must be >= 1")
    w = float(weight)
    pending: list[np.ndarray] = []
    n_pending = 0
    for name in lay.names:
        if lay.counts[name] == 0:
            continue
        flat, bits = _flat_numpy(update[name]), lay.flat[name]
        for s in range(0, flat.size, _BLOCK):
            mb = bits[s:s + _BLOCK]
            if not mb.any():
                continue
            vals = flat[s:s + _BLOCK][mb].astype(np.float64) * w
            while vals.size:
                take = min(chunk_slots - n_pending, vals.size)
                pending.append(vals[:take])
                n_pending += take
                vals = vals[take:]
                if n_pending == chunk_slots:
                    yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                    pending, n_pending = [], 0
    if n_pending:
        yield np.concatenate(pending)


def encrypt_chunks(ctx: ts.Context, chunks: Iterable[np.ndarray]) -> Iterator[bytes]:
    """Encrypt each chunk (<= N/2 values) as one SIMD ``ckks_vector`` and serialise it.
    Needs only the public key.  Lazy: one ciphertext in memory at a time."""
    slots = slot_count(ctx)
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 1 or not 1 <= chunk.size <= slots:
            raise HEError(f"a chunk must be a vector of 1..{slots} values, got {chunk.shape}")
        yield ts.ckks_vector(ctx, chunk).serialize()


def _load_vector(ctx: ts.Context, ct: bytes, what: str):
    try:
        return ts.ckks_vector_from(ctx, ct)
    except Exception as e:  # noqa: BLE001 - TenSEAL raises ValueError/RuntimeError
        raise HEError(f"{what} is not a valid CKKS vector for this context's parameters "
                      f"({type(e).__name__}: {e})") from e


def sum_ciphertexts(ctx: ts.Context | bytes, cts: Sequence[bytes]) -> bytes:
    """Homomorphic sum of serialised ciphertexts (same number of values), serialised."""
    ctx = load_context(ctx)
    if not cts:
        raise HEError("nothing to sum")
    acc = _load_vector(ctx, cts[0], "ciphertext 0")
    for i, ct in enumerate(cts[1:], 1):
        v = _load_vector(ctx, ct, f"ciphertext {i}")
        if v.size() != acc.size():
            raise HEError(f"ciphertext {i} holds {v.size()} values, ciphertext 0 {acc.size()}")
        try:
            acc += v
        except Exception as e:  # noqa: BLE001
            raise HEError(f"cannot add ciphertext {i}: {e}") from e
    return acc.serialize()


def decrypt_ciphertext(ctx: ts.Context, ct: bytes) -> np.ndarray:
    """Decrypt one serialised ciphertext with the secret context (no fingerprint check:
    use :func:`decrypt_aggregate` for checked decryption)."""
    if not ctx.is_private():
        raise HEError("decryption needs the secret context (this one has no secret key)")
    return np.asarray(_load_vector(ctx, ct, "ciphertext").decrypt(), dtype=np.float64)


class _Scatter:
    """Push decrypted values (packing order); they are added into ``out`` (flat numpy views
    keyed by tensor name) at the masked positions."""

    def __init__(self, lay: _Layout, out: dict[str, np.ndarray]):
        self.lay, self.out = lay, out
        self.ti, self.start = 0, 0
        self.pending: list[np.ndarray] = []
        self.n_pending = 0
        self._advance_empty()

    def _advance_empty(self):
        names = self.lay.names
        while self.ti < len(names) and self.lay.counts[names[self.ti]] == 0:
            self.ti += 1

    def _take(self, k: int) -> np.ndarray:
        buf = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        self.pending = [buf[k:]] if buf.size > k else []
        self.n_pending -= k
        return buf[:k]

    def push(self, vals: np.ndarray) -> None:
        self.pending.append(np.asarray(vals))
        self.n_pending += len(vals)
        names = self.lay.names
        while self.ti < len(names):
            name = names[self.ti]
            bits, o = self.lay.flat[name], self.out[name]
            mb = bits[self.start:self.start + _BLOCK]
            k = int(np.count_nonzero(mb))
            if k > self.n_pending:
                return
            if k:
                view = o[self.start:self.start + _BLOCK]
                view[mb] += self._take(k)
            self.start += _BLOCK
            if self.start >= bits.size:
                self.ti, self.start = self.ti + 1, 0
                self._advance_empty()

    def finish(self) -> None:
        if self.ti < len(self.lay.names) or self.n_pending:
            raise HEError(f"decrypted value count does not match the mask "
                          f"({self.lay.n_encrypted} masked entries; "
                          f"{'too few' if self.ti < len(self.lay.names) else 'too many'} "
                          "values)")


# --------------------------------------------------------------------------- messages
@dataclass
class EncryptedUpdate:
    """What one client sends: ciphertexts of its weighted masked entries and the weighted
    plaintext part (masked entries set to 0 here, and not sent at all by ``to_bytes``)."""

    ciphertexts: list[bytes]
    plain: dict[str, torch.Tensor]
    mask_fingerprint: str
    context_fingerprint: str
    weight: float
    names: list[str]
    shapes: list[tuple[int, ...]]
    n_entries: int
    n_encrypted: int
    chunk_slots: int
    mask: dict[str, torch.Tensor] = field(repr=False)

    @property
    def n_ciphertexts(self) -> int:
        return len(self.ciphertexts)

    @property
    def ciphertext_bytes(self) -> int:
        return sum(len(c) for c in self.ciphertexts)

    def _header(self) -> dict:
        return {"format": "gibench-he-update", "version": 1, "names": self.names,
                "shapes": [list(s) for s in self.shapes],
                "dtypes": [str(self.plain[n].dtype).replace("torch.", "") for n in self.names],
                "weight": float(self.weight), "mask_fingerprint": self.mask_fingerprint,
                "context_fingerprint": self.context_fingerprint, "n_entries": self.n_entries,
                "n_encrypted": self.n_encrypted, "chunk_slots": self.chunk_slots,
                "n_ciphertexts": self.n_ciphertexts}

    def _prefix(self) -> bytes:
        lay = _Layout(self.mask)
        header = json.dumps(self._header(), sort_keys=True).encode()
        parts = [_MAGIC, struct.pack("<I", len(header)), header, lay.packed()]
        for name in self.names:           # only the unmasked entries, little-endian
            keep = ~lay.flat[name]
            vals = _flat_numpy(self.plain[name])[keep]
            parts.append(vals.astype(vals.dtype.newbyteorder("<"), copy=False).tobytes())
        return b"".join(parts)

    def to_bytes(self) -> bytes:
        """The exact bytes the client sends: magic, JSON header, packed mask bits, the
        plaintext values of the *unmasked* entries (row-major, little-endian, mask order),
        then each ciphertext as u64 length + SEAL/TenSEAL serialisation."""
        out = [self._prefix()]
        for ct in self.ciphertexts:
            out.append(struct.pack("<Q", len(ct)))
            out.append(ct)
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> "EncryptedUpdate":
        mv = memoryview(data)
        try:
            if bytes(mv[:8]) != _MAGIC:
                raise HEError("not a gibench encrypted update (bad magic)")
            (hlen,) = struct.unpack_from("<I", mv, 8)
            header = json.loads(bytes(mv[12:12 + hlen]))
            pos = 12 + hlen
            names, shapes = header["names"], [tuple(s) for s in header["shapes"]]
            sizes = [math.prod(s) for s in shapes]
            n_entries = sum(sizes)
            nbytes = (n_entries + 7) // 8
            allbits = np.unpackbits(np.frombuffer(mv[pos:pos + nbytes], np.uint8),
                                    count=n_entries).astype(bool)
            if allbits.size != n_entries:
                raise HEError("truncated mask section")
            pos += nbytes
            mask, plain, off = {}, {}, 0
            for name, shape, size, dt in zip(names, shapes, sizes, header["dtypes"]):
                bits = allbits[off:off + size].copy()
                off += size
                npdt = np.dtype(np.float64 if dt == "float64" else np.float32).newbyteorder("<")
                keep = ~bits
                n_keep = int(np.count_nonzero(keep))
                vals = np.frombuffer(mv[pos:pos + n_keep * npdt.itemsize], npdt)
                if vals.size != n_keep:
                    raise HEError(f"truncated plaintext section for {name!r}")
                pos += n_keep * npdt.itemsize
                full = np.zeros(size, dtype=npdt.newbyteorder("="))
                full[keep] = vals
                mask[name] = torch.from_numpy(bits.reshape(shape))
                plain[name] = torch.from_numpy(full.reshape(shape))
            cts = []
            for _ in range(int(header["n_ciphertexts"])):
                (clen,) = struct.unpack_from("<Q", mv, pos)
                pos += 8
                if pos + clen > len(mv):
                    raise HEError("truncated ciphertext section")
                cts.append(bytes(mv[pos:pos + clen]))
                pos += clen
            if pos != len(mv):
                raise HEError(f"{len(mv) - pos} trailing bytes after the last ciphertext")
        except HEError:
            raise
        except (KeyError, ValueError, struct.error, json.JSONDecodeError) as e:
            raise HEError(f"malformed encrypted update: {e}") from e
        upd = cls(ciphertexts=cts, plain=plain, mask_fingerprint=header["mask_fingerprint"],
                  context_fingerprint=header["context_fingerprint"],
                  weight=float(header["weight"]), names=list(names), shapes=shapes,
                  n_entries=n_entries, n_encrypted=int(header["n_encrypted"]),
                  chunk_slots=int(header["chunk_slots"]), mask=mask)
        lay = _Layout(mask)
        if lay.fingerprint != upd.mask_fingerprint or lay.n_encrypted != upd.n_encrypted:
            raise HEError("the mask bits in the message do not match its mask fingerprint")
        return upd


@dataclass
class AggregatedUpdate:
    """Server output: summed ciphertexts and the summed plaintext parts (0 at masked
    positions)."""

    ciphertexts: list[bytes]
    plain: dict[str, torch.Tensor]
    mask_fingerprint: str
    context_fingerprint: str
    weights: list[float]
    names: list[str]
    shapes: list[tuple[int, ...]]
    n_entries: int
    n_encrypted: int
    chunk_slots: int

    @property
    def n_clients(self) -> int:
        return len(self.weights)

    @property
    def n_ciphertexts(self) -> int:
        return len(self.ciphertexts)

    @property
    def ciphertext_bytes(self) -> int:
        return sum(len(c) for c in self.ciphertexts)


# --------------------------------------------------------------------------- client
def _plain_part(update, lay: _Layout, weight: float) -> dict[str, torch.Tensor]:
    plain = {}
    for name in lay.names:
        u = update[name].detach().to("cpu")
        p = u.to(torch.float64) * float(weight)
        p.masked_fill_(lay.tensors[name], 0.0)
        plain[name] = p.to(_plain_dtype(u))
    return plain


def encrypt_update(ctx: ts.Context, update: Mapping[str, torch.Tensor], mask: Any,
                   weight: float, chunk_slots: int | None = None) -> EncryptedUpdate:
    """Client side: ``weight * update``, masked entries CKKS-encrypted (``chunk_slots``
    values per ciphertext, default and maximum N/2), the rest kept as plaintext with the
    masked entries zeroed.  ``ctx`` needs the public key only."""
    ctx = load_context(ctx)
    if not math.isfinite(float(weight)):
        raise ValueError(f"client weight must be finite, got {weight}")
    lay = _layout(mask)
    lay.check_update(update)
    slots = slot_count(ctx)
    chunk_slots = slots if chunk_slots is None else int(chunk_slots)
    if not 1 <= chunk_slots <= slots:
        raise ValueError(f"chunk_slots must be in [1, {slots}] (N/2), got {chunk_slots}")
    cts = list(encrypt_chunks(ctx, iter_masked_values(update, lay, weight, chunk_slots)))
    return EncryptedUpdate(ciphertexts=cts, plain=_plain_part(update, lay, weight),
                           mask_fingerprint=lay.fingerprint,
                           context_fingerprint=context_fingerprint(ctx), weight=float(weight),
                           names=list(lay.names), shapes=list(lay.shapes),
                           n_entries=lay.n_entries, n_encrypted=lay.n_encrypted,
                           chunk_slots=chunk_slots, mask=dict(lay.tensors))


# --------------------------------------------------------------------------- server
def _server_context(public_ctx) -> ts.Context:
    ctx = load_context(public_ctx)
    if ctx.is_private():
        raise HEError("the server context holds the secret key; give the server "
                      "public_context(ctx) instead")
    return ctx


def _sum_plain(plains: Sequence[Mapping[str, torch.Tensor]], names) -> dict[str, torch.Tensor]:
    out = {}
    for name in names:
        acc = plains[0][name].to(torch.float64)      # copy (or new tensor) before +=
        if acc.data_ptr() == plains[0][name].data_ptr():
            acc = acc.clone()
        for p in plains[1:]:
            acc += p[name]
        out[name] = acc.to(plains[0][name].dtype)
    return out


def aggregate(public_ctx: ts.Context | bytes,
              updates: Sequence[EncryptedUpdate]) -> AggregatedUpdate:
    """Server side: add the ciphertexts homomorphically (chunk j of every client) and the
    plaintext parts in the clear.  Refuses a secret context, updates encrypted under
    another key/parameters, and updates with different masks or packings."""
    ctx = _server_context(public_ctx)
    if not updates:
        raise HEError("no updates to aggregate")
    fp = context_fingerprint(ctx)
    ref = updates[0]
    for i, u in enumerate(updates):
        if u.context_fingerprint != fp:
            raise HEError(f"update {i} was encrypted under a different key or CKKS context "
                          f"(fingerprint {u.context_fingerprint[:12]}) than the server's "
                          f"public context ({fp[:12]})")
        if u.mask_fingerprint != ref.mask_fingerprint:
            raise HEError(f"update {i} uses a different encryption mask "
                          f"({u.mask_fingerprint[:12]}) than update 0 "
                          f"({ref.mask_fingerprint[:12]}); all clients must share one mask")
        if (u.names, [tuple(s) for s in u.shapes]) != (ref.names, [tuple(s) for s in ref.shapes]):
            raise HEError(f"update {i} has different tensors than update 0")
        if (u.chunk_slots, u.n_ciphertexts, u.n_encrypted) != (
                ref.chunk_slots, ref.n_ciphertexts, ref.n_encrypted):
            raise HEError(f"update {i} packs its masked entries differently from update 0 "
                          f"(chunk_slots/ciphertexts/encrypted {u.chunk_slots}/"
                          f"{u.n_ciphertexts}/{u.n_encrypted} vs {ref.chunk_slots}/"
                          f"{ref.n_ciphertexts}/{ref.n_encrypted})")
    sums = [sum_ciphertexts(ctx, [u.ciphertexts[j] for u in updates])
            for j in range(ref.n_ciphertexts)]
    return AggregatedUpdate(ciphertexts=sums, plain=_sum_plain([u.plain for u in updates],
                                                               ref.names),
                            mask_fingerprint=ref.mask_fingerprint, context_fingerprint=fp,
                            weights=[float(u.weight) for u in updates], names=list(ref.names),
                            shapes=list(ref.shapes), n_entries=ref.n_entries,
                            n_encrypted=ref.n_encrypted, chunk_slots=ref.chunk_slots)


# --------------------------------------------------------------------------- key holder
def decrypt_aggregate(ctx: ts.Context, agg: AggregatedUpdate, mask: Any,
                      dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Key holder: decrypt the summed ciphertexts, scatter them into the masked positions and
    add the plaintext sum.  Returns ``sum_i w_i u_i`` per tensor (dtype of the plaintext
    part unless ``dtype`` is given; the decrypted values are float64 before the cast)."""
    if not isinstance(ctx, ts.Context) or not ctx.is_private():
        raise HEError("decrypt_aggregate needs the secret context of the key holder")
    fp = context_fingerprint(ctx)
    if agg.context_fingerprint != fp:
        raise HEError(f"the aggregate was encrypted under a different key or CKKS context "
                      f"(fingerprint {agg.context_fingerprint[:12]}) than this secret "
                      f"context ({fp[:12]}); refusing to decrypt (CKKS would return garbage)")
    lay = _layout(mask)
    if lay.fingerprint != agg.mask_fingerprint:
        raise HEError(f"mask does not match the aggregate's mask "
                      f"({lay.fingerprint[:12]} vs {agg.mask_fingerprint[:12]})")
    out = {n: agg.plain[n].to(dtype or agg.plain[n].dtype, copy=True).contiguous()
           for n in lay.names}
    sc = _Scatter(lay, {n: out[n].view(-1).numpy() for n in lay.names})
    n_vals = 0
    for j, ct in enumerate(agg.ciphertexts):
        vals = decrypt_ciphertext(ctx, ct)
        expect = min(agg.chunk_slots, agg.n_encrypted - n_vals)
        if vals.size != expect:
            raise HEError(f"ciphertext {j} holds {vals.size} values, expected {expect}")
        n_vals += vals.size
        sc.push(vals)
    sc.finish()
    return out


# --------------------------------------------------------------------------- measurement
def device_string() -> str:
    """'cpu: <model name from /proc/cpuinfo>'."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu: {name}"


def _derive_clients(update, n_clients: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Client 0 gets ``update``; client i > 0 gets ``update`` plus seeded Gaussian noise of
    0.5x the tensor's RMS, so the clients differ and the sum is a real test."""
    gen = torch.Generator().manual_seed(int(seed))
    clients = [dict(update)]
    for _ in range(1, n_clients):
        c = {}
        for name, t in update.items():
            t = t.detach().to("cpu")
            rms = float(t.double().pow(2).mean().sqrt()) if t.numel() else 0.0
            noise = torch.randn(t.shape, generator=gen, dtype=torch.float32)
            c[name] = (t.float() + (0.5 * (rms or 1.0)) * noise).to(_plain_dtype(t))
        clients.append(c)
    return clients


def measure_overhead(update: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]],
                     mask: Any, params: HEParams | None = None, n_clients: int = 3, *,
                     weights: Sequence[float] | None = None, seed: int = 0,
                     chunk_slots: int | None = None, batch_ciphertexts: int = 256) -> dict:
    """Measure one selective-HE FedAvg round against plaintext FedAvg.

    ``update`` is one client update (the other clients are derived from it with seeded
    noise, see :func:`_derive_clients`) or a list of client updates.  Weights default to
    1/n (FedML).  Every figure is measured on this machine: the round is streamed in
    batches of ``batch_ciphertexts`` ciphertexts per client (encrypt -> sum on the server
    with the public context -> decrypt), so memory stays bounded for BERT-size updates; the
    stages run exactly the code of encrypt_update / aggregate / decrypt_aggregate.
    """
    params = params or HEParams()
    clients = ([dict(u) for u in update] if isinstance(update, (list, tuple))
               else _derive_clients(update, int(n_clients), seed))
    n = len(clients)
    if n < 1:
        raise ValueError("need at least one client")
    w = [1.0 / n] * n if weights is None else [float(x) for x in weights]
    if len(w) != n:
        raise ValueError(f"{len(w)} weights for {n} clients")
    lay = _layout(mask)
    for i, c in enumerate(clients):
        lay.check_update(c, f"client {i} update")

    t0 = time.perf_counter()
    ctx = make_context(params, seed)
    keygen_s = time.perf_counter() - t0
    pub_bytes = public_context(ctx)
    server_ctx = _server_context(pub_bytes)
    slots = slot_count(ctx)
    cs = slots if chunk_slots is None else int(chunk_slots)
    if not 1 <= cs <= slots:
        raise ValueError(f"chunk_slots must be in [1, {slots}]")
    cfp = context_fingerprint(ctx)
    if context_fingerprint(server_ctx) != cfp:
        raise HEError("public context fingerprint differs from the secret context's")

    # plaintext FedAvg baseline (what the server would do without HE), fp32
    t0 = time.perf_counter()
    plain_avg = {}
    for name in lay.names:
        acc = clients[0][name].float() * w[0]
        for c, wi in zip(clients[1:], w[1:]):
            acc.add_(c[name].float(), alpha=wi)
        plain_avg[name] = acc
    plain_agg_s = time.perf_counter() - t0
    del plain_avg
    plain_bytes = 4 * lay.n_entries

    # client side, part 1: plaintext part (weighted, masked zeroed) and its wire bytes
    enc_s = [0.0] * n
    prefix_bytes = [0] * n
    plains = []
    for i, (c, wi) in enumerate(zip(clients, w)):
        t0 = time.perf_counter()
        p = _plain_part(c, lay, wi)
        msg = EncryptedUpdate(ciphertexts=[], plain=p, mask_fingerprint=lay.fingerprint,
                              context_fingerprint=cfp, weight=wi, names=list(lay.names),
                              shapes=list(lay.shapes), n_entries=lay.n_entries,
                              n_encrypted=lay.n_encrypted, chunk_slots=cs,
                              mask=dict(lay.tensors))
        prefix_bytes[i] = len(msg._prefix())
        enc_s[i] += time.perf_counter() - t0
        plains.append(p)

    # server: plaintext parts
    t0 = time.perf_counter()
    plain_sum = _sum_plain(plains, lay.names)
    server_plain_s = time.perf_counter() - t0
    del plains

    # streamed ciphertext round
    streams = [encrypt_chunks(ctx, iter_masked_values(c, lay, wi, cs))
               for c, wi in zip(clients, w)]
    out = {nm: plain_sum[nm].to(torch.float64, copy=True).contiguous() for nm in lay.names}
    scatter = _Scatter(lay, {nm: out[nm].view(-1).numpy() for nm in lay.names})
    ct_bytes = [0] * n
    n_ct = [0] * n
    server_ct_s = dec_s = 0.0
    agg_ct_bytes = 0
    while True:
        batches = []
        for i, s in enumerate(streams):
            t0 = time.perf_counter()
            b = list(islice(s, batch_ciphertexts))
            enc_s[i] += time.perf_counter() - t0
            ct_bytes[i] += sum(len(x) for x in b)
            n_ct[i] += len(b)
            batches.append(b)
        if not batches[0]:
            break
        t0 = time.perf_counter()
        sums = [sum_ciphertexts(server_ctx, [b[j] for b in batches])
                for j in range(len(batches[0]))]
        server_ct_s += time.perf_counter() - t0
        agg_ct_bytes += sum(len(x) for x in sums)
        del batches
        t0 = time.perf_counter()
        for s_ in sums:
            scatter.push(decrypt_ciphertext(ctx, s_))
        dec_s += time.perf_counter() - t0
    scatter.finish()
    if len(set(n_ct)) != 1:
        raise HEError(f"clients produced different numbers of ciphertexts: {n_ct}")

    # accuracy against plaintext FedAvg in float64
    max_err = max_err_enc = 0.0
    for nm in lay.names:
        ref = sum(c[nm].double() * wi for c, wi in zip(clients, w))
        out32 = out[nm].to(plain_sum[nm].dtype).double()   # what decrypt_aggregate returns
        err = (out32 - ref).abs()
        if err.numel():
            max_err = max(max_err, float(err.max()))
        bits = lay.tensors[nm]
        if bits.any():
            max_err_enc = max(max_err_enc, float((out[nm] - ref).abs()[bits].max()))

    enc_mean = sum(enc_s) / n
    server_s = server_ct_s + server_plain_s
    msg_bytes = [prefix_bytes[i] + ct_bytes[i] + 8 * n_ct[i] for i in range(n)]

    def ratio(a, b):
        return a / b if b else None

    return {
        "device": device_string(), "params": params.to_dict(), "tenseal": ts.__version__,
        "n_clients": n, "weights": w, "n_tensors": len(lay.names),
        "n_entries": lay.n_entries, "n_encrypted": lay.n_encrypted,
        "ratio_encrypted": ratio(lay.n_encrypted, lay.n_entries),
        "chunk_slots": cs, "n_ciphertexts": n_ct[0],
        "slot_utilisation": ratio(lay.n_encrypted, n_ct[0] * cs),
        "keygen_s": keygen_s, "public_context_bytes": len(pub_bytes),
        "client_encrypt_s": enc_mean, "client_encrypt_s_per_client": enc_s,
        "ciphertext_bytes": ct_bytes[0], "ciphertext_bytes_per_client": ct_bytes,
        "ciphertext_bytes_per_encrypted_entry": ratio(ct_bytes[0], lay.n_encrypted),
        "message_bytes": msg_bytes[0], "aggregate_ciphertext_bytes": agg_ct_bytes,
        "server_aggregate_s": server_s, "server_ciphertext_sum_s": server_ct_s,
        "server_plain_sum_s": server_plain_s, "decrypt_s": dec_s,
        "plain_update_bytes": plain_bytes, "plain_aggregate_s": plain_agg_s,
        "ratio_ciphertext_bytes_to_plain": ratio(ct_bytes[0], plain_bytes),
        "ratio_message_bytes_to_plain": ratio(msg_bytes[0], plain_bytes),
        "ratio_server_aggregate_to_plain": ratio(server_s, plain_agg_s),
        "ratio_round_time_to_plain": ratio(enc_mean + server_s + dec_s, plain_agg_s),
        "max_abs_error": max_err, "max_abs_error_encrypted_fp64": max_err_enc,
    }
