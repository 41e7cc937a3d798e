"""FedAvg cost on this CPU: seconds per communication round (gibench.fl).

``run()`` trains paper B's CNN (``sd_cnn``: 3 conv 5x5 [16, 32, 64], stride 2; falls back to
the McMahan ``cnn`` if that model is not registered) with paper B's FedAvg settings (10 IID
clients, 10 % validation, 1 local epoch, Adam 1e-3, batch 64) on the bundled CIFAR-10 slice
(the first 1,017 test images: 20 % held out as the test set, the rest split among the
clients) for a few rounds, per defense combination (none; DP; DO+DP+CVB: DP needs per-sample
gradients), and reports

* ``seconds_per_round``: median wall time of a round (local training of all clients +
  FedAvg + evaluation of validation/test sets), on the bundled slice (~7 local steps per
  round in total);
* ``seconds_per_local_step``: median time of one local step (batch 64) and
  ``seconds_eval_per_1k``: evaluation time per 1,000 images, measured separately;
* ``paper_round_estimate_s``: a paper-scale round estimated from those two
  (10 clients x ceil(4,500/64) = 710 steps + evaluating 5,000 validation and 10,000 test
  images), and ``paper_run_estimate_h`` for 300 rounds (early stopping usually ends sooner).

Timings on a shared 2-core machine are noisy; the lead re-measures on a quiet one.
"""
from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

ROUNDS = 3
DEFENSES = ("none", "dp", "dropout+dp+cvb")      # combination names (defense names joined by +)
PAPER_STEPS = 10 * math.ceil(4500 / 64)
PAPER_EVAL = 5000 + 10000


def _config(model: str) -> dict:
    return {"seed": 0, "resources_dir": str(ROOT / "resources"), "hub_dir": str(ROOT / "resources" / "hub"),
            "datasets": {"cifar10": {"source": "bundled", "split": "test", "victims": 1}},
            "studies": {"bench": {"fl": {"runs": [{"dataset": "cifar10", "model": model}], "clients": 10,
                                         "rounds": ROUNDS, "batch_size": 64, "local_epochs": 1,
                                         "optimizer": {"type": "adam", "lr": 1e-3},
                                         "early_stopping": {"patience": None}}}}}


def run() -> dict:
    import torch

    from gibench import fl
    from gibench.models import MODELS
    from gibench.pipeline import jobs_fl

    model = "sd_cnn" if "sd_cnn" in MODELS else "cnn"
    cfg = _config(model)
    settings = fl.settings_from(cfg["studies"]["bench"]["fl"])
    pool, shards, test_pos, info = jobs_fl.load_fl_data(cfg, "bench", "cifar10", seed=0)
    out = {"model": model, "dataset": "cifar10 (bundled slice)", "clients": len(shards),
           "train_pool": info["train_pool"], "test": info["test"], "rounds": ROUNDS,
           "torch_threads": torch.get_num_threads(), "defenses": {}}
    if model != "sd_cnn":
        out["note"] = "sd_cnn (paper B's CNN) is not registered: measured the McMahan cnn instead"
    for name in DEFENSES:
        try:
            fdef = jobs_fl.DEFAULT_PROVIDER.build(cfg, "bench", "cifar10", model, name, "cross_entropy")
        except Exception as e:  # defenses module missing or a spec the model cannot take
            out["defenses"][name] = {"status": f"skipped: {e}"}
            continue
        opts = jobs_fl.model_build_options(cfg, "bench", model, fdef)
        net = jobs_fl.build_fl_model(cfg, "bench", "cifar10", model, 0, opts)
        grad_for = jobs_fl.per_client(fdef.grad_fn, settings)
        res = fl.run_fedavg(net, pool, shards, test_pos, settings, seed=1, grad_fn_for=grad_for)
        # one local step, timed alone
        x, y = pool.get(shards[0].train[:64])
        opt = fl.make_optimizer(net.parameters(), settings["optimizer"], 1e-3)
        gen = torch.Generator().manual_seed(0)
        step_times = []
        for _ in range(7):
            t0 = time.perf_counter()
            net.train()
            g = grad_for(0)(net, x, y, gen)
            for n, p in net.named_parameters():
                p.grad = g.get(n)
            opt.step()
            step_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fl.per_sample_eval(net, pool, test_pos, 500, "cpu")
        eval_1k = (time.perf_counter() - t0) / len(test_pos) * 1000
        step = statistics.median(step_times[2:])
        est = PAPER_STEPS * step + PAPER_EVAL / 1000 * eval_1k
        out["defenses"][name] = {
            "seconds_per_round": round(statistics.median(res.seconds_per_round), 4),
            "local_steps_per_round": res.curve[1]["local_steps"],
            "seconds_per_local_step": round(step, 5),
            "seconds_eval_per_1k": round(eval_1k, 4),
            "paper_round_estimate_s": round(est, 2),
            "paper_run_estimate_h": round(300 * est / 3600, 2),
            "test_acc_after": round(res.final_row["test_acc"], 4),
        }
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
