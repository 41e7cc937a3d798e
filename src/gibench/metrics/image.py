"""Image reconstruction metrics, per image: MSE, PSNR, SSIM, LPIPS.

Inputs are (B, C, H, W) float tensors in [0, 1] **pixel** space: the caller de-normalises
with the dataset mean/std and clamps to [0, 1] first (as breaching's ``report`` and
DCS-2's metrics do).  The reconstruction ``rec[i]`` is compared with ``gt[i]``; any
re-ordering of the batch is the caller's business.

- ``mse``: mean over all C·H·W values of (rec − gt)², computed in float64.
- ``psnr``: 10·log10(1 / MSE) dB (data range 1); ``inf`` for a perfect image.
- ``ssim``: ``torchmetrics.functional.image.structural_similarity_index_measure`` with a
  Gaussian window, σ = 1.5 (torchmetrics derives the window size from σ:
  2·int(3.5σ + 0.5) + 1 = 11), data_range = 1, K1 = 0.01, K2 = 0.03, per channel; the
  SSIM map covers the whole H×W image (torchmetrics reflect-pads by 5 pixels) and is
  averaged per image over channels and pixels (reduction ``'none'``), in float64.
- ``lpips``: :class:`gibench.metrics.lpips.LPIPS` (default alex, v0.1) on the [0, 1]
  images (mapped to [−1, 1] inside); grayscale images are repeated to 3 channels.  When
  no model is available (backbone weights not downloaded) or the images are smaller than
  the backbone accepts, every value is ``None`` and ``lpips_status`` gives the reason;
  LPIPS is never replaced by a number.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from .lpips import LPIPS

IMAGE_METRIC_NAMES = ("mse", "psnr", "ssim", "lpips")
SSIM_KERNEL_SIZE = 11
SSIM_SIGMA = 1.5
NO_MODEL_STATUS = "unavailable: no LPIPS model was given"


def _check_pair(rec: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if rec.dim() != 4 or gt.dim() != 4:
        raise ValueError(f"image metrics need (B, C, H, W) tensors, got {tuple(rec.shape)} and {tuple(gt.shape)}")
    if rec.shape != gt.shape:
        raise ValueError(f"reconstruction {tuple(rec.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    return rec.detach(), gt.detach().to(rec.device)


def mse_per_image(rec: torch.Tensor, gt: torch.Tensor) -> list[float]:
    rec, gt = _check_pair(rec, gt)
    d = rec.double() - gt.double()
    return [float(v) for v in (d * d).flatten(1).mean(dim=1).cpu()]


def psnr_from_mse(mse: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def psnr_per_image(rec: torch.Tensor, gt: torch.Tensor) -> list[float]:
    return [psnr_from_mse(m) for m in mse_per_image(rec, gt)]


def ssim_per_image(rec: torch.Tensor, gt: torch.Tensor) -> list[float]:
    from torchmetrics.functional.image import structural_similarity_index_measure

    rec, gt = _check_pair(rec, gt)
    vals = structural_similarity_index_measure(
        rec.double(), gt.double(), gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL_SIZE,
        reduction="none", data_range=1.0, k1=0.01, k2=0.03)
    return [float(v) for v in vals.reshape(-1).cpu()]


def lpips_per_image(rec: torch.Tensor, gt: torch.Tensor, lpips_model: LPIPS | None = None,
                    lpips_status: str | None = None) -> tuple[list[float | None], str]:
    """(values, status): the values are ``None`` whenever LPIPS cannot be computed."""
    rec, gt = _check_pair(rec, gt)
    b = rec.shape[0]
    if lpips_model is None:
        return [None] * b, (lpips_status or NO_MODEL_STATUS)
    h, w = rec.shape[-2:]
    if min(h, w) < lpips_model.min_size:
        return [None] * b, (f"unavailable: images are {h}x{w}, smaller than the minimum "
                            f"{lpips_model.min_size}x{lpips_model.min_size} of the "
                            f"{lpips_model.backbone_name} backbone LPIPS is computed with")
    if rec.shape[1] not in (1, 3):
        return [None] * b, f"unavailable: LPIPS needs 1 or 3 channels, the images have {rec.shape[1]}"
    dev = lpips_model.shift.device
    with torch.no_grad():
        d = lpips_model(rec.to(dev).float(), gt.to(dev).float())
    return [float(v) for v in d.cpu()], lpips_model.status


def image_metrics(rec: torch.Tensor, gt: torch.Tensor, *, lpips_model: LPIPS | None = None,
                  lpips_status: str | None = None,
                  names: Sequence[str] = IMAGE_METRIC_NAMES) -> dict[str, Any]:
    """Per-image metrics of a reconstructed batch against the ground truth.

    Returns ``{name: [value per image]}`` for each requested name (lists of length B;
    ``lpips`` entries are ``None`` when unavailable) plus ``lpips_status``: ``'ok
    (alex, v0.1)'`` when LPIPS was computed, the caller's ``lpips_status`` (or a default
    reason) when no model is given, a reason when the images do not fit the backbone, and
    ``'not requested'`` when ``'lpips'`` is not among ``names``."""
    unknown = [n for n in names if n not in IMAGE_METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown image metric(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(IMAGE_METRIC_NAMES)}")
    rec, gt = _check_pair(rec, gt)
    out: dict[str, Any] = {}
    mse = mse_per_image(rec, gt) if ("mse" in names or "psnr" in names) else None
    for name in names:
        if name == "mse":
            out["mse"] = list(mse)
        elif name == "psnr":
            out["psnr"] = [psnr_from_mse(m) for m in mse]
        elif name == "ssim":
            out["ssim"] = ssim_per_image(rec, gt)
        elif name == "lpips":
            out["lpips"], out["lpips_status"] = lpips_per_image(rec, gt, lpips_model, lpips_status)
    out.setdefault("lpips_status", "not requested")
    return out


def image_metric_rows(rec: torch.Tensor, gt: torch.Tensor, **kwargs: Any) -> list[dict[str, Any]]:
    """The same as :func:`image_metrics`, one dict per image (``index`` = position in the
    batch, one key per metric, ``lpips_status``)."""
    m = image_metrics(rec, gt, **kwargs)
    status = m.pop("lpips_status")
    b = rec.shape[0]
    return [{"index": i, **{k: v[i] for k, v in m.items()}, "lpips_status": status} for i in range(b)]
