"""The GPU slice (issue 22 item 4): checks of the CUDA path and a paper-scale slice of a few claims.

``scripts/gpu_check.sh`` drives it on a CUDA machine:

1. ``python -m gibench.gpu_slice preflight``: device placement (a LeNet, its client gradient and
   20 IG iterations on ``cuda``; every tensor checked to be there);
2. one attack per family end to end through the pipeline on ``cuda`` (``config/gpu_check.yaml``,
   its own working directory), every job's log checked to name device ``cuda``;
3. the benchmarks' GPU figures (``benchmarks/run.py --device cuda``);
4. a paper-scale slice of a few claims (``config/gpu_slice.yaml``, its own working directory),
   whose ``rule all`` writes its claims reports;
5. ``python -m gibench.gpu_slice collect``: everything above in ``results/gpu/gpu_check.json``,
   with the device named by ``torch.cuda.get_device_name``.

``collect`` refuses to write without CUDA: the claims reports read that file and say
"GPU slice: not run" when it is absent, so no GPU figure can come from anywhere else.
``--dry`` (CPU) runs the preflight on the CPU and builds the two DAGs, and writes nothing under
``results/gpu``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping

GPU_DIR = Path("results") / "gpu"
CHECK_FILE = "gpu_check.json"
CHECK_RUN = "check"          # <gpu dir>/check: the per-family pipeline run's working directory
SLICE_RUN = "slice"          # <gpu dir>/slice: the paper-scale slice's working directory
SLICE_CLAIMS = "slice/results/claims"   # <gpu dir>/slice/results/claims/<study>.csv: the slice's claims reports


# ---------------------------------------------------------------- reading (the claims report)

def load_check(gpu_dir: str | Path = GPU_DIR) -> dict | None:
    """The GPU slice's summary, or None when it has not run (or the file is not a summary)."""
    p = Path(gpu_dir) / CHECK_FILE
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and d.get("device_name") else None


def state(gpu_dir: str | Path = GPU_DIR) -> str:
    """One line: what the claims rule depends on (it re-runs when a GPU slice appears)."""
    d = load_check(gpu_dir)
    return "not run" if d is None else f"{d['device_name']} {d.get('date', '')}"


def report_notes(gpu_dir: str | Path, study: str) -> list[str]:
    """The claims report's lines on the GPU slice: "not run" when its file is absent, else the
    device, the checks and the slice's verdicts for ``study`` (read from the files it wrote)."""
    d = load_check(gpu_dir)
    where = Path(gpu_dir) / CHECK_FILE
    if d is None:
        return [f"GPU slice: not run ({where} is absent; scripts/gpu_check.sh on a CUDA machine makes it). "
                "Every number in this report was computed on the CPU."]
    checks = d.get("checks") or {}
    ok = sum(1 for c in checks.values() if c.get("ok"))
    lines = [f"GPU slice: ran on {d['device_name']} ({d.get('date', '?')}, torch {d.get('torch', '?')}); "
             f"{ok} of {len(checks)} CUDA checks passed ({where})."]
    for c in (d.get("slice_claims") or {}).get(study, []):
        lines.append(f"GPU slice ({d['device_name']}): {c.get('claim')}"
                     + (f"[{c['variant']}]" if c.get("variant") else "")
                     + f": {c.get('verdict')}; ours {c.get('ours') or '–'}; ran at {c.get('ran_at') or '?'}")
    return lines


# ---------------------------------------------------------------- preflight (device placement)

