"""One FedAvg round with selective encryption, by role (see :mod:`gibench.he`): the client's
:func:`encrypt_update` and its wire message (:class:`EncryptedUpdate`), the server's
:func:`aggregate` with the public context only (:class:`AggregatedUpdate`), and the key holder's
:func:`decrypt_aggregate`."""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

import tenseal as ts

from .context import HEError, context_fingerprint, load_context, slot_count
from .packing import (
    _Layout, _Scatter, decrypt_ciphertext, encrypt_chunks, _flat_numpy, iter_masked_values, _layout,
    _plain_dtype, sum_ciphertexts)


_MAGIC = b"GIBHE\x01\r\n"          # 8 bytes, first bytes of EncryptedUpdate.to_bytes()


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
