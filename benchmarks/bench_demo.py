"""The demo itself (issue 23): wall time, CPU time by rule, the start-up share, old vs new.

``make demo`` (``snakemake --cores 2`` on the embedded default config) is run in a fresh clone
of each tree -- ``new`` (this checkout's HEAD) and, when ``GIBENCH_OLD_TREE`` names another
checkout, ``old`` (its HEAD) -- one after the other in one invocation, on the same machine.
Each clone uses this checkout's ``.venv`` (the Snakefile puts the clone's own ``src`` first on
``PYTHONPATH``; every run record names the ``gibench_path`` it imported).  Measured per tree:

* ``wall_seconds``: the whole ``snakemake`` run, DAG build included;
* ``cpu_seconds``: user + sys of every process the run waited for (``RUSAGE_CHILDREN``), plus
  the CPU of jobs run by a warm worker (:mod:`gibench.pipeline.warm`, whose forked job processes
  are not children of the run: their run records carry ``warm: true`` and ``process_cpu_s``; the
  warm server's own start-up is not in either part); both parts are reported;
* per rule: jobs, the sum of Snakemake's ``benchmark:`` wall seconds (``s``: the whole job,
  process start included) and of the jobs' own ``seconds`` (the runner's timer around the job
  function, from the run record in the job's log), and their difference per job: the start-up
  (interpreter, ``import torch``, Snakemake's script preamble);
* ``startup_share``: 1 - in-job seconds / benchmark seconds over every job with both files;
* ``floor_seconds``: the in-job seconds of all jobs divided by the cores -- no schedule of the
  same jobs on this many cores can finish sooner (the in-job work itself is what the tables
  need);
* ``same_outputs``: the files under ``results/tables``, ``results/claims`` and ``results/figures``
  (``*.prov.json`` left out: they name the commit) that differ between the two trees, byte for byte.

Slow (two demos, about 20 minutes each here): run only when named,
``GIBENCH_OLD_TREE=/path/to/old python benchmarks/run.py demo`` -> ``benchmarks/results/demo.json``.
Timings need a quiet machine; ``GIBENCH_BENCH_DEMO_CORES`` (default 2) sets ``--cores``.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: run only when named (``benchmarks/run.py demo``): it takes two demos' time
EXPLICIT_ONLY = True
TARGET_DEMO_SECONDS = 600.0
COMPARED = ("results/tables", "results/claims", "results/figures")
_BENCH = ".benchmark.tsv"


def _head(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _clone(tree: Path, dest: Path) -> Path:
    """A fresh clone of ``tree``'s HEAD (what a newcomer gets), with this checkout's venv."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(tree), str(dest)], check=True)
    venv = ROOT / ".venv"
    if venv.exists():
        (dest / ".venv").symlink_to(venv)
    shared = ROOT.parent / "shared"
    if shared.exists() and not (dest.parent / "shared").exists():
        (dest.parent / "shared").symlink_to(shared)
    return dest


def _record(bench: Path) -> dict | None:
    log = bench.with_name(bench.name[: -len(_BENCH)] + ".json")
    try:
        return json.loads(log.read_text())
    except (OSError, ValueError):
        return None


def job_times(workdir: Path) -> dict:
    """Per rule: jobs, benchmark seconds, in-job seconds, CPU seconds of the run records."""
    rules: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "benchmark_seconds": 0.0,
                                                  "job_seconds": 0.0, "record_cpu_seconds": 0.0})
    for bench in sorted((workdir / "logs").rglob("*" + _BENCH)):
        rows = list(csv.DictReader(bench.open(), delimiter="\t"))
        rec = _record(bench)
        if not rows or rec is None:
            continue
        r = rules[rec.get("rule") or bench.relative_to(workdir / "logs").parts[0]]
        r["jobs"] += 1
        r["benchmark_seconds"] += float(rows[-1]["s"])
        # the runner's timer (a job's own `seconds` fact is renamed job_seconds in newer records)
        r["job_seconds"] += float(rec.get("seconds", 0.0))
        # the CPU of a job run by a warm worker (its whole forked process): not a child of the run
        if rec.get("warm"):
            r["record_cpu_seconds"] += float(rec.get("process_cpu_s", 0.0) or 0.0)
    for r in rules.values():
        r["startup_seconds_per_job"] = round((r["benchmark_seconds"] - r["job_seconds"]) / r["jobs"], 3)
        for k in ("benchmark_seconds", "job_seconds", "record_cpu_seconds"):
            r[k] = round(r[k], 2)
    return dict(sorted(rules.items(), key=lambda kv: -kv[1]["benchmark_seconds"]))


