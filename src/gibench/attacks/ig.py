"""Inverting Gradients (Geiping et al., NeurIPS 2020) against a (partly encrypted) update.

Re-implemented from the facts in ``reference/ig_and_image_defenses.md`` §1-2 (no code
copied).  One call is one restart; the pipeline runs each restart as its own job and
picks the best afterwards.  Defaults are the paper's CLI setting (``DEFAULTS``):

* optimise a dummy batch ``x`` (init N(0, 1) in normalised space) with Adam, lr 0.1;
* objective ``cost(∇θ L(f(x), y), g_visible) + tv · TV(x)``, TV the anisotropic mean
  absolute forward difference; the dummy gradient is built with ``create_graph=True``
  (double backward);
* signed gradients (the image gradient replaced by its sign before the Adam step);
* MultiStepLR at ⌊m/2.667⌋, ⌊m/1.6⌋, ⌊m/1.142⌋ (3/8, 5/8, 7/8 of m iterations), γ = 0.1;
* box constraint: after every step ``x`` is clamped to the image box [(0-μ)/σ, (1-μ)/σ];
* the final iterate is the result (original IG; ``keep: best`` keeps the iterate with the
  lowest total objective, as breaching does) and the restart's score is its gradient
  distance without TV (IG's ``scoring_choice='loss'``).

Encrypted entries are removed from the objective (:mod:`.objectives`); with nothing left
to match (100 % encryption) the attack does not optimise: it returns its initialisation,
projected into the box, with ``status='nothing_visible'``.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from . import ATTACKS, AttackResult
from .labels import LabelRecoveryRefused, recover_labels
from .objectives import COSTS, GradientMatch

DEFAULTS: dict[str, Any] = {
    "iterations": 24000,          # (IG CLI) max_iterations
    "lr": 0.1,                    # (IG CLI)
    "optimizer": "adam",          # adam | sgd
    "lr_schedule": "multistep",   # multistep (3/8, 5/8, 7/8; gamma 0.1) | none
    "signed": True,               # (IG options.py: --signed is store_false)
    "boxed": True,
    "tv": 1.0e-4,                 # (IG options.py --tv)
    "init": "randn",              # randn | rand | zeros (normalised space)
    "cost": "masked_cosine",      # see objectives.COSTS
    "labels": "known",            # known (threat model grants them) | recover (iDLG from the last layer)
    "model_mode": "eval",
    "keep": "last",               # last (original IG) | best (lowest total objective, breaching)
    "trace_every": None,          # trace row every k iterations; None: about 400 rows per run
    "time_limit": None,           # seconds; stops early and says so in info
    "dtype": "float32",           # float32 | float64: precision of the model, x and the objective
}
MILESTONES = (2.667, 1.6, 1.142)


def resolve_cfg(cfg: dict | None) -> dict:
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"ig: unknown option(s) {unknown}; known: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **cfg}
    choices = {"optimizer": ("adam", "sgd"), "lr_schedule": ("multistep", "none"),
               "init": ("randn", "rand", "zeros"), "cost": COSTS, "labels": ("known", "recover"),
               "model_mode": ("eval", "train"), "keep": ("last", "best"),
               "dtype": ("float32", "float64")}
    for k, allowed in choices.items():
        if out[k] not in allowed:
            raise ValueError(f"ig: {k} must be one of {', '.join(map(str, allowed))}, not {out[k]!r}")
    out["iterations"] = int(out["iterations"])
    if out["iterations"] < 0:
        raise ValueError(f"ig: iterations must be >= 0, got {out['iterations']}")
    return out


def milestones(iterations: int) -> list[int]:
    return [int(iterations // f) for f in MILESTONES]


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV of IG: mean |horizontal difference| + mean |vertical difference|."""
    dx = (x[:, :, :, :-1] - x[:, :, :, 1:]).abs().mean()
    dy = (x[:, :, :-1, :] - x[:, :, 1:, :]).abs().mean()
    return dx + dy


