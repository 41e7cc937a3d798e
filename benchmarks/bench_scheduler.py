"""Snakemake's scheduler loop with and without gibench's fix (issue 23; gibench.pipeline.scheduler_fix).

A synthetic workflow with the shape that exposes it -- many ready jobs that each read a few
input files, jobs that take a while -- is run twice in fresh temporary folders, interleaved:
``unpatched`` (plain Snakemake, its default ``--max-jobs-per-timespan 100/1s``) and ``patched``
(the Snakefile applies ``scheduler_fix.apply()`` as gibench's does).  Each job is ``sleep``, so
the CPU measured is the Snakemake process's own (user + sys of the run, the sleeps cost ~0).
Also counted: scheduler passes (calls of ``JobScheduler.job_selector``), written by the
workflow's ``onsuccess``.  Same jobs, same outputs; only the loop's idle wake-ups differ.

``python benchmarks/run.py scheduler`` writes ``benchmarks/results/scheduler.json``;
``GIBENCH_BENCH_SCHED="jobs=200,sleep=0.5,inputs=20,cores=2"`` changes the workflow.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SNAKEFILE = '''
import json
from snakemake.scheduling.job_scheduler import JobScheduler
if {patched}:
    from gibench.pipeline import scheduler_fix
    assert scheduler_fix.apply()
_passes = [0]
_select = JobScheduler.job_selector
def _counted(self, jobs):
    _passes[0] += 1
    return _select(self, jobs)
JobScheduler.job_selector = _counted

rule all:
    input: expand("out/{{i}}.txt", i=range({jobs}))

rule work:
    input: expand("in/{{j}}.txt", j=range({inputs}))
    output: "out/{{i}}.txt"
    shell: "sleep {sleep}; echo {{wildcards.i}} > {{output}}"

onsuccess:
    open("passes.json", "w").write(json.dumps(_passes[0]))
'''


def _settings() -> dict:
    s = {"jobs": 200, "sleep": 0.5, "inputs": 20, "cores": 2}
    for item in filter(None, os.environ.get("GIBENCH_BENCH_SCHED", "").split(",")):
        k, v = item.split("=")
        s[k] = type(s[k])(v)
    return s


def _snakemake() -> str:
    for exe in (ROOT / ".venv" / "bin" / "snakemake", Path(sys.executable).parent / "snakemake"):
        if exe.exists():
            return str(exe)
    return "snakemake"


def run_one(patched: bool, s: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="sched_") as wd:
        w = Path(wd)
        (w / "in").mkdir()
        for j in range(s["inputs"]):
            (w / "in" / f"{j}.txt").write_text(f"{j}\n")
        (w / "Snakefile").write_text(SNAKEFILE.format(patched=patched, **s))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        proc = subprocess.run([_snakemake(), "--cores", str(s["cores"]), "--quiet", "all"], cwd=w, env=env,
                              capture_output=True, text=True)
        wall = time.time() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"snakemake failed ({'patched' if patched else 'unpatched'}):\n{proc.stderr[-2000:]}")
        done = len(list((w / "out").glob("*.txt")))
        return {"wall_s": round(wall, 2),
                "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
                "scheduler_passes": int((w / "passes.json").read_text()),
                "jobs_done": done}


def run() -> dict:
    s = _settings()
    old = run_one(False, s)
    new = run_one(True, s)
    ideal = s["jobs"] * s["sleep"] / s["cores"]
    return {"workflow": s, "ideal_wall_s": round(ideal, 1), "unpatched": old, "patched": new,
            "cpu_ratio_unpatched_over_patched": round(old["cpu_s"] / max(new["cpu_s"], 1e-9), 2),
            "passes_ratio": round(old["scheduler_passes"] / max(new["scheduler_passes"], 1), 1)}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
