"""Dry run of every paper-scale study with the cluster profile (issue 7).

For each ``config/studies/<study>.yaml``: ``snakemake -n --profile slurm --configfile ...``
(the workflow profile profiles/default is loaded too, so per-rule GPU resources and the
groups are part of the DAG build) in a fresh temporary working directory -- a clean
checkout, nothing computed yet -- with the repository's bundled ``resources/``.

Reported per study: exit status, the job count and per-rule counts from Snakemake's "Job
stats", wall seconds and the CPU seconds of the snakemake process (user + sys of the child,
less sensitive to other load than the wall time), and a group error if Snakemake rejected a
group of profiles/default.  Target (issue 7): the full selective-encryption study's dry run
under 60 s.

``python benchmarks/bench_slurm_dryrun.py [study ...]`` prints the JSON;
``python benchmarks/run.py slurm_dryrun`` writes ``benchmarks/results/slurm_dryrun.json``.
"""
from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = {"selective_encryption": 60.0}


def _snakemake() -> str:
    exe = ROOT / ".venv" / "bin" / "snakemake"
    return str(exe) if exe.exists() else "snakemake"


def _job_stats(text: str) -> dict[str, int]:
    m = re.search(r"Job stats:\njob\s+count\n-+\s+-+\n(.*?)\ntotal\s+(\d+)", text, re.S)
    if not m:
        return {}
    stats = {ln.split()[0]: int(ln.split()[1]) for ln in m.group(1).splitlines() if ln.strip()}
    stats["total"] = int(m.group(2))
    return stats


def dry_run(study: str) -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "studies" / f"{study}.yaml").read_text())
    # resources_dir is relative to the working directory: point it at the repository's copy
    rd = Path(cfg.get("resources_dir", "resources"))
    cfg["resources_dir"] = str(rd if rd.is_absolute() else ROOT / rd)
    with tempfile.TemporaryDirectory(prefix=f"dryrun_{study}_") as wd:
        path = Path(wd) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        cmd = [_snakemake(), "-n", "--quiet", "rules", "--profile", str(ROOT / "slurm"),
               "--snakefile", str(ROOT / "Snakefile"), "--directory", wd, "--configfile", str(path)]
        env = dict(os.environ, PATH=str(ROOT / ".venv" / "bin") + os.pathsep + os.environ.get("PATH", ""))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = proc.stdout + proc.stderr
    stats = _job_stats(out)
    res = {"command": "snakemake -n --profile slurm --configfile " + f"config/studies/{study}.yaml",
           "returncode": proc.returncode, "jobs": stats.get("total"),
           "jobs_per_rule": {k: v for k, v in stats.items() if k != "total"},
           "wall_seconds": round(wall, 2),
           "cpu_seconds": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2)}
    if "Error in group" in out:
        res["group_error"] = out[out.index("Error in group"):][:600]
    if proc.returncode != 0:
        res["error"] = out[-1500:]
    if study in TARGET_SECONDS:
        res["target_wall_seconds"] = TARGET_SECONDS[study]
        res["meets_target"] = proc.returncode == 0 and wall < TARGET_SECONDS[study]
    return res


def run(studies: list[str] | None = None) -> dict:
    studies = studies or sorted(p.stem for p in (ROOT / "config" / "studies").glob("*.yaml"))
    return {study: dry_run(study) for study in studies}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1:] or None), indent=2))
