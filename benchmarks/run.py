"""Benchmark runner: `make bench` (or `python benchmarks/run.py [--device cuda] [--out DIR] [NAME ...]`).

Every `benchmarks/bench_<name>.py` exposes `run() -> dict`; its result is written, with the
machine description, to `benchmarks/results/<name>.json` (`--out`: another folder).  `--device`
is passed to the benchmarks whose `run` takes a `device` argument (ig, significance); the others
are recorded as skipped on a device other than the CPU, never run on the CPU in its place.  Speed and memory targets are
checked here and reported in the JSON, never asserted in tests.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version()}


def main(argv: list[str]) -> int:
    import argparse
    import inspect

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None, help="cpu or cuda, for the benchmarks that take a device")
    ap.add_argument("--out", default=None, help="folder of the JSON results (default: benchmarks/results)")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args(argv)
    # a benchmark that sets EXPLICIT_ONLY (bench_demo: two whole demos) runs only when named
    names = args.names or sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py")
                                 if "EXPLICIT_ONLY = True" not in p.read_text())
    out_dir = Path(args.out) if args.out else HERE / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in names:
        path = HERE / f"bench_{name}.py"
        if not path.exists():
            print(f"no benchmark {name!r} ({path} missing)", file=sys.stderr)
            failed += 1
            continue
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        print(f"== benchmark {name}", flush=True)
        t0 = time.time()
        result = {"benchmark": name, "machine": machine(),
                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        takes_device = "device" in inspect.signature(mod.run).parameters
        if args.device and args.device != "cpu" and not takes_device:
            result["status"] = f"skipped: bench_{name}.run takes no device (it would run on the CPU)"
        else:
            try:
                result["results"] = mod.run(device=args.device) if (args.device and takes_device) else mod.run()
                result["status"] = "ok"
            except Exception as e:  # report, keep going with the others
                result["status"] = f"failed: {type(e).__name__}: {e}"
                failed += 1
        result["seconds"] = round(time.time() - t0, 1)
        tmp = out_dir / f".{name}.json.tmp"
        tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
        tmp.replace(out_dir / f"{name}.json")
        print(json.dumps(result.get("results", result["status"]), indent=2, default=str)[:4000])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
