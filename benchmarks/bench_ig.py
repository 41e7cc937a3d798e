"""Inverting Gradients speed on this machine (issue 4).

* iterations per second of ``gibench.attacks.ig`` for LeNet and the CNN (one CIFAR-100
  image, batch 1, the embedded default's settings, one thread);
* the overhead of gibench's masked objective against a minimal *unmasked* reference loop
  written here (Adam on the image, cross-entropy, double backward, one flattened cosine,
  TV, sign, step, clamp: the least any IG implementation must do), measured in the same
  run with interleaved repetitions (median of ``REPEATS``).  Cases: nothing encrypted and
  30 % of entries encrypted by a random mask.  Target: overhead <= 15 %.

``python benchmarks/bench_ig.py`` prints the JSON; ``python benchmarks/run.py ig`` writes
``benchmarks/results/ig.json``.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from gibench.attacks import ATTACKS  # noqa: E402
from gibench.attacks.ig import box_bounds, total_variation  # noqa: E402
from gibench.datasets import DATASETS  # noqa: E402
from gibench.gradient import client_gradient  # noqa: E402
from gibench.models import build_model  # noqa: E402

ITERS = {"lenet": 400, "cnn": 60}
REPEATS = 5
TARGET_OVERHEAD = 0.15


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def reference_loop(net, x_true_shape, y, grads, mean, std, iters: int, tv: float = 0.0, device="cpu") -> float:
    """The minimal unmasked IG loop; returns seconds."""
    params = list(net.parameters())
    target = torch.cat([grads[n].flatten() for n, _ in net.named_parameters()])
    tnorm = target.norm()
    lo, hi = box_bounds(mean, std, x_true_shape[1], device)
    x = torch.randn(x_true_shape, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.1)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        opt.zero_grad(set_to_none=True)
        dummy = torch.autograd.grad(F.cross_entropy(net(x), y), params, create_graph=True)
        flat = torch.cat([d.flatten() for d in dummy])
        loss = 1 - (flat * target).sum() / (flat.norm() * tnorm) + tv * total_variation(x)
        (gx,) = torch.autograd.grad(loss, [x])
        x.grad = gx.sign()
        opt.step()
        with torch.no_grad():
            x.data = torch.max(torch.min(x.data, hi), lo)
    _sync(device)
    return time.perf_counter() - t0


def gibench_loop(net, shape, y, shared, visible, mean, std, iters: int, device="cpu") -> float:
    _sync(device)
    t0 = time.perf_counter()
    ATTACKS.get("ig")(net, shared, visible, input_shape=shape, mean=mean, std=std, labels=y,
                      cfg={"iterations": iters, "tv": 0.0, "trace_every": max(1, iters // 400)}, seed=0,
                      device=device)
    _sync(device)
    return time.perf_counter() - t0


def run(device: str | None = None) -> dict:
    """``device``: cpu (default) or cuda (benchmarks/run.py --device)."""
    torch.set_num_threads(1)
    device = torch.device(device or "cpu")
    ds = DATASETS.get("cifar100")
    split = ds.load("bundled", "test", str(HERE.parent / "resources"), str(HERE.parent / "resources/hub"))
    x = ds.normalize(split.images[:1]).to(device)
    y = torch.as_tensor(split.labels[:1]).to(device)
    out: dict = {"device": str(device), "threads": 1, "repeats": REPEATS, "target_overhead": TARGET_OVERHEAD,
                 "models": {}}
    if device.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(device)
    for name, iters in ITERS.items():
        net = build_model(name, 100, ds.shape, 0, init="torch_default").to(device)
        grads = client_gradient(net, x, y)
        gen = torch.Generator().manual_seed(1)
        vis30 = {n: (torch.rand(g.shape, generator=gen) >= 0.3).to(device) for n, g in grads.items()}
        shared30 = {n: torch.where(vis30[n], g, torch.zeros_like(g)) for n, g in grads.items()}
        times: dict[str, list[float]] = {"reference": [], "gibench_plain": [], "gibench_masked30": []}
        gibench_loop(net, tuple(x.shape), y, grads, None, ds.mean, ds.std, 5, device)   # warm-up
        for _ in range(REPEATS):       # interleaved, so drifts in machine load hit all three
            times["reference"].append(reference_loop(net, tuple(x.shape), y, grads, ds.mean, ds.std, iters,
                                                     device=device))
            times["gibench_plain"].append(gibench_loop(net, tuple(x.shape), y, grads, None, ds.mean, ds.std, iters,
                                                       device))
            times["gibench_masked30"].append(gibench_loop(net, tuple(x.shape), y, shared30, vis30,
                                                          ds.mean, ds.std, iters, device))
        med = {k: statistics.median(v) for k, v in times.items()}
        res = {"iterations": iters,
               "iterations_per_second": {k: round(iters / v, 1) for k, v in med.items()},
               "overhead_plain": round(med["gibench_plain"] / med["reference"] - 1, 4),
               "overhead_masked30": round(med["gibench_masked30"] / med["reference"] - 1, 4),
               "raw_seconds": {k: [round(t, 3) for t in v] for k, v in times.items()}}
        res["meets_target"] = max(res["overhead_plain"], res["overhead_masked30"]) <= TARGET_OVERHEAD
        out["models"][name] = res
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
