"""The significance-metric registry, its call convention and result type.

A metric attaches a non-negative score to every entry of the client's gradient; the mask
code (:mod:`gibench.masks`) then encrypts the top-scored entries.  Every metric is a
:class:`Metric` in :data:`METRICS` and is called through :func:`compute_scores`.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..io import plain
from ..registry import Registry


@dataclass
class ScoreResult:
    """Per-entry scores (same names/shapes as the parameters, float32, >= 0) and a
    JSON-serialisable ``info`` (formula, options used, estimator error, ...)."""

    scores: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What every metric may read: the model, the client's batch and its gradient."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    grads: dict[str, torch.Tensor]
    seed: int
    loss: str
    mode: str

    @property
    def names(self) -> list[str]:
        return list(self.grads)

    @property
    def device(self) -> torch.device:
        return next(iter(self.grads.values())).device


#: An option check: the value -> what is expected (a message) when it is not allowed, else None.
OptionCheck = Callable[[Any], "str | None"]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def int_at_least(lo: int, optional: bool = False) -> OptionCheck:
    def check(v: Any) -> str | None:
        if (v is None and optional) or (_is_int(v) and v >= lo):
            return None
        return f"an integer >= {lo}" + (" or null" if optional else "")
    return check


def positive_number(optional: bool = False) -> OptionCheck:
    def check(v: Any) -> str | None:
        if (v is None and optional) or (_is_number(v) and v > 0):
            return None
        return "a number > 0" + (" or null" if optional else "")
    return check


def one_of(*allowed: Any) -> OptionCheck:
    def check(v: Any) -> str | None:
        return None if v in allowed else "one of " + ", ".join(repr(a) for a in allowed)
    return check


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


@dataclass
class Metric:
    """``fn(ctx, **options) -> ScoreResult``; the keyword options of ``fn`` (with their
    defaults) are the metric's ``params``; unknown params are rejected by name, and each
    option with an entry in ``checks`` is checked (at DAG build: :func:`check_params`)."""

    name: str
    fn: Callable[..., ScoreResult]
    description: str = ""
    checks: dict[str, OptionCheck] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        sig = inspect.signature(self.fn)
        return {p.name: p.default for p in list(sig.parameters.values())[1:]
                if p.kind is inspect.Parameter.KEYWORD_ONLY}


METRICS: Registry[Metric] = Registry("significance metric")


def metric(name: str, description: str = "", checks: dict[str, OptionCheck] | None = None) -> Callable:
    """Decorator: register ``fn(ctx, *, option=default, ...)`` as metric ``name``; ``checks``
    maps option names to :data:`OptionCheck` s."""

    def deco(fn: Callable[..., ScoreResult]) -> Callable[..., ScoreResult]:
        m = Metric(name, fn, description or (fn.__doc__ or "").strip().split("\n")[0], dict(checks or {}))
        unknown = sorted(set(m.checks) - set(m.options()))
        if unknown:
            raise ValueError(f"metric {name!r}: checks for options it does not have: {unknown}")
        METRICS.add(name, m)
        return fn

    return deco


def check_params(name: str, params: Any, where: str) -> list[str]:
    """Errors (naming ``where`` and the option) in the options ``params`` of metric ``name``;
    empty when they are fine.  ``where`` is the config key of ``params``."""
    m = METRICS.get(name)
    if not isinstance(params, dict):
        return [f"config error at {where}: expected a mapping of options, not {params!r}"]
    opts = m.options()
    unknown = sorted(set(params) - set(opts))
    if unknown:
        return [f"config error at {where}: unknown option(s) {unknown} of significance metric {name!r}; "
                f"known: {', '.join(sorted(opts)) or 'none'}"]
    errs = []
    for key, value in params.items():
        check = m.checks.get(key)
        expected = check(value) if check else None
        if expected:
            errs.append(f"config error at {where}.{key}: {value!r} is not allowed; expected {expected}")
    return errs


def check_significance_config(se: dict, pre: str = "studies.selective_encryption") -> list[str]:
    """DAG-build checks of ``<pre>.significance.params`` (option names and values of every
    registered metric listed there; unknown metric names are reported by the study check)."""
    sig = se.get("significance") or {}
    errs = []
    for name, params in (sig.get("params") or {}).items():
        if name in METRICS:
            errs += check_params(name, params, f"{pre}.significance.params.{name}")
    return errs


def model_params(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The trainable parameters in ``named_parameters()`` order (the gradient's order)."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def compute_scores(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   grads: dict[str, torch.Tensor], *, seed: int, params: dict | None = None,
                   loss: str = "cross_entropy", mode: str = "eval") -> ScoreResult:
    """Score every gradient entry with metric ``name``.

    ``grads`` is the client gradient (name -> tensor) of ``model`` on ``(x, y)``; it may come
    from a file in any key order: the result follows ``named_parameters()`` order and
    ``info['names']`` records that order (the mask code breaks ties by it).  ``params`` are
    the metric's options (see :func:`metric_options`); unknown keys raise ``ValueError``.
    """
    m = METRICS.get(name)
    opts = m.options()
    params = dict(params or {})
    errs = check_params(name, params, f"significance.params.{name}")
    if errs:
        raise ValueError("; ".join(errs))
    named = model_params(model)
    names = [n for n, _ in named]
    if set(grads) != set(names):
        missing, extra = sorted(set(names) - set(grads)), sorted(set(grads) - set(names))
        raise ValueError(f"significance metric {name!r}: gradient and model parameters differ "
                         f"(missing {missing[:5]}, extra {extra[:5]})")
    for n, p in named:
        if tuple(grads[n].shape) != tuple(p.shape):
            raise ValueError(f"gradient {n!r} has shape {tuple(grads[n].shape)}, parameter {tuple(p.shape)}")
    ctx = Context(model, x, y, {n: grads[n] for n in names}, int(seed), loss, mode)
    result = m.fn(ctx, **params)
    scores = {}
    for n, p in named:
        s = result.scores[n].detach().to(torch.float32)
        if tuple(s.shape) != tuple(p.shape):
            raise RuntimeError(f"metric {name!r} returned shape {tuple(s.shape)} for {n!r}")
        scores[n] = s
    bad = [n for n, s in scores.items() if not bool(torch.isfinite(s).all()) or bool((s < 0).any())]
    if bad:
        raise RuntimeError(f"metric {name!r}: scores not finite and non-negative in {bad[:5]}")
    info = {"metric": name, "params": {**opts, **params}, "names": names,
            "num_entries": int(sum(p.numel() for _, p in named)), **result.info}
    return ScoreResult(scores, plain(info))


def metric_options(name: str) -> dict[str, Any]:
    """The options a metric accepts, with their defaults."""
    return METRICS.get(name).options()
