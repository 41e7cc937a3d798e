"""SSIM as the DCS-2 code computes it (``dlg/utils/metrics.py``, pytorch-ssim style;
``reference/ig_and_image_defenses.md`` §6.1): a normalised 11x11 Gaussian window with
σ = 1.5, applied per channel by convolution with **zero padding** of 5 pixels (so the map
has the image's size and its border sees zeros), C1 = 0.01², C2 = 0.03² (data range 1),
and the mean over the whole SSIM map (all images, channels and pixels).  Inputs are
(B, C, H, W) images in [0, 1].  :func:`gibench.metrics.image.ssim_per_image` (torchmetrics)
differs only in how it treats the border.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

WINDOW = 11
SIGMA = 1.5


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA, dtype=torch.float64) -> torch.Tensor:
    t = torch.arange(size, dtype=dtype) - (size // 2)
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_map(a: torch.Tensor, b: torch.Tensor, size: int = WINDOW, sigma: float = SIGMA) -> torch.Tensor:
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"ssim: need two (B, C, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.double(), b.double()
    c = a.shape[1]
    w = gaussian_window(size, sigma).to(a.device).expand(c, 1, size, size).contiguous()
    pad = size // 2
    mu_a = F.conv2d(a, w, padding=pad, groups=c)
    mu_b = F.conv2d(b, w, padding=pad, groups=c)
    saa = F.conv2d(a * a, w, padding=pad, groups=c) - mu_a ** 2
    sbb = F.conv2d(b * b, w, padding=pad, groups=c) - mu_b ** 2
    sab = F.conv2d(a * b, w, padding=pad, groups=c) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))


def ssim_dcs2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean of the SSIM map (DCS-2's ``size_average=True``)."""
    return float(ssim_map(a.detach(), b.detach()).mean())
