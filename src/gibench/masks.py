"""Encryption masks: which gradient entries are encrypted (DESIGN, "Selective encryption").

A :class:`Mask` holds one boolean tensor per parameter (True = encrypted).  It is built
from significance scores by :func:`make_mask`:

* ``selection='global'`` (default, as FedML-HE): ``k = round(ratio · M)`` over all ``M``
  entries of the concatenated model (``names`` order = ``named_parameters()`` order);
* ``selection='per_layer'``: ``k_l = round(ratio · numel_l)`` in every tensor; the total
  ``Σ k_l`` may differ from ``round(ratio · M)`` by the per-tensor rounding.

``round`` is half-up (``floor(r·M + 0.5)``) in exact rational arithmetic on the ratio as
written in the config (``0.3`` is 3/10, not the binary float 0.29999...), so ratio 0 gives
no entry, 1 all entries, and e.g. ``0.5 · 7 = 3.5`` gives 4 (:func:`k_for`).
Ties are broken deterministically: higher score first, then the lower flat index in the
concatenation (within a tensor for ``per_layer``) -- e.g. all-equal scores select the first
``k`` entries.  The selection is exact and reproducible: the k-th largest score ``v`` is
found, every entry ``> v`` is taken, then the first entries ``== v`` by index.

Selectors (``attn``, ``onefifth_i``) give 0/1 scores and ``info['selector']``: their mask is
exactly the selected set (:func:`mask_from_selector`).

On disk (:func:`save_mask`) each tensor is bit-packed (``numpy.packbits`` of the flattened
row-major bools, big-endian bit order) into a uint8 tensor of a safetensors file; names,
shapes, k, ratio and selection go into the provenance record under ``mask``.
"""
from __future__ import annotations

import math
import os
from fractions import Fraction
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from . import io

SELECTIONS = ("global", "per_layer")


