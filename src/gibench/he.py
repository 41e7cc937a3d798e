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

Cost (``benchmarks/bench_he.py``, CPU seconds on one core of this project's 2-vCPU AMD EPYC
machine, tenseal 0.3.18, default parameters): a client encrypts and serialises about 0.7M
entries/s, the server parses and adds about 1.6M client-entries/s, the key holder decrypts
about 2.2M entries/s; a ciphertext of 4096 slots is about 331 KB (81 B per entry, 20x fp32).
Full encryption of a BERT-base-sized update (109,483,778 entries, 2 clients): 26,730
ciphertexts = 8.9 GB per client, 156 s client, 66 s server, 49 s decryption (GPT-2-sized:
10.1 GB, 177 / 77 / 56 s), streamed in about 1.1 GiB of resident memory.

Differences from FedML's code (reference notes, selective_he.md 1.1-1.2): FedML's TenSEAL
aggregator encrypts every tensor separately and the whole model (no mask); here only the
masked entries are encrypted and they are packed *across* tensor boundaries, so a ratio-r
update needs ceil(r M / (N/2)) ciphertexts instead of at least one per touched tensor.
Weights are applied by the clients in plaintext, as in FedML's TenSEAL path (its PALISADE
path multiplies ciphertexts by the weight on the server instead).

Measuring (:func:`measure_overhead`, used by the pipeline's ``overhead`` rule and by
``benchmarks/bench_he.py``): one FedAvg round, streamed -- the plaintext parts tensor by
tensor in blocks, the masked entries ``batch_ciphertexts`` ciphertexts per client at a
time (encrypt -> server sum with the public context -> decrypt and check) -- with the
client updates read lazily (:class:`SafetensorsUpdate`, one tensor per access), so a
BERT/GPT-2-size round holds a few tensors and a few hundred ciphertexts, never the model's
ciphertexts.  Every figure is measured for the whole update; nothing is extrapolated.

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
    "measure_overhead", "device_string", "SafetensorsUpdate", "check_context_params", "UNSEEDED_COLUMNS",
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
        meta = getattr(update, "meta", None)      # lazy updates describe a tensor unloaded
        for name, shape in zip(self.names, self.shapes):
            t_shape, t_dtype = meta(name) if callable(meta) else (update[name].shape,
                                                                  update[name].dtype)
            if tuple(t_shape) != shape:
                raise HEError(f"{what}[{name!r}] has shape {tuple(t_shape)}, mask {shape}")
            if not t_dtype.is_floating_point:
                raise HEError(f"{what}[{name!r}] must be floating point, got {t_dtype}")


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
    return _masked_values(update, lay, weight, chunk_slots)


def _masked_values(update: Mapping[str, torch.Tensor], lay: "_Layout", weight: float,
                   chunk_slots: int) -> Iterator[np.ndarray]:
    """:func:`iter_masked_values` without the (eager) check of the update against the mask."""
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
def _header_dict(names, shapes, dtypes, weight, mask_fp, context_fp, n_entries, n_encrypted,
                 chunk_slots, n_ciphertexts) -> dict:
    return {"format": "gibench-he-update", "version": 1, "names": list(names),
            "shapes": [list(s) for s in shapes], "dtypes": list(dtypes),
            "weight": float(weight), "mask_fingerprint": mask_fp,
            "context_fingerprint": context_fp, "n_entries": int(n_entries),
            "n_encrypted": int(n_encrypted), "chunk_slots": int(chunk_slots),
            "n_ciphertexts": int(n_ciphertexts)}


def _header_bytes(header: dict) -> bytes:
    """Magic, u32 header length, JSON header: the first bytes of a client message."""
    raw = json.dumps(header, sort_keys=True).encode()
    return _MAGIC + struct.pack("<I", len(raw)) + raw


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
        return _header_dict(self.names, self.shapes,
                            [str(self.plain[n].dtype).replace("torch.", "") for n in self.names],
                            self.weight, self.mask_fingerprint, self.context_fingerprint,
                            self.n_entries, self.n_encrypted, self.chunk_slots,
                            self.n_ciphertexts)

    def _prefix(self) -> bytes:
        lay = _Layout(self.mask)
        parts = [_header_bytes(self._header()), lay.packed()]
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


# --------------------------------------------------------------------------- lazy updates
_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
              "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
              "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


