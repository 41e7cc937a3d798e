"""Deep Leakage from Gradients (Zhu, Liu, Han, NeurIPS 2019) against a (partly encrypted) update.

Re-implemented from the settings of the official code (mit-han-lab/dlg, commit d21007f,
``main.py``; iDLG: PatrickZH/Improved-Deep-Leakage-from-Gradients, commit 975bce8,
``iDLG.py``), no code copied.  One call is one restart (the pipeline runs each restart as its
own job and picks the best afterwards, as for IG).  Defaults (``DEFAULTS``), each with its
source:

* the dummy input ``x`` starts from N(0, 1) in the model's input space (DLG and iDLG:
  ``torch.randn(gt_data.size())``; there the model reads ``ToTensor()`` images, here the
  study's client feeds normalised images, so the draw is in normalised space);
* the objective is DLG's squared L2 gradient distance ``Σ ‖g' − g‖²``, taken over the
  *visible* entries only (``masked_l2``; a fully encrypted tensor drops out, ``DESIGN.md``);
* ``torch.optim.LBFGS`` with the arguments DLG leaves at PyTorch's defaults -- lr 1,
  ``max_iter`` 20 function evaluations per step, ``max_eval`` 25, ``history_size`` 100,
  ``tolerance_grad`` 1e-7, ``tolerance_change`` 1e-9, no line search -- for 300 steps
  (DLG ``for iters in range(300)``; iDLG ``lr = 1.0``, ``Iteration = 300``);
* no box constraint and no regulariser (DLG clamps nothing); the final iterate is the result;
* labels: ``optimize`` is DLG's own rule (dummy label logits drawn from N(0, 1), optimised
  jointly, soft-label cross-entropy ``−Σ softmax(l) · log softmax(f(x))``); ``recover`` is
  iDLG's analytic rule (refused when the last layer is encrypted, as for IG); ``known`` takes
  the labels the threat model grants (paper A's attacker).  The default is ``known``, the
  threat model of the study that runs it.
* ``stop_loss``: iDLG stops once the objective is below 1e-6 (``if current_loss < 0.000001``);
  DLG has no stopping rule, so the default is None.

L-BFGS's tolerances are absolute, and DLG's distance is not scale-free: when encryption leaves
only small gradient entries visible, the objective's gradient can be below ``tolerance_grad``
from the start and L-BFGS never moves.  Such runs say so (``info['stalled']``, the message, a
``no_move`` status per step in the trace); ``normalize: target`` (not DLG's) divides the
distance by the visible target's squared norm so that the tolerances act relatively.

Divergence is reported, not hidden: L-BFGS without a line search can step to a point where
the model's gradient overflows.  A non-finite objective ends the run; the result is then the
last iterate whose objective was finite (what an attacker watching its own loss keeps),
``status`` is ``diverged`` (``failed`` if the very first evaluation is non-finite), and the
trace's ``status`` column says at which step.  ``dtype: float64`` runs the model, the dummy
and the objective in double precision.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..params import ParamSpec
from .base import ATTACKS, AttackResult
from .ig import attack_labels, nothing_to_match, prepare_model
from .ig import box_bounds
from .objectives import COSTS, GradientMatch

DEFAULTS: dict[str, Any] = {
    "iterations": 300,            # L-BFGS steps (DLG main.py: range(300); iDLG: Iteration = 300)
    "lr": 1.0,                    # torch.optim.LBFGS default, kept by DLG; iDLG: lr = 1.0
    "max_iter": 20,               # function evaluations per step (torch default, kept by DLG/iDLG)
    "max_eval": None,             # torch default: max_iter * 5 // 4
    "history_size": 100,          # torch default, kept by DLG/iDLG
    "tolerance_grad": 1.0e-7,     # torch default
    "tolerance_change": 1.0e-9,   # torch default
    "line_search": "none",        # none (torch default, DLG) | strong_wolfe
    "init": "randn",              # DLG: torch.randn in the model's input space | rand | zeros
    "cost": "masked_l2",          # DLG's distance on the visible entries (objectives.COSTS)
    "normalize": "none",          # none (DLG) | target: divide by the visible target's squared norm
    "labels": "known",            # known (threat model) | recover (iDLG) | optimize (DLG's soft label)
    "boxed": False,               # DLG clamps nothing; true: clamp to the image box after each step
    "keep": "last",               # last (DLG) | best (lowest objective at a step boundary)
    "model_mode": "eval",
    "dtype": "float32",           # float32 | float64
    "stop_loss": None,            # iDLG: 1e-6; DLG: none
    "time_limit": None,           # seconds; stops early and says so
}

CHOICES = {"normalize": ("none", "target"), "line_search": ("none", "strong_wolfe"),
           "init": ("randn", "rand", "zeros"), "cost": COSTS, "labels": ("known", "recover", "optimize"),
           "keep": ("last", "best"), "model_mode": ("eval", "train"), "dtype": ("float32", "float64"),
           "boxed": (True, False)}


def resolve_cfg(cfg: dict | None) -> dict:
    """DEFAULTS overridden by ``cfg``; unknown keys and bad values raise ValueError naming the key."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"dlg: unknown option(s) {unknown}; known: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **cfg}
    for k, allowed in CHOICES.items():
        if out[k] not in allowed:
            raise ValueError(f"dlg: {k} must be one of {', '.join(map(str, allowed))}, not {out[k]!r}")
    for k in ("iterations", "max_iter", "history_size"):
        if not isinstance(out[k], int) or isinstance(out[k], bool) or out[k] < (0 if k == "iterations" else 1):
            raise ValueError(f"dlg: {k} must be an integer >= {0 if k == 'iterations' else 1}, not {out[k]!r}")
    if out["max_eval"] is not None and (not isinstance(out["max_eval"], int) or out["max_eval"] < 1):
        raise ValueError(f"dlg: max_eval must be null or an integer >= 1, not {out['max_eval']!r}")
    for k in ("lr", "tolerance_grad", "tolerance_change"):
        if not isinstance(out[k], (int, float)) or isinstance(out[k], bool) or not out[k] > 0:
            raise ValueError(f"dlg: {k} must be a positive number, not {out[k]!r}")
    for k in ("stop_loss", "time_limit"):
        if out[k] is not None and (not isinstance(out[k], (int, float)) or isinstance(out[k], bool) or out[k] <= 0):
            raise ValueError(f"dlg: {k} must be null or a positive number, not {out[k]!r}")
    return out