@dataclass
class Mask:
    names: list[str]
    shapes: list[tuple[int, ...]]
    bits: dict[str, torch.Tensor]     # bool, True = encrypted
    k: int                            # encrypted entries
    ratio: float                      # the ratio asked for (selectors: the selected fraction)
    selection: str                    # "global" | "per_layer" | "selector"

    @property
    def total(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def encrypted_fraction(self) -> float:
        """Encrypted entries over all entries of the model."""
        return self.k / self.total if self.total else 0.0

    def visible(self, name: str) -> torch.Tensor:
        """True where the server sees entry ``name`` in plaintext."""
        return ~self.bits[name]

    def encrypted(self, name: str) -> torch.Tensor:
        return self.bits[name]

    def flat(self) -> torch.Tensor:
        return torch.cat([self.bits[n].reshape(-1) for n in self.names])

    def to(self, device: str | torch.device) -> "Mask":
        return Mask(list(self.names), list(self.shapes), {n: b.to(device) for n, b in self.bits.items()},
                    self.k, self.ratio, self.selection)


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def k_for(ratio: float, total: int) -> int:
    """``k = round(ratio · total)``, half up, exactly: the ratio is the decimal its shortest
    ``repr`` spells (``Fraction('0.3') = 3/10``), so no binary rounding of ``ratio · total``
    can move ``k`` across a half."""
    r = Fraction(repr(float(ratio)))
    if not 0 <= r <= 1:
        raise ValueError(f"ratio must be in [0, 1], not {ratio}")
    return int(math.floor(r * int(total) + Fraction(1, 2)))


def top_k_bits(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean vector selecting the ``k`` largest entries; ties -> lower index first."""
    m = flat.numel()
    if not 0 <= k <= m:
        raise ValueError(f"k = {k} outside [0, {m}]")
    if k == 0:
        return torch.zeros(m, dtype=torch.bool, device=flat.device)
    if k == m:
        return torch.ones(m, dtype=torch.bool, device=flat.device)
    kth = flat.kthvalue(m - k + 1).values      # the k-th largest value
    bits = flat > kth
    need = k - int(bits.sum())
    ties = (flat == kth).nonzero().reshape(-1)[:need]
    bits[ties] = True
    return bits


def _ordered(scores: Mapping[str, torch.Tensor], names: Sequence[str] | None) -> list[str]:
    if names is None:
        return list(scores)
    names = list(names)
    if set(names) != set(scores) or len(names) != len(scores):
        raise ValueError(f"make_mask: names {names[:3]}... do not match the score tensors {list(scores)[:3]}...")
    return names


def make_mask(scores: Mapping[str, torch.Tensor], ratio: float, selection: str = "global",
              names: Sequence[str] | None = None) -> Mask:
    """Encrypt the top ``ratio`` of entries by score (see the module docstring).

    ``names`` fixes the concatenation order used for tie-breaking; give the model's
    ``named_parameters()`` order (``ScoreResult.info['names']``) when the scores come from
    a file, whose key order is not the parameter order.  Default: the dict's order."""
    ratio = float(ratio)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"make_mask: ratio must be in [0, 1], not {ratio}")
    if selection not in SELECTIONS:
        raise ValueError(f"make_mask: selection must be one of {SELECTIONS}, not {selection!r}")
    order = _ordered(scores, names)
    if not order:
        raise ValueError("make_mask: no score tensors")
    shapes = [tuple(scores[n].shape) for n in order]
    for n in order:
        if bool(torch.isnan(scores[n]).any()):
            raise ValueError(f"make_mask: NaN scores in {n!r}")
    if selection == "global":
        dtype = scores[order[0]].dtype if len({scores[n].dtype for n in order}) == 1 else torch.float64
        flat = torch.cat([scores[n].detach().reshape(-1).to(dtype) for n in order])
        k = k_for(ratio, flat.numel())
        parts = top_k_bits(flat, k).split([math.prod(s) for s in shapes])
        bits = {n: p.reshape(s) for n, p, s in zip(order, parts, shapes)}
    else:
        bits = {}
        for n, s in zip(order, shapes):
            flat = scores[n].detach().reshape(-1)
            bits[n] = top_k_bits(flat, k_for(ratio, flat.numel())).reshape(s)
        k = sum(int(b.sum()) for b in bits.values())
    return Mask(order, shapes, bits, int(k), ratio, selection)


def mask_from_selector(scores: Mapping[str, torch.Tensor], names: Sequence[str] | None = None) -> Mask:
    """The mask of a layer selector: exactly the entries with a positive score."""
    order = _ordered(scores, names)
    bits = {n: scores[n].detach() > 0 for n in order}
    k = sum(int(b.sum()) for b in bits.values())
    total = sum(b.numel() for b in bits.values())
    return Mask(order, [tuple(b.shape) for b in bits.values()], bits, int(k), k / total if total else 0.0,
                "selector")


def mask_for(scores: Mapping[str, torch.Tensor], ratio: float, selection: str = "global",
             info: Mapping[str, Any] | None = None) -> Mask:
    """:func:`mask_from_selector` if ``info`` marks a selector, else :func:`make_mask`;
    ``info`` is ``ScoreResult.info`` (also stored in the scores' record), whose ``names``
    give the tie-breaking order."""
    info = info or {}
    names = info.get("names")
    if info.get("selector"):
        return mask_from_selector(scores, names)
    return make_mask(scores, ratio, selection, names)


# --------------------------------------------------------------------------- storage

def save_mask(path: str | os.PathLike, mask: Mask, record: Mapping[str, Any]) -> None:
    """Bit-packed safetensors file (one uint8 tensor per parameter) with ``record`` plus
    ``record['mask'] = {names, shapes, k, ratio, selection, packing}``."""
    packed = {n: torch.from_numpy(np.packbits(mask.bits[n].detach().to("cpu").numpy().reshape(-1)))
              for n in mask.names}
    rec = dict(record)
    rec["mask"] = {"names": list(mask.names), "shapes": [list(s) for s in mask.shapes], "k": int(mask.k),
                   "ratio": float(mask.ratio), "selection": mask.selection,
                   "packing": "numpy.packbits of the row-major flattened bools, bitorder big"}
    io.save_tensors(path, packed, rec)


def load_mask(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Mask, dict[str, Any]]:
    """Inverse of :func:`save_mask`: ``(Mask, record)``."""
    packed, rec = io.load_tensors(path)
    meta = rec.get("mask")
    if not isinstance(meta, dict):
        raise io.ArtifactError(f"{path}: not a mask file (no 'mask' entry in its record)")
    bits = {}
    shapes = [tuple(int(d) for d in s) for s in meta["shapes"]]
    for n, s in zip(meta["names"], shapes):
        if n not in packed:
            raise io.ArtifactError(f"{path}: mask tensor {n!r} missing")
        flat = np.unpackbits(packed[n].numpy(), count=math.prod(s)).astype(bool)
        bits[n] = torch.from_numpy(flat.reshape(s)).to(device)
    mask = Mask(list(meta["names"]), shapes, bits, int(meta["k"]), float(meta["ratio"]), meta["selection"])
    if sum(int(b.sum()) for b in bits.values()) != mask.k:
        raise io.ArtifactError(f"{path}: mask has {sum(int(b.sum()) for b in bits.values())} set bits, record k = {mask.k}")
    return mask, rec


def visible_from_mask(mask, shared: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The attacker's view of a mask: True where an entry of ``shared`` is sent in plaintext."""
    missing = set(shared) - set(mask.bits)
    if missing:
        raise ValueError(f"mask lacks tensors {sorted(missing)[:3]}… of the shared update")
    return {n: ~mask.bits[n].to(torch.bool).reshape(shared[n].shape) for n in shared}
