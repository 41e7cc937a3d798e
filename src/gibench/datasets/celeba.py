"""CelebA (Liu et al. 2015) for the concealed-samples study: binary gender classification
(attribute 20, "Male"), images resized (shorter side) to 32 and centre-cropped to 32x32,
normalised with mean = std = 0.5 -- DCS-2's and GGL's CelebA setup
(``reference/ig_and_image_defenses.md`` §6.1, §7).

No bundled slice exists (CelebA's licence forbids redistribution): ``source: hub`` only,
fetched by the download rule from the Hugging Face copy ``flwrlabs/celeba`` (columns
``image`` and the 40 attributes, ``Male`` among them).  Images are reduced to 32x32 while
the split is read, so the 162,770-image train split fits in memory (about 0.5 GB).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .registry import DATASETS
from .base import DatasetUnavailable, ImageDataset, ImageSplit

SIZE = 32


def _no_bundled(folder: Path, split: str) -> ImageSplit:
    raise DatasetUnavailable("celeba: no bundled slice (its licence forbids redistribution); use source: hub "
                             "and run the download rule on a machine with internet")


def resize_crop(im, size: int = SIZE) -> np.ndarray:
    """PIL image -> uint8 HxWx3: shorter side resized to ``size`` (bilinear), centre crop."""
    from PIL import Image

    im = im.convert("RGB")
    w, h = im.size
    s = size / min(w, h)
    im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


@dataclass
class CelebADataset(ImageDataset):
    def load(self, source: str, split: str, resources_dir, hub_dir=None) -> ImageSplit:
        if source != "hub":
            return _no_bundled(Path(resources_dir), split)
        from .hub import read_from_disk

        d = read_from_disk(self, split, hub_dir)
        images = np.stack([resize_crop(im) for im in d[self.hub_image_column]])
        labels = np.asarray(d[self.hub_label_column], dtype=np.int64)
        return ImageSplit(images, labels, np.arange(len(labels)), ["female", "male"],
                          source=f"hub: {self.hub_id} split {self.hub_splits.get(split, split)} (32x32 centre crops)")


DATASETS.add("celeba", CelebADataset(
    "celeba", 2, (3, SIZE, SIZE), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), _no_bundled, (),
    hub_id="flwrlabs/celeba", hub_image_column="image", hub_label_column="Male",
    hub_splits={"train": "train", "valid": "valid", "test": "test"},
    licence="CelebA: non-commercial research only (no redistribution)",
    pool_sizes={"hub:train": 162770, "hub:valid": 19867, "hub:test": 19962}))
