"""Per-slot rule X, its decade twin X_decade and its partial-decade twin X_decade_part (issue 23)
match disjoint files, together all of X's: :func:`gibench.pipeline.slot_groups.per_slot_constraint`.

Without it, both rules matched a full decade's files and ``ruleorder: X_decade > X`` chose the twin
only after Snakemake had built X's candidate job for every such file: a selective-encryption dry
run built 7,735 jobs for a DAG of 2,855 (attack_restarts 3,590 built / 990 kept, attack 2,280 / 0).

Independent facts checked:

- on a grid of files (studies, slots of full and partial decades, grouped attacks and LAMP, which
  runs on 5 slots: its s000-s004 in the part twin, as in the paper-scale selective-encryption
  config), the regexes Snakemake compiles for X and the twins (its own
  ``update_wildcard_constraints`` and ``regex_from_filepattern``) match each file exactly as the
  definition of the twins' sets says (study, attack and decade in a twin's constraints; the part
  twin: the first n slot digits only), worked out here in plain Python, not with regexes; the same
  check flags the ways the complement can break (no lookahead: both match; an X constraint built
  for a larger twin, e.g. one that takes LAMP's slots too or all ten of the part twin's decade:
  nobody makes them);
- the client-side twins of the paper-scale selective-encryption config (SE.stage_twin: gradient,
  significance, masks, masks_any) take exactly the (case, metric) decades whose ten slots the
  study's attacks (or its cost table) ask for, worked out by hand from the config (LAMP's 5 slots
  stay per slot), through the same regexes;
- through the real Snakefile (slow): for the demo, every paper-scale study and the reproduce
  config, the dry run's Job stats are the per-rule counts of commit 9412be3 (before these changes)
  once each part twin's jobs are counted as the per-slot jobs of the slots they run (9412be3 had
  no part twins: those slots were X's jobs; the part twins' job counts are those slots / n, n
  worked out by hand from the configs' victims) and, for the client-side rules, which have decade
  twins since, each decade job as the ten per-slot jobs it runs; Snakemake builds no job it throws
  away for any X and its twins, and every output of those rules' jobs is matched by exactly its own
  rule (tests/pipeline/dag_probe.py).
"""
from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.io import regex_from_filepattern, update_wildcard_constraints

from gibench.pipeline import paths as P
from gibench.pipeline import slot_groups as SG
from gibench.studies.selective_encryption import targets as SET
from gibench.studies.stochastic_defenses import paths as SDP
from workflow_helpers import ROOT, snakemake_env

# rules/common.smk's global constraints (the ones these patterns use)
GLOBAL = {"study": "[a-z_]+", "dataset": "[a-z0-9_]+", "model": "[a-z0-9_]+(@[a-z0-9_]+)?",
          "slot": "s[0-9]{3}", "significance": "[a-z0-9_]+", "ratio": "r[01][.][0-9]{3}",
          "attack": "[a-z0-9_]+", "rep": "[0-9]+"}
SE = "selective_encryption"


def _regexes(patterns, rule_constraints) -> list[re.Pattern]:
    return [re.compile(regex_from_filepattern(update_wildcard_constraints(p, rule_constraints, GLOBAL)))
            for p in patterns]


def _matchers(files, rules: dict[str, list[re.Pattern]]) -> dict[str, list[str]]:
    return {f: [name for name, rx in rules.items() if any(r.match(f) for r in rx)] for f in files}


def _se_rules(x_twin: dict, twin: dict, x_attacks: str = "ig|dlg|lamp", x_part: SG.Part | None = None,
              part: SG.Part | None = None) -> dict[str, list[re.Pattern]]:
    """Snakemake's regexes of rule attack (X: constraint built for ``x_twin`` and ``x_part``),
    attack_decade and (given ``part``) attack_decade_part."""
    outs = [P.ATTACK]                  # one file per restart (it carries its loss trace)
    x = {"attack": x_attacks, **SG.per_slot_constraint(outs, x_twin, GLOBAL, part=x_part)}
    rules = {"attack": _regexes(outs, x),
             "attack_decade": _regexes(list(SG.slot_outputs(recon=P.ATTACK).values()), twin)}
    if part is not None:
        rules["attack_decade_part"] = _regexes(list(SG.slot_outputs(recon=P.ATTACK, slots=part.slots).values()),
                                               part.constraints)
    return rules


