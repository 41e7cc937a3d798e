"""The pipeline on a real Slurm (issue 7): `snakemake --profile slurm` against a single-node
cluster started by scripts/slurm_local.sh (slurmctld, slurmd, slurmdbd + MariaDB, munge, two
fake GPUs).  Nothing is mocked: every job goes through sbatch, and what ran is read back
from Slurm's accounting (sacct).

* the micro study (one case, one victim slot, one significance metric, ratios 0 and 0.5,
  a 30-iteration IG) runs to its tables and figures; sacct lists its jobs, the attack and
  significance jobs carry gres/gpu=1, the small CPU rules arrive bundled as group jobs;
* a running attack job cancelled with scancel is resubmitted (profile `retries`) and the
  workflow completes, leaving complete artifacts only (this needs the profile's
  `slurm-status-command: squeue`: with sacct, plugin 2.8.0 waits forever on such a job);
* dry runs: the profiles give GPU rules a GPU and nothing else, rules named in the profiles
  that a workflow lacks are harmless, every download rule is a localrule.  (Paper-scale dry
  runs of every study, with job counts and timings, are benchmarks/bench_slurm_dryrun.py:
  minutes each, too slow for the test suite.)

The session fixture starts the cluster when none runs and stops (only) what it started.
Without root or apt-get the script exits 2 and the tests are skipped with its reason.
"""
from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from gibench import io
from workflow_helpers import MICRO, ROOT, snakemake_bin, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCRIPT = ROOT / "scripts" / "slurm_local.sh"
PROFILE = ROOT / "slurm"
WORKFLOW_PROFILE = ROOT / "profiles" / "default" / "config.yaml"
GPU_RULES = {"attack", "significance"}          # GPU rules that the micro study runs

# The micro study (one victim slot) extended so that the GPU rules run: a significance
# metric, an interior ratio (a metric-specific mask) besides ratio 0, and a short IG attack.
SLURM_MICRO = copy.deepcopy(MICRO)
# the local cluster's GPUs are fake (gres backed by symlinks, CPU torch): GPU rules must be
# allowed to run on the CPU, else gibench.device stops them (a GPU job that finds no CUDA)
SLURM_MICRO["cpu_fallback"] = True
SLURM_MICRO["studies"]["selective_encryption"].update({
    "significance": {"metrics": ["grad"], "ratios": [0.0, 0.5], "cost_metrics": ["grad"]},
    "attacks": {"ig": {"restarts": 1, "params": {"iterations": 30}}},
    # no LPIPS: fewer CPU seconds per metrics job (LPIPS itself is tested elsewhere)
    "evaluation": {"image_metrics": ["mse", "psnr", "ssim"],
                   "protection": {"image": {"metric": "ssim", "op": "<=", "threshold": 0.3}},
                   "table5_ratio": 0.5},
})


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = str(ROOT / ".venv" / "bin") + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    for k in list(env):   # never submit from inside an allocation (reference, pitfall 7.1.11)
        if k.startswith(("SLURM_", "SBATCH_", "SRUN_")):
            del env[k]
    return env


