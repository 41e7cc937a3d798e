"""Partial re-runs (issue 8): after a change, Snakemake's default re-run triggers (mtime, params,
input, software-env, code) re-run exactly the jobs the change affects.  Each case is a dry run
(``-n``) of the real Snakefile on a copy of the micro run; the job list is parsed from
Snakemake's output and compared with the expected (rule, wildcards) set.
"""
from __future__ import annotations

import copy
import re

import pytest

from provenance_micro import PROV_MICRO, STUDY, copy_run, micro_run, write_micro
from workflow_helpers import run_snakemake

pytestmark = pytest.mark.slow

TABLE5 = f"results/tables/{STUDY}/table5.md"


def dry_run_jobs(workdir, cfg_path, *args) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a dry run would execute."""
    proc = run_snakemake(workdir, cfg_path, "-n", *args)
    jobs, current = [], None
    for line in proc.stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            current = (m.group(1), {})
            jobs.append(current)
            continue
        m = re.match(r"^wildcards: (.*)$", line.strip())
        if m and current is not None:
            current[1].update(dict(kv.split("=", 1) for kv in m.group(1).split(", ")))
        m = re.match(r"^reason: (.*)$", line.strip())
        if m and current is not None:
            current[1]["_reason"] = m.group(1)
    assert jobs or "Nothing to be done" in proc.stdout, proc.stdout[-3000:]
    return jobs


def rules_of(jobs) -> dict[str, int]:
    out: dict[str, int] = {}
    for rule, _ in jobs:
        out[rule] = out.get(rule, 0) + 1
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return micro_run(tmp_path_factory)


def test_unchanged_config_has_nothing_to_do(run_dir, tmp_path):
    wd = copy_run(run_dir, tmp_path / "wd")
    assert dry_run_jobs(wd, wd / "config.yaml") == []


def test_table_formatting_change_reruns_only_that_table(run_dir, tmp_path):
    # evaluation.table5_ratio only decides what Table 5 shows: no metric, figure or other table
    wd = copy_run(run_dir, tmp_path / "wd")
    cfg = copy.deepcopy(PROV_MICRO)
    cfg["studies"][STUDY]["evaluation"] = {**cfg["studies"][STUDY]["evaluation"], "table5_ratio": 0.0}
    path = write_micro(wd, cfg)
    jobs = dry_run_jobs(wd, path)
    # (and the report's config page, which shows the whole config)
    assert rules_of(jobs) == {"table": 1, "report_config": 1, "all": 1}, jobs
    assert [w["table"] for r, w in jobs if r == "table"] == ["table5"]
    # and why: its params changed (`--list-changes params` cannot say so: in Snakemake 9.27 it lists
    # one output of every job, changed or not)
    assert [w["_reason"].startswith("Params have changed since last execution") for r, w in jobs if r == "table"] == [True]


def test_restart_selection_change_reruns_the_views_and_what_reads_them(run_dir, tmp_path):
    # evaluation.best_of_restarts changes no metric value, but which restart the tables and
    # figures keep: the evaluate job writes the slot's views (the kept restarts the grid and
    # traces figures draw), so it re-runs for them (its params), and so do the gathered rows, the
    # tables (each table's settings hold the evaluation block but its table-only keys) and every
    # figure; no attack
    wd = copy_run(run_dir, tmp_path / "wd")
    cfg = copy.deepcopy(PROV_MICRO)
    cfg["studies"][STUDY]["evaluation"] = {**cfg["studies"][STUDY]["evaluation"], "best_of_restarts": "oracle"}
    path = write_micro(wd, cfg)
    jobs = dry_run_jobs(wd, path)
    assert rules_of(jobs) == {"evaluate": 1, "gather_metrics": 1, "table": 4, "figure": 6, "report_config": 1,
                              "all": 1}, jobs
    assert [w["_reason"].startswith("Params have changed since last execution") for r, w in jobs
            if r == "evaluate"] == [True]


def test_table_code_change_reruns_only_table_jobs(run_dir, tmp_path):
    # a change to table-formatting code (gibench.tables) is invisible to Snakemake: --forcerun table
    wd = copy_run(run_dir, tmp_path / "wd")
    jobs = dry_run_jobs(wd, wd / "config.yaml", "--forcerun", "table")
    assert rules_of(jobs) == {"table": 4, "all": 1}, jobs


def test_attack_hyperparameter_change_reruns_only_that_attack_and_dependents(run_dir, tmp_path):
    wd = copy_run(run_dir, tmp_path / "wd")
    cfg = copy.deepcopy(PROV_MICRO)
    cfg["studies"][STUDY]["attacks"]["ig"]["params"]["lr"] = 0.05
    path = write_micro(wd, cfg)
    jobs = dry_run_jobs(wd, path)
    rules = rules_of(jobs)
    # ig on its two cases (ratio 0 under 'any', grad at 0.3), the metric rows of the victim slot
    # (one evaluation job per slot covers every attack output of it, issue 23), the gathered rows,
    # every table made from them (not Table 6: significance cost) and every figure (they all read
    # the gathered rows); nothing upstream, nothing of ig_fast
    assert rules == {"attack": 2, "evaluate": 1, "gather_metrics": 1, "table": 3, "figure": 6, "report_config": 1,
                     "all": 1}, jobs
    assert {w["attack"] for r, w in jobs if r == "attack"} == {"ig"}
    assert sorted(w["table"] for r, w in jobs if r == "table") == ["table2", "table4", "table5"]


FULL_RUN = {"data": 1, "model": 1, "gradient": 1, "significance": 1, "masks": 1, "masks_any": 1, "attack": 4,
            "evaluate": 1, "gather_metrics": 1, "gather_cost": 1, "table": 4, "figure": 6, "report_config": 1,
            "all": 1}


def test_gradient_setting_change_reruns_from_the_gradient_down(run_dir, tmp_path):
    # gradient.model_mode changes the shared update: everything made from it, not victims or weights
    wd = copy_run(run_dir, tmp_path / "wd")
    cfg = copy.deepcopy(PROV_MICRO)
    cfg["studies"][STUDY]["gradient"] = {"model_mode": "train"}
    path = write_micro(wd, cfg)
    expected = {k: v for k, v in FULL_RUN.items() if k not in ("data", "model")}
    assert rules_of(dry_run_jobs(wd, path)) == expected


def test_seed_change_leaves_nothing_stale(run_dir, tmp_path):
    # every seed derives from the study seed: a new one re-makes everything, as a fresh run would
    wd = copy_run(run_dir, tmp_path / "wd")
    cfg = copy.deepcopy(PROV_MICRO)
    cfg["seed"] = 2
    path = write_micro(wd, cfg)
    assert rules_of(dry_run_jobs(wd, path)) == FULL_RUN


def test_single_table_target_builds_only_what_it_needs(tmp_path):
    path = write_micro(tmp_path)
    jobs = dry_run_jobs(tmp_path, path, TABLE5)
    # victims, weights, gradient, grad scores -> mask at 0.3, shared masks at ratio 0, both attacks on
    # both cases, the slot's metric rows (one job), the gathered rows, Table 5 -- no figure, no cost table,
    # no other table
    assert rules_of(jobs) == {"data": 1, "model": 1, "gradient": 1, "significance": 1, "masks": 1, "masks_any": 1,
                              "attack": 4, "evaluate": 1, "gather_metrics": 1, "table": 1}, jobs
    assert [w["table"] for r, w in jobs if r == "table"] == ["table5"]


def test_adding_an_init_runs_only_that_init(run_dir, tmp_path):
    # the micro's LeNet is built with its default init (dlg_uniform): listing a second init adds one
    # model id (lenet@torch_default) and its jobs; nothing of the existing `lenet` runs again, only
    # the gathered rows, the tables and the figures that read them
    wd = copy_run(run_dir, tmp_path / "wd")
    cfg = copy.deepcopy(PROV_MICRO)
    cfg["studies"][STUDY]["cases"] = [{"dataset": "cifar100", "model": "lenet", "inits": ["dlg_uniform", "torch_default"]}]
    path = write_micro(wd, cfg)
    jobs = dry_run_jobs(wd, path)
    per_case = ("model", "gradient", "significance", "masks", "masks_any", "attack", "evaluate")
    assert {w["model"] for r, w in jobs if r in per_case} == {"lenet@torch_default"}, jobs
    assert rules_of(jobs) == {"model": 1, "gradient": 1, "significance": 1, "masks": 1, "masks_any": 1,
                              "attack": 4, "evaluate": 1, "gather_metrics": 1, "gather_cost": 1, "table": 4,
                              "figure": 12, "report_config": 1, "all": 1}, jobs