TWIN = {"study": SE, "attack": "ig|dlg", "decade": "s00|s01"}   # 25 victims: s02 is partial
# LAMP's first 5 slots (the paper-scale config: LAMP runs on 5 of 10 victims)
PART = SG.Part({"study": SE, "attack": "lamp", "decade": "s00"}, 5)
# or the 25 victims' last decade s02, its first 3 slots (say the other attack runs on 23)
PART_S02 = SG.Part({"study": SE, "attack": "ig|dlg", "decade": "s02"}, 3)
SLOTS = [f"s{i:03d}" for i in (0, 4, 5, 9, 10, 19, 20, 22, 23, 24)]


def _se_files(part: SG.Part | None = None):
    """(file, [the rule that makes it]) by the definition of the twins' sets, in plain Python."""
    for study, slot, attack, rep, ext in itertools.product(
            (SE, "other_study"), SLOTS, ("ig", "dlg", "lamp"), ("0", "1"), ("safetensors",)):
        f = f"results/attacks/{study}/cifar100/lenet@dlg_uniform/{slot}/grad/r0.300/{attack}/rep{rep}.{ext}"
        twin = study == SE and attack in ("ig", "dlg") and slot[:3] in ("s00", "s01")
        in_part = (part is not None and study == SE and attack in part.constraints["attack"].split("|")
                   and slot[:3] == part.constraints["decade"] and int(slot[3]) < part.slots)
        yield f, ["attack_decade" if twin else "attack_decade_part" if in_part else "attack"]


def test_x_and_its_twin_split_the_files_as_the_twin_set_says():
    expected = dict(_se_files())
    got = _matchers(expected, _se_rules(TWIN, TWIN))
    assert got == expected
    assert sum(v == ["attack_decade"] for v in got.values()) == 2 * 6 * 2   # attacks*slots*reps


@pytest.mark.parametrize("part", [PART, PART_S02], ids=["lamp_s00", "s02"])
def test_x_and_both_twins_split_the_files_as_the_twin_sets_say(part):
    expected = dict(_se_files(part))
    got = _matchers(expected, _se_rules(TWIN, TWIN, x_part=part, part=part))
    assert got == expected
    # lamp: s000, s004 (not s005, s009); ig/dlg: s020, s022 (not s023, s024) -- times 2 reps
    assert sum(v == ["attack_decade_part"] for v in got.values()) == (2 * 2 if part is PART else 2 * 2 * 2)
    assert sum(v == ["attack_decade"] for v in got.values()) == 2 * 6 * 2


def test_the_check_fails_when_the_complement_breaks():
    expected = dict(_se_files())
    # no lookahead (the constraint before this change): a full decade's files match both rules
    both = _matchers(expected, {"attack": _regexes([P.ATTACK], {"attack": "ig|dlg|lamp"}),
                                "attack_decade": _se_rules(TWIN, TWIN)["attack_decade"]})
    assert both != expected
    assert any(v == ["attack", "attack_decade"] for v in both.values())
    # X's constraint built for a twin that also took LAMP: LAMP's full-decade slots have no producer
    greedy = _matchers(expected, _se_rules({**TWIN, "attack": "ig|dlg|lamp"}, TWIN))
    lost = sorted(f for f, v in greedy.items() if not v)
    assert lost and all("/lamp/" in f and f"/{SE}/" in f for f in lost)
    # with a part twin: X's constraint built without it (both match LAMP's s000-s004), or for a
    # part twin of all ten slots (LAMP's s005-s009 have no producer)
    expected = dict(_se_files(PART))
    both = _matchers(expected, _se_rules(TWIN, TWIN, part=PART))
    assert sorted(f for f, v in both.items() if v != expected[f]) == sorted(
        f for f, v in both.items() if v == ["attack", "attack_decade_part"]) != []
    wide = _matchers(expected, _se_rules(TWIN, TWIN, x_part=SG.Part(PART.constraints, 10), part=PART))
    lost = sorted(f for f, v in wide.items() if not v)
    assert lost and all("/lamp/" in f and f"/{SE}/" in f and f.split("/")[5] in ("s005", "s009") for f in lost)
    assert all(wide[f] == v for f, v in expected.items() if f not in lost)


