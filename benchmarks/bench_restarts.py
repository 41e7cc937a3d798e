"""Vectorised IG restarts (issue 23, item 1): instance-iterations per second against the
number of restarts run together.

Case: the 88,648-parameter LeNet (100 classes, CIFAR-100 32x32), one bundled CIFAR-100 test
image, 30 % of gradient entries encrypted by a random mask, the paper's IG settings
(signed Adam, lr 0.1, TV 1e-4, masked cosine), one CPU thread.  For N = 1, 4, 16 restarts:

* ``sequential`` (old: the code on main runs one restart per call, each its own job): N calls
  of ``ATTACKS["ig"]``, one seed each;
* ``vectorised`` (new): one call of ``ig.inverting_gradients_many`` with the N seeds (one
  ``torch.func.vmap`` call per iteration for all of them; N = 1 takes the sequential path).

Instance-iterations per second = N x iterations / seconds; median of ``REPEATS``, the two
variants interleaved so drifts in machine load hit both.  On the CPU the seconds are the
process's CPU seconds (one thread: its work, not the other jobs sharing the cores; the wall
seconds are reported beside them); on a GPU they are wall seconds after a synchronise.  Start-up (Python, ``import torch``)
is not in these figures: it is paid once per job, see ``bench_pipeline.py``.  Target (issue
23): vectorised at 16 instances >= 2x the instance-iterations per second of one instance.
With a CUDA device the same figures are measured there too (``device: cuda``).

``python benchmarks/bench_restarts.py`` prints the JSON; ``python benchmarks/run.py restarts``
writes ``benchmarks/results/restarts.json``.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from gibench.attacks import ATTACKS  # noqa: E402
from gibench.datasets import DATASETS  # noqa: E402
from gibench.gradient import client_gradient  # noqa: E402
from gibench.models import build_model  # noqa: E402

INSTANCES = (1, 4, 16)
ITERATIONS = {"cpu": 100, "cuda": 200}
REPEATS = 3
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


def measure(device: str) -> dict:
    net, shared, vis, kw, n_params = _case(device)
    iters = ITERATIONS[device]
    cfg = {"iterations": iters, "trace_every": iters}

    clock = time.process_time if device == "cpu" else time.perf_counter
    wall: dict[str, list[float]] = {"sequential": [], "vectorised": []}

    def timed(kind: str, call) -> float:
        _sync(device)
        t0, w0 = clock(), time.perf_counter()
        call()
        _sync(device)
        wall[kind].append(time.perf_counter() - w0)
        return clock() - t0

    def sequential(n: int) -> float:
        return timed("sequential", lambda: [ATTACKS.get("ig")(net, shared, vis, cfg=cfg, seed=s, **kw)
                                            for s in range(n)])

    def vectorised(n: int) -> float:
        return timed("vectorised", lambda: ATTACKS.entry("ig").many(net, shared, vis, cfg=cfg, seeds=list(range(n)), **kw))

    vectorised(2)
    sequential(1)                                   # warm-up (allocator, kernels)
    out: dict = {"device": device, "model": "lenet", "parameters": n_params, "iterations": iters,
                 "repeats": REPEATS, "clock": "process CPU seconds" if device == "cpu" else "wall seconds",
                 "instances": {}}
    for n in INSTANCES:
        times: dict[str, list[float]] = {"sequential": [], "vectorised": []}
        for v in wall.values():
            v.clear()
        for _ in range(REPEATS):
            times["sequential"].append(sequential(n))
            times["vectorised"].append(vectorised(n))
        out["instances"][str(n)] = {
            k: {"instance_iterations_per_second": round(n * iters / statistics.median(v), 1),
                "raw_seconds": [round(t, 3) for t in v],
                "wall_instance_iterations_per_second": round(n * iters / statistics.median(wall[k]), 1)}
            for k, v in times.items()}
    one = out["instances"]["1"]["sequential"]["instance_iterations_per_second"]
    at16 = out["instances"][str(INSTANCES[-1])]["vectorised"]["instance_iterations_per_second"]
    out["speedup_16_vs_1"] = round(at16 / one, 2)
    out["target_speedup"] = TARGET_SPEEDUP
    out["meets_target"] = at16 / one >= TARGET_SPEEDUP
    return out


def run() -> dict:
    torch.set_num_threads(1)
    res = {"threads": 1, "cpu": measure("cpu")}
    if torch.cuda.is_available():
        res["cuda"] = measure("cuda")
        res["cuda"]["device_name"] = torch.cuda.get_device_name(0)
    else:
        res["cuda"] = "not measured: no CUDA device on this machine"
    return res


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