def box_bounds(mean, std, channels: int, device, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    m = torch.as_tensor(mean, dtype=dtype, device=device).flatten()
    s = torch.as_tensor(std, dtype=dtype, device=device).flatten()
    if m.numel() == 1:
        m, s = m.expand(channels), s.expand(channels)
    lo = ((0.0 - m) / s).view(1, -1, 1, 1)
    hi = ((1.0 - m) / s).view(1, -1, 1, 1)
    return lo, hi


def _init(shape, how: str, gen: torch.Generator, device) -> torch.Tensor:
    if how == "randn":
        x = torch.randn(shape, generator=gen, dtype=torch.float32)
    elif how == "rand":
        x = torch.rand(shape, generator=gen, dtype=torch.float32)
    else:
        x = torch.zeros(shape, dtype=torch.float32)
    return x.to(device)  # drawn on the CPU: the same start on every device


@ATTACKS.register("ig")
def inverting_gradients(model: nn.Module, shared: dict[str, torch.Tensor], visible: dict[str, torch.Tensor] | None,
                        *, input_shape: tuple[int, ...], mean, std, labels: torch.Tensor | None, cfg: dict | None,
                        seed: int, device: torch.device | str = "cpu",
                        progress: Callable[[int, float], None] | None = None) -> AttackResult:
    c = resolve_cfg(cfg)
    device = torch.device(device)
    dtype = getattr(torch, c["dtype"])
    if dtype != next(model.parameters()).dtype:
        model = copy.deepcopy(model)  # the caller's model keeps its precision
    model = model.to(device=device, dtype=dtype)
    model.train(c["model_mode"] == "train")
    for p in model.parameters():
        p.requires_grad_(True)
    named = [(n, p) for n, p in model.named_parameters()]
    match = GradientMatch(named, shared, visible, c["cost"])
    batch = int(input_shape[0])

    info: dict[str, Any] = {"objective": match.describe(), "settings": c}
    if c["labels"] == "known":
        if labels is None:
            raise LabelRecoveryRefused("ig: labels: known, but the threat model does not grant labels "
                                       "(threat_model.labels_known: false); use labels: recover")
        y = torch.as_tensor(labels, device=device).long().reshape(batch)
        info["labels_from"] = "threat model"
    else:
        y, how = recover_labels(model, shared, visible, batch)
        y = y.to(device)
        info["labels_from"] = how

    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed) % 2**63)
    x = _init(tuple(input_shape), c["init"], gen, device).to(dtype)
    lo, hi = box_bounds(mean, std, input_shape[1], device, dtype)
    if c["boxed"]:
        x = torch.max(torch.min(x, hi), lo)

    if match.empty:
        msg = (f"nothing to match: all {match.n_total:,} gradient entries are encrypted"
               if match.n_visible == 0 else "nothing to match: the visible gradient entries are all zero")
        return AttackResult(x=x.detach(), labels=y.detach(), status="nothing_visible", message=msg,
                            final_loss=float("nan"), trace=[], info={**info, "iterations": 0})

    x.requires_grad_(True)
    m = c["iterations"]
    opt = (torch.optim.Adam([x], lr=c["lr"]) if c["optimizer"] == "adam"
           else torch.optim.SGD([x], lr=c["lr"], momentum=0.0))
    sched = (torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones(m), gamma=0.1)
             if c["lr_schedule"] == "multistep" else None)
    every = int(c["trace_every"] or max(1, m // 400))
    params = match.params

    def objective(xx: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loss = F.cross_entropy(model(xx), y)
        dummy = torch.autograd.grad(loss, params, create_graph=create_graph)
        dist = match(dummy)
        tv = total_variation(xx)
        return dist + c["tv"] * tv, dist, tv

    trace: list[dict] = []
    best = (math.inf, x.detach().clone())
    t0 = time.time()
    stopped = None
    it = 0
    for it in range(m):
        opt.zero_grad(set_to_none=True)
        total, dist, tv = objective(x, create_graph=True)
        if not torch.isfinite(total):
            stopped = f"non-finite objective at iteration {it}"
            break
        (gx,) = torch.autograd.grad(total, [x])
        x.grad = gx.sign() if c["signed"] else gx
        if c["keep"] == "best" and float(total.detach()) < best[0]:
            best = (float(total), x.detach().clone())
        lr_now = opt.param_groups[0]["lr"]
        opt.step()
        if sched is not None:
            sched.step()
        if c["boxed"]:
            with torch.no_grad():
                x.data = torch.max(torch.min(x.data, hi), lo)
        if it % every == 0 or it == m - 1:
            trace.append({"iteration": it, "loss": float(total.detach()), "grad_distance": float(dist.detach()),
                          "tv": float(tv.detach()), "lr": float(lr_now)})
        if progress is not None:
            progress(it, float(total.detach()))
        if c["time_limit"] is not None and time.time() - t0 > float(c["time_limit"]):
            stopped = f"time limit {c['time_limit']} s reached after {it + 1} iterations"
            break

    result_x = best[1] if c["keep"] == "best" and best[0] < math.inf else x.detach()
    final_dist = float(objective(result_x.detach().requires_grad_(False), create_graph=False)[1])
    info.update({"iterations": it + 1 if m else 0, "seconds": round(time.time() - t0, 3),
                 "iterations_per_second": round((it + 1) / max(time.time() - t0, 1e-9), 2) if m else None,
                 "stopped": stopped})
    status = "ok" if stopped is None or stopped.startswith("time limit") else "failed"
    msg = stopped or f"{m} iterations, final gradient distance {final_dist:.4g}"
    return AttackResult(x=result_x.detach(), labels=y.detach(), status=status, message=msg,
                        final_loss=final_dist, trace=trace, info=info)
