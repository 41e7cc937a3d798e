"""The text path through the real Snakefile on a micro config in a temporary directory:
victims -> GPT-2 (demo size) gradient -> masks -> LAMP and DAGER -> text metric rows ->
Tables 2-5 (Table 3: selectors) and the curves figures."""
from __future__ import annotations

import csv
import json

import pytest

from gibench import io
from workflow_helpers import run_snakemake, write_config

pytestmark = pytest.mark.slow

MICRO_TEXT = {
    "seed": 3,
    "datasets": {"cola": {"source": "bundled", "split": "in_domain_dev", "victims": 1, "max_tokens": 9}},
    "studies": {"selective_encryption": {
        "cases": [{"dataset": "cola", "model": "gpt2"}],
        "victims": 1,
        "models": {"gpt2": {"size": "demo"}},
        "significance": {"metrics": ["grad"], "ratios": [0.0, 0.3, 1.0], "cost_metrics": ["prodsig"]},
        "attacks": {
            "lamp": {"metrics": ["grad", "attn"],
                     "params": {"n_steps": 20, "init_candidates": 4, "init_permutations": 2, "swap_every": 10,
                                "swap_candidates": 4, "prior": "none"}},
            "dager": {"ratios": [0.0, 0.01, 1.0], "params": {"time_limit": 120}},
        },
        "evaluation": {"best_of_restarts": "oracle"},
    }},
}


def test_text_micro_run_tables_figures_and_attacker_boundary(tmp_path):
    cfg = write_config(tmp_path, MICRO_TEXT)
    run_snakemake(tmp_path, cfg, timeout=3000)
    res = tmp_path / "results"
    tables = res / "tables" / "selective_encryption"
    for t in ("table2", "table3", "table4", "table5", "table6"):
        assert (tables / f"{t}.csv").exists() and (tables / f"{t}.md").exists(), t
    for a in ("lamp", "dager"):
        for ext in ("png", "pdf"):
            assert (res / "figures" / "selective_encryption" / f"curves_gpt2_cola_{a}.{ext}").exists()

    rows, _ = io.load_table(res / "metrics" / "selective_encryption" / "metrics.parquet")
    rows = rows.to_pylist()
    by = {(r["attack"], r["metric"], round(r["ratio"], 3)): r for r in rows}
    # DAGER is exact without encryption (theory: the span test is exact), and gets nothing at 100 %
    assert by[("dager", "any", 0.0)]["status"] == "ok" and by[("dager", "any", 0.0)]["rouge1"] == 1.0
    assert by[("dager", "any", 0.0)]["token_accuracy"] == 1.0 and by[("dager", "any", 0.0)]["embed_dist"] == 0.0
    assert by[("dager", "any", 1.0)]["status"] == "no_recovery" and by[("dager", "any", 1.0)]["rouge1"] == 0.0
    # rows say which ROUGE convention rouge1 follows and carry both (exact recovery: 1 under either)
    exact = by[("dager", "any", 0.0)]
    assert exact["rouge_convention"] == "stripped" and exact["rouge1_stripped"] == exact["rouge1_lamp"] == 1.0
    assert by[("lamp", "any", 1.0)]["status"] == "nothing_visible"
    # the selector row carries the mask's encrypted fraction, whatever its ratio label
    attn = [r for r in rows if r["metric"] == "attn"]
    assert len(attn) == 1 and 0 < attn[0]["encrypted_fraction"] < 0.3

    t3 = list(csv.DictReader(open(tables / "table3.csv")))
    assert [r["defense"] for r in t3] == ["attn"]
    assert float(t3[0]["enc_ratio_mean"]) == pytest.approx(attn[0]["encrypted_fraction"])
    md3 = (tables / "table3.md").read_text()
    assert "RANDOM weights" in md3 and "prior" in md3 and "special tokens" in md3
    t4 = {(r["attack"], r["significance_metric"]): r for r in csv.DictReader(open(tables / "table4.csv"))}
    assert t4[("lamp", "grad")]["criterion_metric"] == "rouge1" and t4[("lamp", "grad")]["op"] == "<="
    assert ("dager", "grad") in t4 and ("lamp", "attn") not in t4   # selectors only in Table 3

    # attacker boundary: attack jobs read weights, the shared update, the mask and the knowledge file only
    for p in (res / "attacks").rglob("*.safetensors"):
        inputs = list(io.read_record(p)["inputs"])
        assert len(inputs) == 4 and all(i.startswith(("results/models/", "results/gradients/", "results/masks/"))
                                        for i in inputs), inputs
        # one file per restart: the text attack's trace rides in it (LAMP: iteration/loss rows;
        # DAGER: one row per position, or the one-row placeholder when it recovered nothing)
        assert io.load_trace(p).num_rows >= 1, p
    assert not list((res / "attacks").rglob("*.parquet"))
    lamp = io.load_trace(res / "attacks/selective_encryption/cola/gpt2/s000/any/r0.000/lamp/rep0.safetensors")
    assert {"iteration", "loss"} <= set(lamp.column_names) and lamp.num_rows > 1
    know = json.loads((res / "gradients" / "selective_encryption" / "cola" / "gpt2" / "s000.knowledge.json").read_text())
    assert set(know) >= {"labels", "lengths", "batch_size"} and "text" not in know