def test_slot_followed_by_a_dot_and_decade_only_twin():
    """The stochastic-defenses layout: the twin constrains only ``decade``; the slot ends in
    ``.safetensors`` / ``.secrets.safetensors`` / ``.knowledge.json``."""
    outs = [SDP.UPDATE, SDP.SECRETS, SDP.KNOWLEDGE]
    twin = {"decade": "s00|s01|s02", "defense": SDP.DEFENSE_PATTERN}
    x = {"defense": SDP.DEFENSE_PATTERN, **SG.per_slot_constraint(outs, {"decade": twin["decade"]}, GLOBAL)}
    rules = {"sd_gradient": _regexes(outs, x),
             "sd_gradient_decade": _regexes(list(SG.slot_outputs(u=SDP.UPDATE, s=SDP.SECRETS,
                                                                 k=SDP.KNOWLEDGE).values()), twin)}
    expected = {}
    for i, pat in itertools.product(range(0, 40, 3), outs):
        f = pat.format(dataset="cifar10", model="lenet_sd", defense="mixup+dp", slot=f"s{i:03d}")
        expected[f] = ["sd_gradient_decade" if i < 30 else "sd_gradient"]
    assert _matchers(expected, rules) == expected


# The client-side twins of the paper-scale config (SE.stage_twin): not a product of per-wildcard
# choices.  By hand from config/studies/selective_encryption.yaml: 10 victims; IG/DLG attack the
# image cases and DAGER (both variants) GPT-2 on cola and sst2 on all 10 slots with the metrics
# grad..random; LAMP (bert, and gpt2 on every text dataset) and lamp_selectors (attn, ... on
# gpt2/cola) only the first 5; the cost metrics (sens among them) are scored on every slot.
_STAGE_FILES = {"masks": "results/masks/{study}/{case}/{slot}/{metric}/r0.300.safetensors",
                "significance": "results/significance/{study}/{case}/{slot}/{metric}.cost.parquet"}
_STAGE_OUTS = {"masks": [P.MASK.replace("{ratio}", r) for r in ("r0.300", "r0.500")],
               "significance": [P.SCORES, P.SCORE_COST]}


def _stage_twin_by_hand(rule, study, case, slot, metric) -> bool:
    if study != SE or slot[:3] != "s00":
        return False
    all_ten = case in ("cifar100/lenet", "cola/gpt2") and metric in ("grad", "sens")   # IG/DLG, DAGER
    return all_ten or (rule == "significance" and metric == "sens")                      # a cost metric


@pytest.mark.parametrize("rule", ["masks", "significance"])
def test_stage_twins_split_the_paper_files_as_the_cases_ask(rule):
    from gibench.config import validate

    cfg = validate(yaml.safe_load((ROOT / "config/studies/selective_encryption.yaml").read_text()))
    twin = SET.stage_twin(cfg, rule)
    outs = _STAGE_OUTS[rule]
    x = SG.per_slot_constraint(outs, twin, GLOBAL)
    named = SG.slot_outputs(**{f"_{i}": p for i, p in enumerate(outs)})
    rules = {rule: _regexes(outs, x), rule + SG.SUFFIX: _regexes(list(named.values()), twin)}
    expected = {}
    for study, case, slot, metric in itertools.product(
            (SE, "other_study"), ("cifar100/lenet", "cola/bert", "cola/gpt2", "rotten_tomatoes/gpt2"),
            ("s000", "s004", "s005", "s009", "s010", "s019"), ("grad", "sens", "attn")):
        f = _STAGE_FILES[rule].format(study=study, case=case, slot=slot, metric=metric)
        expected[f] = [rule + SG.SUFFIX if _stage_twin_by_hand(rule, study, case, slot, metric) else rule]
    assert _matchers(expected, rules) == expected
    assert sum(v == [rule + SG.SUFFIX] for v in expected.values()) == 4 * (2 * 2 + 2 * (rule == "significance"))
    cfg["studies"][SE]["group_slots"] = False
    assert SET.stage_twin(cfg, rule)["decade"] == SG.NO_DECADE


