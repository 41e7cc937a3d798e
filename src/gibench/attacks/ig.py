"""Inverting Gradients (Geiping et al., NeurIPS 2020) against a (partly encrypted) update.

Re-implemented from the facts in ``reference/ig_and_image_defenses.md`` §1-2 (no code
copied).  One call of :func:`inverting_gradients` is one restart;
:func:`.ig_many.inverting_gradients_many` runs several restarts (one seed each) together,
vectorised over restarts (:mod:`.ig_many`, which registers ``ig`` with both).  The pipeline
runs all restarts of a case in one job (rule ``attack_restarts``) and picks the best afterwards.  Defaults are the paper's CLI setting (``DEFAULTS``):

* optimise a dummy batch ``x`` (init N(0, 1) in normalised space) with Adam, lr 0.1;
* objective ``cost(∇θ L(f(x), y), g_visible) + tv · TV(x)``, TV the anisotropic mean
  absolute forward difference; the dummy gradient is built with ``create_graph=True``
  (double backward);
* signed gradients (the image gradient replaced by its sign before the Adam step);
* MultiStepLR at ⌊m/2.667⌋, ⌊m/1.6⌋, ⌊m/1.142⌋ (3/8, 5/8, 7/8 of m iterations), γ = 0.1;
  ``lr_schedule: plateau`` is ReduceLROnPlateau on the total objective instead (factor
  ``plateau_factor``, patience ``plateau_patience``; the CVB/DIA code and paper B);
* optional stopping rules (paper B section 5.2, CVB repo ``EarlyStopping``): stop once the
  lowest total objective seen is below ``stop_loss``, or when it has not decreased for
  ``stop_patience`` iterations (a converged run: status ok, the reason in ``info``);
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
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..params import ParamSpec
from .base import AttackResult
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
    "plateau_factor": 0.1,        # lr_schedule: plateau -- ReduceLROnPlateau factor
    "plateau_patience": 400,      # ... and patience (iterations without a lower objective)
    "stop_loss": None,            # stop once the lowest objective seen is below this (None: off)
    "stop_patience": None,        # stop after this many iterations without a lower objective (None: off)
}
MILESTONES = (2.667, 1.6, 1.142)

_POSITIVE = {"type": "number", "exclusiveMinimum": 0}
#: JSON schema of each option (gibench.params: checked when the DAG is built, in every study)
SCHEMA: dict[str, dict] = {
    "iterations": {"type": "integer", "minimum": 0},
    "lr": _POSITIVE,
    "optimizer": {"enum": ["adam", "sgd"]},
    "lr_schedule": {"enum": ["multistep", "plateau", "none"]},
    "signed": {"type": "boolean"},
    "boxed": {"type": "boolean"},
    "tv": {"type": "number", "minimum": 0},
    "init": {"enum": ["randn", "rand", "zeros"]},
    "cost": {"enum": list(COSTS)},
    "labels": {"enum": ["known", "recover"]},
    "model_mode": {"enum": ["eval", "train"]},
    "keep": {"enum": ["last", "best"]},
    "trace_every": {"type": ["integer", "null"], "minimum": 1},
    "time_limit": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "dtype": {"enum": ["float32", "float64"]},
    "plateau_factor": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    "plateau_patience": {"type": "integer", "minimum": 1},
    "stop_loss": {"type": ["number", "null"]},
    "stop_patience": {"type": ["integer", "null"], "minimum": 1},
}


def resolve_cfg(cfg: dict | None) -> dict:
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"ig: unknown option(s) {unknown}; known: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **cfg}
    choices = {"optimizer": ("adam", "sgd"), "lr_schedule": ("multistep", "plateau", "none"),
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


PARAMS = ParamSpec("ig", SCHEMA, DEFAULTS, resolve_cfg)


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


@dataclass
class Extra:
    """A variable optimised jointly with the image (e.g. DPIA's dummy noise, VBIA's ε, DIA's
    dropout masks): its own learning rate (None: the image's) and an optional projection
    applied after every step (e.g. a clamp to [0, 1])."""

    value: torch.Tensor
    lr: float | None = None
    project: Callable[[torch.Tensor], torch.Tensor] | None = None


#: (x, extras) -> the dummy gradients of ``match.params``, built with create_graph=True
DummyGradient = Callable[[torch.Tensor, dict[str, torch.Tensor]], Sequence[torch.Tensor]]


def prepare_model(model: nn.Module, c: dict, device: torch.device) -> nn.Module:
    """The model in the attack's precision and mode, every parameter differentiable (a copy
    when the precision changes, so the caller's model is untouched)."""
    dtype = getattr(torch, c["dtype"])
    if dtype != next(model.parameters()).dtype:
        model = copy.deepcopy(model)
    model = model.to(device=device, dtype=dtype)
    model.train(c["model_mode"] == "train")
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def attack_labels(model: nn.Module, shared, visible, labels, batch: int, how: str, device) -> tuple[torch.Tensor, str]:
    """The labels the attacker uses: granted by the threat model (``known``) or recovered
    analytically from a visible last layer (``recover``)."""
    if how == "known":
        if labels is None:
            raise LabelRecoveryRefused("labels: known, but the threat model does not grant labels "
                                       "(threat_model.labels_known: false); use labels: recover")
        return torch.as_tensor(labels, device=device).long().reshape(batch), "threat model"
    y, src = recover_labels(model, shared, visible, batch)
    return y.to(device), src


def initial_input(input_shape, c: dict, mean, std, seed: int, device) -> tuple[torch.Tensor, tuple | None]:
    """The seeded start (drawn on the CPU, identical on every device) and the box bounds."""
    dtype = getattr(torch, c["dtype"])
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed) % 2**63)
    x = _init(tuple(input_shape), c["init"], gen, device).to(dtype)
    box = box_bounds(mean, std, input_shape[1], device, dtype) if c["boxed"] else None
    if box is not None:
        x = torch.max(torch.min(x, box[1]), box[0])
    return x, box


