"""The dataset registry object, in a module of its own: the reader modules (:mod:`.vision`,
:mod:`.text`, :mod:`.celeba`) register into it without importing the package that imports them."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:
    from .base import ImageDataset

DATASETS: "Registry[ImageDataset]" = Registry("dataset")
