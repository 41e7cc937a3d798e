"""Issue 21's renames keep behaviour: the wildcard ``{metric}`` became ``{significance}``, rule
``metrics`` became ``evaluate``, and the download rules live in rules/downloads.smk.

The seeds of the jobs hash their wildcards by name; the numbers below are the seeds main
(commit c1c908c, before the rename) derived for these jobs, so a rename that changed a seed --
and with it every attack and random-significance artifact -- fails here."""
from __future__ import annotations

import re

import pytest

from gibench.pipeline import paths as P
from gibench.pipeline.jobs_attack import case_of
from gibench.pipeline.replay import smk_from_record
from gibench.seeds import derive_seed
from gibench.wildcards import seed_wildcards, significance_of
from workflow_helpers import ROOT

CASE = {"study": "selective_encryption", "dataset": "cifar100", "model": "lenet", "slot": "s000"}


def test_attack_seed_is_the_one_main_derived():
    wc = {**CASE, "significance": "grad", "ratio": "r0.300", "attack": "ig", "rep": "0"}
    assert derive_seed(1, "attack", **seed_wildcards(wc)) == 2766891318616513630
    # hashing the new name instead would have changed it
    assert derive_seed(1, "attack", **wc) != 2766891318616513630


def test_significance_seed_is_the_one_main_derived():
    wc = {**CASE, "significance": "random"}
    assert derive_seed(1, "significance", **seed_wildcards(wc)) == 5192649897886221357


def test_paths_name_the_significance_wildcard_and_keep_their_layout():
    for pattern in (P.SCORES, P.SCORE_COST, P.MASK, P.ATTACK):
        assert "{significance}" in pattern and "{metric}" not in pattern
    got = P.fmt(P.ATTACK, **CASE, significance="grad", ratio=0.3, attack="ig", rep=0)
    assert got == "results/attacks/selective_encryption/cifar100/lenet/s000/grad/r0.300/ig/rep0.safetensors"


@pytest.mark.parametrize("name", ["significance", "metric"])
def test_the_evaluate_job_reads_attack_records_before_and_after_the_rename(name):
    rec = {"rule": "attack", "wildcards": {**CASE, name: "prodsig", "ratio": "r0.500", "attack": "ig", "rep": "1"}}
    assert significance_of(rec["wildcards"]) == "prodsig"
    assert case_of(rec) == {"significance": "prodsig", "ratio": "r0.500", "attack": "ig"}


def test_an_attack_record_without_the_wildcard_is_an_error():
    with pytest.raises(ValueError, match="lacks wildcards"):
        case_of({"rule": "attack", "wildcards": {**CASE, "ratio": "r0.500", "attack": "ig"}})


def test_a_replayed_old_record_gets_the_wildcard_under_its_new_name():
    old = {"rule": "masks", "wildcards": {**CASE, "metric": "grad"}, "output_files": {}, "input_files": {}}
    assert smk_from_record(old, {}).wildcards["significance"] == "grad"
    new = {**old, "wildcards": {**CASE, "significance": "sens"}}
    assert smk_from_record(new, {}).wildcards["significance"] == "sens"


def _rule_files() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((ROOT / "rules").glob("*.smk"))}


def test_no_rule_uses_the_old_wildcard_name():
    for name, text in _rule_files().items():
        assert "{metric}" not in text, name
        assert not re.search(r"^\s+metric=", text, re.M), name       # wildcard constraints


def test_download_rules_live_in_one_file():
    files = _rule_files()
    assert "text.smk" not in files
    where = {rule: name for name, text in files.items() for rule in re.findall(r"^rule (\w+):", text, re.M)}
    # cs_download_weights moves with study 3's rule file (issue 21, a later step)
    downloads = {r for r in where if "download" in r}
    assert downloads == {"download_dataset", "download_lpips_backbone", "download_pretrained", "download_lm_prior",
                         "cs_download_weights"}
    assert {where[r] for r in downloads} == {"downloads.smk"}
    assert "evaluate" in where and "metrics" not in where
    snakefile = (ROOT / "Snakefile").read_text()
    assert 'include: "rules/downloads.smk"' in snakefile and "rules/text.smk" not in snakefile
