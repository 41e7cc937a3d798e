"""Decade jobs (issue 23, gibench.pipeline.slot_groups): one job runs the ten victim slots of a
decade (s010..s019), or the first n of a partial decade (s120..s127), with the unchanged per-slot
job function.

Independent facts checked: which decades are full, and which partial decade is grouped, for a
slot count (arithmetic: 128 slots = 12 full decades + 8 slots); the per-slot view a decade or
partial-decade job hands the job function is exactly the ``snakemake`` object rule X's job of
that slot has (its paths written out by hand from X's patterns), and a job runs exactly the slots
of its outputs; the first failing slot stops the job; the job counts of a dry run (victims x
cases, worked out by hand); and, end to end, every artifact a decade or partial-decade job writes
is byte-identical to the one rule X's job writes for the same slot (same config, the per-slot
rules forced with ``--allowed-rules``)."""
from __future__ import annotations

import copy
import filecmp
import json
import re
import shutil
from types import SimpleNamespace

import pytest

from gibench.pipeline import slot_groups as SG
from gibench.pipeline.replay import Files, Params, Wildcards
from workflow_helpers import ROOT, run_snakemake, snakemake_env, write_config


def _study_tests(name: str):
    """A study's test module (tests/studies/<study>/<name>.py) for its micro config: by path,
    since pytest puts a test file's own folder on sys.path only when it collects that file (this
    module run alone could not import it by name)."""
    import importlib.util
    import sys

    if name in sys.modules:
        return sys.modules[name]
    path = next((ROOT / "tests" / "studies").glob(f"*/{name}.py"))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ decades of a slot count

def test_full_decades_are_those_whose_ten_slots_exist():
    assert SG.full_decades(128) == [f"s{i:02d}" for i in range(12)]     # s120..s127 is partial
    assert SG.full_decades(10) == ["s00"] and SG.full_decades(9) == [] and SG.full_decades(1000)[-1] == "s99"
    assert SG.slots_of("s12") == [f"s12{d}" for d in range(10)]
    pat = SG.decade_pattern(128)
    assert re.fullmatch(pat, "s11") and not re.fullmatch(pat, "s12") and not re.fullmatch(pat, "s1")
    for off in (SG.decade_pattern(9), SG.decade_pattern(128, enabled=False), SG.decade_pattern(None)):
        assert off == SG.NO_DECADE
        assert not any(re.fullmatch(off, s) for s in ("", "s00", "s0", "x", "(?!)x"))


def test_the_last_partial_decade_is_grouped_from_two_slots_in_studies_with_a_full_decade():
    assert SG.last_part(128) == ("s12", 8) and SG.last_part(12) == ("s01", 2) and SG.last_part(999) == ("s99", 9)
    # one slot left over is X's own job; a full last decade is the full twin's
    assert SG.last_part(11) == SG.last_part(130) == (SG.NO_DECADE, 0)
    # an attack on 5 of the study's 10 slots (LAMP); a study of fewer than ten (the demo's 2, 4, 8)
    assert SG.last_part(5, least=10) == ("s00", 5)
    assert SG.last_part(8) == SG.last_part(5, least=8) == (SG.NO_DECADE, 0)
    assert SG.last_part(128, enabled=False) == SG.last_part(None) == (SG.NO_DECADE, 0)
    assert SG.Part.none(study="x") == SG.Part({"study": "x", "decade": SG.NO_DECADE}, 1)