def _script(cmd: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), cmd], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running local Slurm; started here (and stopped at the end) unless one already runs."""
    if _script("status", timeout=60).returncode == 0:
        yield "already running"
        return
    proc = _script("start")
    if proc.returncode == 2:   # the script's "cannot run here" exit: no root, no apt-get, ...
        reason = [ln for ln in proc.stderr.splitlines() if "UNAVAILABLE" in ln]
        pytest.skip(f"local Slurm cannot be started: {reason[-1] if reason else proc.stderr[-500:]}")
    if proc.returncode != 0:
        pytest.fail(f"scripts/slurm_local.sh start failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    try:
        yield "started"
    finally:
        stop = _script("stop", timeout=300)
        assert stop.returncode == 0, stop.stderr
        # the config left behind makes Slurm clients fail at once (README, "A local Slurm for
        # testing"): the Slurm executor plugin asks scontrol at every snakemake start
        assert "\nMessageTimeout=1\n" in Path("/etc/slurm/slurm.conf").read_text(), stop.stderr


def _slurm_cmd(workdir: Path, config: Path, prefix: str, *args: str) -> list[str]:
    # the repository's cluster profile as is; only the first status poll is made early
    # (the profile's 40 s suits a real cluster, it would dominate these small runs)
    return [snakemake_bin(), "--profile", str(PROFILE), "--snakefile", str(ROOT / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(config),
            "--slurm-init-seconds-before-status-checks", "2", "--slurm-jobname-prefix", prefix, *args]


def _stop_snakemake(proc: subprocess.Popen, prefix: str) -> None:
    """SIGINT makes Snakemake scancel its jobs; it may need a second one (seen with 9.27)."""
    for _ in range(2):
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for job in _squeue(prefix):
        subprocess.run(["scancel", job["id"]], capture_output=True)


def run_slurm(workdir: Path, config: Path, prefix: str, *args: str, timeout: int = 900,
              on_running=None) -> tuple[int, str]:
    """Run snakemake with the Slurm profile; ``on_running(proc)`` is polled while it runs."""
    log = workdir / f"snakemake-{prefix}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(_slurm_cmd(workdir, config, prefix, *args), cwd=workdir, env=_env(),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if time.monotonic() > end:
                    raise AssertionError(f"snakemake on Slurm ran over {timeout} s:\n{log.read_text()[-4000:]}")
                if on_running is not None:
                    on_running(proc)
                time.sleep(0.5)
        finally:
            _stop_snakemake(proc, prefix)
    return proc.returncode, log.read_text()


def _sacct(prefix: str, since: datetime) -> list[dict]:
    """Allocations (not steps) whose job name starts with the run's prefix."""
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "--allusers", "-S", since.strftime("%Y-%m-%dT%H:%M:%S"),
         "-o", "JobID,JobName%200,State,Comment%300,AllocTRES%200,ReqTRES%200,Account,Partition"],
        capture_output=True, text=True, check=True).stdout
    keys = ["id", "name", "state", "comment", "alloc", "req", "account", "partition"]
    rows = [dict(zip(keys, ln.split("|"))) for ln in out.splitlines() if ln.strip()]
    return [r for r in rows if r["name"].startswith(prefix + "_")]


def _sacct_settled(prefix: str, since: datetime, n_min: int, timeout: float = 60) -> list[dict]:
    """Accounting reaches slurmdbd asynchronously: wait until every job has a final state."""
    end = time.monotonic() + timeout
    while True:
        rows = _sacct(prefix, since)
        final = all(r["state"].split()[0] in ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT") and r["comment"]
                    for r in rows)
        if (len(rows) >= n_min and final) or time.monotonic() > end:
            return rows
        time.sleep(1)


def _squeue(prefix: str) -> list[dict]:
    out = subprocess.run(["squeue", "-h", "-o", "%i|%j|%T|%k"], capture_output=True, text=True).stdout
    rows = [dict(zip(["id", "name", "state", "comment"], ln.split("|", 3))) for ln in out.splitlines() if ln]
    return [r for r in rows if r["name"].startswith(prefix + "_")]


def _job_stats(text: str) -> Counter:
    """Per-rule job counts from Snakemake's 'Job stats' table (first occurrence)."""
    m = re.search(r"Job stats:\njob\s+count\n-+\s+-+\n(.*?)\ntotal", text, re.S)
    assert m, text[-3000:]
    return Counter({ln.split()[0]: int(ln.split()[1]) for ln in m.group(1).splitlines() if ln.strip()})


