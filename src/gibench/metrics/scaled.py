"""The CVB reference code's "Scaled" image metrics (paper B's SSIM).

The CVB repository (``src/metrics.py`` with ``src/utils.py`` ``Normalizer(mode='single')``)
rescales *each image independently* to [0, 1] before it computes SSIM (and MSE/PSNR/LPIPS):

    x' = 1 - (max(x) - x) / ((max(x) - min(x)) + 1e-5)

with max/min over all channels and pixels of that image, applied to the tensors as the model
sees them (normalised space: the victim input and the reconstruction).  SSIM is then
``torchmetrics.StructuralSimilarityIndexMeasure(reduction='none')`` (``configs/metrics/ssim.yaml``
``ScaledSSIM``; defaults: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, ``data_range=None``)
called on one (input, reconstruction) pair at a time (``src/attacks.py``
``rate_reconstruction_quality``), with the torchmetrics the repository pins, **0.11.4**.
That version averages only the centre of the SSIM map (cropped by the window's pad, 5
pixels, per side) and does not clamp local variances; with ``data_range=None`` it takes the
larger value range of the two images, 1 - 1e-5/(max - min + 1e-5) after the rescaling.

``definition`` selects the SSIM (:data:`gibench.metrics.image.SSIM_DEFINITIONS`):

- ``"center"`` (default): exactly the above -- the CVB code's value, tested against
  torchmetrics 0.11.4's own outputs (``tests/metrics/test_ssim_tm0114.py``);
- ``"full"``: gibench's earlier value, torchmetrics >= 1.0's full-map mean with variances
  clamped and data range 1 (on the same reconstructions it reads about 0.1-0.2 lower).
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


def scaled_ssim(rec: torch.Tensor, gt: torch.Tensor, definition: str = "center") -> list[float]:
    """Paper B's SSIM of each reconstruction against its ground truth (normalised-space tensors)."""
    a, b = scale_single_01(rec), scale_single_01(gt)
    if definition == "center":
        return ssim_per_image(a, b, "center", data_range="per_image")
    return ssim_per_image(a, b, definition)


def scaled_mse(rec: torch.Tensor, gt: torch.Tensor) -> list[float]:
    return mse_per_image(scale_single_01(rec), scale_single_01(gt))


def scaled_psnr(rec: torch.Tensor, gt: torch.Tensor) -> list[float]:
    return psnr_per_image(scale_single_01(rec), scale_single_01(gt))