def test_sd_and_cs_decades_follow_victims_and_the_group_slots_key():
    from gibench.config import validate
    from gibench.studies.concealed_samples import targets as CS
    from gibench.studies.stochastic_defenses import targets as SD
    cs_cfg = _study_tests("test_cs_spec")._cfg
    SD_MICRO = _study_tests("test_sd_workflow").MICRO

    sd = copy.deepcopy(SD_MICRO)
    sd["resources_dir"] = "resources"
    sd["studies"]["stochastic_defenses"]["victims"] = 25
    sd["datasets"]["mnist"]["victims"] = 25
    assert SD.decades(validate(copy.deepcopy(sd))) == "s00|s01"
    assert SD.part(validate(copy.deepcopy(sd))) == SG.Part({"decade": "s02"}, 5)
    sd["studies"]["stochastic_defenses"]["group_slots"] = False
    assert SD.decades(validate(copy.deepcopy(sd))) == SG.NO_DECADE
    assert SD.part(validate(sd)) == SG.Part.none()
    # concealed samples: the decades full in *every* dataset (victims_per_dataset lowers one)
    cs = cs_cfg(cases={"mnist": "lenet_mnist", "cifar10": "convnet"}, victims=30, victims_per_dataset={"cifar10": 12})
    cs["datasets"] = {"mnist": {"victims": 40}, "cifar10": {"victims": 40}}
    assert CS.decades(validate(copy.deepcopy(cs))) == "s00"
    assert CS.part(validate(copy.deepcopy(cs))) == SG.Part({"decade": "s01"}, 2)   # cifar10's s010, s011
    cs["studies"]["concealed_samples"]["group_slots"] = False
    assert CS.decades(validate(copy.deepcopy(cs))) == SG.NO_DECADE
    assert CS.part(validate(cs)) == SG.Part.none()
    assert SD.decades({"studies": {}}) == CS.decades({"studies": {}}) == SG.NO_DECADE
    assert SD.part({"studies": {}}) == CS.part({"studies": {}}) == SG.Part.none()


# ------------------------------------------------------------------ the per-slot view

RECON = "results/attacks/x/{dataset}/{slot}/{attack}/rep{rep}.safetensors"
# a second output of the synthetic rule (the real attack rules have one: the recon carries its trace)
INFO = "results/attacks/x/{dataset}/{slot}/{attack}/rep{rep}.info.json"
GRAD = "results/gradients/x/{dataset}/{slot}.safetensors"


def _decade_job(rule="x_attack_decade", slots=10):
    """A decade job's ``snakemake`` object as Snakemake builds it from the rule helpers (``slots``
    < 10: a partial-decade job, rule ``x_attack_decade_part``)."""
    wc = Wildcards({"dataset": "mnist", "decade": "s01", "attack": "ig", "rep": "0"})
    inputs = SG.slot_inputs(lambda w: {"weights": f"w/{w.dataset}.safetensors"}, gradient=GRAD,
                            knowledge=lambda w: f"k/{w.slot}.json", slots=slots)(wc)
    outputs = {k: SG.fill(v, wc) for k, v in SG.slot_outputs(recon=RECON, info=INFO, slots=slots).items()}
    logs = {"_0": "logs/x_attack/mnist/s01x/ig/rep0.json", "out": "logs/x_attack/mnist/s01x/ig/rep0.log"}
    params = {k: fn(wc) for k, fn in SG.slot_params(attack=lambda w: {"iters": 3, "for": w.slot}, slots=slots).items()}
    return SimpleNamespace(input=Files(inputs), output=Files(outputs), log=Files(logs), params=Params(params),
                           wildcards=wc, config={"seed": 1}, threads=1, rule=rule, resources=SimpleNamespace())


