"""How long `make reproduce` takes on 2 cores: an estimate, with its arithmetic.

    python benchmarks/reproduce_estimate.py [--config config/reproduce.yaml]

The job counts come from `snakemake -n` of the config (computed here, in a temporary working
directory); the per-job CPU seconds from real jobs of that config run on this machine,
recorded with how each was measured in ``benchmarks/reproduce_costs.json`` (a measurement,
not a guess: see its ``method``).  Total CPU seconds / cores, plus the invocation's own DAG
build, is the estimate for an otherwise idle machine; the tail of the run (the last long jobs on
one core) is bounded by the longest single job.  Writes ``benchmarks/results/reproduce_estimate.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def dry_run_jobs(config: Path) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job `snakemake -n` lists for ``config`` (fresh working directory)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["snakemake", "-s", str(ROOT / "Snakefile"), "-d", tmp, "--configfile", str(config), "-n",
               "--config", f"resources_dir={ROOT / 'resources'}", f"hub_dir={ROOT / 'resources' / 'hub'}"]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    jobs, rule = [], None
    for line in proc.stdout.splitlines():
        m = re.match(r"\s*(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
            jobs.append((rule, {}))
            continue
        m = re.match(r"\s*wildcards: (.*)", line)
        if m and rule and jobs and not jobs[-1][1]:
            jobs[-1] = (rule, dict(kv.split("=", 1) for kv in m.group(1).split(", ")))
    return jobs


def kind(rule: str, wc: dict) -> str:
    """The cost class of a job (keys of reproduce_costs.json's ``per_job``)."""
    if rule == "attack":
        if wc.get("ratio") == "r1.000":       # everything encrypted: the attack returns at once (nothing_visible)
            return "attack:nothing_visible"
        return f"attack:{wc['attack']}:{wc['model'].split('@')[0]}"
    if rule == "sd_attack":
        pm = "cvb" in wc["defense"] or "precode" in wc["defense"]
        return f"sd_attack:{'privacy_module' if pm else 'plain'}"
    if rule == "cs_attack":
        return f"cs_attack:{wc['attack']}"
    if rule == "cs_gradient":
        return "cs_gradient:dcs2" if "dcs2" in wc["defense"] else "small"
    if rule == "significance":
        return f"significance:{wc['significance']}:{wc['model'].split('@')[0]}"
    if rule in ("evaluate", "gradient", "masks", "masks_any") and wc.get("model") == "gpt2":
        return f"{rule}:gpt2"
    if rule == "evaluate":
        return "evaluate"
    return "small"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "config" / "reproduce.yaml"))
    ap.add_argument("--costs", default=str(HERE / "reproduce_costs.json"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "reproduce_estimate.json"))
    args = ap.parse_args(argv)
    costs = json.loads(Path(args.costs).read_text())
    per_job = {k: float(v["cpu_seconds"]) for k, v in costs["per_job"].items()}
    t0 = time.time()
    jobs = dry_run_jobs(Path(args.config))
    dry_seconds = time.time() - t0
    counts = Counter(kind(r, wc) for r, wc in jobs)
    rules = Counter(r for r, _ in jobs)
    missing = sorted(k for k in counts if k not in per_job)
    lines, total = [], 0.0
    for k, n in sorted(counts.items(), key=lambda kv: -kv[1] * per_job.get(kv[0], 0.0)):
        c = per_job.get(k)
        if c is None:
            continue
        lines.append({"kind": k, "jobs": n, "cpu_seconds_per_job": c, "cpu_seconds": round(n * c, 1)})
        total += n * c
    dag = float(costs.get("dag_build_cpu_seconds", 0.0))
    minutes = (total / args.cores + dag) / 60
    longest = max((per_job[k] for k in counts if k in per_job), default=0.0)
    val = costs.get("validation") or {}
    factor = float(val.get("factor", 1.0))
    corrected = (factor * total / args.cores + dag) / 60
    out = {"config": os.path.relpath(args.config, ROOT), "cores": args.cores, "jobs": len(jobs),
           "jobs_by_rule": dict(sorted(rules.items())), "cost_lines": lines,
           "unmeasured_kinds": missing, "total_cpu_seconds": round(total, 1),
           "dag_build_cpu_seconds": dag,
           "estimate_minutes": round(minutes, 1),
           "validation": val, "estimate_minutes_validated": round(corrected, 1),
           "arithmetic": f"sum(jobs x CPU-s per job) = {total:.0f} CPU-s; / {args.cores} cores + {dag:.0f} s DAG build "
                         f"= {minutes:.1f} min (an idle machine; the longest single job, {longest:.0f} s, bounds "
                         f"the tail); x {factor} (the validation batch's measured/predicted) = {corrected:.1f} min",
           "measured_on": costs.get("machine"), "method": costs.get("method"),
           "dry_run_seconds": round(dry_seconds, 1), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(args.out)
    print(json.dumps({k: out[k] for k in ("jobs", "total_cpu_seconds", "estimate_minutes", "estimate_minutes_validated",
                                          "arithmetic",
                                          "unmeasured_kinds")}, indent=2))
    for ln in lines:
        print(f"  {ln['kind']:34s} {ln['jobs']:5d} x {ln['cpu_seconds_per_job']:7.1f} = {ln['cpu_seconds']:8.1f} CPU-s")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