def test_a_twin_that_matches_nothing_leaves_the_constraint():
    assert SG.per_slot_constraint([P.ATTACK], {**TWIN, "decade": SG.NO_DECADE}, GLOBAL) == {"study": GLOBAL["study"]}
    assert SG.per_slot_constraint([P.ATTACK], {**TWIN, "attack": "(?!)"}, GLOBAL) == {"study": GLOBAL["study"]}
    # a standalone value check (Snakemake's Rule.get_wildcards with known wildcards) still passes
    c = SG.per_slot_constraint([P.ATTACK], TWIN, GLOBAL)["study"]
    assert re.compile(c).match(SE)
    # a part twin that matches nothing adds nothing; one that does, a second lookahead
    assert SG.per_slot_constraint([P.ATTACK], TWIN, GLOBAL, part=SG.Part.none(study=SE, attack="lamp")) == {"study": c}
    both = SG.per_slot_constraint([P.ATTACK], TWIN, GLOBAL, part=PART)["study"]
    assert both.count("(?!") == 2 and both.startswith(c[: -len(GLOBAL["study"])]) and both.endswith(GLOBAL["study"])


def test_the_per_slot_rules_can_be_told_to_match_every_slot(monkeypatch):
    """GIBENCH_PER_SLOT_RULES=all (with --allowed-rules X: the byte-identity tests re-make a
    decade slot by slot): X matches the twin's files too."""
    monkeypatch.setenv(SG.ALL_SLOTS_ENV, "all")
    got = _matchers(dict(_se_files()), _se_rules(TWIN, TWIN))
    assert all("attack" in v for v in got.values())
    assert sum(v == ["attack", "attack_decade"] for v in got.values()) == 2 * 6 * 2
    got = _matchers(dict(_se_files(PART)), _se_rules(TWIN, TWIN, x_part=PART, part=PART))
    assert all("attack" in v for v in got.values())
    assert sum(v == ["attack", "attack_decade_part"] for v in got.values()) == 2 * 2


def test_bad_uses_are_refused():
    with pytest.raises(ValueError, match="no {slot}"):
        SG.per_slot_constraint([P.WEIGHTS], {"decade": "s00"}, GLOBAL)
    with pytest.raises(ValueError, match="name no 'decade'"):
        SG.per_slot_constraint([P.ATTACK], {"study": SE}, GLOBAL)
    with pytest.raises(ValueError, match="differ before"):
        SG.per_slot_constraint([P.ATTACK, SDP.RECON], {"decade": "s00"}, GLOBAL)
    with pytest.raises(ValueError, match="share no text"):
        SG.per_slot_constraint([SDP.UPDATE, SDP.UPDATE.replace(".safetensors", "_x")], {"decade": "s00"}, GLOBAL)
    with pytest.raises(ValueError, match="1 to 10 slots"):
        SG.per_slot_constraint([P.ATTACK], TWIN, GLOBAL, part=SG.Part(PART.constraints, 0))
    with pytest.raises(ValueError, match="name no 'decade'"):
        SG.per_slot_constraint([P.ATTACK], TWIN, GLOBAL, part=SG.Part({"study": SE}, 5))