def test_slot_view_is_rule_x_job_of_that_slot():
    from gibench.provenance import named_files, named_params

    smk = _decade_job()
    # the weights, the same file for every slot, are declared once (under X's name): 1 + 2 x 10
    assert len(smk.output) == 20 and len(smk.input) == 21
    names = [n for n, _ in SG._names(smk.input)]
    assert "weights" in names and not [n for n in names if n.startswith("weights__")]
    v = SG.slot_view(smk, "s013")
    assert v.rule == "x_attack"
    assert dict(v.wildcards) == {"dataset": "mnist", "slot": "s013", "attack": "ig", "rep": "0"}
    assert v.wildcards.slot == "s013" and v.wildcards["dataset"] == "mnist"
    assert named_files(v.input) == {"weights": "w/mnist.safetensors", "gradient": "results/gradients/x/mnist/s013.safetensors",
                                    "knowledge": "k/s013.json"}
    assert v.output.recon == "results/attacks/x/mnist/s013/ig/rep0.safetensors"
    assert named_files(v.output) == {"recon": v.output.recon, "info": "results/attacks/x/mnist/s013/ig/rep0.info.json"}
    # the run record goes to X's first log, the text log to X's `out`
    assert list(v.log) == ["logs/x_attack/mnist/s013/ig/rep0.json", "logs/x_attack/mnist/s013/ig/rep0.log"]
    assert v.log.out == "logs/x_attack/mnist/s013/ig/rep0.log"
    assert named_params(v.params) == {"attack": {"iters": 3, "for": "s013"}} and v.params.attack["for"] == "s013"
    with pytest.raises(ValueError, match="not in decade"):
        SG.slot_view(smk, "s023")
    with pytest.raises(ValueError, match="_decade"):
        SG.slot_view(_decade_job(rule="x_attack"), "s013")
    with pytest.raises(ValueError, match="no {slot}"):
        SG.slot_outputs(table="results/t.csv")
    with pytest.raises(ValueError, match="no s01x"):
        SG.slot_logs(Files({"_0": "logs/x/s01.json"}), "s01", "s013")


def test_shared_inputs_are_declared_once_and_only_same_values_are_shared():
    from snakemake.iocontainers import Namedlist

    from gibench.provenance import named_files

    wc = Wildcards({"dataset": "mnist", "decade": "s01", "attack": "ig", "rep": "0"})
    # X's inputs: gradient (per slot), prior (shared), weights (shared), knowledge (per slot); the
    # shared ones stand where the first slot has them
    fn = SG.slot_inputs(lambda w: {"gradient": f"g/{w.slot}", "prior": "lm/prior"}, weights="w/{dataset}",
                        knowledge=lambda w: f"k/{w.slot}")
    inputs = fn(wc)
    assert list(inputs)[:4] == ["gradient__0", "prior", "weights", "knowledge__0"]
    assert sorted(set(inputs.values())) == sorted({"lm/prior", "w/mnist"} | {f"{p}/s01{d}" for p in "gk" for d in "0123456789"})
    outputs = {k: SG.fill(v, wc) for k, v in SG.slot_outputs(recon=RECON).items()}
    # Snakemake's own container (declaration order kept), as a job's snakemake.input is
    smk = SimpleNamespace(input=Namedlist(fromdict=inputs), output=Files(outputs), log=Files({"_0": "logs/x/s01x/a.json"}),
                          params=Params({}), wildcards=wc, config={}, threads=1, rule="x_decade",
                          resources=SimpleNamespace())
    for slot in ("s010", "s017"):
        v = SG.slot_view(smk, slot)
        assert named_files(v.input) == {"gradient": f"g/{slot}", "prior": "lm/prior", "weights": "w/mnist",
                                        "knowledge": f"k/{slot}"}
    # a value that differs in one slot is not shared; names that differ between slots: nothing is
    odd = SG.slot_inputs(weights=lambda w: "w/a" if w.slot != "s015" else "w/b")(wc)
    assert "weights" not in odd and odd["weights__5"] == "w/b" and len(odd) == 10
    uneven = SG.slot_inputs(lambda w: {"extra": "e"} if w.slot == "s013" else {}, weights="w/{dataset}")(wc)
    assert "weights" not in uneven and len(uneven) == 11


