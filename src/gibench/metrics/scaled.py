"""The CVB reference code's "Scaled" image metrics (paper B's SSIM).

The CVB repository (``src/metrics.py`` with ``src/utils.py`` ``Normalizer(mode='single')``)
rescales *each image independently* to [0, 1] before it computes SSIM (and MSE/PSNR/LPIPS):

    x' = 1 - (max(x) - x) / ((max(x) - min(x)) + 1e-5)

with max/min over all channels and pixels of that image, applied to the tensors as the model
sees them (normalised space: the victim input and the reconstruction).  SSIM is then
torchmetrics' ``StructuralSimilarityIndexMeasure`` with its defaults (Gaussian window 11,
sigma 1.5, K1 0.01, K2 0.03); torchmetrics takes the data range as the larger value range
of the two images, which after the rescaling is 1 up to the 1e-5 term -- we pass 1.0
(:func:`gibench.metrics.image.ssim_per_image`).
"""
from __future__ import annotations

import torch

from .image import mse_per_image, psnr_per_image, ssim_per_image

SCALE_EPS = 1e-5


def scale_single_01(x: torch.Tensor) -> torch.Tensor:
    """Per-image min-max rescaling of a (B, C, H, W) batch (the reference formula above)."""
    flat = x.detach().double().flatten(1)
    hi = flat.max(dim=1, keepdim=True).values
    lo = flat.min(dim=1, keepdim=True).values
    return (1.0 - (hi - flat) / ((hi - lo) + SCALE_EPS)).view_as(x)


def scaled_ssim(rec: torch.Tensor, gt: torch.Tensor) -> list[float]:
    """Paper B's SSIM of each reconstruction against its ground truth (normalised-space tensors)."""
    return ssim_per_image(scale_single_01(rec), scale_single_01(gt))


def scaled_mse(rec: torch.Tensor, gt: torch.Tensor) -> list[float]:
    return mse_per_image(scale_single_01(rec), scale_single_01(gt))


def scaled_psnr(rec: torch.Tensor, gt: torch.Tensor) -> list[float]:
    return psnr_per_image(scale_single_01(rec), scale_single_01(gt))