# ---- through the real Snakefile -------------------------------------------------------------
# Job stats of `snakemake -n` at commit 9412be3 (before this change), per rule, read from its dry
# runs (demo: config/config.yaml; the studies: config/studies/<study>.yaml; reproduce.yaml).
EXPECTED = json.loads((Path(__file__).with_name("dag_job_stats_9412be3.json")).read_text())
# The part twins (X_decade_part, after 9412be3): their slots per job, worked out by hand from the
# configs -- selective encryption: LAMP and lamp_selectors run on 5 of the 10 victims (rule
# attack_restarts: 5 restarts); stochastic defenses: 128 victims, s120-s127; concealed samples:
# 64 victims in every dataset, s060-s063.  The demo and reproduce.yaml (fewer than ten victims
# per case) have none.
PART_SLOTS = {"selective_encryption": {"attack_restarts": 5},
              "stochastic_defenses": {"sd_gradient": 8, "sd_attack": 8},
              "concealed_samples": {"cs_gradient": 4, "cs_attack": 4}}


def _probe(tmp_path: Path, configfile: Path) -> dict:
    cfg = yaml.safe_load(configfile.read_text())
    rd = Path(cfg.get("resources_dir", "resources"))
    cfg["resources_dir"] = str(rd if rd.is_absolute() else ROOT / rd)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = tmp_path / "probe.json"
    env = dict(snakemake_env(), DAG_PROBE_OUT=str(out))
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("dag_probe.py")), "-n", "--quiet", "rules",
                           "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(path), "--cores", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return json.loads(out.read_text())


_STAGE = {r for x in SET.STAGE_RULES for r in (x, x + SG.SUFFIX)}


def _slot_jobs(kept: dict[str, int]) -> dict[str, int]:
    """Jobs per rule, a decade job (X_decade) counted as the ten jobs of X it runs."""
    out: dict[str, int] = {}
    for rule, n in kept.items():
        x = rule.removesuffix(SG.SUFFIX)
        out[x] = out.get(x, 0) + n * (10 if x != rule else 1)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dag_builds_no_throwaway_jobs_and_keeps_its_job_stats(name, tmp_path):
    cfg = {"demo": "config/config.yaml", "reproduce": "config/reproduce.yaml"}.get(name, f"config/studies/{name}.yaml")
    got = _probe(tmp_path, ROOT / cfg)
    kept = dict(got["kept"])
    parts = {r[: -len(SG.PART_SUFFIX)]: r for r in kept if r.endswith(SG.PART_SUFFIX)}
    assert {x: kept[r] * PART_SLOTS[name][x] for x, r in parts.items()} == {
        x: EXPECTED[name][x] for x in PART_SLOTS.get(name, {})}   # every left-over slot grouped, n each
    for x, r in parts.items():     # a part twin's jobs stand for the per-slot jobs of their slots
        assert got["slots"][r] == kept[r] * PART_SLOTS[name][x]
        kept[x] = kept.get(x, 0) + got["slots"].pop(r)
        del kept[r]
    # every rule but the client-side ones keeps its count of 9412be3; those have decade twins since
    # (SE.stage_twin): each decade job stands for ten of its per-slot rule's jobs, so counted that
    # way every rule's jobs are still 9412be3's -- no slot's work lost, none added
    unchanged = {r: n for r, n in EXPECTED[name].items() if r not in _STAGE}
    assert {r: n for r, n in kept.items() if r not in _STAGE} == unchanged
    assert _slot_jobs(kept) == _slot_jobs(EXPECTED[name])
    for x, pair in got["pairs"].items():
        assert pair["bad"] == [], (x, pair["bad"])
        for rule in (x, x + SG.SUFFIX, x + SG.PART_SUFFIX):
            assert got["created"].get(rule, 0) == got["kept"].get(rule, 0), (rule, got["created"], got["kept"])
    grouped = [x for x in got["pairs"] if got["kept"].get(x + SG.SUFFIX)]
    if name not in ("demo", "reproduce"):   # the paper-scale studies run decade jobs (the demo and
        # reproduce.yaml have fewer than ten victims per case): the check above saw their files
        assert grouped and all(got["pairs"][x]["files"] for x in grouped)
    if name == "selective_encryption":
        assert set(SET.STAGE_RULES) <= set(grouped), grouped
