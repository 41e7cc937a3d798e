"""The real download path for cluster runs: Hugging Face ``datasets``.

``fetch_to_disk`` runs in the download rule (a ``localrule``: the login node has
internet) and saves the split with ``save_to_disk`` under ``resources/hub/``;
``load_hub_split`` reads that copy back in the data rule, so compute nodes never need the
network.  ``hub_id`` may also be a local directory of data files (how the tests exercise
this path offline).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .split import DatasetUnavailable, ImageSplit

if TYPE_CHECKING:
    from .base import ImageDataset


def hub_split_dir(hub_dir: str | Path, ds, split: str) -> Path:
    return Path(hub_dir) / ds.name / split


def fetch_to_disk(ds, split: str, hub_dir: str | Path, hub_id: str | None = None) -> Path:
    """Fetch ``split`` of any registered dataset (image or text) with HF ``datasets`` and
    ``save_to_disk`` it atomically under ``hub_dir`` (the download rule; login node).
    ``hub_id`` may be a local directory of data files; ``ds.hub_config`` (text datasets,
    e.g. GLUE's ``cola``) is passed as the config name when set."""
    try:
        import datasets as hf
    except ImportError as e:
        raise DatasetUnavailable("source: hub needs the `datasets` package (pip install 'gibench[hub]')") from e
    if split not in ds.hub_splits:
        raise DatasetUnavailable(f"dataset {ds.name!r} has hub splits {sorted(ds.hub_splits)}, not {split!r}")
    repo = hub_id or ds.hub_id
    config = getattr(ds, "hub_config", None)
    args = [repo] if (Path(repo).is_dir() or config is None) else [repo, config]
    try:
        d = hf.load_dataset(*args, split=ds.hub_splits[split])
    except Exception as e:  # network errors come in many types
        raise DatasetUnavailable(
            f"could not fetch {'/'.join(args)!r} split {ds.hub_splits[split]!r} from the Hugging Face hub: "
            f"{type(e).__name__}: {e}. Run the download rule on a machine with internet "
            f"(snakemake --cores 1 {hub_split_dir(hub_dir, ds, split)}/dataset_info.json) "
            f"or use `source: bundled` for this dataset.") from e
    out = hub_split_dir(hub_dir, ds, split)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    d.save_to_disk(str(tmp))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def read_from_disk(ds, split: str, hub_dir: str | Path | None):
    """The saved hub copy of ``ds``/``split`` as an HF ``Dataset``; a clear error naming the
    download command when it is not on disk."""
    if hub_dir is None:
        raise DatasetUnavailable(f"dataset {ds.name!r}: source hub needs a hub_dir")
    path = hub_split_dir(hub_dir, ds, split)
    if not (path / "dataset_info.json").exists():
        raise DatasetUnavailable(
            f"{path}: the hub copy of {ds.name!r}/{split} is not on disk. Run the download rule "
            f"on a machine with internet: snakemake --cores 1 {path}/dataset_info.json")
    import datasets as hf

    return hf.load_from_disk(str(path))


def load_hub_split(ds: ImageDataset, split: str, hub_dir: str | Path | None) -> ImageSplit:
    d = read_from_disk(ds, split, hub_dir)
    return split_from_hf(ds, d, source=f"hub: {ds.hub_id} split {ds.hub_splits.get(split, split)}")


def split_from_hf(ds: ImageDataset, d, source: str) -> ImageSplit:
    images = []
    for im in d[ds.hub_image_column]:
        arr = np.asarray(im.convert("RGB" if ds.shape[0] == 3 else "L"), dtype=np.uint8)
        images.append(arr if arr.ndim == 3 else arr[..., None])
    labels = np.asarray(d[ds.hub_label_column], dtype=np.int64)
    feat = d.features.get(ds.hub_label_column)
    names = list(getattr(feat, "names", None) or [str(i) for i in range(ds.num_classes)])
    return ImageSplit(np.stack(images), labels, np.arange(len(labels)), names, source=source)
