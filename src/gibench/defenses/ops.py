"""The gradient-side operations of the defenses, shared by the client and the attackers.

* :func:`clip_factors` / :func:`clip_and_sum` -- DPSGD's per-sample clipping (Abadi et al. 2016;
  paper B section 3.4.2): g_i / max(1, ||g_i||_2 / tau), with ||g_i|| the L2 norm over *all*
  parameters of sample i's gradient, then the sum over the batch;
* :func:`dp_noise` -- Xi ~ N(0, sigma^2 tau^2 I) per parameter tensor, drawn on the CPU from a
  seeded generator; the released gradient is (sum_i clip(g_i) + Xi) / B;
* :func:`prune_masks` -- layer-wise magnitude pruning (DGC, Lin et al. 2017; paper B section
  3.4.3): in every tensor of n entries the floor(p * n) entries of smallest magnitude are set
  to 0 (ties: the lower flat index is pruned first), so exactly n - floor(p * n) entries keep
  their value -- the percentile rule of the reference pruning code with a deterministic tie rule.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch


def global_norms(per_sample: Sequence[torch.Tensor]) -> torch.Tensor:
    """||g_i||_2 over all tensors for each sample i; ``per_sample`` tensors are (B, *shape)."""
    sq = sum(g.reshape(g.shape[0], -1).pow(2).sum(dim=1) for g in per_sample)
    return torch.sqrt(sq)


def clip_factors(norms: torch.Tensor, clip: float) -> torch.Tensor:
    """1 / max(1, ||g_i|| / tau) per sample."""
    return 1.0 / torch.clamp(norms / float(clip), min=1.0)


def clip_and_sum(per_sample: Sequence[torch.Tensor], clip: float) -> list[torch.Tensor]:
    """sum_i g_i / max(1, ||g_i|| / tau) for each tensor."""
    f = clip_factors(global_norms(per_sample), clip)
    return [(g * f.view(-1, *([1] * (g.dim() - 1)))).sum(dim=0) for g in per_sample]


def dp_noise(shapes: Mapping[str, torch.Size], clip: float, sigma: float,
             generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Xi ~ N(0, (sigma tau)^2) for each named shape (float32, CPU), in the given order."""
    std = float(sigma) * float(clip)
    out = {}
    for name, shape in shapes.items():
        z = torch.randn(tuple(shape), generator=generator) if generator is not None else torch.randn(tuple(shape))
        out[name] = z * std
    return out


def pruned_count(n: int, rate: float) -> int:
    """floor(p * n), robust to binary rounding (0.95 * 20 is 18.999999999999996 in floats)."""
    return int(math.floor(round(float(rate) * n, 9)))


def prune_mask(g: torch.Tensor, rate: float) -> torch.Tensor:
    """1 where the entry survives layer-wise magnitude pruning at ``rate``, else 0 (g's dtype)."""
    n = g.numel()
    k = pruned_count(n, rate)
    flat = g.detach().reshape(-1).abs()
    keep = torch.ones(n, dtype=g.dtype, device=g.device)
    if k > 0:
        order = torch.sort(flat, stable=True).indices      # ascending magnitude, ties by index
        keep[order[:k]] = 0
    return keep.view_as(g)


def prune_masks(grads: Mapping[str, torch.Tensor], rate: float) -> dict[str, torch.Tensor]:
    return {n: prune_mask(g, rate) for n, g in grads.items()}


def observed_masks(update: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The pruning masks an attacker reads off a pruned update: Phi_C = 1(|G~| > 0) (paper B eq. 2)."""
    return {n: (g != 0).to(g.dtype) for n, g in update.items()}
