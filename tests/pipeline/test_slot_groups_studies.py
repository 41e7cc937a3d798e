"""Decade jobs (issue 23) of the concealed-samples and selective-encryption studies, through the
real Snakefile (tests/pipeline/test_slot_groups.py covers the stochastic-defenses study and the
mechanism).

One micro concealed-samples run with ten victims (one full decade: s000..s009), LeNet/MNIST,
the ``prune`` defense and two one-iteration GS attacks (``gs``, ``gs_b``), made with the decade
rules (cs_gradient_decade, cs_attack_decade) and their evaluation.  Independent facts checked:

- byte identity: the per-slot rules (forced with ``--allowed-rules`` and
  ``GIBENCH_PER_SLOT_RULES=all``) re-make the first and the
  last slot of the decade (s000, s009: a digit mapped to the wrong slot shows there) with the
  same bytes, embedded provenance records included.  All ten slots were compared once by hand
  (too slow for CI on 2 cores), same way: this module's config with one attack, 50 files
  identical; selective encryption, cifar100/LeNet, 10 victims, ratio 0, ``ig`` (1 restart,
  rule attack_decade) and ``ig2`` (2 restarts, attack_restarts_decade), the decade run then
  ``--allowed-rules attack attack_restarts``: 60 files identical (on that run, by hand too,
  ``ig2``'s iterations 1 -> 2 re-runs its attack_restarts_decade job only, "Params have
  changed");
- partial re-runs: one attack's hyperparameter re-runs that attack's decade job and its
  evaluation only (so nothing of the unchanged attack), with Snakemake's reason "params changed";
  a defense setting re-runs the gradient decade and everything below it;
- a selective-encryption dry run (single-restart and multi-restart attacks) has one
  attack_decade / attack_restarts_decade job per full decade, one attack_decade_part job for the
  two slots of a partial decade and one per-slot job for a lone left-over slot (counts worked out
  by hand), the client-side rules (gradient, masks_any) one decade job and per-slot jobs for the rest;
- selective encryption's client-side decade jobs (gradient_decade, significance_decade,
  masks_decade, masks_any_decade; ten victims, cifar100/LeNet, metric grad at ratios 0 and 0.3)
  write the bytes the per-slot rules write for s000 and s009 (the cost table: all but its
  measured seconds and peak bytes), and a masks setting re-runs only the masks' decade jobs.
"""
from __future__ import annotations

import copy
import filecmp
import json
import re
import shutil

import pytest

from gibench.pipeline import slot_groups as SG
from test_partial_reruns import dry_run_jobs, rules_of
from workflow_helpers import MICRO, run_snakemake, snakemake_env, write_config

pytestmark = pytest.mark.slow

CASE = "mnist/lenet_mnist/honest/iid/prune"
ATTACKS = ("gs", "gs_b")
METRICS = [f"results/metrics/concealed_samples/{CASE}/{a}.parquet" for a in ATTACKS]


def _cs_config(**study) -> dict:
    # table7 (the default table) needs its four defenses in the config; only `prune` is run here
    block = {"cases": {"mnist": "lenet_mnist"}, "tables": ["table7"], "victims": 10,
             "defenses": {"none": [], "prune": ["prune"], "dcs2": ["dcs2"], "prune+dcs2": ["dcs2", "prune"]},
             "attacks": {a: {"type": "gs", "params": {"iterations": 1}} for a in ATTACKS}}
    block.update(study)
    return {"seed": 0, "datasets": {"mnist": {"victims": 10}}, "studies": {"concealed_samples": block}}


def _slot_files(slot: str) -> list[str]:
    g = f"results/gradients/concealed_samples/{CASE}/{slot}"
    a = f"results/attacks/concealed_samples/{CASE}/{slot}"
    return ([f"{g}.safetensors", f"{g}.knowledge.json", f"{g}.secrets.safetensors"]
            + [f"{a}/{x}/rep0.safetensors" for x in ATTACKS])      # the recon carries its trace


def _stats(out: str) -> dict[str, int]:
    block = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


@pytest.fixture(scope="module")
def cs_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("cs_decade")
    proc = run_snakemake(work, write_config(work, _cs_config()), *METRICS)
    assert _stats(proc.stdout + proc.stderr) == {"data": 1, "model": 1, "cs_gradient_decade": 1,
                                                 "cs_attack_decade": 2, "cs_evaluate": 2}
    return work


