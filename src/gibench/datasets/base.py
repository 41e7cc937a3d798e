from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .hub import load_hub_split
from .split import DatasetUnavailable, ImageSplit  # noqa: F401  (re-exported: gibench.datasets.base.ImageSplit)

if TYPE_CHECKING:
    import torch


@dataclass
class ImageDataset:
    name: str
    num_classes: int
    shape: tuple[int, int, int]            # C, H, W as the models see it
    mean: tuple[float, ...]
    std: tuple[float, ...]
    bundled_reader: Callable[[Path, str], ImageSplit]
    bundled_splits: tuple[str, ...]
    hub_id: str
    hub_image_column: str
    hub_label_column: str
    hub_splits: dict[str, str] = field(default_factory=dict)   # our split name -> hub split
    licence: str = ""
    #: samples per split, "<source>:<split>" -> count (the config check bounds `victims` by it)
    pool_sizes: dict[str, int] = field(default_factory=dict)

    def pool_size(self, source: str, split: str) -> int | None:
        return pool_size(self, source, split)

    # -- normalisation (the model's input space)
    def normalize(self, x_uint8_nhwc: np.ndarray | torch.Tensor) -> torch.Tensor:
        import torch  # deferred: the registry is read at DAG build (config check), which needs no torch

        x = torch.as_tensor(np.asarray(x_uint8_nhwc), dtype=torch.float32) / 255.0
        x = x.permute(0, 3, 1, 2)
        if x.shape[1] != self.shape[0]:
            if x.shape[1] == 1 and self.shape[0] == 3:
                x = x.expand(-1, 3, -1, -1)
            else:
                raise ValueError(f"{self.name}: images have {x.shape[1]} channels, model input {self.shape}")
        if tuple(x.shape[2:]) != tuple(self.shape[1:]):
            x = torch.nn.functional.interpolate(x, size=self.shape[1:], mode="bilinear",
                                                align_corners=False, antialias=True)
        return (x - self.mean_t()) / self.std_t()

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> [0,1] pixel space (not clamped)."""
        return x * self.std_t().to(x) + self.mean_t().to(x)

    def mean_t(self) -> torch.Tensor:
        import torch  # deferred (see normalize)

        return torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1).expand(1, self.shape[0], 1, 1)

    def std_t(self) -> torch.Tensor:
        import torch  # deferred (see normalize)

        return torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1).expand(1, self.shape[0], 1, 1)

    # -- sources
    def load(self, source: str, split: str, resources_dir: str | Path,
             hub_dir: str | Path | None = None) -> ImageSplit:
        if source == "bundled":
            if split not in self.bundled_splits:
                raise DatasetUnavailable(
                    f"dataset {self.name!r}: the bundled slice has split(s) {list(self.bundled_splits)}, "
                    f"not {split!r}; use source: hub for other splits")
            return self.bundled_reader(Path(resources_dir) / "data" / self.name, split)
        if source == "hub":
            return load_hub_split(self, split, hub_dir)
        raise ValueError(f"dataset {self.name!r}: unknown source {source!r} (bundled | hub)")


def pool_size(ds, source: str, split: str) -> int | None:
    """How many samples ``split`` of ``source`` holds (None: not declared in the registry entry)."""
    return (getattr(ds, "pool_sizes", None) or {}).get(f"{source}:{split}")


def verify_bundled(folder: Path, files: list[str]) -> None:
    """Check bundled files against the sha256 in their PROVENANCE.jsonl."""
    prov = folder / "PROVENANCE.jsonl"
    if not prov.exists():
        raise DatasetUnavailable(f"{folder}: missing PROVENANCE.jsonl (bundled data incomplete)")
    want = {}
    for line in prov.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            want[rec["file"]] = rec["sha256"]
    for name in files:
        p = folder / name
        if not p.exists():
            raise DatasetUnavailable(f"{p}: bundled file missing; restore it from git "
                                     f"(`git checkout -- {p}`)")
        if name in want:
            got = hashlib.sha256(p.read_bytes()).hexdigest()
            if got != want[name]:
                raise DatasetUnavailable(f"{p}: sha256 {got[:12]}… does not match its PROVENANCE.jsonl entry "
                                         f"{want[name][:12]}… (the bundled file is damaged, truncated or "
                                         f"replaced); restore it from git: `git checkout -- {p}`")


@contextlib.contextmanager
def reading_bundled(path: Path):
    """Turn any failure to parse a bundled file into one line naming the file and how to restore it."""
    try:
        yield
    except DatasetUnavailable:
        raise
    except Exception as e:  # noqa: BLE001 - pickle, gzip, struct, JSON, PIL: all mean a damaged file
        raise DatasetUnavailable(f"{path}: cannot read this bundled file ({type(e).__name__}: {e}); it is damaged "
                                 f"or truncated: restore it from git: `git checkout -- {path}`") from e


def choose_victims(split: ImageSplit, n: int, seed: int) -> np.ndarray:
    """Positions (into ``split``) of ``n`` victims: the first n of a seeded permutation.

    A prefix property holds: the first k victims for n > k are the victims for k, so a
    study that needs fewer victims uses a prefix of the same pool."""
    if n > len(split.labels):
        raise ValueError(f"asked for {n} victims but the split holds only {len(split.labels)} samples")
    rng = np.random.default_rng(seed)
    return rng.permutation(len(split.labels))[:n]
