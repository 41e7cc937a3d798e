"""Image reconstruction metrics, per image: MSE, PSNR, SSIM, LPIPS.

Inputs are (B, C, H, W) float tensors in [0, 1] **pixel** space: the caller de-normalises
with the dataset mean/std and clamps to [0, 1] first (as breaching's ``report`` and
DCS-2's metrics do).  The reconstruction ``rec[i]`` is compared with ``gt[i]``; any
re-ordering of the batch is the caller's business.

- ``mse``: mean over all C·H·W values of (rec − gt)², computed in float64.
- ``psnr``: 10·log10(1 / MSE) dB (data range 1); ``inf`` for a perfect image.
- ``ssim``: torchmetrics' ``structural_similarity_index_measure`` as of torchmetrics
  >= 1.0 (re-implemented in :func:`ssim_map` for import time, tested equal to it): a
  Gaussian window, σ = 1.5 (torchmetrics derives the window size from σ:
  2·int(3.5σ + 0.5) + 1 = 11), data_range = 1, K1 = 0.01, K2 = 0.03, per channel; local
  variances clamped at 0; the SSIM map covers the whole H×W image (reflect padding by 5
  pixels) and is averaged per image over channels and pixels (reduction ``'none'``), in
  float64.  :data:`SSIM_DEFINITIONS` ``"full"``.
- ``ssim_center``: the same window and constants as torchmetrics **0.11.4** computes them
  (the version the CVB repository pins): variances *not* clamped and only the centre of
  the map averaged, (H−10)×(W−10) -- the map cropped by the window's pad (5) on each
  side.  :data:`SSIM_DEFINITIONS` ``"center"``; tested against values torchmetrics 0.11.4
  itself produced (``tests/metrics/test_ssim_tm0114.py``).
- ``lpips``: :class:`gibench.metrics.lpips.LPIPS` (default alex, v0.1; the bundled
  AlexNet backbone) on the [0, 1] images (mapped to [−1, 1] inside unless the model's
  ``input`` is ``raw01``); grayscale images are repeated to 3 channels.  When no model is
  available (e.g. VGG weights not downloaded) or the images are smaller than the
  backbone accepts, every value is ``None`` and ``lpips_status`` gives the reason; LPIPS
  is never replaced by a number.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch.nn import functional as F

from .lpips import LPIPS

IMAGE_METRIC_NAMES = ("mse", "psnr", "ssim", "ssim_center", "lpips")
#: what :func:`image_metrics` computes unless told otherwise
DEFAULT_IMAGE_METRICS = ("mse", "psnr", "ssim", "lpips")
#: how the SSIM map is reduced (and whether local variances are clamped), by name
SSIM_DEFINITIONS: dict[str, str] = {
    "full": "torchmetrics >= 1.0: mean over the whole SSIM map (reflect padding), local variances clamped at 0",
    "center": "torchmetrics 0.11.4 (the CVB code's pin): mean over the centre of the SSIM map, cropped by the "
              "window's pad (5 pixels) on each side, local variances not clamped",
}
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


def gaussian_window(size: int = SSIM_KERNEL_SIZE, sigma: float = SSIM_SIGMA, dtype=torch.float64) -> torch.Tensor:
    """The normalised ``size`` x ``size`` Gaussian window (outer product of the 1-D one)."""
    t = torch.arange(size, dtype=dtype) - (size // 2)
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_map(a: torch.Tensor, b: torch.Tensor, *, padding: str = "reflect", clamp_variance: bool = True,
             size: int = SSIM_KERNEL_SIZE, sigma: float = SSIM_SIGMA,
             data_range: float | torch.Tensor = 1.0) -> torch.Tensor:
    """The (B, C, H, W) SSIM map of two image batches in [0, 1] (K1 0.01, K2 0.03; data range
    ``data_range``, a number or a (B,) tensor, one per image), in float64.
    ``padding='reflect'`` with ``clamp_variance`` is torchmetrics' (>= 1.0) definition
    (reflect-pad by size // 2, local variances clamped at 0); without the clamp, torchmetrics
    0.11.4's (which then averages only the centre, :func:`ssim_per_image`);
    ``padding='zeros'`` without the clamp is the pytorch-ssim one DCS-2 uses
    (:mod:`gibench.metrics.concealed`).

    Written here rather than imported: ``import torchmetrics`` takes about 3 s (it imports
    transformers and scipy.signal), paid by every one of the hundreds of metric jobs of a
    study; ``tests/metrics/test_image_metrics.py`` checks this against torchmetrics."""
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"ssim: need two (B, C, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if padding not in ("reflect", "zeros"):
        raise ValueError(f"ssim: padding must be 'reflect' or 'zeros', got {padding!r}")
    a, b = a.double(), b.double()
    c = a.shape[1]
    w = gaussian_window(size, sigma).to(a.device).expand(c, 1, size, size).contiguous()
    pad = size // 2
    if padding == "reflect":
        a = F.pad(a, (pad, pad, pad, pad), mode="reflect")
        b = F.pad(b, (pad, pad, pad, pad), mode="reflect")
        conv_pad = 0
    else:
        conv_pad = pad
    n = a.shape[0]
    out = F.conv2d(torch.cat((a, b, a * a, b * b, a * b)), w, padding=conv_pad, groups=c).split(n)
    mu_a, mu_b = out[0], out[1]
    saa, sbb = out[2] - mu_a ** 2, out[3] - mu_b ** 2
    if clamp_variance:
        saa, sbb = saa.clamp(min=0.0), sbb.clamp(min=0.0)
    sab = out[4] - mu_a * mu_b
    if isinstance(data_range, torch.Tensor):
        data_range = data_range.to(a).view(-1, 1, 1, 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))


def image_data_range(rec: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per image, max(range of rec[i], range of gt[i]): torchmetrics' ``data_range=None``
    when SSIM is called on one image at a time (as the CVB code does)."""
    r = rec.detach().double().flatten(1)
    g = gt.detach().double().flatten(1)
    return torch.maximum(r.max(1).values - r.min(1).values, g.max(1).values - g.min(1).values)


def ssim_per_image(rec: torch.Tensor, gt: torch.Tensor, definition: str = "full",
                   data_range: float | str = 1.0) -> list[float]:
    """Per-image SSIM by :data:`SSIM_DEFINITIONS` ``definition``; ``data_range`` is a number
    or ``"per_image"`` (:func:`image_data_range`)."""
    rec, gt = _check_pair(rec, gt)
    if definition not in SSIM_DEFINITIONS:
        raise ValueError(f"unknown SSIM definition {definition!r}; known: {', '.join(SSIM_DEFINITIONS)}")
    dr = image_data_range(rec, gt) if data_range == "per_image" else float(data_range)
    if definition == "full":
        vals = ssim_map(rec, gt, data_range=dr).flatten(1).mean(dim=1)
    else:
        pad = SSIM_KERNEL_SIZE // 2
        h, w = rec.shape[-2:]
        if min(h, w) <= 2 * pad:
            raise ValueError(f"ssim (center): images of {h}x{w} leave no centre after cropping {pad} pixels per side")
        smap = ssim_map(rec, gt, clamp_variance=False, data_range=dr)
        vals = smap[..., pad:-pad, pad:-pad].flatten(1).mean(dim=1)
    return [float(v) for v in vals.cpu()]


def ssim_center_per_image(rec: torch.Tensor, gt: torch.Tensor) -> list[float]:
    """SSIM as torchmetrics 0.11.4 computes it (:data:`SSIM_DEFINITIONS` ``"center"``), data range 1."""
    return ssim_per_image(rec, gt, "center")


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
                  names: Sequence[str] = DEFAULT_IMAGE_METRICS) -> dict[str, Any]:
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
        elif name == "ssim_center":
            out["ssim_center"] = ssim_per_image(rec, gt, "center")
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
