"""`make reproduce` (issue 22 item 3) and the GPU slice (item 4).

* config/reproduce.yaml validates, runs the papers' settings where the issue asks for them (read
  from the paper-scale study configs, not restated here) and its DAG builds with all three studies
  and their claims reports;
* the claims report says what each check ran at, and "GPU slice: not run" unless the slice's
  summary exists; that summary is only ever written on a CUDA machine;
* scripts/gpu_check.sh --dry (CPU) builds both GPU DAGs and writes nothing under results/gpu.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from gibench import claims as C
from gibench import gpu_slice as G
from gibench.config import validate

from claims_paper_tables import write_table
from workflow_helpers import ROOT, run_snakemake

STUDIES = {"selective_encryption", "stochastic_defenses", "concealed_samples"}


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())


def test_reproduce_config_validates_with_the_papers_settings():
    cfg = validate(load("reproduce.yaml"))
    assert set(cfg["studies"]) == STUDIES and "claims" in cfg
    # paper B: the paper's attack settings (the paper-scale study's), >= 8 victims, MNIST and the CNN
    sd, sd_paper = cfg["studies"]["stochastic_defenses"], load("studies/stochastic_defenses.yaml")["studies"][
        "stochastic_defenses"]
    assert sd["attack_params"] == sd_paper["attack_params"]
    assert sd["victims"] >= 8
    assert set(sd["attacks"]) >= {"ig", "wiig", "gpia", "vbia", "pig"}
    assert set(sd["tables"]) == {"table1", "table2", "table3"}         # Table 4 (CDIA): CPU budget, README
    assert all(t["datasets"] == ["mnist"] and t["models"] == ["sd_cnn"] for t in sd["tables"].values())
    # paper C: GS at the paper's 10,000 iterations, DCS² at its 1,000, with Prune, Soteria and DP
    cs, cs_paper = cfg["studies"]["concealed_samples"], load("studies/concealed_samples.yaml")["studies"][
        "concealed_samples"]
    assert cs["attacks"]["gs"]["params"]["iterations"] == cs_paper["attacks"]["gs"]["params"]["iterations"] == 10000
    assert cs["defense_params"]["mnist"]["dcs2"]["iterations"] == cs_paper["defense_params"]["mnist"]["dcs2"][
        "iterations"]
    assert {"none", "dcs2", "prune", "soteria", "dp_gaussian"} <= set(cs["defenses"]) and cs["victims"] >= 8
    # paper A: LeNet under both inits, the CNN, >= 4 victims, the grid from 0 to 1; DAGER on the full-width GPT-2
    se = cfg["studies"]["selective_encryption"]
    lenet = next(c for c in se["cases"] if c["model"] == "lenet")
    assert set(lenet["inits"]) == {"torch_default", "dlg_uniform"}
    assert {c["model"] for c in se["cases"]} == {"lenet", "cnn", "gpt2"}
    grid = se["significance"]["ratios"]
    assert grid[0] == 0.0 and grid[-1] == 1.0 and {0.1, 0.2, 0.3, 0.4, 0.5, 0.6} <= set(grid)
    for a in ("ig", "dlg"):
        assert min(se["attacks"][a].get("victims", se["victims"]), cfg["datasets"]["cifar100"]["victims"]) >= 4
    assert se["attacks"]["dlg"]["params"]["iterations"] == 300          # DLG's own 300 steps
    assert se["models"]["gpt2"]["size"] == "base" and se["attacks"]["dager"]["models"] == ["gpt2"]


def _job_counts(stdout: str) -> dict[str, int]:
    counts = {}
    for line in stdout.splitlines():
        m = re.fullmatch(r"\s*(\w+)\s+(\d+)\s*", line)
        if m:
            counts[m.group(1)] = int(m.group(2))
    return counts


def test_reproduce_dag_builds_with_every_study_and_its_claims_report(tmp_path):
    cfg = load("reproduce.yaml")
    proc = run_snakemake(tmp_path, ROOT / "config" / "reproduce.yaml", "-n", "--quiet", "rules",
                         "--config", f"resources_dir={ROOT / 'resources'}", f"hub_dir={tmp_path / 'hub'}",
                         timeout=600)
    jobs = _job_counts(proc.stdout)
    assert jobs["claims"] == 3                                   # one report per study
    for rule in ("attack", "sd_attack", "cs_attack", "cs_table", "sd_table", "table"):
        assert jobs.get(rule, 0) > 0, rule
    # paper B: one attack job per victim and table cell (baseline included), counted from the config
    sd = cfg["studies"]["stochastic_defenses"]
    cells = set()
    for t in sd["tables"].values():
        if t["kind"] == "attacks":
            cells.add((t["baseline"]["defense"], t["baseline"]["attack"]))
            cells |= {(d, a) for d in t["defenses"] for a in t["attacks"]}
        else:
            cells |= {(d, t["attack"]) for d in t["defenses"]}
    assert jobs["sd_attack"] == sd["victims"] * len(cells)
    # paper C: GS on every defense, per victim
    cs = cfg["studies"]["concealed_samples"]
    assert jobs["cs_attack"] == cs["victims"] * len(cs["defenses"])
    # no download rule: make reproduce runs offline on the bundled data
    assert not any(r.startswith("download") for r in jobs)


# ------------------------------------------------------------------ the claims report

SD_COLUMNS = ["dataset", "model", "defense", "defense_label", "attack", "asr", "status"]


def _report(tmp: Path, gpu: dict | None = None) -> tuple[str, list[dict], list[C.Verdict]]:
    results = tmp / "results"
    write_table(results / "tables" / "stochastic_defenses" / "t.csv",
                [{"dataset": "mnist", "model": "sd_cnn", "defense": "dp", "defense_label": "DP", "attack": "ig",
                  "asr": 85, "status": "ok"}])
    if gpu is not None:
        (results / "gpu").mkdir(parents=True)
        (results / "gpu" / "gpu_check.json").write_text(json.dumps(gpu))
    claims = {"study": "stochastic_defenses", "paper": "test paper", "tables": {"t": SD_COLUMNS}, "claims": [
        {"id": "dp-ig", "where": "Table 1", "words": "IG under DP", "paper": 85, "scale": {"victims": 8},
         "check": {"kind": "compare", "table": "t", "select": {"defense": "dp"}, "column": "asr", "op": ">=",
                   "value": 50}}]}
    (tmp / "c.yaml").write_text(yaml.safe_dump(claims))
    cfg = {"studies": {"stochastic_defenses": {"victims": 8, "attack_params": {"iterations": 20000},
                                               "attacks": {"ig": {"type": "ig_defended"}}}}}
    _, verdicts = C.write_report(C.load_claims(tmp / "c.yaml"), cfg, results / "tables" / "stochastic_defenses",
                                 results / "claims")
    md = (results / "claims" / "stochastic_defenses.md").read_text()
    with open(results / "claims" / "stochastic_defenses.csv", newline="") as f:
        import csv

        rows = list(csv.DictReader(f))
    return md, rows, verdicts


def test_claims_report_names_what_each_check_ran_at(tmp_path):
    md, rows, (v,) = _report(tmp_path)
    assert v.verdict == C.HOLDS
    # victims and iterations of the config the cells came from, and which attack/model/dataset they are
    assert v.ran_at == "ig/sd_cnn/mnist: victims 8, restarts 1, attack iterations 20000"
    assert rows[0]["ran_at"] == v.ran_at
    assert "| Ran at |" in md and v.ran_at in md


def test_claims_report_says_gpu_slice_not_run_without_its_summary(tmp_path):
    md, _, _ = _report(tmp_path)
    assert "GPU slice: not run" in md
    assert "GPU slice: ran" not in md


def test_claims_report_quotes_the_gpu_slice_with_its_device(tmp_path):
    # a summary file as collect() writes it (a fixture: the report only reads and quotes it)
    gpu = {"device_name": "Example GPU", "date": "2026-01-01T00:00:00Z", "torch": "x",
           "checks": {"placement": {"ok": True}, "families": {"ok": False}},
           "slice_claims": {"stochastic_defenses": [{"claim": "t1-ig-dp-mnist", "variant": "", "verdict": "holds",
                                                     "ours": "asr = 90", "ran_at": "ig/sd_cnn/mnist: victims 8"}]}}
    md, _, _ = _report(tmp_path, gpu)
    assert "GPU slice: ran on Example GPU" in md and "1 of 2 CUDA checks passed" in md
    assert "GPU slice (Example GPU): t1-ig-dp-mnist: holds; ours asr = 90" in md
    assert "GPU slice: not run" not in md


def test_gpu_summary_is_never_written_without_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device"):
        G.collect(tmp_path, tmp_path / "preflight.json", None, {})
    assert not (tmp_path / G.CHECK_FILE).exists()
    assert G.state(tmp_path) == "not run"


def test_job_devices_reads_the_job_logs(tmp_path):
    for i, dev in enumerate(["cuda", "cuda:0", "cpu"]):
        p = tmp_path / "logs" / "attack" / f"j{i}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"rule": "attack", "device": dev, "status": "ok"}))
    assert G.job_devices(tmp_path) == {"attack": {"cuda": 2, "cpu": 1}}


@pytest.mark.slow
def test_gpu_check_dry_mode_builds_both_dags_and_writes_nothing(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry"], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '"device": "cpu"' in proc.stdout and '"ok": true' in proc.stdout
    assert proc.stdout.count("snakemake -n") == 2 and "gpu_check --dry: ok" in proc.stdout
    assert not (ROOT / "results" / "gpu" / "gpu_check.json").exists()
