"""A new table is one function plus one registry entry (issue 21): a toy table of study 1 (the
mean PSNR per attack) registered in-process appears among the pipeline's targets, its rule
accepts it, and the table job builds it from a small gathered metric-row file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from gibench import config as gconfig
from gibench import io
from gibench.pipeline import jobs_tables, targets as T
from gibench.tables import TABLES, TableDoc, register_table
from workflow_helpers import Named

ROOT = Path(__file__).resolve().parents[2]
STUDY = "selective_encryption"
NAME = "mean_psnr"


def build_mean_psnr(*, metrics_path: Any, config: Any, out_dir: Any, formats=("csv", "md"), **_: Any) -> list[Path]:
    """The toy table: mean PSNR over every metric row of each attack (first-seen order)."""
    rows, _ = io.load_table(metrics_path)
    by_attack: dict[str, list[float]] = {}
    for r in rows.to_pylist():
        by_attack.setdefault(r["attack"], []).append(float(r["psnr"]))
    tidy = [{"attack": a, "mean_psnr": sum(v) / len(v), "n": len(v)} for a, v in by_attack.items()]
    doc = TableDoc(name=NAME, title=TABLES.entry(STUDY, NAME).caption, header=["Attack", "mean PSNR", "n"],
                   body=[[t["attack"], f"{t['mean_psnr']:.2f}", str(t["n"])] for t in tidy],
                   tidy_columns=["attack", "mean_psnr", "n"], tidy=tidy)
    return doc.write(out_dir, formats)


@pytest.fixture
def demo_config() -> dict:
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    gconfig.validate(cfg, str(ROOT / "config/schema/config.schema.yaml"))
    assert cfg["studies"][STUDY].get("attacks"), "the demo config runs attacks in study 1"
    return cfg


@pytest.fixture
def toy_table():
    entry = register_table(STUDY, NAME, build_mean_psnr, inputs=("metrics",), when="attacks",
                           caption="Toy table: mean PSNR per attack")
    try:
        yield entry
    finally:
        TABLES.remove(STUDY, NAME)


def _paths(ext: str) -> str:
    return f"results/tables/{STUDY}/{NAME}.{ext}"


def test_unregistered_table_is_not_a_target(demo_config):
    assert not TABLES.has(STUDY, NAME)
    targets = T.all_targets(demo_config)
    assert _paths("csv") not in targets
    assert f"results/tables/{STUDY}/table4.csv" in targets      # the registered tables are


def test_registered_table_is_a_target_with_its_inputs(demo_config, toy_table):
    targets = T.all_targets(demo_config)
    for ext in ("csv", "md", "html"):
        assert _paths(ext) in targets
    # rule `table` accepts the name (its wildcard constraint comes from the registry)
    assert NAME in T.table_choice(STUDY).split("|")
    # the gathered input the entry declares (plus nothing for a config without local LMs)
    inputs = T.table_inputs(demo_config, STUDY, NAME)
    assert inputs["metrics"] == f"results/metrics/{STUDY}/metrics.parquet"
    assert "cost" not in inputs
    # `when="attacks"`: not made for a study without attacks
    no_attacks = {**demo_config, "studies": {STUDY: {**demo_config["studies"][STUDY], "attacks": {}}}}
    assert _paths("csv") not in T.registered_outputs(no_attacks, STUDY)




def test_table_job_builds_the_registered_table(tmp_path, demo_config, toy_table):
    rows = [{"attack": "ig", "dataset": "cifar100", "psnr": 10.0}, {"attack": "dlg", "dataset": "cifar100", "psnr": 30.0},
            {"attack": "ig", "dataset": "cifar100", "psnr": 21.0}]
    gathered = tmp_path / "rows.parquet"
    io.save_table(gathered, rows, {"rule": "gather_metrics"})
    out = tmp_path / "tables"
    smk = type("Smk", (), {})()
    smk.input = Named(metrics=str(gathered))
    smk.output = Named(csv=str(out / f"{NAME}.csv"), md=str(out / f"{NAME}.md"))
    smk.wildcards = Named(study=STUDY, table=NAME)
    smk.config = demo_config
    smk.rule = "table"
    jobs_tables.table_job(smk, torch.device("cpu"))
    # independent of the builder: the means worked out by hand
    assert (out / f"{NAME}.csv").read_text() == "attack,mean_psnr,n\nig,15.5,2\ndlg,30.0,1\n"
    md = (out / f"{NAME}.md").read_text()
    assert md.startswith("**Toy table: mean PSNR per attack**")
    assert "| ig | 15.50 | 2 |" in md and "| dlg | 30.00 | 1 |" in md
