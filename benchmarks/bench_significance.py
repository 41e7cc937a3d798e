"""Cost of the significance metrics (issue 3, paper Table 6) on LeNet and the CNN, one CIFAR-100 image.

``run()`` measures, per model (``lenet``, ``cnn``; ``build_model(name, 100, (3, 32, 32), seed=0,
init='torch_default')``, the embedded default's init) on the first bundled CIFAR-100 test
image (normalised as the pipeline does):

1. ``sens``: exact Sens (vmapped forward-over-reverse JVPs, :func:`gibench.significance.sens_exact`
   through ``compute_scores``): wall seconds and peak memory growth
   (:func:`gibench.significance.cost.measure`: CPU RSS / CUDA allocator), against the targets
   (LeNet <= 5 s; CNN <= 60 s and <= 4 GiB).
2. ``naive``: the reference the paper's numbers are consistent with (80.7 s / 1832 s on a T4):
   one ``torch.autograd.grad(g_i, x)`` per gradient entry ``g_i`` of the create-graph gradient.
   It is timed on a uniform random sample of entries (fixed seed) and **extrapolated
   linearly** to all M entries (``seconds_per_entry * M``), plus the one-off double-backward
   graph build; the sampled values are checked against the exact Sens (``max_rel_err``).
   ``speedup = naive_extrapolated_seconds / sens_seconds`` (target >= 50).
3. ``sens_probe`` at its default K (and a small K sweep): seconds and the Jaccard overlap of
   its 30 % global mask with the exact Sens's 30 % mask (and the probe's median relative error
   on Sens over all entries).
4. ``sens_discrete`` (the paper's central differences), ``prodsig``, ``grad``, ``param``:
   seconds (the last three need no differentiation).

Timings on a shared machine are noisy: the JSON records the torch thread count and the load
average at start and end.  Run through ``benchmarks/run.py significance`` (``make bench``) or
as a script (prints the JSON).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

MODELS = ("lenet", "cnn")
TARGETS = {"lenet": {"sens_seconds": 5.0}, "cnn": {"sens_seconds": 60.0, "sens_peak_bytes": 4 * 2**30}}
SPEEDUP_TARGET = 50.0
NAIVE_SAMPLE = {"lenet": 300, "cnn": 150}
PROBE_SWEEP = (16, 64, 256)
RATIO = 0.3


def _load_avg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _case(device: torch.device):
    from gibench.datasets import DATASETS

    ds = DATASETS.get("cifar100")
    split = ds.load("bundled", "test", str(ROOT / "resources"), str(ROOT / "resources" / "hub"))
    x = ds.normalize(split.images[:1]).to(device)
    y = torch.as_tensor(split.labels[:1], device=device)
    return x, y, int(split.indices[0])


def _flat(scores: dict, names: list[str]) -> torch.Tensor:
    return torch.cat([scores[n].reshape(-1).float().cpu() for n in names])


def _jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(1, int((a | b).sum()))


def naive_sens(model, x, y, sample: int, seed: int = 0) -> dict:
    """One autograd.grad per gradient entry, on ``sample`` entries drawn uniformly (seeded)."""
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
    xr = x.detach().clone().requires_grad_(True)
    t0 = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(xr), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    build = time.perf_counter() - t0
    m = flat.numel()
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(m, generator=gen)[:sample].tolist()
    torch.autograd.grad(flat[idx[0]], xr, retain_graph=True)          # warm-up, not timed
    values = []
    t0, c0 = time.perf_counter(), time.process_time()
    for i in idx:
        (d,) = torch.autograd.grad(flat[i], xr, retain_graph=True)
        values.append(float(d.norm()))
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    per_entry = (time.perf_counter() - t0) / len(idx)
    cpu_per_entry = (time.process_time() - c0) / len(idx)
    return {"entries": m, "sample": len(idx), "sample_seed": seed, "graph_build_seconds": build,
            "seconds_per_entry": per_entry, "extrapolated_seconds": build + per_entry * m,
            "cpu_seconds_per_entry": cpu_per_entry, "extrapolated_cpu_seconds": cpu_per_entry * m,
            "_idx": idx, "_values": values}


def bench_model(name: str, device: torch.device, x, y) -> dict:
    from gibench.gradient import client_gradient
    from gibench.masks import make_mask
    from gibench.models import build_model
    from gibench.significance import compute_scores, metric_options
    from gibench.significance.cost import measure

    model = build_model(name, 100, (3, 32, 32), 0, init="torch_default").to(device)
    grads = client_gradient(model, x, y)
    names = list(grads)
    m = sum(g.numel() for g in grads.values())
    out: dict = {"model": name, "init": "torch_default", "num_parameters": m, "num_tensors": len(names),
                 "targets": TARGETS[name]}

    def timed(metric: str, params: dict | None = None, seed: int = 0):
        cpu0 = time.process_time()
        res, sec, peak = measure(lambda: compute_scores(metric, model, x, y, grads, seed=seed, params=params),
                                 device=device)
        # process CPU time (all threads): less sensitive than wall time to other load on the machine
        return res, {"seconds": round(sec, 4), "cpu_seconds": round(time.process_time() - cpu0, 4),
                     "peak_mib": round(peak / 2**20, 1)}

    # warm-up (torch.func tracing, oneDNN primitives) on a cheap call, not timed
    compute_scores("sens_probe", model, x, y, grads, seed=0, params={"probes": 2})

    exact, cost = timed("sens")
    out["sens"] = {**cost, "chunk_size": exact.info["chunk_size"], "jvp_columns": exact.info["jvp_columns"],
                   "factored_layers": exact.info["factored_layers"], "rank2_layers": exact.info["rank2_layers"]}
    tgt = TARGETS[name]
    out["sens"]["meets_time_target"] = cost["seconds"] <= tgt["sens_seconds"]
    if "sens_peak_bytes" in tgt:
        out["sens"]["meets_memory_target"] = cost["peak_mib"] * 2**20 <= tgt["sens_peak_bytes"]
    # the same computation on one thread, by process CPU time: a load-robust figure on a shared
    # machine (2-thread CPU time is inflated by OpenMP threads spinning while they wait for a core)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cpu0 = time.process_time()
    compute_scores("sens", model, x, y, grads, seed=0)
    out["sens"]["cpu_seconds_1thread"] = round(time.process_time() - cpu0, 4)
    torch.set_num_threads(threads)
    exact_flat = _flat(exact.scores, names)
    exact_mask = make_mask(exact.scores, RATIO, "global", names).flat()

    naive = naive_sens(model, x, y, NAIVE_SAMPLE[name])
    idx, vals = naive.pop("_idx"), naive.pop("_values")
    ref = exact_flat[idx].double()
    got = torch.tensor(vals, dtype=torch.float64)
    naive["max_rel_err_vs_exact"] = float(((got - ref).abs() / ref.abs().clamp_min(1e-30)).max())
    naive["method"] = ("one torch.autograd.grad(g_i, x, retain_graph=True) per gradient entry g_i of the "
                       "create_graph gradient, timed on a uniform random sample of entries and extrapolated "
                       "linearly to all entries (seconds_per_entry * M + graph build)")
    out["naive_reference"] = naive
    out["speedup_vs_naive"] = round(naive["extrapolated_seconds"] / max(cost["seconds"], 1e-9), 1)
    out["speedup_vs_naive_cpu_time"] = round(naive["extrapolated_cpu_seconds"] / max(cost["cpu_seconds"], 1e-9), 1)
    out["meets_speedup_target"] = out["speedup_vs_naive"] >= SPEEDUP_TARGET

    default_k = metric_options("sens_probe")["probes"]
    probes = {}
    for k in sorted(set(PROBE_SWEEP) | {default_k}):
        res, c = timed("sens_probe", {"probes": k}, seed=1)
        pf = _flat(res.scores, names)
        pos = exact_flat > 0
        rel = ((pf[pos] - exact_flat[pos]).abs() / exact_flat[pos]).median()
        probes[str(k)] = {**c, "jaccard_30pct_mask_vs_exact": round(_jaccard(
            make_mask(res.scores, RATIO, "global", names).flat(), exact_mask), 4),
            "median_rel_err_sens": round(float(rel), 4)}
    out["sens_probe"] = {"default_probes": default_k, "by_probes": probes,
                         "default": probes[str(default_k)]}

    disc, c = timed("sens_discrete")
    out["sens_discrete"] = {**c, "aggregate": disc.info["aggregate"], "step": disc.info["step"],
                            "jaccard_30pct_mask_vs_exact": round(_jaccard(
                                make_mask(disc.scores, RATIO, "global", names).flat(), exact_mask), 4)}
    for metric in ("prodsig", "grad", "param"):
        _, c = timed(metric)
        out[metric] = c
    return out


def _bench_in_subprocess(name: str, device: str) -> dict:
    """One model per fresh process, so that the memory growth of one model's metrics is not
    hidden by memory the previous model left resident."""
    import subprocess

    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", name, device],
                          capture_output=True, text=True, cwd=str(ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"bench_significance --one {name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _one(name: str, device: str | None = None) -> dict:
    device = torch.device(device or _default_device())
    x, y, _ = _case(device)
    return bench_model(name, device, x, y)


def run(device: str | None = None) -> dict:
    """``device``: cpu or cuda (default: cuda when available; benchmarks/run.py --device)."""
    from gibench.significance.cost import describe_method

    device = torch.device(device or _default_device())
    _, y, src = _case(device)
    result = {"device": str(device), "torch_threads": torch.get_num_threads(), "load_avg_start": _load_avg(),
              "image": {"dataset": "cifar100 (bundled test slice)", "source_index": src, "label": int(y[0])},
              "memory_method": describe_method(device) | {"process": "one fresh process per model"},
              "mask_ratio": RATIO, "speedup_target": SPEEDUP_TARGET,
              "paper_t4_seconds": {"lenet": 80.70, "cnn": 1832.13}, "models": {}}
    for name in MODELS:
        result["models"][name] = _bench_in_subprocess(name, str(device))
    result["load_avg_end"] = _load_avg()
    result["summary"] = {
        name: {"sens_s": r["sens"]["seconds"], "sens_cpu_s": r["sens"]["cpu_seconds"],
               "sens_cpu_s_1thread": r["sens"]["cpu_seconds_1thread"],
               "sens_peak_mib": r["sens"]["peak_mib"],
               "naive_extrapolated_s": round(r["naive_reference"]["extrapolated_seconds"], 1),
               "speedup": r["speedup_vs_naive"],
               "probe_default_s": r["sens_probe"]["default"]["seconds"],
               "probe_jaccard_30pct": r["sens_probe"]["default"]["jaccard_30pct_mask_vs_exact"],
               "sens_discrete_s": r["sens_discrete"]["seconds"], "prodsig_s": r["prodsig"]["seconds"]}
        for name, r in result["models"].items()}
    return result


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1] == "--one":
        print(json.dumps(_one(sys.argv[2], sys.argv[3] if len(sys.argv) == 4 else None), default=str))
    else:
        print(json.dumps(run(), indent=2, default=str))