def test_a_partial_decade_job_is_rule_x_jobs_of_its_first_n_slots():
    from gibench.provenance import named_files, named_params

    smk = _decade_job(rule="x_attack_decade_part", slots=4)
    assert len(smk.output) == 8 and len(smk.input) == 9 and SG.job_digits(smk) == ("0", "1", "2", "3")
    v = SG.slot_view(smk, "s013")
    assert v.rule == "x_attack" and dict(v.wildcards) == {"dataset": "mnist", "slot": "s013", "attack": "ig", "rep": "0"}
    assert named_files(v.output) == {"recon": "results/attacks/x/mnist/s013/ig/rep0.safetensors",
                                     "info": "results/attacks/x/mnist/s013/ig/rep0.info.json"}
    assert named_files(v.input)["gradient"] == "results/gradients/x/mnist/s013.safetensors"
    assert list(v.log) == ["logs/x_attack/mnist/s013/ig/rep0.json", "logs/x_attack/mnist/s013/ig/rep0.log"]
    assert named_params(v.params) == {"attack": {"iters": 3, "for": "s013"}}
    with pytest.raises(ValueError, match="not one of"):
        SG.slot_view(smk, "s014")
    # the rule name says X, and which kind of twin: it must agree with the outputs' digits
    assert SG.per_slot_rule("attack_restarts_decade_part") == SG.per_slot_rule("attack_restarts_decade") == "attack_restarts"
    with pytest.raises(ValueError, match="_decade_part"):
        SG.per_slot_rule("_decade")
    with pytest.raises(ValueError, match="all ten"):
        SG.job_digits(_decade_job(rule="x_attack_decade", slots=4))
    with pytest.raises(ValueError, match="0..n-1"):
        SG.job_digits(_decade_job(rule="x_attack_decade_part", slots=10))
    with pytest.raises(ValueError, match="1 to 10"):
        SG.slot_outputs(recon=RECON, slots=11)


def test_first_failing_slot_stops_the_decade_and_the_runner_logs_each_slot(tmp_path, monkeypatch):
    from gibench.pipeline.runner import run_job

    monkeypatch.chdir(tmp_path)
    seen = []

    def job(smk, device):
        seen.append((smk.rule, smk.wildcards.slot, smk.output.recon))
        if smk.wildcards.slot == "s013":
            raise RuntimeError("slot 3 broke")
        return {"made": smk.wildcards.slot}

    with pytest.raises(RuntimeError, match="slot 3 broke"):
        run_job(_decade_job(), job)
    assert [s for _, s, _ in seen] == ["s010", "s011", "s012", "s013"]
    assert all(r == "x_attack" for r, _, _ in seen)
    ok = json.loads((tmp_path / "logs/x_attack/mnist/s011/ig/rep0.json").read_text())
    assert ok["rule"] == "x_attack" and ok["status"] == "ok" and ok["made"] == "s011"
    bad = json.loads((tmp_path / "logs/x_attack/mnist/s013/ig/rep0.json").read_text())
    assert bad["status"].startswith("failed: RuntimeError")
    assert not (tmp_path / "logs/x_attack/mnist/s014/ig/rep0.json").exists()
    dec = json.loads((tmp_path / "logs/x_attack/mnist/s01x/ig/rep0.json").read_text())
    assert dec["rule"] == "x_attack_decade" and dec["status"].startswith("failed: RuntimeError")
    # the decade's text log holds every slot's lines; each slot's text log only its own
    text = (tmp_path / "logs/x_attack/mnist/s01x/ig/rep0.log").read_text()
    assert "slot s012" in text and "slot 3 broke" in text
    assert "slot s012" not in (tmp_path / "logs/x_attack/mnist/s011/ig/rep0.log").read_text()


def test_a_partial_decade_job_runs_exactly_its_slots(tmp_path, monkeypatch):
    from gibench.pipeline.runner import run_job

    monkeypatch.chdir(tmp_path)
    seen = []
    run_job(_decade_job(rule="x_attack_decade_part", slots=3),
            lambda smk, device: seen.append((smk.rule, smk.wildcards.slot, smk.output.recon)))
    assert seen == [("x_attack", f"s01{d}", f"results/attacks/x/mnist/s01{d}/ig/rep0.safetensors") for d in "012"]
    dec = json.loads((tmp_path / "logs/x_attack/mnist/s01x/ig/rep0.json").read_text())
    assert dec["rule"] == "x_attack_decade_part" and dec["status"] == "ok" and dec["slots"] == ["s010", "s011", "s012"]
    assert json.loads((tmp_path / "logs/x_attack/mnist/s012/ig/rep0.json").read_text())["rule"] == "x_attack"


# ------------------------------------------------------------------ through the real Snakefile