def _copy(run, dst):
    shutil.copytree(run, dst, symlinks=True)
    return dst


def test_cs_per_slot_rules_remake_the_decade_jobs_bytes(cs_run, tmp_path):
    wd = _copy(cs_run, tmp_path / "wd")
    # (attack gs only: the two attacks' jobs are made by the same code path)
    files = [f for s in ("s000", "s009") for f in _slot_files(s) if "/gs_b/" not in f]
    for f in files:
        (wd / f).unlink()
    targets = [f for f in files if "/attacks/" in f and f.endswith(".safetensors")]
    proc = run_snakemake(wd, wd / "config.yaml", *targets, "--allowed-rules", "cs_gradient", "cs_attack",
                         env=dict(snakemake_env(), **{SG.ALL_SLOTS_ENV: "all"}))
    assert _stats(proc.stdout + proc.stderr) == {"cs_gradient": 2, "cs_attack": 2}
    assert len(files) == 2 * 4                  # gradient, knowledge, secrets; recon (with its trace)
    for f in files:
        assert filecmp.cmp(cs_run / f, wd / f, shallow=False), f


def test_cs_attack_hyperparameter_reruns_only_that_attacks_decade_jobs(cs_run, tmp_path):
    wd = _copy(cs_run, tmp_path / "wd")
    cfg = _cs_config()
    cfg["studies"]["concealed_samples"]["attacks"]["gs_b"]["params"]["iterations"] = 2
    jobs = dry_run_jobs(wd, write_config(wd, cfg), *METRICS)
    assert rules_of(jobs) == {"cs_attack_decade": 1, "cs_evaluate": 1}, jobs
    assert {w["attack"] for _, w in jobs} == {"gs_b"}
    assert [w["decade"] for r, w in jobs if r == "cs_attack_decade"] == ["s00"]
    assert [w["_reason"].startswith("Params have changed since last execution")
            for r, w in jobs if r == "cs_attack_decade"] == [True]


def test_cs_defense_setting_reruns_from_the_gradient_decade_down(cs_run, tmp_path):
    wd = _copy(cs_run, tmp_path / "wd")
    cfg = _cs_config(defense_params={"mnist": {"prune": {"rate": 0.5}}})
    jobs = dry_run_jobs(wd, write_config(wd, cfg), *METRICS)
    assert rules_of(jobs) == {"cs_gradient_decade": 1, "cs_attack_decade": 2, "cs_evaluate": 2}, jobs


def test_se_dry_run_has_one_attack_job_per_full_decade_and_per_left_over_slot(tmp_path):
    # 12 victims, one case, ratio 0 only: decade s00 in one job per attack; `ig` has one restart
    # (rule attack) and runs on all 12: s010 and s011 in one attack_decade_part job; `ig2` two
    # (rule attack_restarts) and runs on 11: s010 alone, slot by slot
    cfg = copy.deepcopy(MICRO)
    cfg["datasets"]["cifar100"]["victims"] = 12
    cfg["studies"]["selective_encryption"].update({
        "victims": 12, "overhead": {"enabled": False},
        "significance": {"metrics": ["grad"], "ratios": [0.0], "cost_metrics": ["grad"]},
        "attacks": {"ig": {"restarts": 1, "params": {"iterations": 1}},
                    "ig2": {"type": "ig", "restarts": 2, "victims": 11, "params": {"iterations": 1}}}})
    path = write_config(tmp_path, cfg)
    base = "results/attacks/selective_encryption/cifar100/lenet/s0{:02d}/any/r0.000"
    targets = ([base.format(i) + "/ig/rep0.safetensors" for i in range(12)]
               + [base.format(i) + "/ig2/rep1.safetensors" for i in range(11)])
    stats = _stats(run_snakemake(tmp_path, path, "-n", *targets).stdout)
    # the client-side rules too (gradient, the shared ratio-0 mask): decade s00 in one job, 2 slots alone
    # (ig on 12 slots: s010-s011 a part job; ig2 on 11: s010 alone)
    assert stats == {"data": 1, "model": 1, "gradient_decade": 1, "gradient": 2, "masks_any_decade": 1,
                     "masks_any": 2, "attack_decade": 1, "attack_decade_part": 1, "attack_restarts_decade": 1,
                     "attack_restarts": 1}, stats


# ---- selective encryption: the client-side decade twins (SE.stage_twin) -----------------------
SE_CASE = "selective_encryption/cifar100/lenet"


