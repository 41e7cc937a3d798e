"""What a dataset reader returns (:class:`ImageSplit`) and the error a missing dataset raises: a
module of its own so the readers (:mod:`.base`, :mod:`.hub`) share them without an import cycle."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DatasetUnavailable(RuntimeError):
    """The data a config asks for is not on this machine; the message says how to get it."""


@dataclass
class ImageSplit:
    images: np.ndarray          # uint8, N x H x W x C
    labels: np.ndarray          # int64, N
    indices: np.ndarray         # int64, N: position in the source split
    class_names: list[str]
    source: str                 # human-readable origin, goes into provenance

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 NHWC, got {self.images.dtype} {self.images.shape}")
        if not (len(self.images) == len(self.labels) == len(self.indices)):
            raise ValueError("images, labels and indices differ in length")
