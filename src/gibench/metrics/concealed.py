"""SSIM as the DCS-2 code computes it (``dlg/utils/metrics.py``, pytorch-ssim style;
``reference/ig_and_image_defenses.md`` §6.1): a normalised 11x11 Gaussian window with
σ = 1.5, applied per channel by convolution with **zero padding** of 5 pixels (so the map
has the image's size and its border sees zeros), C1 = 0.01², C2 = 0.03² (data range 1),
and the mean over the whole SSIM map (all images, channels and pixels).  Inputs are
(B, C, H, W) images in [0, 1].  :func:`gibench.metrics.image.ssim_per_image` (torchmetrics'
definition) differs only in how it treats the border and in clamping local variances at 0.
"""
from __future__ import annotations

import torch

from .image import ssim_map as image_ssim_map

WINDOW = 11
SIGMA = 1.5


def ssim_map(a: torch.Tensor, b: torch.Tensor, size: int = WINDOW, sigma: float = SIGMA) -> torch.Tensor:
    return image_ssim_map(a, b, padding="zeros", clamp_variance=False, size=size, sigma=sigma)


def ssim_dcs2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean of the SSIM map (DCS-2's ``size_average=True``)."""
    return float(ssim_map(a.detach(), b.detach()).mean())
