"""Fewer, larger jobs and a fast DAG (issue 23): old vs new side by side, from one run.

``old`` is another checkout of the project (the commit before this work), given by the
environment variable ``GIBENCH_OLD_TREE`` (e.g. ``git worktree add --detach ../old <commit>``);
``new`` is this checkout.  Measured, the two interleaved study by study on the same machine:

* the paper-scale dry run of every ``config/studies/*.yaml`` with both profiles
  (``snakemake -n --profile slurm``, the workflow profile loaded too; ``bench_slurm_dryrun``'s
  procedure: a fresh temporary working directory, the bundled resources): job count, per-rule
  counts, wall seconds and the snakemake process's CPU seconds (less sensitive to other load);
* every paper-scale dry run once more without ``--profile slurm`` (``no_slurm_profile``:
  ``snakemake -n --configfile config/studies/<study>.yaml``, the workflow profile only);
* in each dry run, the Job objects Snakemake built (``jobs_created``, per rule in
  ``jobs_created_per_rule``; candidates thrown away included) next to the DAG's jobs: the
  command line runs under tests/pipeline/dag_probe.py of *this* checkout (it wraps
  ``snakemake.cli.main``, counts ``Job.__init__`` calls and reads the finished DAG; the same
  wrapper for both trees);
* the job count of the embedded default (``config/config.yaml``, what ``make demo`` runs),
  from a dry run.  The demo itself is not run here (shared CPU);
* ``conditions``: what every snakemake start waits for outside its own work -- the seconds of
  ``scontrol show config`` and of importing the Slurm executor plugin (Snakemake imports it at
  every start, either profile, and it asks ``scontrol``): about 9 s where Slurm is installed but
  no controller answers, nothing on a cluster or where Slurm is absent.  Compare CPU seconds
  across machines; wall seconds include that wait.

Targets (issue 23): selective-encryption dry run <= 15 s with both profiles; the job count of
every paper-scale study down at least 3x.  Each checkout's Snakefile imports its own ``src``.

``GIBENCH_OLD_TREE=/path/to/old python benchmarks/run.py jobs`` writes
``benchmarks/results/jobs.json``; ``GIBENCH_BENCH_STUDIES=selective_encryption`` limits the studies.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_slurm_dryrun import _job_stats  # noqa: E402

TARGET_SE_SECONDS = 15.0
TARGET_JOB_FACTOR = 3.0


PROBE = ROOT / "tests" / "pipeline" / "dag_probe.py"


def _python() -> str:
    """The Python of the venv that has Snakemake (the probe runs ``snakemake.cli.main`` in it)."""
    for exe in (ROOT / ".venv" / "bin" / "python", Path(sys.executable)):
        if exe.exists():
            return str(exe)
    return "python3"


def dry_run(tree: Path, configfile: Path, profile: bool) -> dict:
    cfg = yaml.safe_load(configfile.read_text())
    rd = Path(cfg.get("resources_dir", "resources"))
    cfg["resources_dir"] = str(rd if rd.is_absolute() else tree / rd)
    with tempfile.TemporaryDirectory(prefix="dryrun_") as wd:
        path = Path(wd) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        probe = Path(wd) / "probe.json"
        cmd = [_python(), str(PROBE), "-n", "--quiet", "rules", "--snakefile", str(tree / "Snakefile"),
               "--directory", wd, "--configfile", str(path)]
        if profile:
            cmd[5:5] = ["--profile", str(tree / "slurm")]
        env = dict(os.environ, PYTHONPATH=str(tree / "src"), DAG_PROBE_OUT=str(probe), DAG_PROBE_PAIRS="0")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        built = json.loads(probe.read_text()) if probe.exists() else {}
    stats = _job_stats(proc.stdout + proc.stderr)
    res = {"returncode": proc.returncode, "jobs": stats.get("total"),
           "jobs_per_rule": {k: v for k, v in stats.items() if k != "total"},
           "wall_seconds": round(wall, 2),
           "cpu_seconds": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
           "jobs_created": sum(built.get("created", {}).values()) if built else None,
           "jobs_created_per_rule": dict(sorted(built.get("created", {}).items(), key=lambda kv: -kv[1]))}
    if proc.returncode != 0:
        res["error"] = (proc.stdout + proc.stderr)[-1500:]
    return res


def slurm_conditions() -> dict:
    """What every snakemake start here waits for outside the DAG build: Snakemake imports each
    installed executor plugin at start (either profile), and the Slurm plugin runs ``scontrol
    show config`` when imported.  Where no controller answers, that waits the config's
    MessageTimeout (about 9 s with the default); on a cluster it answers at once.  Measured
    once before the dry runs so that a reader knows which case the wall seconds include."""
    import shutil

    out: dict = {"scontrol": shutil.which("scontrol")}
    if out["scontrol"]:
        t0 = time.perf_counter()
        proc = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=120)
        out["scontrol_show_config_seconds"] = round(time.perf_counter() - t0, 2)
        out["controller_answers"] = proc.returncode == 0
    t0 = time.perf_counter()
    subprocess.run([_python(), "-c", "import snakemake_executor_plugin_slurm"], capture_output=True, timeout=120)
    out["slurm_plugin_import_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def run() -> dict:
    old = os.environ.get("GIBENCH_OLD_TREE")
    if not old:
        raise RuntimeError("set GIBENCH_OLD_TREE to a checkout of the old commit (git worktree add --detach DIR COMMIT)")
    trees = {"old": Path(old).resolve(), "new": ROOT}
    commits = {k: subprocess.run(["git", "-C", str(t), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip() for k, t in trees.items()}
    only = [s for s in os.environ.get("GIBENCH_BENCH_STUDIES", "").split(",") if s]
    studies = sorted(p.stem for p in (ROOT / "config" / "studies").glob("*.yaml") if not only or p.stem in only)
    out: dict = {"commits": commits, "dry_run_command": "snakemake -n --profile slurm --configfile config/studies/<study>.yaml",
                 "conditions": slurm_conditions(), "studies": {}, "demo": {}}
    for study in studies:
        r = {k: dry_run(t, t / "config" / "studies" / f"{study}.yaml", True) for k, t in trees.items()}
        if r["old"]["jobs"] and r["new"]["jobs"]:
            r["job_factor"] = round(r["old"]["jobs"] / r["new"]["jobs"], 2)
            r["meets_job_target"] = r["job_factor"] >= TARGET_JOB_FACTOR
        # also without --profile slurm (the workflow profile only): the plain dry run of the README
        r["no_slurm_profile"] = {k: dry_run(t, t / "config" / "studies" / f"{study}.yaml", False)
                                 for k, t in trees.items()}
        if study == "selective_encryption":
            r["target_wall_seconds"] = TARGET_SE_SECONDS
            r["meets_time_target"] = all(x["new"]["returncode"] == 0 and x["new"]["wall_seconds"] <= TARGET_SE_SECONDS
                                         for x in (r, r["no_slurm_profile"]))
        out["studies"][study] = r
    out["demo"] = {k: dry_run(t, t / "config" / "config.yaml", False) for k, t in trees.items()}
    out["demo"]["note"] = "job counts from a dry run of config/config.yaml; the demo itself was not run here"
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