def _dry_run(workdir: Path, config: Path, *args: str, profiles: bool = True) -> subprocess.CompletedProcess:
    prof = ["--profile", str(PROFILE)] if profiles else ["--workflow-profile", "none"]
    cmd = [snakemake_bin(), *prof, "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(config), "-n", *args]
    return subprocess.run(cmd, cwd=workdir, env=_env(), capture_output=True, text=True, timeout=900)


def _stray_temp_files(workdir: Path) -> list[str]:
    # gibench.io writes "<dir>/.<name>.<random>.tmp" and renames it over the target
    return [str(p) for p in (workdir / "results").rglob("*.tmp")]


# ---------------------------------------------------------------- end-to-end on Slurm

@pytest.fixture(scope="module")
def micro_run(slurm_cluster, tmp_path_factory):
    """The micro study through `snakemake --profile slurm` (once for this module)."""
    wd = tmp_path_factory.mktemp("slurm_micro")
    cfg = write_config(wd, SLURM_MICRO)
    expected = _job_stats(_dry_run(wd, cfg).stdout)
    prefix = "gbt" + uuid.uuid4().hex[:8]
    since = datetime.now() - timedelta(seconds=5)
    rc, log = run_slurm(wd, cfg, prefix)
    assert rc == 0, log[-6000:]
    return {"workdir": wd, "config": cfg, "prefix": prefix, "since": since, "log": log, "expected": expected}


def test_micro_study_runs_through_slurm(micro_run):
    wd = micro_run["workdir"]
    # every target is there and up to date: a second dry run has nothing to do
    again = _dry_run(wd, micro_run["config"])
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
    se = "selective_encryption"
    for table in ("table2", "table4", "table5", "table6"):
        assert (wd / f"results/tables/{se}/{table}.md").stat().st_size > 0
    attack = wd / f"results/attacks/{se}/cifar100/lenet/s000/grad/r0.500/ig/rep0.safetensors"
    rec = io.read_record(attack)
    assert rec["rule"] == "attack" and rec["wildcards"]["ratio"] == "r0.500"
    tensors, _ = io.load_tensors(attack)
    assert tensors, "attack artifact holds no tensors"
    assert not _stray_temp_files(wd)


def test_sacct_lists_the_jobs_and_gpu_rules_hold_a_gpu(micro_run):
    expected: Counter = micro_run["expected"]
    rows = _sacct_settled(micro_run["prefix"], micro_run["since"], n_min=1)
    assert rows, "sacct lists no job of the run"
    assert all(r["state"] == "COMPLETED" for r in rows), rows
    assert {r["account"] for r in rows} == {"gibench"} and {r["partition"] for r in rows} == {"gibench"}
    per_rule = Counter()
    for r in rows:
        m = re.match(r"rule_([a-z0-9_]+?)_wildcards_", r["comment"])
        if m:                               # a single job: one rule, its wildcards
            per_rule[m.group(1)] += 1
            gpu = m.group(1) in GPU_RULES
        else:                               # a group job: "rule_<group>_<rules...>"
            assert r["comment"].startswith(("rule_prep", "rule_masks", "rule_evaluate")), r
            gpu = False
        for tres in ("alloc", "req"):
            assert ("gres/gpu=1" in r[tres]) == gpu, (r["comment"], r[tres])
    # one submission per GPU job, as many as the dry run planned
    for rule in GPU_RULES:
        assert per_rule[rule] == expected[rule] > 0, (rule, per_rule, expected)
    # the small CPU rules were bundled: fewer submissions than jobs
    n_small = sum(n for rule, n in expected.items() if rule not in GPU_RULES | {"all"})
    n_groups = sum(1 for r in rows if not re.match(r"rule_[a-z0-9_]+?_wildcards_", r["comment"]))
    assert 0 < n_groups < n_small, (n_groups, n_small)
    assert len(rows) == n_groups + sum(per_rule.values())


def test_cancelled_job_is_resubmitted_and_leaves_no_partial_artifact(micro_run):
    """scancel a running attack job: the profile's retries resubmit it, the run completes."""
    wd = micro_run["workdir"]
    target = "results/attacks/selective_encryption/cifar100/lenet/s000/grad/r0.500/ig/rep0.safetensors"
    # a longer attack (other params re-run the job) so that it is cancelled while computing
    cfg = copy.deepcopy(SLURM_MICRO)
    cfg["studies"]["selective_encryption"]["attacks"]["ig"]["params"]["iterations"] = 3000
    cfg.update(resources_dir=str(ROOT / "resources"), hub_dir=str(wd / "hub"))  # as write_config
    config = wd / "config_fault.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    prefix = "gbf" + uuid.uuid4().hex[:8]
    since = datetime.now() - timedelta(seconds=5)
    state = {"cancelled": None}

    def cancel_once(_proc):
        if state["cancelled"] is not None:
            return
        running = [j for j in _squeue(prefix) if j["state"] == "RUNNING" and j["comment"].startswith("rule_attack")]
        if not running:
            return
        job = running[0]
        logs = list((wd / ".snakemake" / "slurm_logs").rglob(f"{job['id']}.log"))
        # cancel while the attack computes: its script reports "[gibench hh:mm:ss slurm JOBID] attack
        # ig .../rep0: iteration k, ..." in the job's Slurm log
        if logs and re.search(r"\[gibench [0-9:]+(?: slurm \d+)?\] attack ig \S+: iteration",
                              logs[0].read_text(errors="replace")):
            subprocess.run(["scancel", job["id"]], check=True)
            state["cancelled"] = job["id"]

    rc, log = run_slurm(wd, config, prefix, "--forcerun", "attack", "--", target, on_running=cancel_once)
    assert state["cancelled"], f"the attack job was never seen running:\n{log[-4000:]}"
    assert rc == 0, log[-6000:]
    rows = _sacct_settled(prefix, since, n_min=2)
    attack_jobs = [r for r in rows if r["comment"].startswith("rule_attack_wildcards_")]
    states = sorted(r["state"].split()[0] for r in attack_jobs)
    assert states == ["CANCELLED", "COMPLETED"], attack_jobs
    assert state["cancelled"] in {r["id"] for r in attack_jobs if r["state"].startswith("CANCELLED")}
    # the artifact is the complete output of the resubmitted job, with its record
    rec = io.read_record(wd / target)
    assert rec["rule"] == "attack"
    assert rec["rule_params"]["attack"]["params"]["iterations"] == 3000, rec["rule_params"]
    tensors, _ = io.load_tensors(wd / target)
    assert tensors
    assert not _stray_temp_files(wd)
    incomplete = wd / ".snakemake" / "incomplete"
    assert not incomplete.exists() or not any(incomplete.iterdir())


# ---------------------------------------------------------------- profile checks (dry runs)

def test_profiles_give_gpu_rules_a_gpu_and_unknown_rules_are_harmless(tmp_path):
    """Dry run with both profiles: GPU rules ask for gpu=1, others for none; a rule named in
    the profiles that the workflow lacks (here a synthetic one) breaks nothing; the groups
    are accepted (Snakemake rejects a group that a job leaves and re-enters)."""
    prof = yaml.safe_load(WORKFLOW_PROFILE.read_text())
    prof["set-resources"]["no_such_rule_xyz"] = {"gpu": 1}
    prof["groups"]["no_such_rule_xyz"] = "masks"
    wf = tmp_path / "wfprofile"
    wf.mkdir()
    (wf / "config.yaml").write_text(yaml.safe_dump(prof))
    cfg = write_config(tmp_path, SLURM_MICRO)
    proc = _dry_run(tmp_path, cfg, "--workflow-profile", str(wf))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Error in group" not in proc.stdout + proc.stderr
    jobs = re.findall(r"\n\s*(?:local)?rule (\w+):\n(.*?)\n\s*resources: ([^\n]*)", proc.stdout, re.S)
    assert GPU_RULES <= {rule for rule, _, _ in jobs}, jobs
    gpu_rules = {r for r, spec in prof["set-resources"].items() if spec.get("gpu")}
    assert GPU_RULES <= gpu_rules
    for rule, _, res in jobs:
        assert ("gpu=1" in res.split(", ")) == (rule in gpu_rules), (rule, res)
        assert "slurm_account=gibench" in res and "slurm_partition=gibench" in res, (rule, res)


def test_download_rules_are_localrules():
    """Compute nodes may lack internet: every rule that downloads is a localrule."""
    text = "\n".join(p.read_text() for p in sorted((ROOT / "rules").glob("*.smk")))
    rules = set(re.findall(r"^\s*rule (\w+):", text, re.M))
    local = set()
    for block in re.findall(r"^localrules:\n((?:[ \t]+\w+,?[ \t]*\n?)+)", text, re.M):
        local |= set(re.findall(r"\w+", block))
    downloads = {r for r in rules if "download" in r}
    assert downloads, "no download rule found"
    assert downloads <= local, f"download rules that are not localrules: {sorted(downloads - local)}"