_POSITIVE = {"type": "number", "exclusiveMinimum": 0}
#: JSON schema of each option (gibench.params: checked when the DAG is built, in every study)
SCHEMA: dict[str, dict] = {
    "iterations": {"type": "integer", "minimum": 0},
    "lr": _POSITIVE,
    "max_iter": {"type": "integer", "minimum": 1},
    "max_eval": {"type": ["integer", "null"], "minimum": 1},
    "history_size": {"type": "integer", "minimum": 1},
    "tolerance_grad": _POSITIVE,
    "tolerance_change": _POSITIVE,
    "line_search": {"enum": list(CHOICES["line_search"])},
    "init": {"enum": list(CHOICES["init"])},
    "cost": {"enum": list(COSTS)},
    "normalize": {"enum": list(CHOICES["normalize"])},
    "labels": {"enum": list(CHOICES["labels"])},
    "boxed": {"type": "boolean"},
    "keep": {"enum": list(CHOICES["keep"])},
    "model_mode": {"enum": list(CHOICES["model_mode"])},
    "dtype": {"enum": list(CHOICES["dtype"])},
    "stop_loss": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "time_limit": {"type": ["number", "null"], "exclusiveMinimum": 0},
}
PARAMS = ParamSpec("dlg", SCHEMA, DEFAULTS, resolve_cfg)


def _draw(shape, how: str, gen: torch.Generator) -> torch.Tensor:
    if how == "randn":
        return torch.randn(shape, generator=gen, dtype=torch.float32)
    if how == "rand":
        return torch.rand(shape, generator=gen, dtype=torch.float32)
    return torch.zeros(shape, dtype=torch.float32)


def soft_label_loss(logits: torch.Tensor, label_logits: torch.Tensor) -> torch.Tensor:
    """DLG's cross-entropy against the soft label ``softmax(label_logits)``, batch mean."""
    return torch.mean(torch.sum(-F.softmax(label_logits, dim=-1) * F.log_softmax(logits, dim=-1), dim=1))


