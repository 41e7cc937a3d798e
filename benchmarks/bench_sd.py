"""Speed of the stochastic-defenses study's hot loops on this machine (run by benchmarks/run.py).

* seconds per attack iteration (double backward through the defended model) for the CNN and
  the ViT at batch size 1: IG, WIIG against DP (per-sample clipping in the dummy gradient) and
  CDIA against DO+GP+CVB (masks and eps optimised);
* the client's defended gradient for a FedAvg-sized batch (64) with DP: per-sample gradients
  with torch.func.vmap versus the per-sample loop (the FedAvg runs call this every local step).

Targets (checked here, never in tests): a CNN attack iteration well under 50 ms on one CPU
thread, so that the demo's 400-iteration attacks take seconds.
"""
from __future__ import annotations

import time

import torch


def _attack_seconds(model_name: str, spec: list, kind: str, iterations: int) -> float:
    from gibench.attacks import ATTACKS
    from gibench.defenses import DefenseChain
    from gibench.models import build_model

    chain = DefenseChain(spec)
    model = build_model(model_name, 10, (3, 32, 32), seed=0, **chain.model_options())
    x = torch.rand(1, 3, 32, 32)
    y = torch.tensor([3])
    grads, secrets = chain.client_gradient(model, x, y, generator=torch.Generator().manual_seed(0))
    cfg = {"iterations": iterations, "lr": 0.1, "lr_schedule": "plateau", "tv": 0.01, "model_mode": "train",
           "keep": "best"}
    t0 = time.perf_counter()
    ATTACKS.get(kind)(model, grads, None, input_shape=(1, 3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3, labels=y,
                      cfg=cfg, seed=0, defenses=chain, secrets=secrets)
    return (time.perf_counter() - t0) / iterations


def _client_seconds(batch: int, per_sample: str) -> float:
    from gibench.defenses import DefenseChain
    from gibench.defenses import chain as chain_mod
    from gibench.models import build_model

    chain = DefenseChain(["dropout", "dp", "cvb"])
    model = build_model("sd_cnn", 10, (3, 32, 32), seed=0, **chain.model_options())
    x = torch.rand(batch, 3, 32, 32)
    y = torch.arange(batch) % 10
    original = chain_mod._per_sample_vmap
    if per_sample == "loop":
        chain_mod._per_sample_vmap = chain_mod._per_sample_loop
    try:
        chain.client_gradient(model, x, y, generator=torch.Generator().manual_seed(0))     # warm-up
        t0 = time.perf_counter()
        for _ in range(3):
            chain.client_gradient(model, x, y, generator=torch.Generator().manual_seed(0))
        return (time.perf_counter() - t0) / 3
    finally:
        chain_mod._per_sample_vmap = original


def run() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {"threads": 1, "attack_seconds_per_iteration": {}, "client_gradient_seconds": {}}
        for model_name, its in (("sd_cnn", 100), ("sd_vit", 10)):
            for label, spec, kind in (("ig/none", [], "ig_defended"),
                                      ("wiig/dp", [{"name": "dp", "sigma": 1e-3}], "wiig"),
                                      ("cdia/do+gp+cvb", ["dropout", "prune", "cvb"], "cdia")):
                out["attack_seconds_per_iteration"][f"{model_name} {label}"] = round(
                    _attack_seconds(model_name, spec, kind, its), 5)
        for mode in ("vmap", "loop"):
            out["client_gradient_seconds"][f"sd_cnn DO+DP+C batch 64 ({mode})"] = round(_client_seconds(64, mode), 4)
        cnn = out["attack_seconds_per_iteration"]["sd_cnn ig/none"]
        out["targets"] = {"cnn_attack_iteration_under_50ms": cnn < 0.05}
        return out
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
