"""Job start-up with and without warm mode (issue 23; gibench.pipeline.warm).

A mini workflow of cheap real jobs -- the micro selective-encryption case with 30 victims, asked
for its 30 gradients (1 data + 1 model + 30 gradient jobs) -- runs in fresh temporary folders
with ``GIBENCH_WARM=0`` (every job a fresh ``python``: start-up + ``import torch``) and
``GIBENCH_WARM=1`` (jobs forked from a server started by the first job, in a fresh socket
directory, so the server's own start is paid and counted).  Interleaved, ``GIBENCH_BENCH_STARTUP_REPS``
times (default 1).

Measured: wall seconds of the whole ``snakemake`` run, and CPU seconds (user + sys):
``snakemake_tree_cpu_s`` is ``RUSAGE_CHILDREN`` around the run (Snakemake, its job processes, the
thin warm clients); the detached server is not in that tree, so for warm runs ``server_cpu_s``
adds the server's own and its reaped children's CPU read from ``/proc/<pid>/stat`` (utime, stime,
cutime, cstime) after the run, and ``total_cpu_s`` is the sum.  ``records_cpu_s`` sums the jobs'
run records (``process_cpu_s``: a cold job's includes its imports, a warm child's starts at the
fork) as a cross-check.  Artifacts of both modes are compared byte for byte.

``python benchmarks/run.py startup`` writes ``benchmarks/results/startup.json``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

N = 30


def _config(wd: Path, hub: Path) -> Path:
    from workflow_helpers import MICRO, write_config

    cfg = copy.deepcopy(MICRO)
    cfg["datasets"]["cifar100"]["victims"] = N
    cfg["studies"]["selective_encryption"]["victims"] = N
    return write_config(wd, {**cfg, "hub_dir": str(hub)})


def _targets() -> list[str]:
    return [f"results/gradients/selective_encryption/cifar100/lenet/s{i:03d}.safetensors" for i in range(N)]


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def _run(tmp: Path, mode: str, rep: int) -> dict:
    from workflow_helpers import snakemake_bin, snakemake_env

    wd = tmp / f"warm{mode}_{rep}"
    wd.mkdir()
    sockdir = Path(tempfile.mkdtemp(prefix="gwb", dir="/tmp"))
    env = snakemake_env()
    env.pop("SLURM_JOB_ID", None)
    env.update(GIBENCH_WARM=mode, GIBENCH_WARM_DIR=str(sockdir), GIBENCH_WARM_IDLE="60")
    cmd = [snakemake_bin(), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(wd),
           "--configfile", str(_config(wd, tmp / "hub")), "--cores", "2", *_targets()]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake failed:\n{proc.stderr[-3000:]}")
    tree = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = {"wall_s": round(wall, 2), "snakemake_tree_cpu_s": round(tree, 2)}
    server_cpu = 0.0
    pids = [int(m) for log in sockdir.glob("*.log") for m in re.findall(r"pid (\d+)\] serving", log.read_text())]
    for pid in pids:
        server_cpu += _proc_cpu(pid)
        os.kill(pid, signal.SIGTERM)         # the server this run started; done with it
    out.update(servers=len(pids), server_cpu_s=round(server_cpu, 2), total_cpu_s=round(tree + server_cpu, 2))
    records = [json.loads(p.read_text()) for p in (wd / "logs").rglob("*.json")]
    records = [r for r in records if "process_cpu_s" in r]
    out.update(jobs=len(records), records_cpu_s=round(sum(r["process_cpu_s"] for r in records), 2),
               warm_jobs=sum(bool(r.get("warm")) for r in records))
    out["digests"] = {str(p.relative_to(wd)): hashlib.sha256(p.read_bytes()).hexdigest()
                      for p in sorted((wd / "results").rglob("*")) if p.is_file()}
    shutil.rmtree(sockdir, ignore_errors=True)
    return out


def run() -> dict:
    reps = int(os.environ.get("GIBENCH_BENCH_STARTUP_REPS", "1"))
    tmp = Path(tempfile.mkdtemp(prefix="gibench-bench-startup-"))
    try:
        runs = {"cold": [], "warm": []}
        for rep in range(reps):
            runs["cold"].append(_run(tmp, "0", rep))
            runs["warm"].append(_run(tmp, "1", rep))
        digests = [r.pop("digests") for rs in runs.values() for r in rs]
        best = {k: min(rs, key=lambda r: r["wall_s"]) for k, rs in runs.items()}
        return {
            "workflow": f"micro selective_encryption, {N} victims: 1 data + 1 model + {N} gradient jobs, --cores 2",
            "runs": runs,
            "artifacts_identical": all(d == digests[0] for d in digests),
            "artifacts": len(digests[0]),
            "wall_speedup": round(best["cold"]["wall_s"] / best["warm"]["wall_s"], 2),
            "cpu_ratio_warm_over_cold": round(best["warm"]["total_cpu_s"] / best["cold"]["total_cpu_s"], 3),
            "note": "cold total_cpu_s = snakemake tree; warm = snakemake tree (thin clients) + server "
                    "(preload + forked jobs, from /proc). Machine shared: 2 cores, other work running.",
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