def nothing_to_match(match: GradientMatch) -> str:
    return (f"nothing to match: all {match.n_total:,} gradient entries are encrypted"
            if match.n_visible == 0 else "nothing to match: the visible gradient entries are all zero")


class _Run:
    """The per-restart state of IG's loop: optimiser, schedules, best iterate, stopping rules
    and trace.  :func:`invert` drives one; :func:`invert_many` drives several in lockstep
    whose gradients come from one vectorised call, so both follow the same rules step by step."""

    def __init__(self, x0: torch.Tensor, c: dict, extras: dict[str, Extra], box, t0: float):
        self.c, self.extras, self.box, self.t0 = c, extras, box, t0
        self.x = x0.detach().clone().requires_grad_(True)
        self.ev = {k: e.value.detach().clone().requires_grad_(True) for k, e in extras.items()}
        groups = [{"params": [self.x], "lr": c["lr"]}] + [
            {"params": [self.ev[k]], "lr": e.lr if e.lr is not None else c["lr"]} for k, e in extras.items()]
        self.m = m = c["iterations"]
        self.opt = torch.optim.Adam(groups) if c["optimizer"] == "adam" else torch.optim.SGD(groups, momentum=0.0)
        self.sched = (torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=milestones(m), gamma=0.1)
                      if c["lr_schedule"] == "multistep" else None)
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.opt, mode="min", factor=float(c["plateau_factor"]), patience=int(c["plateau_patience"]))
            if c["lr_schedule"] == "plateau" else None)
        self.lowest, self.since_lowest, self.stop_reason = math.inf, 0, None
        self.every = int(c["trace_every"] or max(1, m // 400))
        self.trace: list[dict] = []
        self.best = (math.inf, self.x.detach().clone(), {k: v.detach().clone() for k, v in self.ev.items()})
        self.stopped: str | None = None
        self.done = 0
        self.active = m > 0

    def step(self, it: int, total: torch.Tensor, dist: torch.Tensor, tv: torch.Tensor,
             grads: Sequence[torch.Tensor | None], progress: Callable[[int, float], None] | None) -> None:
        """One iteration given the objective's values and its gradients (image first, then
        the extras); clears ``active`` when the run ends."""
        c = self.c
        if not torch.isfinite(total):
            self.stopped = f"non-finite objective at iteration {it}"
            self.active = False
            return
        x, ev = self.x, self.ev
        x.grad = grads[0].sign() if c["signed"] else grads[0]
        for v, g in zip(ev.values(), grads[1:]):
            v.grad = g
        value = float(total.detach())
        if c["keep"] == "best" and value < self.best[0]:
            self.best = (value, x.detach().clone(), {k: v.detach().clone() for k, v in ev.items()})
        lr_now = self.opt.param_groups[0]["lr"]
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        if self.plateau is not None:
            self.plateau.step(value)
        with torch.no_grad():
            if self.box is not None:
                x.data = torch.max(torch.min(x.data, self.box[1]), self.box[0])
            for k, e in self.extras.items():
                if e.project is not None:
                    ev[k].data = e.project(ev[k].data)
        self.after_step(it, value, dist, tv, lr_now, progress)

    def after_step(self, it: int, value: float, dist: torch.Tensor, tv: torch.Tensor, lr_now: float,
                   progress: Callable[[int, float], None] | None) -> None:
        """The bookkeeping after iteration ``it``'s step: stopping rules, trace, progress."""
        c = self.c
        self.done = done = it + 1
        if value < self.lowest:
            self.lowest, self.since_lowest = value, 0
        else:
            self.since_lowest += 1
        if c["stop_loss"] is not None and self.lowest < float(c["stop_loss"]):
            self.stop_reason = f"objective {self.lowest:.3g} below stop_loss {c['stop_loss']} after {done} iterations"
        elif c["stop_patience"] is not None and self.since_lowest >= int(c["stop_patience"]):
            self.stop_reason = (f"no lower objective for {self.since_lowest} iterations (stop_patience), "
                                f"stopped after {done}")
        if it % self.every == 0 or it == self.m - 1 or self.stop_reason is not None:
            self.trace.append({"iteration": it, "loss": value, "grad_distance": float(dist.detach()),
                               "tv": float(tv.detach()), "lr": float(lr_now)})
        if progress is not None:
            progress(it, value)
        if self.stop_reason is not None:
            self.active = False
        elif c["time_limit"] is not None and time.time() - self.t0 > float(c["time_limit"]):
            self.stopped = f"time limit {c['time_limit']} s reached after {done} iterations"
            self.active = False
        elif done >= self.m:
            self.active = False

    def output(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.c["keep"] == "best" and self.best[0] < math.inf:
            return self.best[1], self.best[2]
        return self.x.detach(), {k: v.detach() for k, v in self.ev.items()}

    def result(self, final: float) -> dict[str, Any]:
        x_out, ex_out = self.output()
        seconds = time.time() - self.t0
        done = self.done
        return {"x": x_out.detach(), "extras": ex_out, "trace": self.trace, "final_distance": final,
                "stopped": self.stopped, "stop_reason": self.stop_reason, "iterations": done,
                "seconds": round(seconds, 3),
                "iterations_per_second": round(done / max(seconds, 1e-9), 2) if done else None}


def _objective_fn(match: GradientMatch, c: dict, grad_fn: DummyGradient,
                  penalty: Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor] | None):
    def objective(xx: torch.Tensor, ex: dict[str, torch.Tensor]):
        dist = match(grad_fn(xx, ex))
        if c["tv"]:
            tv = total_variation(xx)
            total = dist + c["tv"] * tv
        else:                         # no TV term: its value is kept for the trace, without a graph
            with torch.no_grad():
                tv = total_variation(xx)
            total = dist
        if penalty is not None:
            total = total + penalty(xx, ex)
        return total, dist, tv

    return objective


def invert(model: nn.Module, match: GradientMatch, y: torch.Tensor, x0: torch.Tensor, c: dict, *,
           box: tuple[torch.Tensor, torch.Tensor] | None = None, dummy_gradient: DummyGradient | None = None,
           extras: dict[str, Extra] | None = None,
           progress: Callable[[int, float], None] | None = None,
           penalty: Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor] | None = None) -> dict[str, Any]:
    """The optimisation loop of IG, reusable by attacks that change how the dummy gradient is
    formed (``dummy_gradient``), optimise more than the image (``extras``) or add a term on
    them to the objective (``penalty(x, extras)``, e.g. DIA's dropout-rate regulariser).

    Returns ``{"x", "extras", "trace", "final_distance", "stopped", "stop_reason", "iterations",
    "seconds"}``; ``stopped`` says why a run failed or hit its time limit, ``stop_reason`` why
    a stopping rule ended it early."""
    extras = dict(extras or {})
    params = match.params

    def default_gradient(xx: torch.Tensor, ex: dict[str, torch.Tensor]) -> Sequence[torch.Tensor]:
        return torch.autograd.grad(F.cross_entropy(model(xx), y), params, create_graph=True)

    grad_fn = dummy_gradient or default_gradient
    objective = _objective_fn(match, c, grad_fn, penalty)
    run = _Run(x0, c, extras, box, time.time())
    it = 0
    while run.active:
        run.opt.zero_grad(set_to_none=True)
        total, dist, tv = objective(run.x, run.ev)
        grads = (torch.autograd.grad(total, [run.x, *run.ev.values()], allow_unused=True)
                 if torch.isfinite(total) else ())
        run.step(it, total, dist, tv, grads, progress)
        it += 1
    x_out, ex_out = run.output()
    # the restart's score: the gradient distance without TV (IG's scoring_choice='loss')
    final = float(match(grad_fn(x_out, ex_out)).detach())
    return run.result(final)


def result_from(loop: dict[str, Any], y: torch.Tensor, info: dict[str, Any]) -> AttackResult:
    stopped = loop["stopped"]
    info = {**info, **{k: loop[k] for k in ("iterations", "seconds", "iterations_per_second", "stopped")}}
    if loop.get("stop_reason"):
        info["stop_reason"] = loop["stop_reason"]
    status = "ok" if stopped is None or stopped.startswith("time limit") else "failed"
    msg = stopped or (f"{loop['iterations']} iterations, final gradient distance {loop['final_distance']:.4g}"
                      + (f" ({loop['stop_reason']})" if loop.get("stop_reason") else ""))
    return AttackResult(x=loop["x"], labels=y.detach(), status=status, message=msg,
                        final_loss=loop["final_distance"], trace=loop["trace"], info=info)


def inverting_gradients(model: nn.Module, shared: dict[str, torch.Tensor], visible: dict[str, torch.Tensor] | None,
                        *, input_shape: tuple[int, ...], mean, std, labels: torch.Tensor | None, cfg: dict | None,
                        seed: int, device: torch.device | str = "cpu",
                        progress: Callable[[int, float], None] | None = None) -> AttackResult:
    c = resolve_cfg(cfg)
    device = torch.device(device)
    model = prepare_model(model, c, device)
    match = GradientMatch(list(model.named_parameters()), shared, visible, c["cost"])
    y, labels_from = attack_labels(model, shared, visible, labels, int(input_shape[0]), c["labels"], device)
    info: dict[str, Any] = {"objective": match.describe(), "settings": c, "labels_from": labels_from}
    x0, box = initial_input(input_shape, c, mean, std, seed, device)
    if match.empty:
        return AttackResult(x=x0, labels=y, status="nothing_visible", message=nothing_to_match(match),
                            final_loss=float("nan"), trace=[], info={**info, "iterations": 0})
    loop = invert(model, match, y, x0, c, box=box, progress=progress)
    return result_from(loop, y, info)
