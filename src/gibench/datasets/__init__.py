"""Dataset registry: a name in the config maps to one :class:`ImageDataset`.

Two sources per dataset: ``bundled`` (small real slices under ``resources/data``, read
with readers for the original formats) and ``hub`` (the full split from the Hugging Face
hub, fetched once by the download rule and read back from disk).
"""
from __future__ import annotations

from .base import ImageDataset, ImageSplit, choose_victims, DatasetUnavailable
from .registry import DATASETS

from . import vision as _vision  # noqa: E402,F401  (registers the entries)
from . import text as _text  # noqa: E402,F401  (registers cola, sst2, rotten_tomatoes)

__all__ = ["DATASETS", "ImageDataset", "ImageSplit", "choose_victims", "DatasetUnavailable"]
from . import celeba as _celeba  # noqa: E402,F401  (registers celeba, concealed-samples study)
