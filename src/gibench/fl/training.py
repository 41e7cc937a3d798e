"""One client's local training and the server's pieces (:mod:`gibench.fl`): the gradient function
(:data:`GradFn`, plain or defended), optimisers, :func:`local_train`, :func:`fedavg_aggregate`,
per-sample evaluation, early stopping and the server-side learning-rate schedules."""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


from .partition import Pool
from .settings import FLConfigError


#: A client's minibatch gradient: ``fn(model, x, y, generator) -> {param name: grad}``;
#: ``generator`` is a seeded CPU ``torch.Generator`` for the defense's draws.  The model is
#: in train mode; names missing from the result get no update from the optimiser.
GradFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], Mapping[str, torch.Tensor]]

# ===================================================================== training pieces

def plain_gradient(loss: str = "cross_entropy") -> GradFn:
    """The undefended client gradient: ∇θ of the batch-mean cross-entropy."""
    if loss != "cross_entropy":
        raise FLConfigError(f"fl.loss: unknown loss {loss!r} (cross_entropy)")

    def fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        value = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(value, [p for _, p in named])
        return {n: g for (n, _), g in zip(named, grads)}

    return fn


def make_optimizer(params: Iterable[torch.nn.Parameter], spec: Mapping[str, Any], lr: float) -> torch.optim.Optimizer:
    kind = spec.get("type", "adam")
    wd = float(spec.get("weight_decay", 0.0))
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(spec.get("betas", (0.9, 0.999))),
                                eps=float(spec.get("eps", 1e-8)), weight_decay=wd)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(spec.get("momentum", 0.0)), weight_decay=wd,
                               nesterov=bool(spec.get("nesterov", False)))
    raise FLConfigError(f"fl.optimizer.type: unknown optimiser {kind!r} (adam | sgd)")


def local_train(model: nn.Module, pool: Pool, train_pos: np.ndarray, grad_fn: GradFn, *,
                optimizer: torch.optim.Optimizer, epochs: int, batch_size: int, shuffle: bool,
                drop_last: bool, shuffle_generator: torch.Generator, defense_generator: torch.Generator,
                device: torch.device | str) -> int:
    """Local epochs of minibatch steps on one client; returns the number of steps.

    Each step: g = grad_fn(model, x_batch, y_batch) (the possibly defended gradient), assigned
    to ``p.grad``, then ``optimizer.step()``."""
    model.train()
    params = dict(model.named_parameters())
    n = len(train_pos)
    steps = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=shuffle_generator).numpy() if shuffle else np.arange(n)
        stop = n - n % batch_size if (drop_last and n >= batch_size) else n
        for start in range(0, stop, batch_size):
            pos = train_pos[order[start:start + batch_size]]
            x, y = pool.get(pos, device)
            grads = grad_fn(model, x, y, defense_generator)
            for name, p in params.items():
                g = grads.get(name)
                p.grad = None if g is None else g.detach().to(p.dtype)
            optimizer.step()
            steps += 1
    for p in params.values():
        p.grad = None
    return steps


def fedavg_aggregate(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Σ_k w_k θ_k / Σ_k w_k for every floating-point entry (accumulated in float64, cast
    back); non-float entries (e.g. BatchNorm's step counter) are taken from the first state."""
    if not states:
        raise ValueError("fedavg_aggregate: no client states")
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"fedavg_aggregate: weights must be >= 0 with a positive sum, got {weights}")
    w = w / w.sum()
    out = {}
    for k, v0 in states[0].items():
        if torch.is_floating_point(v0):
            acc = torch.zeros_like(v0, dtype=torch.float64)
            for wk, st in zip(w, states):
                acc += float(wk) * st[k].to(torch.float64)
            out[k] = acc.to(v0.dtype)
        else:
            out[k] = v0.clone()
    return out


@torch.no_grad()
def per_sample_eval(model: nn.Module, pool: Pool, pos: np.ndarray, batch_size: int,
                    device: torch.device | str) -> tuple[np.ndarray, np.ndarray]:
    """(cross-entropy, correct) per sample of the model in eval mode."""
    model.eval()
    losses, correct = [], []
    for start in range(0, len(pos), batch_size):
        x, y = pool.get(pos[start:start + batch_size], device)
        logits = model(x)
        losses.append(F.cross_entropy(logits, y, reduction="none").double().cpu())
        correct.append((logits.argmax(1) == y).cpu())
    if not losses:
        return np.zeros(0), np.zeros(0, bool)
    return torch.cat(losses).numpy(), torch.cat(correct).numpy()


# ===================================================================== stopping and schedules

class EarlyStopping:
    """Stop after ``patience`` consecutive rounds without improvement of the monitored value
    (improvement: value < best - min_delta).  ``patience: None`` never stops."""

    def __init__(self, patience: int | None, min_delta: float = 0.0):
        self.patience, self.min_delta = patience, float(min_delta)
        self.best = math.inf
        self.best_round = -1
        self.bad_rounds = 0

    def update(self, round_: int, value: float) -> bool:
        """Record the value of ``round_``; True when this round is the new best."""
        if value < self.best - self.min_delta or (self.best_round < 0 and not math.isnan(value)):
            self.best, self.best_round, self.bad_rounds = float(value), int(round_), 0
            return True
        self.bad_rounds += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_rounds >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_round": self.best_round, "bad_rounds": self.bad_rounds}

    def load_state_dict(self, st: Mapping[str, Any]) -> None:
        self.best, self.best_round, self.bad_rounds = float(st["best"]), int(st["best_round"]), int(st["bad_rounds"])


class RoundSchedule:
    """The learning rate clients use in each round.

    * ``constant``;
    * ``exponential``: lr_t = lr_0 · gamma^(t-1) (DCS²'s Flower clients: lr · 0.99^round);
    * ``plateau``: PyTorch ReduceLROnPlateau (mode min, relative threshold, cooldown 0) on the
      mean validation loss after each round: when it has not improved on the best by the
      relative ``threshold`` for more than ``patience`` rounds, lr ← max(lr·factor, min_lr)."""

    def __init__(self, base_lr: float, spec: Mapping[str, Any]):
        self.kind = spec.get("type", "constant")
        if self.kind not in ("constant", "exponential", "plateau"):
            raise FLConfigError(f"fl.lr_schedule.type: unknown {self.kind!r} (constant | exponential | plateau)")
        self.base_lr, self.spec = float(base_lr), dict(spec)
        self.lr = float(base_lr)
        self.best = math.inf
        self.bad = 0

    def lr_for(self, round_: int) -> float:
        if self.kind == "exponential":
            return self.base_lr * float(self.spec.get("gamma", 0.99)) ** (round_ - 1)
        return self.lr

    def step(self, value: float) -> None:
        if self.kind != "plateau":
            return
        if value < self.best * (1.0 - float(self.spec.get("threshold", 1e-4))):
            self.best, self.bad = float(value), 0
        else:
            self.bad += 1
        if self.bad > int(self.spec.get("patience", 15)):
            self.lr = max(self.lr * float(self.spec.get("factor", 0.5)), float(self.spec.get("min_lr", 0.0)))
            self.bad = 0

    def state_dict(self) -> dict:
        return {"lr": self.lr, "best": self.best, "bad": self.bad}

    def load_state_dict(self, st: Mapping[str, Any]) -> None:
        self.lr, self.best, self.bad = float(st["lr"]), float(st["best"]), int(st["bad"])
