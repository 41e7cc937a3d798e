"""The metrics that need no further differentiation: Grad, Param, ProdSig and a random control.

Grad and ProdSig come from the paper's distance-based analysis (section 4.3), Param is the
"free" parameter magnitude, Random is the control FedML-HE compares against.
"""
from __future__ import annotations

import torch

from .base import Context, ScoreResult, metric, model_params


@metric("grad", "gradient magnitude |g_i| (paper: Grad)")
def grad(ctx: Context) -> ScoreResult:
    return ScoreResult({n: g.detach().abs() for n, g in ctx.grads.items()}, {"formula": "|g_i|"})


@metric("param", "parameter magnitude |theta_i| (paper: Param)")
def param(ctx: Context) -> ScoreResult:
    return ScoreResult({n: p.detach().abs() for n, p in model_params(ctx.model)}, {"formula": "|theta_i|"})


@metric("prodsig", "product significance |g_i * theta_i| (paper: ProdSig)")
def prodsig(ctx: Context) -> ScoreResult:
    params = dict(model_params(ctx.model))
    return ScoreResult({n: (g.detach() * params[n].detach().to(g)).abs() for n, g in ctx.grads.items()},
                       {"formula": "|g_i * theta_i|"})


@metric("random", "seeded uniform scores (control: a uniformly random mask)")
def random(ctx: Context) -> ScoreResult:
    """U(0, 1) per entry, drawn on the CPU from ``seed`` in ``named_parameters()`` order, so
    the scores (and the mask) do not depend on the device."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(ctx.seed) % 2**63)
    scores = {n: torch.rand(g.shape, generator=gen, dtype=torch.float32).to(g.device)
              for n, g in ctx.grads.items()}
    return ScoreResult(scores, {"formula": "U(0,1) i.i.d., torch CPU generator seeded with the job seed"})