def _se_stage_config() -> dict:
    # ten victims, one attack on all ten (its cases decide which decades are grouped), metric grad at
    # ratios 0 (shared mask 'any') and 0.3 (masks of grad); no attack runs here, only what it reads
    cfg = copy.deepcopy(MICRO)
    cfg["datasets"]["cifar100"]["victims"] = 10
    cfg["studies"]["selective_encryption"].update({
        "victims": 10, "overhead": {"enabled": False},
        "significance": {"metrics": ["grad"], "ratios": [0.0, 0.3], "cost_metrics": ["grad"]},
        "attacks": {"ig": {"restarts": 1, "params": {"iterations": 1}}}})
    return cfg


def _se_masks(slot: str) -> list[str]:
    return [f"results/masks/{SE_CASE}/{slot}/grad/r0.300.safetensors",
            f"results/masks/{SE_CASE}/{slot}/any/r0.000.safetensors"]


def _se_stage_files(slot: str) -> list[str]:
    g, s = f"results/gradients/{SE_CASE}/{slot}", f"results/significance/{SE_CASE}/{slot}/grad"
    return [f"{g}.safetensors", f"{g}.knowledge.json", f"{s}.safetensors", f"{s}.cost.parquet", *_se_masks(slot)]


def test_se_stage_decade_jobs_write_the_bytes_of_the_per_slot_jobs(tmp_path):
    """gradient_decade, significance_decade, masks_decade and masks_any_decade make the ten slots'
    files; the per-slot rules (forced with --allowed-rules and GIBENCH_PER_SLOT_RULES=all) re-make
    those of s000 and s009 with the same bytes, embedded records included -- except the cost
    table's measured columns (seconds, peak bytes: a measurement of each run), whose other
    columns and record are compared.  And a masks setting (significance.selection) re-runs the
    two masks decade jobs only, for changed params."""
    from gibench import io

    path = write_config(tmp_path, _se_stage_config())
    targets = [f for d in range(10) for f in _se_masks(f"s00{d}")]
    proc = run_snakemake(tmp_path, path, *targets)
    assert _stats(proc.stdout + proc.stderr) == {"data": 1, "model": 1, "gradient_decade": 1, "significance_decade": 1,
                                                 "masks_decade": 1, "masks_any_decade": 1}
    # each slot's run record is rule significance's, beside the decade job's own
    rec = json.loads((tmp_path / f"logs/significance/{SE_CASE}/s009/grad.json").read_text())
    assert rec["rule"] == "significance" and rec["status"] == "ok"
    assert json.loads((tmp_path / f"logs/significance/{SE_CASE}/s00x/grad.json").read_text())["rule"] == \
        "significance_decade"
    # a masks setting re-runs the masks' decade jobs only: their params are each slot's
    changed = _se_stage_config()
    changed["studies"]["selective_encryption"]["significance"]["selection"] = "per_layer"
    changed["hub_dir"] = str(tmp_path / "hub")          # as write_config set it for the run
    (tmp_path / "changed").mkdir()
    jobs = dry_run_jobs(tmp_path, write_config(tmp_path / "changed", changed), *targets)
    assert rules_of(jobs) == {"masks_decade": 1, "masks_any_decade": 1}, jobs
    assert all(w["_reason"].startswith("Params have changed since last execution") for _, w in jobs)
    grouped = tmp_path / "grouped"
    files = [f for s in ("s000", "s009") for f in _se_stage_files(s)]
    for f in files:
        (grouped / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp_path / f, grouped / f)
    proc = run_snakemake(tmp_path, path, *[f for s in ("s000", "s009") for f in _se_masks(s)],
                         "--allowed-rules", "gradient", "significance", "masks", "masks_any",
                         env=dict(snakemake_env(), **{SG.ALL_SLOTS_ENV: "all"}))
    assert _stats(proc.stdout + proc.stderr) == {"gradient": 2, "significance": 2, "masks": 2, "masks_any": 2}
    assert len(files) == 2 * 6
    for f in files:
        if f.endswith(".cost.parquet"):
            (a, ra), (b, rb) = io.load_table(grouped / f), io.load_table(tmp_path / f)
            measured = ["seconds", "peak_bytes"]
            assert a.drop_columns(measured).to_pylist() == b.drop_columns(measured).to_pylist() and ra == rb, f
        else:
            assert filecmp.cmp(grouped / f, tmp_path / f, shallow=False), f
