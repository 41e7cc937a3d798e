"""SSIM against values torchmetrics 0.11.4 itself computed (the version the CVB repository pins;
paper B's SSIM is the CVB code's ``ScaledSSIM``).

How the numbers below were made: ``scripts/ssim_tm0114_reference.py`` run once with
torchmetrics 0.11.4 + torch 2.13.0 (CPU) in a scratch venv (``python3 -m venv /tmp/tm0114;
/tmp/tm0114/bin/pip install torch==2.13.0 torchmetrics==0.11.4 "setuptools<70"``):

- ``PIXEL``: ``torchmetrics.functional.structural_similarity_index_measure(rec, gt,
  data_range=1.0, reduction='none')`` on float64 inputs from :func:`pixel_case`;
- ``CVB``: the CVB pipeline -- each image min-max rescaled by CVB's ``Normalizer(mode='single')``
  formula, then ``torchmetrics.StructuralSimilarityIndexMeasure(reduction='none')`` (data_range
  None) called on one (input, reconstruction) pair at a time, as CVB's ``src/attacks.py`` does --
  on model-space inputs from :func:`normalised_case`, in float64 and in float32 (CVB's dtype).

The recipes here repeat the script's; the recorded input sums catch any drift in numpy's
random streams before a value is compared.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gibench.metrics import METRICS, image_metrics
from gibench.metrics.image import SSIM_DEFINITIONS, ssim_per_image
from gibench.metrics.scaled import scaled_ssim

CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))
MNIST = ((0.1307,), (0.3081,))

# (seed, shape, noise, gt_sum, rec_sum, torchmetrics 0.11.4 SSIM per image)
PIXEL = [
    (1, (1, 3, 32, 32), 0.2, 1526.671761579551, 1517.051168005957, [0.8080332419022627]),
    (2, (1, 1, 28, 28), 0.2, 388.98407959775636, 380.55610637851595, [0.8005672362835679]),
    (3, (2, 3, 32, 32), 0.4, 3061.57462944881, 3055.268733752545, [0.5688719042826293, 0.5119189524600861]),
    (4, (1, 3, 24, 24), 0.05, 876.8259326717252, 875.2710180561695, [0.9866255139688945]),
]
# (seed, n, stats, noise, gt_sum, rec_sum, CVB ScaledSSIM in float64, in float32)
CVB = [
    (11, 1, "cifar10", 0.5, 230.69436502861518, 264.25321525291093, [0.8569300862504726], [0.856930136680603]),
    (12, 1, "mnist", 0.5, 3701.5506713991203, 3702.4074696564103, [0.8062251140380285], [0.8062251210212708]),
    (13, 2, "cifar10", 1.5, 709.0137906022258, 618.9593710648072, [0.509112422617226, 0.498985170718858],
     [0.5091127157211304, 0.4989854395389557]),
]


def pixel_case(seed, shape, noise):
    rng = np.random.default_rng(seed)
    gt = rng.random(shape)
    rec = np.clip(gt + noise * rng.standard_normal(shape), 0.0, 1.0)
    return gt, rec


def normalised_case(seed, n, stats, noise):
    grey = stats == "mnist"
    mean_std = MNIST if grey else CIFAR10
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1 if grey else 3, 32, 32))
    if grey:
        x = np.repeat(x, 3, axis=1)
    mean = np.asarray(mean_std[0] * (3 if grey else 1)).reshape(1, 3, 1, 1)
    std = np.asarray(mean_std[1] * (3 if grey else 1)).reshape(1, 3, 1, 1)
    gt = (x - mean) / std
    rec = gt + noise * rng.standard_normal(gt.shape)
    return gt, rec


@pytest.mark.parametrize("seed,shape,noise,gt_sum,rec_sum,want", PIXEL)
def test_ssim_center_equals_torchmetrics_0114(seed, shape, noise, gt_sum, rec_sum, want):
    gt, rec = pixel_case(seed, shape, noise)
    assert (gt.sum(), rec.sum()) == pytest.approx((gt_sum, rec_sum), rel=1e-12), "numpy's stream changed"
    rec_t, gt_t = torch.from_numpy(rec), torch.from_numpy(gt)
    assert ssim_per_image(rec_t, gt_t, "center") == pytest.approx(want, abs=1e-12)
    assert METRICS.get("ssim_center").fn(rec_t, gt_t) == pytest.approx(want, abs=1e-12)
    assert image_metrics(rec_t, gt_t, names=("ssim_center",))["ssim_center"] == pytest.approx(want, abs=1e-12)
    # the full-map mean (torchmetrics >= 1.0, gibench's "ssim") is a different number
    assert ssim_per_image(rec_t, gt_t, "full") != pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("seed,n,stats,noise,gt_sum,rec_sum,want64,want32", CVB)
def test_scaled_ssim_is_the_cvb_codes_value(seed, n, stats, noise, gt_sum, rec_sum, want64, want32):
    gt, rec = normalised_case(seed, n, stats, noise)
    assert (gt.sum(), rec.sum()) == pytest.approx((gt_sum, rec_sum), rel=1e-12), "numpy's stream changed"
    got = scaled_ssim(torch.from_numpy(rec), torch.from_numpy(gt))          # default: "center"
    assert got == pytest.approx(want64, abs=1e-12)
    assert got == pytest.approx(want32, abs=1e-6)                            # CVB ran in float32
    got32 = scaled_ssim(torch.from_numpy(rec).float(), torch.from_numpy(gt).float())
    assert got32 == pytest.approx(want32, abs=1e-6)


def test_definitions_and_border():
    assert set(SSIM_DEFINITIONS) == {"full", "center"}
    # a reconstruction that differs from the truth only in a 5-pixel frame: the centre SSIM
    # (cropped by the window's pad) sees less of it than the full map
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 3, 32, 32, generator=g, dtype=torch.float64)
    rec = gt.clone()
    rec[..., :5, :] = 0.0
    full = ssim_per_image(rec, gt, "full")[0]
    center = ssim_per_image(rec, gt, "center")[0]
    assert center > full
    with pytest.raises(ValueError, match="no centre"):
        ssim_per_image(gt[..., :10, :10], gt[..., :10, :10], "center")
    with pytest.raises(ValueError, match="unknown SSIM definition"):
        ssim_per_image(gt, gt, "middle")


def test_stochastic_defenses_rows_use_the_configured_ssim():
    """The study's metric rows: ``ssim`` (and the ASR's success) follow ``evaluation.ssim``;
    both definitions are kept as columns."""
    from types import SimpleNamespace

    from gibench.studies.stochastic_defenses.jobs import evaluate_restarts

    gt_np, rec_np = normalised_case(13, 2, "cifar10", 1.5)
    gt, rec = torch.from_numpy(gt_np), torch.from_numpy(rec_np)
    ds = SimpleNamespace(denormalize=lambda x: x * 0.25 + 0.5)
    wc = {"dataset": "cifar10", "model": "sd_cnn", "defense": "none", "attack": "ig", "slot": "s000", "rep": "0"}
    center = scaled_ssim(rec, gt, "center")
    full = scaled_ssim(rec, gt, "full")
    thr = (center[0] + full[0]) / 2            # between the two values of image 0
    for name, want in (("ssim_center", center), ("ssim", full)):
        (row,) = evaluate_restarts([(wc, rec, {"status": "ok"})], gt, ds, thr, name)
        assert row["ssim"] == pytest.approx(sum(want) / 2, abs=1e-12) and row["ssim_definition"] == name
        assert row["ssim_center"] == pytest.approx(sum(center) / 2, abs=1e-12)
        assert row["ssim_full"] == pytest.approx(sum(full) / 2, abs=1e-12)
        assert row["success"] == sum(v > thr for v in want) / 2
    with pytest.raises(ValueError, match="evaluation.ssim"):
        evaluate_restarts([(wc, rec, {})], gt, ds, 0.5, "ssim_middle")
