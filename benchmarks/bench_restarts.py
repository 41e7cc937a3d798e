"""Vectorised IG restarts (issue 23, item 1): instance-iterations per second against the
number of restarts run together, the current tree against an old commit side by side.

Case: the 88,648-parameter LeNet (100 classes, CIFAR-100 32x32), one bundled CIFAR-100 test
image, 30 % of gradient entries encrypted by a random mask, the paper's IG settings
(signed Adam, lr 0.1, TV 1e-4, masked cosine), one CPU thread.  For N = 1, 4, 16 restarts:

* ``sequential``: N calls of ``ATTACKS["ig"]``, one seed each (one restart per call, the
  one-instance path);
* ``vectorised``: one call of ``ATTACKS.entry("ig").many`` with the N seeds
  (``ig_many.inverting_gradients_many``: restarts batched with ``torch.func.vmap``; N = 1 takes
  the sequential path).

Instance-iterations per second = N x iterations / seconds; median of ``REPEATS``.  On the
CPU the seconds are the process's CPU seconds (one thread: its work, not the other jobs
sharing the cores; the wall seconds are reported beside them); on a GPU they are wall
seconds after a synchronise.  Start-up (Python, ``import torch``) is not in these figures:
it is paid once per job, see ``bench_pipeline.py``.  Target (issue 23): vectorised at 16
instances >= 2x the instance-iterations per second of one instance (sequential, N = 1).

Old vs new: with ``GIBENCH_OLD_TREE`` set to a checkout of the old commit (``git worktree
add --detach DIR COMMIT``) each repeat runs one worker process on the old tree's
``src/`` and one on this tree's, alternately (so drifts in machine load hit both); each
worker measures every N and variant once, sequential and vectorised interleaved.  Without
it only this tree is measured.  With a CUDA device the same figures are measured there too
(``device: cuda``).

``python benchmarks/bench_restarts.py`` prints the JSON; ``GIBENCH_OLD_TREE=DIR python
benchmarks/run.py restarts`` writes ``benchmarks/results/restarts.json``.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--worker":
    sys.path.insert(0, str(Path(sys.argv[2]) / "src"))     # the tree under test (old or new)
else:
    sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from gibench.attacks import ATTACKS  # noqa: E402
from gibench.datasets import DATASETS  # noqa: E402
from gibench.gradient import client_gradient  # noqa: E402
from gibench.models import build_model  # noqa: E402

INSTANCES = (1, 4, 16)
ITERATIONS = {"cpu": int(os.environ.get("GIBENCH_BENCH_ITERATIONS", 100)), "cuda": 200}
REPEATS = int(os.environ.get("GIBENCH_BENCH_REPEATS", 3))
TARGET_SPEEDUP = 2.0


def _case(device: str):
    ds = DATASETS.get("cifar100")
    split = ds.load("bundled", "test", str(HERE.parent / "resources"), str(HERE.parent / "resources/hub"))
    x = ds.normalize(split.images[:1])
    y = torch.as_tensor(split.labels[:1])
    net = build_model("lenet", 100, ds.shape, 0, init="torch_default")
    grads = client_gradient(net, x, y)
    gen = torch.Generator().manual_seed(1)
    vis = {n: torch.rand(g.shape, generator=gen) >= 0.3 for n, g in grads.items()}
    shared = {n: torch.where(vis[n], g, torch.zeros_like(g)) for n, g in grads.items()}
    net = net.to(device)
    shared = {n: g.to(device) for n, g in shared.items()}
    vis = {n: v.to(device) for n, v in vis.items()}
    kw = dict(input_shape=tuple(x.shape), mean=ds.mean, std=ds.std, labels=y.to(device), device=device)
    return net, shared, vis, kw, sum(p.numel() for p in net.parameters())


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def worker(device: str) -> dict:
    """One pass over every N: seconds (CPU on the CPU, wall on a GPU) and wall seconds of
    each variant, sequential and vectorised interleaved; after a warm-up."""
    torch.set_num_threads(1)
    net, shared, vis, kw, n_params = _case(device)
    iters = ITERATIONS[device]
    cfg = {"iterations": iters, "trace_every": iters}
    clock = time.process_time if device == "cpu" else time.perf_counter

    def timed(call) -> tuple[float, float]:
        _sync(device)
        t0, w0 = clock(), time.perf_counter()
        call()
        _sync(device)
        return clock() - t0, time.perf_counter() - w0

    def sequential(n: int):
        return timed(lambda: [ATTACKS.get("ig")(net, shared, vis, cfg=cfg, seed=s, **kw) for s in range(n)])

    def vectorised(n: int):
        return timed(lambda: ATTACKS.entry("ig").many(net, shared, vis, cfg=cfg, seeds=list(range(n)), **kw))

    ATTACKS.entry("ig").many(net, shared, vis, cfg={"iterations": 5}, seeds=[0, 1], **kw)  # warm-up
    ATTACKS.get("ig")(net, shared, vis, cfg={"iterations": 5}, seed=0, **kw)
    import gibench

    out = {"parameters": n_params, "iterations": iters, "gibench": gibench.__file__, "seconds": {}}
    for n in INSTANCES:
        out["seconds"][str(n)] = {"sequential": sequential(n), "vectorised": vectorised(n)}
    return out


def _commit(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def _run_worker(tree: Path, device: str) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(tree), device],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(tree / "src")))
    if proc.returncode != 0:
        raise RuntimeError(f"bench_restarts worker on {tree} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(device: str, trees: dict[str, Path]) -> dict:
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    load = [round(os.getloadavg()[0], 2)]
    for _ in range(REPEATS):
        for k, tree in trees.items():
            runs[k].append(_run_worker(tree, device))
            load.append(round(os.getloadavg()[0], 2))
    first = next(iter(runs.values()))[0]
    for k, tree in trees.items():         # each worker ran the tree it was meant to
        if {Path(r["gibench"]).resolve() for r in runs[k]} != {(tree / "src/gibench/__init__.py").resolve()}:
            raise RuntimeError(f"bench_restarts: the {k} workers imported gibench from elsewhere: {runs[k][0]['gibench']}")
    iters = first["iterations"]
    out: dict = {"device": device, "model": "lenet", "parameters": first["parameters"], "iterations": iters,
                 "repeats": REPEATS, "clock": "process CPU seconds" if device == "cpu" else "wall seconds",
                 "load_average_1min_between_workers": load, "instances": {}}
    for n in INSTANCES:
        row: dict = {}
        for variant in ("sequential", "vectorised"):
            row[variant] = {}
            for k, rs in runs.items():
                sec = [r["seconds"][str(n)][variant][0] for r in rs]
                wall = [r["seconds"][str(n)][variant][1] for r in rs]
                row[variant][k] = {"instance_iterations_per_second": round(n * iters / statistics.median(sec), 1),
                                   "raw_seconds": [round(t, 3) for t in sec],
                                   "wall_instance_iterations_per_second": round(n * iters / statistics.median(wall), 1)}
        out["instances"][str(n)] = row
    out["speedup_16_vs_1"] = {}
    for k in trees:
        one = out["instances"]["1"]["sequential"][k]["instance_iterations_per_second"]
        at16 = out["instances"][str(INSTANCES[-1])]["vectorised"][k]["instance_iterations_per_second"]
        out["speedup_16_vs_1"][k] = round(at16 / one, 2)
    out["target_speedup"] = TARGET_SPEEDUP
    out["meets_target"] = out["speedup_16_vs_1"]["new"] >= TARGET_SPEEDUP
    return out


def run() -> dict:
    trees = {"new": ROOT}
    old = os.environ.get("GIBENCH_OLD_TREE")
    if old:
        trees = {"old": Path(old).resolve(), "new": ROOT}
    res: dict = {"threads": 1, "commits": {k: _commit(t) for k, t in trees.items()},
                 "old_tree": "measured" if old else "not measured: GIBENCH_OLD_TREE not set",
                 "cpu": measure("cpu", trees)}
    if torch.cuda.is_available():
        res["cuda"] = measure("cuda", trees)
        res["cuda"]["device_name"] = torch.cuda.get_device_name(0)
    else:
        res["cuda"] = "not measured: no CUDA device on this machine"
    return res


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[3])))
    else:
        print(json.dumps(run(), indent=2))
