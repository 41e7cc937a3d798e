"""The concealed-samples study through the real Snakefile on a micro config in a temp dir:
the tables and the grid are produced, the imprint read-out is exact on the undefended
TinyImageNet image, unavailable datasets say so, accuracies come from FedAvg runs, and the
attack jobs never read the client's secrets."""
from __future__ import annotations

import csv
import json

import pytest

from gibench import io
from workflow_helpers import run_snakemake, write_config

pytestmark = pytest.mark.slow

MICRO = {
    "seed": 5,
    "datasets": {"mnist": {"victims": 10}, "tiny_imagenet": {"source": "bundled", "split": "val", "victims": 2}},
    "studies": {"concealed_samples": {
        "cases": {"mnist": "lenet_mnist", "tiny_imagenet": "resnet18"},
        "unavailable": {"celeba": "CelebA is not available offline"},
        "tables": ["table2", "table4", "table7", "fig2"],
        "victims": 1,
        "public": {"mnist": {"size": 40}, "tiny_imagenet": {"size": 4}},
        "defenses": {"none": [], "dp_gaussian": ["dp_gaussian"], "prune": ["prune"], "soteria": ["soteria"],
                     "dcs2": ["dcs2"], "prune+dcs2": ["dcs2", "prune"]},
        "defense_params": {
            "mnist": {"prune": {"rate": 0.7}, "dcs2": {"iterations": 5}},
            "tiny_imagenet": {"dp_gaussian": {"std": 0.5}, "soteria": {"rate": 0.9, "chunk": 128},
                              "dcs2": {"iterations": 2, "lambda_x": 0.001}},
        },
        "attacks": {"gs": {"type": "gs", "params": {"iterations": 5}},
                    "adaptive": {"type": "adaptive", "params": {"iterations": 5}},
                    "imprint": {"type": "imprint", "params": {"bins": 10}}},
        "utility": {"datasets": ["mnist"], "clients": 3, "protected_client": 1, "samples_per_client": {"mnist": 30},
                    "rounds": 1, "batch_size": 16, "max_test": 50, "defense_overrides": {"dcs2": {"iterations": 2}}},
    }},
}


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("cs_micro")
    run_snakemake(work, write_config(work, MICRO), timeout=3000)
    return work


def test_tables_and_grid_are_made(micro_run):
    out = micro_run / "results" / "tables" / "concealed_samples"
    for t in ("table2", "table4", "table7"):
        assert (out / f"{t}.csv").exists() and (out / f"{t}.md").exists()
    fig = micro_run / "results" / "figures" / "concealed_samples"
    assert (fig / "fig2.png").stat().st_size > 0 and (fig / "fig2.pdf").stat().st_size > 0
    # noise without clipping carries no formal (ε, δ) guarantee, and the table says so
    t2 = (out / "table2.md").read_text()
    assert "ε/step (δ = 1e-05) ↓" in t2
    assert next(ln for ln in t2.splitlines() if ln.startswith("| DP-Gaussian |")).split(" | ")[-2] == "none (no clipping)"
    assert any(r["privacy_guarantee"] == "none" for r in _csv(out / "table2.csv") if r["defense"] == "dp_gaussian")


def test_imprint_is_exact_without_defense_and_celeba_is_not_run(micro_run):
    rows = _csv(micro_run / "results" / "tables" / "concealed_samples" / "table2.csv")
    none_ssim = [r for r in rows if r["dataset"] == "tiny_imagenet" and r["defense"] == "none" and r["column"] == "ssim"]
    assert len(none_ssim) == 1 and float(none_ssim[0]["mean"]) > 0.999      # alone in its bin: exact read-out
    celeba = [r for r in rows if r["dataset"] == "celeba"]
    assert celeba and all(r["status"] == "not run" for r in celeba)
    assert "CelebA is not available offline" in (micro_run / "results" / "tables" / "concealed_samples" / "table2.md").read_text()
    # LPIPS: the bundled AlexNet, on [0, 1] images fed unmapped as DCS-2's code does (caption says so)
    lp = [r for r in rows if r["dataset"] == "tiny_imagenet" and r["column"] == "lpips"]
    assert lp and all(r["status"] == "ok" and 0.0 <= float(r["mean"]) for r in lp)
    none_lp = [r for r in lp if r["defense"] == "none"]
    assert len(none_lp) == 1 and float(none_lp[0]["mean"]) < 1e-3       # exact read-out: LPIPS ~ 0
    assert "evaluation.lpips.input: raw01" in (micro_run / "results" / "tables" / "concealed_samples" / "table2.md").read_text()
    # accuracies of TinyImageNet are not trained in this config
    acc = [r for r in rows if r["dataset"] == "tiny_imagenet" and r["column"].startswith("acc")]
    assert acc and all(r["status"] == "not computed" for r in acc)


def test_mnist_cells_are_measured_with_accuracies(micro_run):
    rows = _csv(micro_run / "results" / "tables" / "concealed_samples" / "table7.csv")
    assert {r["defense"] for r in rows} == {"prune", "dcs2", "prune+dcs2"}
    for r in rows:
        assert r["status"] == "ok", r
        v = float(r["mean"])
        if r["column"] == "ssim":
            assert -1.0 <= v <= 1.0
        if r["column"].startswith("acc"):
            assert 0.0 <= v <= 100.0


def test_attack_jobs_never_read_client_secrets(micro_run):
    attacks = list((micro_run / "results" / "attacks" / "concealed_samples").rglob("rep0.safetensors"))
    assert attacks
    for p in attacks:
        rec = io.read_record(p)
        assert not any("secrets" in f for f in rec["inputs"]), rec["inputs"]
    know = next((micro_run / "results" / "gradients" / "concealed_samples").rglob("*.knowledge.json"))
    assert set(json.loads(know.read_text())) == {"provenance", "batch_size", "input_shape", "dataset", "labels", "server"}