def preflight(dry: bool = False, iterations: int = 20) -> dict:
    """A LeNet, its client gradient and ``iterations`` IG steps on ``cuda`` (dry: the CPU), with
    each tensor's device checked; raises when CUDA is needed and absent."""
    import torch

    from .attacks import ATTACKS
    from .gradient import client_gradient
    from .models import build_model

    if not dry and not torch.cuda.is_available():
        raise SystemExit("gpu_check: torch.cuda.is_available() is False on this machine (use --dry on a CPU)")
    device = torch.device("cpu" if dry else "cuda")
    t0 = time.time()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((1, 3, 32, 32), generator=gen).to(device)
    y = torch.tensor([3], device=device)
    net = build_model("lenet", 100, (3, 32, 32), 0, init="torch_default").to(device)
    grads = client_gradient(net, x, y)
    res = ATTACKS.get("ig")(net, grads, None, input_shape=(1, 3, 32, 32), mean=[0.5] * 3, std=[0.5] * 3,
                            labels=y, cfg={"iterations": iterations, "tv": 0.0}, seed=0, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    where = {"model": {p.device.type for p in net.parameters()}, "gradient": {g.device.type for g in grads.values()},
             "reconstruction": {res.x.device.type}}
    bad = {k: sorted(v) for k, v in where.items() if v != {device.type}}
    out = {"device": str(device), "ok": not bad and res.status == "ok", "iterations": iterations,
           "ig_status": res.status, "seconds": round(time.time() - t0, 3),
           "placement": {k: sorted(v) for k, v in where.items()}}
    if bad:
        out["misplaced"] = bad
    if device.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(device)
    return out


# ---------------------------------------------------------------- collect (the summary)

def job_devices(run_dir: Path) -> dict[str, dict[str, int]]:
    """rule -> {device: count} over the job logs of a pipeline run (logs/<rule>/.../*.json)."""
    out: dict[str, dict[str, int]] = {}
    for f in sorted((run_dir / "logs").rglob("*.json")):
        try:
            d = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(d, dict) or "device" not in d:
            continue
        rule = str(d.get("rule") or f.relative_to(run_dir / "logs").parts[0])
        dev = str(d["device"]).split(":")[0]
        out.setdefault(rule, {}).setdefault(dev, 0)
        out[rule][dev] += 1
    return out


def slice_claims(claims_dir: Path) -> dict[str, list[dict]]:
    """study -> the slice's verdicts that are not 'not run' (its claims CSVs)."""
    import csv

    out: dict[str, list[dict]] = {}
    for p in sorted(claims_dir.glob("*.csv")):
        with open(p, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r.get("reason_kind") not in ("not run", "not encoded")]
        out[p.stem] = [{k: r.get(k, "") for k in ("claim", "variant", "verdict", "reason", "ours", "ran_at")}
                       for r in rows]
    return out


def collect(gpu_dir: str | Path, preflight_file: str | Path, bench_dir: str | Path | None,
            steps: Mapping[str, int]) -> dict:
    """Write ``<gpu_dir>/gpu_check.json`` from what the script's steps left (atomic); CUDA required."""
    import torch

    from . import io

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check collect: no CUDA device here; a GPU slice summary is only written on one")
    gpu_dir = Path(gpu_dir)
    pre = json.loads(Path(preflight_file).read_text()) if Path(preflight_file).exists() else {}
    checks: dict[str, dict] = {"placement": {"ok": bool(pre.get("ok")), **pre}}
    for name, sub in (("families", CHECK_RUN), ("slice", SLICE_RUN)):
        devs = job_devices(gpu_dir / sub)
        compute = {r: d for r, d in devs.items() if r not in ("claims",)}
        on_cpu = {r: d.get("cpu", 0) for r, d in compute.items() if d.get("cpu")}
        checks[name] = {"ok": steps.get(name, 1) == 0 and bool(compute) and not on_cpu,
                        "exit_status": steps.get(name), "jobs_by_rule_and_device": devs,
                        **({"jobs_on_cpu": on_cpu} if on_cpu else {})}
    bench: dict[str, Any] = {}
    if bench_dir and Path(bench_dir).is_dir():
        for p in sorted(Path(bench_dir).glob("*.json")):
            try:
                bench[p.stem] = json.loads(p.read_text())
            except ValueError:
                continue
    checks["benchmarks"] = {"ok": steps.get("benchmarks", 1) == 0 and bool(bench),
                            "exit_status": steps.get("benchmarks"), "names": sorted(bench)}
    summary = {"device_name": torch.cuda.get_device_name(0), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "torch": torch.__version__, "cuda": torch.version.cuda, "checks": checks, "benchmarks": bench,
               "slice_claims": slice_claims(gpu_dir / SLICE_CLAIMS)}
    io.write_json(gpu_dir / CHECK_FILE, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gibench.gpu_slice", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("preflight", help="device placement: a LeNet, its gradient and IG steps on cuda")
    a.add_argument("--dry", action="store_true", help="on the CPU (no CUDA needed); prints, writes nothing")
    a.add_argument("--out", default=None, help="write the result as JSON here")
    c = sub.add_parser("collect", help="write results/gpu/gpu_check.json (CUDA required)")
    c.add_argument("--gpu-dir", default=str(GPU_DIR))
    c.add_argument("--preflight", required=True)
    c.add_argument("--bench-dir", default=None)
    c.add_argument("--step", action="append", default=[], metavar="NAME=RC", help="exit status of a step")
    n = sub.add_parser("note", help="print the claims report's GPU-slice lines")
    n.add_argument("--gpu-dir", default=str(GPU_DIR))
    n.add_argument("--study", default="concealed_samples")
    args = p.parse_args(argv)
    if args.cmd == "preflight":
        res = preflight(dry=args.dry)
        text = json.dumps(res, indent=2, sort_keys=True)
        print(text)
        if args.out:
            from . import io

            io.write_text(args.out, text + "\n")
        return 0 if res["ok"] else 1
    if args.cmd == "collect":
        steps = {}
        for s in args.step:
            k, _, v = s.partition("=")
            steps[k] = int(v)
        res = collect(args.gpu_dir, args.preflight, args.bench_dir, steps)
        print(json.dumps({k: v.get("ok") for k, v in res["checks"].items()}, indent=2))
        return 0 if all(v.get("ok") for v in res["checks"].values()) else 1
    print("\n".join(report_notes(args.gpu_dir, args.study)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