class SafetensorsUpdate(Mapping):
    """A client update in a safetensors file, read one tensor per access (memory-mapped),
    so that streaming a BERT-size update holds one tensor, not the whole model.
    :meth:`meta` gives a tensor's shape and dtype without reading it."""

    def __init__(self, path: str | os.PathLike):
        from safetensors import safe_open

        self.path = os.fspath(path)
        try:
            with safe_open(self.path, framework="pt") as f:
                self._meta = {}
                for k in f.keys():
                    sl = f.get_slice(k)
                    dt = sl.get_dtype()
                    if dt not in _ST_DTYPES:
                        raise HEError(f"{self.path}: tensor {k!r} has unsupported dtype {dt}")
                    self._meta[k] = (tuple(int(d) for d in sl.get_shape()), _ST_DTYPES[dt])
        except HEError:
            raise
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise HEError(f"{self.path}: not a readable safetensors file ({e})") from e

    def meta(self, name: str) -> tuple[tuple[int, ...], torch.dtype]:
        return self._meta[name]

    def __getitem__(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        if name not in self._meta:
            raise KeyError(name)
        with safe_open(self.path, framework="pt") as f:
            return f.get_tensor(name)

    def __iter__(self):
        return iter(self._meta)

    def __len__(self) -> int:
        return len(self._meta)


# The clock of measure_overhead: "process" = CPU seconds of this process (all threads;
# time.process_time), "wall" = elapsed seconds (time.perf_counter).  The measured work is
# single-threaded (TenSEAL encrypts a <= N/2-slot vector on one thread; numpy too), so on an
# idle core both agree; on a shared machine CPU time is the stable measure of the work.
CLOCKS = {"process": time.process_time, "wall": time.perf_counter}


class _Timed(Mapping):
    """Wraps an update and adds up the seconds spent fetching tensors (disk reads, lazy
    generation), so that they can be taken out of the client's measured time."""

    def __init__(self, update: Mapping[str, torch.Tensor], now=time.perf_counter):
        self.update, self.seconds, self._now = update, 0.0, now
        if callable(getattr(update, "meta", None)):
            self.meta = update.meta

    def __getitem__(self, name):
        t0 = self._now()
        try:
            return self.update[name]
        finally:
            self.seconds += self._now() - t0

    def __iter__(self):
        return iter(self.update)

    def __len__(self):
        return len(self.update)


# --------------------------------------------------------------------------- measurement
def device_string() -> str:
    """'cpu: <model name from /proc/cpuinfo>' (TenSEAL runs on the CPU only)."""
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


def check_context_params(ctx: ts.Context, params: HEParams) -> None:
    """Raise :class:`HEError` unless ``ctx`` was made with ``params`` (ring degree, number
    and total bits of the coefficient moduli at key and data level, global scale)."""
    data = ctx.seal_context().data
    key, first = data.key_context_data(), data.first_context_data()
    got = (int(key.parms().poly_modulus_degree()), int(key.total_coeff_modulus_bit_count()),
           int(first.total_coeff_modulus_bit_count()), int(first.chain_index()) + 2,
           float(ctx.global_scale))
    sizes = params.coeff_mod_bit_sizes
    want = (int(params.poly_modulus_degree), sum(sizes), sum(sizes[:-1]), len(sizes),
            params.global_scale)
    if got != want:
        raise HEError(f"the context does not match the CKKS parameters {params.to_dict()} "
                      f"(ring, key bits, data bits, moduli, scale: context {got}, "
                      f"parameters {want})")


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


# per-round timings (seconds); measure_overhead reports their median over the repeats
_TIMING_KEYS = ("client_encrypt_s", "client_plain_part_s", "client_ckks_s",
                "server_aggregate_s", "server_ciphertext_sum_s", "server_plain_sum_s",
                "decrypt_s", "plain_client_s", "plain_server_s")

#: measure_overhead columns that depend on randomness TenSEAL does not let us seed: its keys
#: and each encryption's noise come from the OS, and SEAL compresses what it serialises, so
#: the key and ciphertext sizes move by a few hundred bytes between runs, and the CKKS error
#: with the noise.  A replay (``gibench verify``) reports these, it does not compare them.
UNSEEDED_COLUMNS = ("public_context_bytes", "ciphertext_bytes", "message_bytes", "aggregate_ciphertext_bytes",
                    "ciphertext_bytes_per_encrypted_entry", "ratio_ciphertext_bytes_to_plain",
                    "ratio_message_bytes_to_plain", "max_abs_error_encrypted")


def _one_round(clients: list[_Timed], w: list[float], lay: _Layout, ctx: ts.Context,
               server_ctx: ts.Context, cs: int, cfp: str, batch_ciphertexts: int,
               now=time.perf_counter) -> dict:
    """One streamed FedAvg round with selective HE, and the same round in plaintext.

    Memory: one tensor per client (plaintext stages) or ``batch_ciphertexts`` ciphertexts
    per client and their sums (ciphertext stage); nothing of model size is kept."""
    n = len(clients)
    f32 = np.dtype("<f4")
    # --- per tensor: plaintext FedAvg baseline, and the plaintext part of the HE round
    plain_client = [0.0] * n        # baseline: weight the update, serialise it (fp32)
    plain_server = 0.0              # baseline: parse n updates, add them
    part_client = [0.0] * n         # HE round: the unmasked entries, weighted, serialised
    part_server = 0.0               # HE round: parse the n plaintext parts, add them
    part_bytes = [0] * n
    err_plain = 0.0
    t0 = now()
    packed_mask = lay.packed()      # every client copies the mask bits into its message
    mask_bits_s = now() - t0
    for name in lay.names:
        flats = [_flat_numpy(c[name]) for c in clients]   # fetch (timed apart by _Timed)
        odt = np.dtype(np.float64 if flats[0].dtype == np.float64 else np.float32)
        odt = odt.newbyteorder("<")
        bits_all = lay.flat[name]
        for s in range(0, bits_all.size, _BLOCK):         # in blocks: bounded temporaries
            keep = ~bits_all[s:s + _BLOCK]
            ref = np.zeros(keep.size, np.float64)
            acc_plain = None
            acc_part = np.zeros(keep.size, np.float64)
            for i, (flat, wi) in enumerate(zip(flats, w)):
                blk = flat[s:s + _BLOCK]
                t0 = now()
                msg_plain = (blk.astype(np.float64) * wi).astype(f32).tobytes()
                plain_client[i] += now() - t0
                t0 = now()
                v = np.frombuffer(msg_plain, f32)
                if acc_plain is None:
                    acc_plain = v.copy()
                else:
                    acc_plain += v
                plain_server += now() - t0

                t0 = now()
                msg_part = (blk[keep].astype(np.float64) * wi).astype(odt).tobytes()
                part_client[i] += now() - t0
                part_bytes[i] += len(msg_part)
                t0 = now()
                acc_part[keep] += np.frombuffer(msg_part, odt)
                part_server += now() - t0
                ref += blk.astype(np.float64) * wi
            t0 = now()
            out_part = acc_part.astype(odt.newbyteorder("="))  # the dtype the update is returned in
            part_server += now() - t0
            if keep.any():
                err_plain = max(err_plain, float(np.abs(out_part[keep] - ref[keep]).max()))
            del ref, acc_plain, acc_part, out_part, msg_plain, msg_part
        del flats

    # --- ciphertexts, streamed in batches: clients encrypt, server sums, key holder decrypts
    streams = [_masked_values(c, lay, wi, cs) for c, wi in zip(clients, w)]
    ckks_client = [0.0] * n
    ct_bytes = [0] * n
    n_ct = [0] * n
    server_ct = dec = 0.0
    agg_bytes = n_sums = 0
    err_enc = 0.0
    while True:
        batches, refs = [], None
        for i, s in enumerate(streams):
            f0 = clients[i].seconds
            t0 = now()
            chunks = list(islice(s, batch_ciphertexts))
            cts = [ts.ckks_vector(ctx, ch).serialize() for ch in chunks]
            ckks_client[i] += now() - t0 - (clients[i].seconds - f0)
            ct_bytes[i] += sum(len(c) for c in cts)
            n_ct[i] += len(cts)
            batches.append(cts)
            if refs is None:
                refs = [np.array(ch, np.float64) for ch in chunks]
            elif len(chunks) != len(refs) or any(a.size != b.size for a, b in zip(refs, chunks)):
                raise HEError(f"client {i} produced a different packing than client 0")
            else:
                for a, b in zip(refs, chunks):
                    a += b
            del chunks
        if not batches[0]:
            break
        t0 = now()
        sums = [sum_ciphertexts(server_ctx, [b[j] for b in batches])
                for j in range(len(batches[0]))]
        server_ct += now() - t0
        agg_bytes += sum(len(x) for x in sums)
        n_sums += len(sums)
        del batches
        t0 = now()
        vals = [decrypt_ciphertext(ctx, x) for x in sums]
        dec += now() - t0
        for got, want in zip(vals, refs):
            err_enc = max(err_enc, float(np.abs(got - want).max()))
        del sums, vals, refs
    if len(set(n_ct)) != 1:
        raise HEError(f"clients produced different numbers of ciphertexts: {n_ct}")
    if n_sums * cs < lay.n_encrypted or (n_ct[0] and n_ct[0] != math.ceil(lay.n_encrypted / cs)):
        raise HEError(f"{n_ct[0]} ciphertexts for {lay.n_encrypted} masked entries")

    dtypes = [str(clients[0].meta(nm)[1] if hasattr(clients[0], "meta") else
                  clients[0][nm].dtype).replace("torch.", "") for nm in lay.names]
    dtypes = ["float64" if d == "float64" else "float32" for d in dtypes]
    header = _header_bytes(_header_dict(lay.names, lay.shapes, dtypes, w[0], lay.fingerprint,
                                        cfp, lay.n_entries, lay.n_encrypted, cs, n_ct[0]))
    msg_bytes = [len(header) + len(packed_mask) + part_bytes[i] + ct_bytes[i] + 8 * n_ct[i]
                 for i in range(n)]
    client_total = [part_client[i] + mask_bits_s + ckks_client[i] for i in range(n)]
    return {
        "client_encrypt_s": sum(client_total) / n, "client_encrypt_s_per_client": client_total,
        "client_plain_part_s": (sum(part_client) / n) + mask_bits_s,
        "client_ckks_s": sum(ckks_client) / n,
        "server_aggregate_s": server_ct + part_server, "server_ciphertext_sum_s": server_ct,
        "server_plain_sum_s": part_server, "decrypt_s": dec,
        "plain_client_s": sum(plain_client) / n, "plain_server_s": plain_server,
        "n_ciphertexts": n_ct[0], "ciphertext_bytes": ct_bytes[0],
        "ciphertext_bytes_per_client": ct_bytes, "plain_part_bytes": part_bytes[0],
        "message_bytes": msg_bytes[0], "message_bytes_per_client": msg_bytes,
        "aggregate_ciphertext_bytes": agg_bytes,
        "max_abs_error_encrypted": err_enc, "max_abs_error_plain_part": err_plain,
    }


def measure_overhead(update: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]],
                     mask: Any, params: HEParams | None = None, n_clients: int = 3, *,
                     weights: Sequence[float] | None = None, seed: int = 0,
                     chunk_slots: int | None = None, batch_ciphertexts: int = 256,
                     ctx: ts.Context | None = None, repeats: int = 1,
                     clock: str = "process") -> dict:
    """Measure one FedAvg round with selective CKKS encryption against plaintext FedAvg.

    ``update``: one client update (the other ``n_clients - 1`` are derived from it with
    seeded noise, :func:`_derive_clients`) or a list of client updates; any Mapping works,
    e.g. :class:`SafetensorsUpdate`, which reads one tensor at a time.  Weights default to
    1/n (FedML).  ``ctx``: a secret context made with ``params`` (one is made, and key
    generation timed, if None).

    The round is streamed: the plaintext parts tensor by tensor, the masked entries in
    batches of ``batch_ciphertexts`` ciphertexts per client (clients encrypt and serialise
    -> the server, holding only the public context, sums them -> the key holder decrypts),
    so memory stays bounded for BERT-size updates.  The stages do exactly what
    :func:`encrypt_update` / :func:`aggregate` / :func:`decrypt_aggregate` do, minus
    scattering the decrypted values into a model-size buffer.  Measured, per round:

    * client (mean over clients): ``client_plain_part_s`` (weight and serialise the
      unmasked entries, copy the mask bits) + ``client_ckks_s`` (gather the weighted masked
      entries, ``ckks_vector`` encryption, serialisation) = ``client_encrypt_s``;
    * server: ``server_ciphertext_sum_s`` (parse + add the ciphertexts) +
      ``server_plain_sum_s`` (parse + add the plaintext parts) = ``server_aggregate_s``;
    * key holder: ``decrypt_s`` (parse + decrypt the summed ciphertexts);
    * plaintext FedAvg baseline: ``plain_client_s`` (weight the whole update, serialise it
      as fp32) and ``plain_server_s`` (parse and add the n updates);
    * bytes: ``ciphertext_bytes`` and ``message_bytes`` (what one client sends: header,
      mask bits, plaintext part, ciphertexts) against ``plain_update_bytes`` = 4 B/entry.

    Times are CPU seconds of this process (``clock="process"``, the default: stable on a
    shared machine, equal to elapsed time on an idle core since the work is single-threaded)
    or elapsed seconds (``clock="wall"``).  Reading tensors from disk is not counted, nor a
    warm-up round trip of one ciphertext before the measured rounds.  With ``repeats > 1``
    every timing is the median over the repeated rounds (sizes are the first round's: they
    differ by a few hundred bytes between runs, see ``UNSEEDED_COLUMNS``; for the errors,
    which vary with the CKKS noise, the maximum is reported).  Correctness is checked on the
    fly: ``max_abs_error_encrypted`` (decrypted sums vs the float64 weighted sums of the
    masked entries) and ``max_abs_error_plain_part``.
    """
    params = params or HEParams()
    if isinstance(update, Mapping):
        clients = _derive_clients(update, int(n_clients), seed)
    else:
        clients = list(update)
    n = len(clients)
    if n < 1:
        raise ValueError("need at least one client")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if int(batch_ciphertexts) < 1:
        raise ValueError(f"batch_ciphertexts must be >= 1, got {batch_ciphertexts}")
    w = [1.0 / n] * n if weights is None else [float(x) for x in weights]
    if len(w) != n:
        raise ValueError(f"{len(w)} weights for {n} clients")
    lay = _layout(mask)
    for i, c in enumerate(clients):
        lay.check_update(c, f"client {i} update")

    now = CLOCKS[clock]
    keygen_s = None
    if ctx is None:
        t0 = now()
        ctx = make_context(params, seed)
        keygen_s = now() - t0
    elif not ctx.is_private():
        raise HEError("measure_overhead needs the secret context (it also decrypts)")
    check_context_params(ctx, params)
    pub_bytes = public_context(ctx)
    server_ctx = _server_context(pub_bytes)
    slots = slot_count(ctx)
    cs = slots if chunk_slots is None else int(chunk_slots)
    if not 1 <= cs <= slots:
        raise ValueError(f"chunk_slots must be in [1, {slots}]")
    cfp = context_fingerprint(ctx)
    if context_fingerprint(server_ctx) != cfp:
        raise HEError("public context fingerprint differs from the secret context's")

    # untimed warm-up: the first encryption/evaluation/decryption of a process pays for
    # lazy initialisation (memory pools, NTT tables) that a long-running client amortises
    warm = np.zeros(slots)
    ct = ts.ckks_vector(ctx, warm).serialize()
    decrypt_ciphertext(ctx, sum_ciphertexts(server_ctx, [ct, ct]))
    timed = [_Timed(c, now) for c in clients]
    rounds = [_one_round(timed, w, lay, ctx, server_ctx, cs, cfp, int(batch_ciphertexts), now)
              for _ in range(int(repeats))]
    res = dict(rounds[0])
    for k in _TIMING_KEYS:
        res[k] = float(np.median([r[k] for r in rounds]))
    res["client_encrypt_s_per_client"] = [float(np.median(v)) for v in
                                          zip(*(r["client_encrypt_s_per_client"] for r in rounds))]
    for k in ("max_abs_error_encrypted", "max_abs_error_plain_part"):
        res[k] = max(r[k] for r in rounds)

    def ratio(a, b):
        return a / b if b else None

    plain_bytes = 4 * lay.n_entries
    he_round = res["client_encrypt_s"] + res["server_aggregate_s"] + res["decrypt_s"]
    plain_round = res["plain_client_s"] + res["plain_server_s"]
    res.update({
        "device": device_string(), "params": params.to_dict(), "tenseal": ts.__version__,
        "n_clients": n, "weights": w, "repeats": int(repeats), "clock": clock,
        "n_tensors": len(lay.names),
        "n_entries": lay.n_entries, "n_encrypted": lay.n_encrypted,
        "ratio_encrypted": ratio(lay.n_encrypted, lay.n_entries), "chunk_slots": cs,
        "slot_utilisation": ratio(lay.n_encrypted, res["n_ciphertexts"] * cs),
        "keygen_s": keygen_s, "public_context_bytes": len(pub_bytes),
        "ciphertext_bytes_per_encrypted_entry": ratio(res["ciphertext_bytes"], lay.n_encrypted),
        "plain_update_bytes": plain_bytes, "he_round_s": he_round, "plain_round_s": plain_round,
        "ratio_ciphertext_bytes_to_plain": ratio(res["ciphertext_bytes"], plain_bytes),
        "ratio_message_bytes_to_plain": ratio(res["message_bytes"], plain_bytes),
        "ratio_client_time_to_plain": ratio(res["client_encrypt_s"], res["plain_client_s"]),
        "ratio_server_time_to_plain": ratio(res["server_aggregate_s"], res["plain_server_s"]),
        "ratio_round_time_to_plain": ratio(he_round, plain_round),
    })
    return res
