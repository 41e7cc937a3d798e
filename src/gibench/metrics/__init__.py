"""Reconstruction metrics.  ``METRICS`` maps an image metric's config name (``mse``,
``psnr``, ``ssim``, ``ssim_center``, ``lpips``) to an :class:`ImageMetric`: its per-image function
``fn(rec, gt, **ctx) -> list[float | None]`` (``lpips`` takes ``lpips_model=``), and
whether higher values mean a better reconstruction.  :func:`image.image_metrics` computes
several at once with the LPIPS availability status; text metrics live in
:mod:`gibench.metrics.text`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..registry import Registry
from .image import (IMAGE_METRIC_NAMES, SSIM_DEFINITIONS, image_metric_rows, image_metrics, lpips_per_image,
                    mse_per_image, psnr_per_image, ssim_center_per_image, ssim_per_image)


@dataclass(frozen=True)
class ImageMetric:
    name: str
    fn: Callable[..., list]
    higher_is_better: bool
    unit: str = ""
    needs_model: bool = False


def _lpips_values(rec, gt, lpips_model=None, lpips_status=None):
    return lpips_per_image(rec, gt, lpips_model, lpips_status)[0]


METRICS: Registry[ImageMetric] = Registry("image metric")
METRICS.add("mse", ImageMetric("mse", mse_per_image, higher_is_better=False))
METRICS.add("psnr", ImageMetric("psnr", psnr_per_image, higher_is_better=True, unit="dB"))
METRICS.add("ssim", ImageMetric("ssim", ssim_per_image, higher_is_better=True))  # SSIM_DEFINITIONS["full"]
METRICS.add("ssim_center", ImageMetric("ssim_center", ssim_center_per_image, higher_is_better=True))  # ["center"]
METRICS.add("lpips", ImageMetric("lpips", _lpips_values, higher_is_better=False, needs_model=True))

#: the registered SSIM variants and their :data:`SSIM_DEFINITIONS` name
SSIM_METRICS: dict[str, str] = {"ssim": "full", "ssim_center": "center"}

__all__ = ["METRICS", "ImageMetric", "IMAGE_METRIC_NAMES", "SSIM_DEFINITIONS", "SSIM_METRICS", "image_metrics",
           "image_metric_rows", "mse_per_image", "psnr_per_image", "ssim_per_image", "ssim_center_per_image",
           "lpips_per_image"]
