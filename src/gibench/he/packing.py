"""How :mod:`gibench.he` packs a masked update into ciphertexts and back: the mask normalised to a
packing order (:class:`_Layout`, its fingerprint), the masked entries streamed into N/2-slot
chunks, encryption, homomorphic sum and decryption of one ciphertext, and the scatter of
decrypted values back into the masked positions."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

import tenseal as ts

from .context import HEError, load_context, slot_count


_BLOCK = 1 << 20                    # entries per streaming block when walking a tensor


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