def _digests(workdir: Path) -> dict[str, str]:
    out = {}
    for top in COMPARED:
        for p in sorted((workdir / top).rglob("*")):
            if p.is_file() and not p.name.endswith(".prov.json"):
                out[str(p.relative_to(workdir))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_demo(tree: Path, cores: int) -> tuple[dict, dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="gibench-bench-demo-") as tmp:
        work = _clone(tree, Path(tmp) / "gibench")
        env = dict(os.environ, PATH=f"{work / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([str(work / ".venv" / "bin" / "snakemake"), "--cores", str(cores)],
                              cwd=work, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        children_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        rules = job_times(work)
        jobs = sum(r["jobs"] for r in rules.values())
        bench_s = sum(r["benchmark_seconds"] for r in rules.values())
        job_s = sum(r["job_seconds"] for r in rules.values())
        warm_cpu = warm_job_cpu(work)
        result = {
            "commit": _head(work), "returncode": proc.returncode, "cores": cores,
            "wall_seconds": round(wall, 1),
            "cpu_seconds": round(children_cpu + warm_cpu, 1),
            "cpu_seconds_children": round(children_cpu, 1),
            "cpu_seconds_warm_jobs": round(warm_cpu, 1),
            "jobs_timed": jobs,
            "benchmark_seconds": round(bench_s, 1),
            "job_seconds": round(job_s, 1),
            "startup_share": round(1 - job_s / bench_s, 3) if bench_s else None,
            "floor_seconds": round(job_s / cores, 1),
            "meets_target": proc.returncode == 0 and wall <= TARGET_DEMO_SECONDS,
            "rules": rules,
        }
        if proc.returncode:
            result["stderr_tail"] = proc.stderr[-3000:]
        digests = _digests(work)
        shutil.rmtree(work / ".snakemake", ignore_errors=True)
    return result, digests


def warm_job_cpu(workdir: Path) -> float:
    """CPU seconds of every job a warm worker ran (run records with ``warm: true``, any rule)."""
    total = 0.0
    for log in (workdir / "logs").rglob("*.json"):
        try:
            rec = json.loads(log.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("warm"):
            total += float(rec.get("process_cpu_s", 0.0) or 0.0)
    return total


def run() -> dict:
    cores = int(os.environ.get("GIBENCH_BENCH_DEMO_CORES", "2"))
    trees = {"new": ROOT}
    if os.environ.get("GIBENCH_OLD_TREE"):
        trees = {"old": Path(os.environ["GIBENCH_OLD_TREE"]).resolve(), "new": ROOT}
    out: dict = {"command": f"snakemake --cores {cores} (make demo), fresh clone of each tree's HEAD",
                 "target_wall_seconds": TARGET_DEMO_SECONDS}
    digests = {}
    for name, tree in trees.items():
        print(f"demo on {name} ({tree}) ...", flush=True)
        out[name], digests[name] = run_demo(tree, cores)
    if len(digests) == 2:
        old, new = digests["old"], digests["new"]
        out["same_outputs"] = {
            "compared": sorted(COMPARED), "files_old": len(old), "files_new": len(new),
            "differ": sorted(k for k in old.keys() & new.keys() if old[k] != new[k]),
            "only_old": sorted(old.keys() - new.keys()), "only_new": sorted(new.keys() - old.keys()),
        }
        out["speedup"] = round(out["old"]["wall_seconds"] / out["new"]["wall_seconds"], 2)
    return out
