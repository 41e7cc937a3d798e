"""Inverting Gradients' restarts run together (issue 23, item 1): :func:`inverting_gradients_many`,
the ``many`` of the ``ig`` entry registered here (with :func:`.ig.inverting_gradients`).

Several restarts (one seed each) that share the model, the target and the labels run in
lockstep: per iteration one ``torch.func.vmap`` call gives every running restart its dummy
gradient, the objective of all of them is evaluated batched and one backward gives each its
image gradient (:func:`invert_many`); when every restart follows the same learning-rate
schedule and none can stop early (:func:`lockstep`), one optimiser steps their stacked
images.  Each restart's result is that of :func:`.ig.inverting_gradients` with its seed up to
floating-point summation order (``tests/attacks/test_ig_many.py``); a single seed, or a model that
cannot be mapped over restarts (:func:`vectorisable`), takes the one-restart loop.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .base import ATTACKS, AttackResult
from .ig import (PARAMS, _Run, attack_labels, initial_input, invert, inverting_gradients, milestones,
                 nothing_to_match, prepare_model, resolve_cfg, result_from)
from .objectives import GradientMatch


def total_variation_many(xs: torch.Tensor) -> torch.Tensor:
    """:func:`total_variation` of each ``xs[i]`` (``xs``: ``[n, batch, C, H, W]``): ``[n]``."""
    dx = (xs[..., :, :-1] - xs[..., :, 1:]).abs().flatten(1).mean(1)
    dy = (xs[..., :-1, :] - xs[..., 1:, :]).abs().flatten(1).mean(1)
    return dx + dy


def vectorisable(model: nn.Module, c: dict) -> str | None:
    """Why IG's restarts on ``model`` cannot share one vectorised call, or None when they can:
    a model in training mode with batch normalisation (batch statistics, running-stat
    updates) or dropout (random per call) does not map over restarts."""
    if model.training and any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd))
                              for m in model.modules()):
        return "model in training mode with batch norm or dropout"
    return None


def invert_many(model: nn.Module, match: GradientMatch, y: torch.Tensor, x0s: Sequence[torch.Tensor], c: dict, *,
                box: tuple[torch.Tensor, torch.Tensor] | None = None,
                progress: Callable[[int, int, float], None] | None = None) -> list[dict[str, Any]]:
    """IG's loop (:func:`invert`, default dummy gradient, no extras) for several restarts that
    share the model, the target and the labels, in lockstep.  Per iteration, one
    ``torch.func.vmap`` call gives every running restart its dummy gradient (``grad`` of the
    loss of its own images, batched over restarts, with a graph back to the images); the
    objective of all of them is evaluated at once (:meth:`GradientMatch.batched`,
    :func:`total_variation_many`) and one ``torch.autograd.grad`` of their sum gives each
    restart its image gradient (the restarts are independent, so the gradient of the sum
    with respect to restart ``i``'s images is that of its own objective).  Then each restart
    takes its own optimiser step with its own schedule, best iterate and stopping rules
    (:class:`_Run`, shared with :func:`invert`).  A restart that stops leaves the batch; the
    others go on.  Each restart's result is that of :func:`invert` from the same start up to
    floating-point summation order (the batched kernels add in another order;
    ``tests/attacks/test_ig_many.py`` checks the agreement).  ``progress`` gets (restart index,
    iteration, objective).  Time limits count from the common start."""
    from torch.func import functional_call, grad, vmap

    reason = vectorisable(model, c)
    if reason is not None:
        raise ValueError(f"invert_many: {reason}; run the restarts one by one (invert)")
    names = match.names
    frozen = {n: p.detach() for n, p in model.named_parameters()}
    idx = {id(p): n for n, p in model.named_parameters()}
    if [idx.get(id(p)) for p in match.params] != names:
        raise ValueError("invert_many: the match's parameters are not the model's")

    def dummy_gradient(xx: torch.Tensor) -> list[torch.Tensor]:
        def ce(sub: dict[str, torch.Tensor]) -> torch.Tensor:
            return F.cross_entropy(functional_call(model, {**frozen, **sub}, (xx,)), y)
        g = grad(ce)({n: frozen[n] for n in names})
        return [g[n] for n in names]

    dummy_gradients = vmap(dummy_gradient)
    tv_weight = c["tv"]

    def objective(xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dist = match.batched(dummy_gradients(xs))
        if tv_weight:
            tv = total_variation_many(xs)
            return dist + tv_weight * tv, dist, tv
        with torch.no_grad():         # no TV term: its value is kept for the trace, without a graph
            tv = total_variation_many(xs)
        return dist, dist, tv

    t0 = time.time()
    runs = [_Run(x0, c, {}, box, t0) for x0 in x0s]
    if lockstep(c):
        _lockstep_loop(runs, objective, c, box, progress)
        return _scores(runs, model, match, y)
    it = 0
    while True:
        live = [i for i, r in enumerate(runs) if r.active]
        if not live:
            break
        for i in live:
            runs[i].opt.zero_grad(set_to_none=True)
        xs = torch.stack([runs[i].x.detach() for i in live]).requires_grad_(True)
        total, dist, tv = objective(xs)
        (gx,) = torch.autograd.grad(total.sum(), xs)
        # the per-restart values go to the host once per iteration (one copy, not 3n syncs)
        total, dist, tv = (t.detach().cpu() for t in (total, dist, tv))
        for j, i in enumerate(live):
            cb = None if progress is None else (lambda k, v, i=i: progress(i, k, v))
            runs[i].step(it, total[j], dist[j], tv[j], (gx[j],), cb)
        it += 1
    return _scores(runs, model, match, y)


def _scores(runs: list[_Run], model: nn.Module, match: GradientMatch, y: torch.Tensor) -> list[dict[str, Any]]:
    """Each restart's result with its score, as in :func:`invert`: the gradient distance of
    its output without TV."""
    out = []
    for r in runs:
        x_out, _ = r.output()
        final = float(match(torch.autograd.grad(F.cross_entropy(model(x_out), y), match.params,
                                                create_graph=True)).detach())
        out.append(r.result(final))
    return out


def lockstep(c: dict) -> bool:
    """Whether every restart of :func:`invert_many` has the same learning rate at every
    iteration and runs all ``iterations`` (barring a non-finite objective): no plateau
    schedule, no stopping rule, no time limit.  Then one optimiser steps all the restarts'
    images stacked (:func:`_lockstep_loop`); Adam and SGD are elementwise, so each restart's
    step is the one its own optimiser would take."""
    return (c["lr_schedule"] != "plateau" and c["stop_loss"] is None and c["stop_patience"] is None
            and c["time_limit"] is None)


def _lockstep_loop(runs: list[_Run], objective, c: dict, box, progress) -> None:
    """:func:`invert_many`'s loop when :func:`lockstep` holds: the images of all restarts
    are one tensor ``[n, *x.shape]`` with one optimiser and one schedule (built as
    :class:`_Run` builds its own), stepped once per iteration; each :class:`_Run` keeps its
    own bookkeeping (best iterate, trace, progress; :meth:`_Run.after_step`).  A restart
    whose objective is not finite stops there, as in :meth:`_Run.step`: its image is kept
    and its row no longer gets a gradient (the row is still computed; the rows are
    independent)."""
    xs = torch.stack([r.x.detach() for r in runs]).requires_grad_(True)
    m = c["iterations"]
    opt = (torch.optim.Adam([{"params": [xs], "lr": c["lr"]}]) if c["optimizer"] == "adam"
           else torch.optim.SGD([{"params": [xs], "lr": c["lr"]}], momentum=0.0))
    sched = (torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones(m), gamma=0.1)
             if c["lr_schedule"] == "multistep" else None)
    keep_best = c["keep"] == "best"
    for it in range(m):
        if not any(r.active for r in runs):
            break
        opt.zero_grad(set_to_none=True)
        total, dist, tv = objective(xs)
        (gx,) = torch.autograd.grad(total.sum(), xs)
        total, dist, tv = (t.detach().cpu() for t in (total, dist, tv))
        values = total.tolist()
        finite = torch.isfinite(total).tolist()
        g = gx.sign() if c["signed"] else gx
        for i, r in enumerate(runs):
            if r.active and not finite[i]:
                r.stopped = f"non-finite objective at iteration {it}"
                r.active = False
                r.x = xs[i].detach().clone()
            if not r.active:
                g[i] = 0
            elif keep_best and values[i] < r.best[0]:
                r.best = (values[i], xs[i].detach().clone(), {})
        xs.grad = g
        lr_now = opt.param_groups[0]["lr"]
        opt.step()
        if sched is not None:
            sched.step()
        with torch.no_grad():
            if box is not None:
                xs.data = torch.max(torch.min(xs.data, box[1]), box[0])
        for i, r in enumerate(runs):
            if r.active:
                cb = None if progress is None else (lambda k, v, i=i: progress(i, k, v))
                r.after_step(it, values[i], dist[i], tv[i], lr_now, cb)
                if not r.active:
                    r.x = xs[i].detach().clone()


def inverting_gradients_many(model: nn.Module, shared: dict[str, torch.Tensor],
                             visible: dict[str, torch.Tensor] | None, *, input_shape: tuple[int, ...], mean, std,
                             labels: torch.Tensor | None, cfg: dict | None, seeds: Sequence[int],
                             device: torch.device | str = "cpu",
                             progress: Callable[[int, int, float], None] | None = None) -> list[AttackResult]:
    """:func:`inverting_gradients` once per seed (one restart each), the restarts run
    together by :func:`invert_many` (one at a time when :func:`vectorisable` says no, or
    for a single seed).  Result ``i`` is restart ``seeds[i]``'s, as a call of
    :func:`inverting_gradients` with that seed gives it (to floating-point summation order)."""
    c = resolve_cfg(cfg)
    device = torch.device(device)
    model = prepare_model(model, c, device)
    match = GradientMatch(list(model.named_parameters()), shared, visible, c["cost"])
    y, labels_from = attack_labels(model, shared, visible, labels, int(input_shape[0]), c["labels"], device)
    starts = [initial_input(input_shape, c, mean, std, s, device) for s in seeds]
    box = starts[0][1] if starts else None
    why = vectorisable(model, c)
    info: dict[str, Any] = {"objective": match.describe(), "settings": c, "labels_from": labels_from}
    if match.empty:
        return [AttackResult(x=x0, labels=y, status="nothing_visible", message=nothing_to_match(match),
                             final_loss=float("nan"), trace=[], info={**info, "iterations": 0}) for x0, _ in starts]
    if len(starts) == 1 or why is not None:
        loops = [invert(model, match, y, x0, c, box=box,
                        progress=None if progress is None else (lambda k, v, i=i: progress(i, k, v)))
                 for i, (x0, _) in enumerate(starts)]
    else:
        loops = invert_many(model, match, y, [x0 for x0, _ in starts], c, box=box, progress=progress)
    return [result_from(loop, y, info) for loop in loops]


# registered here, with its vectorised-restarts variant (``many``)
ATTACKS.add("ig", inverting_gradients, params=PARAMS, display="IG",
            studies=("selective_encryption", "concealed_samples"), many=inverting_gradients_many,
            description="Inverting Gradients (Geiping et al. 2020): cosine gradient matching + TV")