def run_lbfgs(model: nn.Module, match: GradientMatch, x0: torch.Tensor, c: dict, *,
              y: torch.Tensor | None = None, label0: torch.Tensor | None = None,
              box: tuple[torch.Tensor, torch.Tensor] | None = None,
              progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """DLG's loop: ``c['iterations']`` L-BFGS steps on the gradient distance.  Hard labels
    ``y`` or soft-label logits ``label0`` (optimised jointly).  Returns ``{"x", "label_logits",
    "trace", "final_distance", "status", "stopped", "stop_reason", "iterations", "func_evals",
    "seconds"}``."""
    params = match.params
    x = x0.detach().clone().requires_grad_(True)
    lab = None if label0 is None else label0.detach().clone().requires_grad_(True)
    variables = [x] + ([lab] if lab is not None else [])

    # normalize: target makes the objective scale-free (1 at a zero dummy gradient), so L-BFGS's
    # absolute tolerances act relative to what is visible; none is DLG's raw distance
    target_sq = float(sum(match.target_sq)) if match.targets else 0.0
    scale = 1.0 / target_sq if c["normalize"] == "target" and target_sq > 0 else 1.0

    def loss_of(xx: torch.Tensor, ll: torch.Tensor | None) -> torch.Tensor:
        logits = model(xx)
        task = F.cross_entropy(logits, y) if ll is None else soft_label_loss(logits, ll)
        return match(torch.autograd.grad(task, params, create_graph=True)) * scale

    opt = torch.optim.LBFGS(variables, lr=float(c["lr"]), max_iter=int(c["max_iter"]), max_eval=c["max_eval"],
                            tolerance_grad=float(c["tolerance_grad"]), tolerance_change=float(c["tolerance_change"]),
                            history_size=int(c["history_size"]),
                            line_search_fn=None if c["line_search"] == "none" else c["line_search"])
    seen_nonfinite: list[float] = []

    def closure():
        opt.zero_grad(set_to_none=True)
        total = loss_of(x, lab)
        if not torch.isfinite(total):
            seen_nonfinite.append(float(total.detach()))
        total.backward()
        return total

    def snapshot():
        return x.detach().clone(), (None if lab is None else lab.detach().clone())

    trace: list[dict] = []
    last_ok = snapshot()                 # the latest iterate with a finite objective
    best = (math.inf, last_ok)
    status, stopped, stop_reason = "ok", None, None
    t0 = time.time()
    done, idle = 0, 0
    for step in range(int(c["iterations"])):
        before = snapshot()
        value = float(opt.step(closure).detach())    # the objective at the start of this step
        evals = int(opt.state[x].get("func_evals", 0))
        lr_now = float(opt.param_groups[0]["lr"])
        finite_x = bool(torch.isfinite(x).all()) and (lab is None or bool(torch.isfinite(lab).all()))
        moved = not torch.equal(before[0], x.detach()) or (lab is not None and not torch.equal(before[1], lab.detach()))
        if not math.isfinite(value):
            # the iterate this step started from has a non-finite objective: the step before it
            # diverged; keep the last iterate whose objective was finite
            status = "failed" if step == 0 else "diverged"
            stopped = f"non-finite objective at the start of step {step}"
            trace.append({"iteration": step, "loss": value, "grad_distance": value / scale, "tv": float("nan"),
                          "lr": lr_now, "func_evals": evals, "status": status})
            break
        last_ok = before
        if c["keep"] == "best" and value < best[0]:
            best = (value, before)
        done = step + 1
        idle += 0 if moved else 1
        row_status = "ok" if moved else "no_move"
        if not finite_x or seen_nonfinite:
            row_status = "non_finite"
        trace.append({"iteration": step, "loss": value, "grad_distance": value / scale, "tv": float("nan"),
                      "lr": lr_now, "func_evals": evals, "status": row_status})
        if progress is not None:
            progress(step, value)
        if not finite_x:
            status, stopped = "diverged", f"the iterate became non-finite during step {step}"
            break
        seen_nonfinite.clear()
        if c["stop_loss"] is not None and value < float(c["stop_loss"]):
            stop_reason = f"objective {value:.3g} below stop_loss {c['stop_loss']} at step {step}"
            break
        if c["time_limit"] is not None and time.time() - t0 > float(c["time_limit"]):
            stopped = f"time limit {c['time_limit']} s reached after {done} steps"
            break
        if box is not None:
            with torch.no_grad():
                x.data = torch.max(torch.min(x.data, box[1]), box[0])
    final = last_ok
    if status == "ok":
        # the final iterate (DLG), or the best seen at a step boundary; its objective decides
        end = snapshot()
        v_end = float(loss_of(end[0], end[1]).detach()) if done else best[0]
        if done and not math.isfinite(v_end):
            status, stopped = "diverged", f"non-finite objective after the last step ({done})"
        else:
            final = end
            if c["keep"] == "best" and best[0] < v_end:
                final = best[1]
    elif c["keep"] == "best" and best[0] < math.inf:
        final = best[1]
    x_out, lab_out = final
    distance = float(loss_of(x_out, lab_out).detach()) / scale      # the raw distance, whatever the scale
    seconds = time.time() - t0
    return {"x": x_out.detach(), "label_logits": lab_out, "trace": trace, "final_distance": distance,
            "status": status, "stopped": stopped, "stop_reason": stop_reason, "iterations": done,
            "idle_steps": idle, "objective_scale": scale,
            "func_evals": int(opt.state[x].get("func_evals", 0)) if opt.state else 0,
            "seconds": round(seconds, 3),
            "iterations_per_second": round(done / max(seconds, 1e-9), 2) if done else None}


@ATTACKS.register("dlg", params=PARAMS, display="DLG", studies=("selective_encryption",),
                  description="Deep Leakage from Gradients (Zhu et al. 2019): L-BFGS on the L2 gradient distance")
def deep_leakage(model: nn.Module, shared: dict[str, torch.Tensor], visible: dict[str, torch.Tensor] | None,
                 *, input_shape: tuple[int, ...], mean, std, labels: torch.Tensor | None, cfg: dict | None,
                 seed: int, device: torch.device | str = "cpu",
                 progress: Callable[[int, float], None] | None = None) -> AttackResult:
    c = resolve_cfg(cfg)
    device = torch.device(device)
    dtype = getattr(torch, c["dtype"])
    model = prepare_model(model, c, device)
    match = GradientMatch(list(model.named_parameters()), shared, visible, c["cost"])
    batch = int(input_shape[0])
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed) % 2**63)
    x0 = _draw(tuple(input_shape), c["init"], gen).to(device=device, dtype=dtype)
    box = box_bounds(mean, std, input_shape[1], device, dtype) if c["boxed"] else None
    if box is not None:
        x0 = torch.max(torch.min(x0, box[1]), box[0])
    y, label0, labels_from = None, None, ""
    if c["labels"] == "optimize":
        n_classes = int(match_last_bias_size(model))
        label0 = torch.randn((batch, n_classes), generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)
        labels_from = "optimised jointly (DLG soft label)"
    else:
        y, labels_from = attack_labels(model, shared, visible, labels, batch, c["labels"], device)
    info: dict[str, Any] = {"objective": match.describe(), "settings": c, "labels_from": labels_from,
                            "precision": c["dtype"]}
    if match.empty:
        y_out = y if y is not None else torch.full((batch,), -1, dtype=torch.long, device=device)
        return AttackResult(x=x0, labels=y_out, status="nothing_visible", message=nothing_to_match(match),
                            final_loss=float("nan"), trace=[], info={**info, "iterations": 0})
    loop = run_lbfgs(model, match, x0, c, y=y, label0=label0, box=box, progress=progress)
    y_out = y if y is not None else loop["label_logits"].argmax(dim=-1)
    info.update({k: loop[k] for k in ("iterations", "func_evals", "idle_steps", "objective_scale", "seconds",
                                      "iterations_per_second", "stopped")})
    if loop["stop_reason"]:
        info["stop_reason"] = loop["stop_reason"]
    # L-BFGS's tolerances are absolute: on a tiny visible objective it may never move (reported,
    # not hidden: such a run is the attack's failure, not evidence about the mask alone)
    info["stalled"] = bool(loop["iterations"]) and loop["idle_steps"] == loop["iterations"]
    status = loop["status"]
    if loop["stopped"] and loop["stopped"].startswith("time limit"):
        status = "ok"
    msg = (loop["stopped"] + ("; returned the last iterate with a finite objective" if status == "diverged" else "")
           if loop["stopped"] else
           f"{loop['iterations']} L-BFGS steps ({loop['func_evals']} evaluations), final gradient distance "
           f"{loop['final_distance']:.4g}" + (f" ({loop['stop_reason']})" if loop["stop_reason"] else "")
           + ("; L-BFGS never moved: the objective's gradient is below tolerance_grad "
              f"{c['tolerance_grad']:g} from the start (normalize: target makes it scale-free)"
              if info["stalled"] else ""))
    return AttackResult(x=loop["x"], labels=y_out.detach(), status=status, message=msg,
                        final_loss=loop["final_distance"], trace=loop["trace"], info=info)


def match_last_bias_size(model: nn.Module) -> int:
    """Number of classes: the output size of the model's last layer (its last parameter)."""
    last = [p for p in model.parameters()][-1]
    return int(last.shape[0])