def _sd_config(tmp_path, victims, **study):
    SD_MICRO = _study_tests("test_sd_workflow").MICRO

    cfg = copy.deepcopy(SD_MICRO)
    cfg["datasets"]["mnist"]["victims"] = victims
    cfg["studies"]["stochastic_defenses"].update(victims=victims, **study)
    return write_config(tmp_path, cfg)


def _job_stats(stdout: str) -> dict[str, int]:
    block = stdout.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


@pytest.mark.slow
def test_dry_run_has_one_job_per_full_decade_and_per_left_over_slot(tmp_path):
    # 12 victims: decade s00 in one job, s010 and s011 in one partial-decade job; the micro
    # config's tables need 4 defense combinations (4 gradient cases) and 6 (defense, attack) attack cases
    stats = _job_stats(run_snakemake(tmp_path, _sd_config(tmp_path, 12), "-n").stdout)
    assert stats["sd_gradient_decade"] == stats["sd_gradient_decade_part"] == 4 and "sd_gradient" not in stats
    assert stats["sd_attack_decade"] == stats["sd_attack_decade_part"] == 6 and "sd_attack" not in stats
    # 11 victims: s010 alone, slot by slot
    one = tmp_path / "one"
    one.mkdir()
    stats = _job_stats(run_snakemake(one, _sd_config(one, 11), "-n").stdout)
    assert stats["sd_gradient_decade"] == stats["sd_gradient"] == 4 and "sd_gradient_decade_part" not in stats
    assert stats["sd_attack_decade"] == stats["sd_attack"] == 6 and "sd_attack_decade_part" not in stats
    off = tmp_path / "off"
    off.mkdir()
    stats = _job_stats(run_snakemake(off, _sd_config(off, 12, group_slots=False), "-n").stdout)
    assert stats["sd_gradient"] == 4 * 12 and stats["sd_attack"] == 6 * 12
    assert not any(r.endswith(("_decade", "_decade_part")) for r in stats), stats


def _grouped_then_per_slot(tmp_path, cfg, targets: list[str], n: int) -> list:
    """Make ``targets`` (n slots' stochastic-defenses attacks) with the rules Snakemake picks, move the
    gradient and attack artifacts aside, re-make them with the per-slot rules forced (--allowed-rules
    and GIBENCH_PER_SLOT_RULES=all: they match a decade's files only then); assert every file is the
    same bytes.  Returns the first run's output and the files compared."""
    proc = run_snakemake(tmp_path, cfg, *targets)
    first = proc.stdout + proc.stderr
    for d in ("results/gradients/stochastic_defenses", "results/attacks/stochastic_defenses"):
        shutil.copytree(tmp_path / d, tmp_path / "grouped" / d)
        shutil.rmtree(tmp_path / d)
    proc = run_snakemake(tmp_path, cfg, *targets, "--allowed-rules", "sd_gradient", "sd_attack",
                         env=dict(snakemake_env(), **{SG.ALL_SLOTS_ENV: "all"}))
    out = proc.stdout + proc.stderr
    assert _job_stats(out) == {"sd_gradient": n, "sd_attack": n}, out[-3000:]
    files = sorted(p.relative_to(tmp_path / "grouped") for p in (tmp_path / "grouped").rglob("*") if p.is_file())
    assert len(files) == n * 3 + n * 1            # update, secrets, knowledge; recon (with its trace)
    for f in files:
        assert filecmp.cmp(tmp_path / "grouped" / f, tmp_path / f, shallow=False), f
    return [first, files]


@pytest.mark.slow
def test_decade_job_writes_the_bytes_of_the_per_slot_jobs(tmp_path):
    """The same config run twice: the decade rules, then the per-slot rules forced with
    --allowed-rules (and GIBENCH_PER_SLOT_RULES=all); every gradient and attack artifact (records embedded) is the same bytes."""
    cfg = _sd_config(tmp_path, 10)
    targets = [f"results/attacks/stochastic_defenses/mnist/sd_cnn/dp_strong/s00{d}/wiig/rep0.safetensors"
               for d in range(10)]
    first, _ = _grouped_then_per_slot(tmp_path, cfg, targets, 10)
    assert "sd_attack_decade" in first and "sd_gradient_decade" in first
    rec = json.loads((tmp_path / "logs/sd_attack/mnist/sd_cnn/dp_strong/s007/wiig/rep0.json").read_text())
    assert rec["rule"] == "sd_attack" and rec["status"] == "ok"


