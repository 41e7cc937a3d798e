"""Reference SSIM values from torchmetrics 0.11.4 itself (the version the CVB repository pins),
recorded in ``tests/metrics/test_ssim_tm0114.py``.  Run it in a scratch environment, not gibench's:

    python3 -m venv /tmp/tm0114
    /tmp/tm0114/bin/pip install torch==2.13.0 torchmetrics==0.11.4 "setuptools<70"
    /tmp/tm0114/bin/python scripts/ssim_tm0114_reference.py

(torchmetrics 0.11.4 imports ``pkg_resources``, gone from setuptools >= 81; hence the pin.)
It imports neither gibench nor anything beyond numpy, torch and torchmetrics.  The inputs
come from ``numpy.random.default_rng(seed)`` by the recipes below, which the test repeats;
the test also checks each input's sum, printed here, so a change in numpy's streams shows.
"""
from __future__ import annotations

import json

import numpy as np
import torch
import torchmetrics
from torchmetrics import StructuralSimilarityIndexMeasure
from torchmetrics.functional import structural_similarity_index_measure as ssim_fn

CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))
MNIST = ((0.1307,), (0.3081,))


def pixel_case(seed: int, shape: tuple[int, ...], noise: float) -> tuple[np.ndarray, np.ndarray]:
    """gt ~ U[0, 1); rec = clip(gt + noise * N(0, 1), 0, 1) (float64)."""
    rng = np.random.default_rng(seed)
    gt = rng.random(shape)
    rec = np.clip(gt + noise * rng.standard_normal(shape), 0.0, 1.0)
    return gt, rec


def normalised_case(seed: int, n: int, stats, grey: bool, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Model-space tensors as the CVB code sees them: x ~ U[0, 1) of n x C x 32 x 32 (grey: one
    channel repeated to 3, as CVB's MNIST), gt = (x - mean) / std, rec = gt + noise * N(0, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1 if grey else 3, 32, 32))
    if grey:
        x = np.repeat(x, 3, axis=1)
    mean = np.asarray(stats[0] * (3 if grey else 1)).reshape(1, 3, 1, 1)
    std = np.asarray(stats[1] * (3 if grey else 1)).reshape(1, 3, 1, 1)
    gt = (x - mean) / std
    rec = gt + noise * rng.standard_normal(gt.shape)
    return gt, rec


def cvb_scale_single_01(t: torch.Tensor) -> torch.Tensor:
    """CVB ``src/utils.py`` ``Normalizer(mode='single')``: per image 1 - (max - x) / (max - min + 1e-5)."""
    return torch.stack([1 - (x.max() - x) / ((x.max() - x.min()) + 1e-5) for x in t])


def cvb_scaled_ssim(gt: torch.Tensor, rec: torch.Tensor) -> list[float]:
    """CVB ``ScaledSSIM``: SSIM(reduction='none') on the rescaled pair, one image at a time,
    called as metric_fn(input, reconstruction) (``src/attacks.py``)."""
    out = []
    for a, b in zip(gt, rec):
        metric = StructuralSimilarityIndexMeasure(reduction="none")
        v = metric(cvb_scale_single_01(a.unsqueeze(0)), cvb_scale_single_01(b.unsqueeze(0)))
        out.append(float(v.reshape(-1)[0]))
    return out


def main() -> None:
    out = {"torchmetrics": torchmetrics.__version__, "torch": torch.__version__, "pixel": [], "cvb": []}
    for seed, shape, noise in [(1, (1, 3, 32, 32), 0.2), (2, (1, 1, 28, 28), 0.2), (3, (2, 3, 32, 32), 0.4),
                               (4, (1, 3, 24, 24), 0.05)]:
        gt, rec = pixel_case(seed, shape, noise)
        v = ssim_fn(torch.from_numpy(rec), torch.from_numpy(gt), data_range=1.0, reduction="none")
        out["pixel"].append({"seed": seed, "shape": list(shape), "noise": noise, "gt_sum": float(gt.sum()),
                             "rec_sum": float(rec.sum()), "ssim": [float(x) for x in v.reshape(-1)]})
    for seed, n, name, noise in [(11, 1, "cifar10", 0.5), (12, 1, "mnist", 0.5), (13, 2, "cifar10", 1.5)]:
        stats, grey = (CIFAR10, False) if name == "cifar10" else (MNIST, True)
        gt, rec = normalised_case(seed, n, stats, grey, noise)
        g64, r64 = torch.from_numpy(gt), torch.from_numpy(rec)
        out["cvb"].append({"seed": seed, "n": n, "stats": name, "noise": noise, "gt_sum": float(gt.sum()),
                           "rec_sum": float(rec.sum()),
                           "ssim_float64": cvb_scaled_ssim(g64, r64),
                           "ssim_float32": cvb_scaled_ssim(g64.float(), r64.float())})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
