"""Reconstruction metrics.  ``METRICS`` maps an image metric's config name (``mse``,
``psnr``, ``ssim``, ``ssim_center``, ``lpips``, ``ssim_dcs2``) to an :class:`ImageMetric`: its
function ``fn(rec, gt, **ctx) -> list[float | None]`` (one value per image; one value for the
whole batch when ``reduce == "batch"``; ``lpips`` takes ``lpips_model=``), whether higher
values mean a better reconstruction, and its display name.  The evaluate jobs look the
metrics their study computes up here: study 1 (``evaluation.image_metrics``), study 2 (its
``evaluation.ssim`` entry's ``ssim_definition``, applied after the CVB code's min-max
rescaling) and study 3 (``ssim_dcs2``, DCS-2's SSIM).  :func:`image.image_metrics` computes
several at once with the LPIPS availability status; text metrics (ROUGE, EmbedDist) live in
:mod:`gibench.metrics.text` and are not in this registry."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from ..registry import Registry

# The metric functions need torch; the registry does not.  Tables and the DAG build read the
# entries (names, display names, SSIM definitions) without paying `import torch` (~2 CPU-s per
# process, tests/test_import_graph.py), so the functions are imported on first use.
_LAZY = {"image_metric_rows": "image", "image_metrics": "image", "lpips_per_image": "image",
         "mse_per_image": "image", "psnr_per_image": "image", "ssim_center_per_image": "image",
         "ssim_per_image": "image", "IMAGE_METRIC_NAMES": "image", "SSIM_DEFINITIONS": "image",
         "ssim_dcs2": "concealed"}


def __getattr__(name: str) -> Any:
    # called only for names this module does not define (the deferred callables below are defined)
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _deferred(name: str) -> Callable[..., Any]:
    """``name`` from its submodule (:data:`_LAZY`), imported when the entry is first called."""
    module = f"{__name__}.{_LAZY[name]}"

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


mse_per_image = _deferred("mse_per_image")
psnr_per_image = _deferred("psnr_per_image")
ssim_per_image = _deferred("ssim_per_image")
ssim_center_per_image = _deferred("ssim_center_per_image")
lpips_per_image = _deferred("lpips_per_image")
ssim_dcs2 = _deferred("ssim_dcs2")


@dataclass(frozen=True)
class ImageMetric:
    name: str
    fn: Callable[..., list]
    higher_is_better: bool
    unit: str = ""
    needs_model: bool = False
    #: the name tables and captions show
    display: str = ""
    #: ``per_image``: ``fn`` gives one value per image; ``batch``: one value for the whole batch
    reduce: str = "per_image"
    #: for an SSIM: its :data:`SSIM_DEFINITIONS` name (how the map is reduced)
    ssim_definition: str | None = None
    #: study 1's metric rows keep a column for it even when ``evaluation.image_metrics`` leaves it out
    #: (``None`` there); the other requested metrics follow, in the order the config lists them
    row_column: bool = False


def _lpips_values(rec, gt, lpips_model=None, lpips_status=None):
    return lpips_per_image(rec, gt, lpips_model, lpips_status)[0]


def _ssim_dcs2(rec, gt):
    return [ssim_dcs2(rec, gt)]


METRICS: Registry[ImageMetric] = Registry("image metric")
METRICS.add("mse", ImageMetric("mse", mse_per_image, higher_is_better=False, display="MSE", row_column=True))
METRICS.add("psnr", ImageMetric("psnr", psnr_per_image, higher_is_better=True, unit="dB", display="PSNR",
                                row_column=True))
METRICS.add("ssim", ImageMetric("ssim", ssim_per_image, higher_is_better=True, display="SSIM",
                                ssim_definition="full", row_column=True))
METRICS.add("ssim_center", ImageMetric("ssim_center", ssim_center_per_image, higher_is_better=True,
                                       display="SSIM (torchmetrics 0.11.4)", ssim_definition="center"))
METRICS.add("lpips", ImageMetric("lpips", _lpips_values, higher_is_better=False, needs_model=True, display="LPIPS",
                                 row_column=True))
# paper C (DCS-2's code): pytorch-ssim, zero padding, mean over the whole batch's map (size_average=True)
METRICS.add("ssim_dcs2", ImageMetric("ssim_dcs2", _ssim_dcs2, higher_is_better=True, display="SSIM (DCS-2)",
                                     reduce="batch"))

#: the registered SSIM variants and their :data:`SSIM_DEFINITIONS` name (from the entries)
SSIM_METRICS: dict[str, str] = {n: METRICS.get(n).ssim_definition for n in METRICS.names()
                                if METRICS.get(n).ssim_definition is not None}


def row_columns(requested) -> list[str]:
    """The metric columns of a study-1 metric row for ``evaluation.image_metrics`` = ``requested``:
    the registered ``row_column`` metrics in registration order, then the other requested ones
    (each looked up in the registry: an unknown name raises :class:`gibench.registry.UnknownName`)."""
    for n in requested:
        METRICS.get(n)
    fixed = [n for n, e in METRICS._entries.items() if e.row_column]
    return fixed + [n for n in requested if n not in fixed]


__all__ = ["METRICS", "ImageMetric", "IMAGE_METRIC_NAMES", "SSIM_DEFINITIONS", "SSIM_METRICS", "row_columns", "ssim_dcs2", "image_metrics",
           "image_metric_rows", "mse_per_image", "psnr_per_image", "ssim_per_image", "ssim_center_per_image",
           "lpips_per_image"]