@pytest.mark.slow
def test_partial_decade_job_writes_the_bytes_of_the_per_slot_jobs(tmp_path):
    """As above for the partial decade s010..s014 of 15 victims (rules sd_gradient_decade_part,
    sd_attack_decade_part): every slot's gradient and attack artifacts are the per-slot jobs' bytes."""
    cfg = _sd_config(tmp_path, 15)
    targets = [f"results/attacks/stochastic_defenses/mnist/sd_cnn/dp_strong/s01{d}/wiig/rep0.safetensors"
               for d in range(5)]
    first, files = _grouped_then_per_slot(tmp_path, cfg, targets, 5)
    assert _job_stats(first) == {"sd_model": 1, "data": 1, "sd_gradient_decade_part": 1,
                                 "sd_attack_decade_part": 1}, first[-3000:]
    assert {f.parts[-1][:4] for f in files if "gradients" in str(f)} == {f"s01{d}" for d in range(5)}


def test_se_attacks_on_fewer_than_ten_slots_run_as_one_partial_decade_job():
    # the paper-scale config: 10 victim slots per case; LAMP (and its selector variant) attacks
    # the first 5 (paper A: 5 sequences per dataset): one attack_restarts_decade_part job per
    # case; DAGER, DLG and IG all 10: one decade job
    from pathlib import Path

    import yaml

    from gibench.config import validate
    from gibench.studies.selective_encryption import targets as SE

    cfg = validate(yaml.safe_load((Path(__file__).resolve().parents[2] / "config/studies/selective_encryption.yaml").read_text()))
    groups = SE.restart_groups(cfg)
    assert SE.attack_decades(cfg, groups[1]) == (["dager", "dager_zero_fill"], "s00")
    assert SE.attack_decades(cfg, groups[5]) == (["dlg", "ig"], "s00")
    assert SE.attack_part(cfg, groups[5]) == SG.Part(
        {"study": "selective_encryption", "attack": "lamp|lamp_selectors", "decade": "s00"}, 5)
    assert SE.attack_part(cfg, groups[1]).constraints["decade"] == SG.NO_DECADE
    cfg["studies"]["selective_encryption"]["group_slots"] = False
    assert SE.attack_decades(cfg, groups[5]) == ([], SG.NO_DECADE)
    assert SE.attack_part(cfg, groups[5]).constraints["decade"] == SG.NO_DECADE


def test_the_profile_sizes_every_twin_from_its_per_slot_rule():
    """profiles/default/config.yaml: each decade twin (rules/*.smk) asks for what its per-slot rule
    X asks for (GPU, memory), for 10 x X's runtime (X_decade_part: 9 x, its largest n), capped at
    48 h (clusters' usual limit); a twin left out would get the cluster's default resources (no GPU)."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    res = yaml.safe_load((root / "profiles/default/config.yaml").read_text())["set-resources"]
    text = "\n".join(p.read_text() for p in sorted((root / "rules").glob("*.smk")))
    twins = set(re.findall(r"^rule (\w+(?:_decade|_decade_part)):", text, re.M))
    # named in loops (f"{_name}_decade"): the multi-restart twins, with one restart count
    assert 'f"{_name}_decade"' in text and 'f"{_name}_decade_part"' in text
    twins |= {"attack_restarts_decade", "attack_restarts_decade_part"}
    assert {"attack_decade_part", "sd_attack_decade_part", "cs_gradient_decade_part"} <= twins
    for twin in sorted(twins):
        x = SG.per_slot_rule(twin)
        assert twin in res and x in res, twin
        n = 9 if twin.endswith(SG.PART_SUFFIX) else 10
        assert {k: v for k, v in res[twin].items() if k != "runtime"} == {
            k: v for k, v in res[x].items() if k != "runtime"}, twin
        assert res[twin]["runtime"] == min(n * res[x]["runtime"], 48 * 60), twin
