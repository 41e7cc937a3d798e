"""Readers for the original file formats (CIFAR python pickle, MNIST idx, Tiny-ImageNet
JPEG folders) and the registry entries.  Normalisation constants are those of the
Inverting Gradients code (inversefed/consts.py) and ImageNet for Tiny-ImageNet."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from .registry import DATASETS
from .base import DatasetUnavailable, ImageDataset, ImageSplit, reading_bundled, verify_bundled


def read_cifar_pickle(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR python batch: dict with b'data' (N x 3072, channel-major) and labels."""
    with reading_bundled(path):
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"], dtype=np.uint8)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
        labels = np.asarray(d[label_key], dtype=np.int64)
    return images, labels


def read_cifar_names(path: Path, key: bytes) -> list[str]:
    with reading_bundled(path):
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        return [n.decode() for n in d[key]]


def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST), optionally gzipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with reading_bundled(path):
        with opener(path, "rb") as f:
            raw = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError(f"{path}: not an unsigned-byte idx file")
        dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def _cifar100_bundled(folder: Path, split: str) -> ImageSplit:
    verify_bundled(folder, ["test_first916", "meta"])
    images, labels = read_cifar_pickle(folder / "test_first916", b"fine_labels")
    return ImageSplit(images, labels, np.arange(len(labels)), read_cifar_names(folder / "meta", b"fine_label_names"),
                      source="bundled: first 916 images of the CIFAR-100 test split")


def _cifar10_bundled(folder: Path, split: str) -> ImageSplit:
    verify_bundled(folder, ["test_batch_first1017", "batches.meta"])
    images, labels = read_cifar_pickle(folder / "test_batch_first1017", b"labels")
    return ImageSplit(images, labels, np.arange(len(labels)), read_cifar_names(folder / "batches.meta", b"label_names"),
                      source="bundled: first 1017 images of the CIFAR-10 test split")


def _mnist_bundled(folder: Path, split: str) -> ImageSplit:
    verify_bundled(folder, ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
    images = read_idx(folder / "t10k-images-idx3-ubyte.gz")[..., None]
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return ImageSplit(images, labels, np.arange(len(labels)), [str(i) for i in range(10)],
                      source="bundled: the full MNIST test split (10,000 images)")


def _tiny_imagenet_bundled(folder: Path, split: str) -> ImageSplit:
    try:
        from PIL import Image
    except ImportError as e:  # pillow comes with matplotlib
        raise DatasetUnavailable("reading Tiny-ImageNet JPEGs needs pillow (pip install pillow)") from e
    wnids = (folder / "wnids.txt").read_text().split()
    words = {}
    for line in (folder / "words_200.txt").read_text().splitlines():
        if "\t" in line:
            k, v = line.split("\t", 1)
            words[k] = v
    rows = [ln.split("\t") for ln in (folder / "val_sample_labels.tsv").read_text().splitlines()[1:] if ln.strip()]
    verify_bundled(folder, ["val_images/" + r[0] for r in rows[:1]])
    images, labels, idx = [], [], []
    for r in rows:
        fname, wnid = r[0], r[1]
        with reading_bundled(folder / "val_images" / fname), Image.open(folder / "val_images" / fname) as im:
            images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        labels.append(wnids.index(wnid))
        idx.append(int(fname.split("_")[1].split(".")[0]))
    return ImageSplit(np.stack(images), np.asarray(labels, np.int64), np.asarray(idx, np.int64),
                      [words.get(w, w) for w in wnids],
                      source="bundled: 200 Tiny-ImageNet validation images, one per class")


CIFAR10_MEAN = (0.4914672, 0.4822617, 0.4467701)
CIFAR10_STD = (0.2470322, 0.2434851, 0.2615879)
CIFAR100_MEAN = (0.5071598, 0.4866936, 0.4412019)
CIFAR100_STD = (0.2673343, 0.2564385, 0.2761505)
MNIST_MEAN = (0.1306637,)
MNIST_STD = (0.3081078,)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DATASETS.add("cifar100", ImageDataset(
    "cifar100", 100, (3, 32, 32), CIFAR100_MEAN, CIFAR100_STD, _cifar100_bundled, ("test",),
    hub_id="uoft-cs/cifar100", hub_image_column="img", hub_label_column="fine_label",
    hub_splits={"train": "train", "test": "test"}, licence="no formal licence; cite Krizhevsky 2009",
    pool_sizes={"bundled:test": 916, "hub:train": 50000, "hub:test": 10000}))
DATASETS.add("cifar10", ImageDataset(
    "cifar10", 10, (3, 32, 32), CIFAR10_MEAN, CIFAR10_STD, _cifar10_bundled, ("test",),
    hub_id="uoft-cs/cifar10", hub_image_column="img", hub_label_column="label",
    hub_splits={"train": "train", "test": "test"}, licence="no formal licence; cite Krizhevsky 2009",
    pool_sizes={"bundled:test": 1017, "hub:train": 50000, "hub:test": 10000}))
DATASETS.add("mnist", ImageDataset(
    "mnist", 10, (1, 28, 28), MNIST_MEAN, MNIST_STD, _mnist_bundled, ("test",),
    hub_id="ylecun/mnist", hub_image_column="image", hub_label_column="label",
    hub_splits={"train": "train", "test": "test"}, licence="CC BY-SA 3.0",
    pool_sizes={"bundled:test": 10000, "hub:train": 60000, "hub:test": 10000}))
DATASETS.add("tiny_imagenet", ImageDataset(
    "tiny_imagenet", 200, (3, 64, 64), IMAGENET_MEAN, IMAGENET_STD, _tiny_imagenet_bundled, ("val",),
    hub_id="zh-plus/tiny-imagenet", hub_image_column="image", hub_label_column="label",
    hub_splits={"train": "train", "val": "valid"}, licence="ImageNet terms (non-commercial research)",
    pool_sizes={"bundled:val": 200, "hub:train": 100000, "hub:val": 10000}))
