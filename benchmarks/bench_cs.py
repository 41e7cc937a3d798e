"""Concealed-samples study costs on this machine (issue 12), one thread, batch 1:

* DCS² synthesis steps per second (one double backward per step) for LeNet_MNIST/MNIST and
  the width-32 ConvNet/CIFAR-10, and the seconds a paper-scale synthesis (1,000 steps) takes;
* GS attack iterations per second for the same models (paper scale: 10,000 per image);
* Soteria's mask (F backward passes of the representation, batched) for both models;
* the imprint read-out (closed form) on ResNet-18 at 64x64 and the forward/backward of the
  imprinted model.

Targets (reported, not asserted): a paper-scale DCS² synthesis on MNIST within 60 s, Soteria's
ConvNet mask within 60 s on one CPU thread.  ``python benchmarks/run.py cs`` writes
``benchmarks/results/cs.json``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from gibench.attacks import ATTACKS  # noqa: E402
from gibench.attacks.imprint import ImprintedModel, read_out  # noqa: E402
from gibench.datasets import DATASETS  # noqa: E402
from gibench.defenses.concealed import DCS2, soteria_scores, synthesise_concealed  # noqa: E402
from gibench.models import build_model  # noqa: E402

CASES = {"mnist": ("lenet_mnist", {}, 60, 100), "cifar10": ("convnet", {"width": 32}, 10, 20)}
TARGETS = {"dcs2_paper_seconds_mnist": 60.0, "soteria_seconds_convnet": 60.0}


def _data(name: str):
    ds = DATASETS.get(name)
    sp = ds.load("bundled", ds.bundled_splits[0], str(HERE.parent / "resources"))
    return ds, ds.normalize(sp.images[:2]), torch.as_tensor(sp.labels[:2])


def run() -> dict:
    torch.set_num_threads(1)
    out: dict = {"threads": 1}
    for name, (model_name, opts, dcs_steps, gs_steps) in CASES.items():
        ds, x, y = _data(name)
        net = build_model(model_name, ds.num_classes, ds.shape, 0, **opts).eval()
        d = DCS2(iterations=dcs_steps, lr_schedule="none")
        t0 = time.perf_counter()
        synthesise_concealed(net, x[:1], y[:1], x[1:2], y[1:2], d)
        dcs_s = time.perf_counter() - t0
        grads = dict(zip([n for n, _ in net.named_parameters()],
                         torch.autograd.grad(F.cross_entropy(net(x[:1]), y[:1]), list(net.parameters()))))
        t0 = time.perf_counter()
        ATTACKS.get("gs")(net, grads, None, input_shape=(1, *ds.shape), mean=ds.mean, std=ds.std, labels=y[:1],
                          cfg={"iterations": gs_steps}, seed=0)
        gs_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        soteria_scores(net, x[:1], chunk=64)
        sot_s = time.perf_counter() - t0
        out[name] = {"model": model_name, "dcs2_steps_per_s": dcs_steps / dcs_s,
                     "dcs2_paper_seconds": 1000 * dcs_s / dcs_steps, "gs_iterations_per_s": gs_steps / gs_s,
                     "gs_paper_seconds": 10000 * gs_s / gs_steps, "soteria_seconds": sot_s}
    ds = DATASETS.get("tiny_imagenet")
    base = build_model("resnet18", 200, ds.shape, 0).eval()
    net = ImprintedModel(base, ds.shape, bins=10).eval()
    xx = torch.randn(1, *ds.shape)
    t0 = time.perf_counter()
    g = torch.autograd.grad(F.cross_entropy(net(xx), torch.tensor([0])), [net.imprint.linear0.weight,
                                                                         net.imprint.linear0.bias])
    fb = time.perf_counter() - t0
    t0 = time.perf_counter()
    read_out(g[0], g[1], 1)
    out["imprint_resnet18_64px"] = {"forward_backward_seconds": fb, "read_out_seconds": time.perf_counter() - t0}
    out["targets"] = {
        "dcs2_paper_seconds_mnist": {"target": TARGETS["dcs2_paper_seconds_mnist"],
                                     "value": out["mnist"]["dcs2_paper_seconds"],
                                     "met": out["mnist"]["dcs2_paper_seconds"] <= TARGETS["dcs2_paper_seconds_mnist"]},
        "soteria_seconds_convnet": {"target": TARGETS["soteria_seconds_convnet"],
                                    "value": out["cifar10"]["soteria_seconds"],
                                    "met": out["cifar10"]["soteria_seconds"] <= TARGETS["soteria_seconds_convnet"]},
    }
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
