"""FedAvg simulation for the utility (accuracy) side of the studies.

What is simulated (McMahan et al. 2017, "Communication-efficient learning of deep networks
from decentralized data", Algorithm 1 *FederatedAveraging*):

* N clients hold disjoint shards of a training pool: an IID split (a seeded permutation cut
  into N near-equal parts, as paper B §5.1 "independent and identically distributed to those
  10 clients") or a non-IID split drawing each class's client proportions from
  Dirichlet(α) (Hsu, Qi & Brown 2019, "Measuring the effects of non-identical data
  distribution"), the usual option for DCS² Table 10's non-IID setting.
* Each client keeps a validation share of its shard (paper B: 10 %).
* In round t the server sends the global weights θ_t to the sampled clients; each runs
  ``local_epochs`` epochs of minibatch training (optimiser, lr and batch size from config,
  a fresh optimiser every round as Flower clients create it in ``fit``) and returns its
  weights; the server averages them, weighted by the clients' training-sample counts
  (``weighting: samples``, FedAvg's n_k / n; ``uniform`` is the plain mean).
* A client's minibatch gradient is whatever its *gradient function* returns: the plain
  gradient of the mean cross-entropy, or the defended gradient of
  ``gibench.defenses.DefenseChain.client_gradient`` (the same call the gradient rule makes),
  so defenses act during local training exactly as in the shared update that is attacked.
  The optimiser then applies that gradient.
* After every round the global model is evaluated: per-client validation loss (mean
  cross-entropy) and their unweighted mean over all clients ("mean validation loss over all
  clients", paper B §5.1), accuracy on the held-out test set, and accuracy on the protected
  clients' training data (DCS² Tables 1-11, "Acc (Sensitive Data)").
* Early stopping: stop once the mean validation loss has not improved (strictly lower, or by
  more than ``min_delta``) for ``patience`` consecutive rounds (paper B: 40 of at most 300).
  The *best* model is the global model of the round with the lowest mean validation loss.
* Optional server-side learning-rate schedules across rounds: ``plateau`` (the CVB reference
  config's ReduceLROnPlateau on the validation loss, factor 0.5, patience 15; PyTorch's
  semantics, relative threshold 1e-4) and ``exponential`` (DCS²'s Flower code:
  lr · 0.99^round).

Randomness: every random draw of round t (client sampling, each client's shuffling, its
dropout masks via the global torch RNG, the defense generator, evaluation-time sampling of
stochastic modules) comes from a seed derived from (run seed, purpose, round, client), so a
run resumed from the state after round t continues the same curve (bitwise on CPU with the
same thread count).

Checkpoints: the global model after every round (round 0 = the initialisation) can be kept
as safetensors (for attacks on trained models, "a model after round r"), and a resume state
(global + best weights, early-stopping/schedule state, the curve so far) is rewritten after
each round.  The job deletes the resume state once its outputs are written.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import io
from .provenance import digest_obj
from .seeds import derive_seed

#: A client's minibatch gradient: ``fn(model, x, y, generator) -> {param name: grad}``;
#: ``generator`` is a seeded CPU ``torch.Generator`` for the defense's draws.  The model is
#: in train mode; names missing from the result get no update from the optimiser.
GradFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], Mapping[str, torch.Tensor]]


class FLConfigError(ValueError):
    """FedAvg settings that cannot run; the message names the key."""


# ===================================================================== settings

DEFAULTS: dict[str, Any] = {
    "clients": 10,
    "partition": {"type": "iid", "alpha": 0.5, "min_samples": 2},
    "samples_per_client": None,
    "val_fraction": 0.1,
    "rounds": 300,
    "local_epochs": 1,
    "batch_size": 64,
    "drop_last": False,
    "shuffle": True,
    "client_fraction": 1.0,
    "weighting": "samples",
    "loss": "cross_entropy",
    "optimizer": {"type": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
                  "momentum": 0.0, "nesterov": False},
    "lr_schedule": {"type": "constant", "factor": 0.5, "patience": 15, "threshold": 1e-4, "min_lr": 0.0,
                    "gamma": 0.99},
    "early_stopping": {"patience": 40, "min_delta": 0.0},
    "eval_batch_size": 500,
    "protected_clients": [],
    "defended_clients": "all",
}


def settings_from(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """``cfg`` (the study's ``fl`` block or a part of it) over :data:`DEFAULTS`, nested
    dicts merged one level deep.  The schema fills the same defaults at DAG build; this
    keeps the library usable without it (tests, notebooks)."""
    out = copy.deepcopy(DEFAULTS)
    for k, v in (cfg or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **copy.deepcopy(dict(v))}
        else:
            out[k] = copy.deepcopy(v)
    return out


# ===================================================================== data

def partition_iid(n: int, clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Positions 0..n-1 in a seeded permutation cut into ``clients`` near-equal parts."""
    if clients > n:
        raise FLConfigError(f"fl.clients = {clients} but the training pool holds only {n} samples")
    return [np.sort(p) for p in np.array_split(rng.permutation(n), clients)]


def partition_dirichlet(labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator,
                        min_samples: int = 2, max_tries: int = 1000) -> list[np.ndarray]:
    """Label-skewed split: for each class c, proportions p_c ~ Dir(α·1_N) over the N clients
    and the class's (shuffled) samples are cut at the cumulative proportions (Hsu et al. 2019).
    Redrawn until every client holds at least ``min_samples`` samples."""
    labels = np.asarray(labels)
    if alpha <= 0:
        raise FLConfigError(f"fl.partition.alpha must be > 0, got {alpha}")
    if clients * min_samples > len(labels):
        raise FLConfigError(f"fl.partition: {clients} clients x min_samples {min_samples} exceed the "
                            f"{len(labels)} samples of the training pool")
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            p = rng.dirichlet(np.full(clients, float(alpha)))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].append(chunk)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in out) >= min_samples:
            return out
    raise FLConfigError(f"fl.partition: no Dirichlet(alpha={alpha}) split gave every one of {clients} clients "
                        f"at least {min_samples} samples in {max_tries} draws; raise alpha or lower min_samples")


def split_validation(idx: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) positions: round(fraction·n) of a client's shard, drawn at random, for
    validation (at least one when fraction > 0 and the shard has two or more samples)."""
    n = len(idx)
    n_val = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    perm = rng.permutation(n)
    return np.sort(idx[perm[n_val:]]), np.sort(idx[perm[:n_val]])


@dataclass
class ClientShard:
    client: int
    train: np.ndarray           # positions into the pool
    val: np.ndarray


def make_clients(labels: np.ndarray, settings: Mapping[str, Any], seed: int) -> list[ClientShard]:
    """The clients' shards of a training pool with these labels (positions into the pool)."""
    s = settings_from(settings)
    rng = np.random.default_rng(derive_seed(seed, "fl_partition"))
    n = len(labels)
    part = s["partition"]
    if part["type"] == "iid":
        shards = partition_iid(n, s["clients"], rng)
    elif part["type"] == "dirichlet":
        shards = partition_dirichlet(labels, s["clients"], part["alpha"], rng, part.get("min_samples", 2))
    else:
        raise FLConfigError(f"fl.partition.type: unknown {part['type']!r} (iid | dirichlet)")
    cap = s.get("samples_per_client")
    out = []
    for k, shard in enumerate(shards):
        if cap is not None:
            if len(shard) < cap:
                raise FLConfigError(f"fl.samples_per_client = {cap} but client {k} holds only {len(shard)} "
                                    "samples of the training pool")
            shard = np.sort(rng.permutation(shard)[:cap])
        tr, va = split_validation(shard, s["val_fraction"], rng)
        if len(tr) == 0:
            raise FLConfigError(f"client {k} has no training samples (shard of {len(shard)}); lower fl.clients")
        out.append(ClientShard(k, tr, va))
    return out


class Pool:
    """Images and labels the simulation indexes by position.

    Holds either model-space tensors (``x``) or uint8 NHWC images plus a ``normalize``
    function applied per batch (for pools too large to keep as float)."""

    def __init__(self, labels: np.ndarray | torch.Tensor, x: torch.Tensor | None = None,
                 images: np.ndarray | None = None,
                 normalize: Callable[[np.ndarray], torch.Tensor] | None = None):
        self.y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if (x is None) == (images is None):
            raise ValueError("Pool needs exactly one of x (tensors) or images (+ normalize)")
        if images is not None and normalize is None:
            raise ValueError("Pool(images=...) needs a normalize function")
        self.x, self.images, self.normalize = x, images, normalize
        n = len(x) if x is not None else len(images)
        if n != len(self.y):
            raise ValueError(f"Pool: {n} inputs but {len(self.y)} labels")

    @classmethod
    def from_images(cls, images: np.ndarray, labels: np.ndarray, normalize: Callable[[np.ndarray], torch.Tensor],
                    max_bytes: int = 2 << 30, chunk: int = 2048) -> "Pool":
        """Normalise once and keep float tensors when they fit in ``max_bytes``; otherwise
        normalise batch by batch."""
        probe = normalize(images[:1])
        if probe.numel() * 4 * len(images) <= max_bytes:
            x = torch.cat([normalize(images[i:i + chunk]) for i in range(0, len(images), chunk)])
            return cls(labels, x=x)
        return cls(labels, images=images, normalize=normalize)

    def __len__(self) -> int:
        return len(self.y)

    def get(self, pos: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        pos_t = torch.as_tensor(np.asarray(pos), dtype=torch.long)
        if self.x is not None:
            x = self.x[pos_t]
        else:
            x = self.normalize(self.images[np.asarray(pos)])
        return x.to(device), self.y[pos_t].to(device)


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


# ===================================================================== checkpoints

def round_name(r: int) -> str:
    return f"round{int(r):04d}"


class CheckpointStore:
    """A work folder: ``rounds/round0000.safetensors`` ... (global model after each kept round)
    and ``state.safetensors`` (resume state: global and best weights; round, early-stopping
    and schedule state and the curve so far in the record).  A state is only resumed when its
    ``fingerprint`` (a digest of everything that determines the run) matches."""

    STATE = "state.safetensors"

    def __init__(self, folder: str | os.PathLike, fingerprint: str, keep: str | Sequence[int] = "all",
                 record: Callable[[int, Mapping[str, Any]], dict] | None = None, state_every: int = 1):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.keep = keep
        self.record = record or (lambda r, row: {"round": r})
        self.state_every = max(1, int(state_every))

    def keeps(self, r: int) -> bool:
        if self.keep == "all":
            return True
        if self.keep == "none":
            return False
        return int(r) in {int(k) for k in self.keep}

    def round_path(self, r: int) -> Path:
        return self.folder / "rounds" / f"{round_name(r)}.safetensors"

    def save_round(self, r: int, state: Mapping[str, torch.Tensor], row: Mapping[str, Any]) -> None:
        if self.keeps(r):
            io.save_tensors(self.round_path(r), state, {**self.record(r, row), "fl_round": int(r),
                                                        "fl_row": dict(row)})

    def save_state(self, *, round_: int, global_state: Mapping[str, torch.Tensor],
                   best_state: Mapping[str, torch.Tensor], extra: Mapping[str, Any]) -> None:
        tensors = {f"global.{k}": v for k, v in global_state.items()}
        # (best may be the very same tensors as global: safetensors refuses shared memory)
        tensors.update({f"best.{k}": v.clone() for k, v in best_state.items()})
        io.save_tensors(self.folder / self.STATE, tensors,
                        {"fingerprint": self.fingerprint, "round": int(round_), **extra})

    def load_state(self) -> tuple[dict, dict, dict] | None:
        """(global state, best state, record) of a matching resume state, else None (a state
        of another configuration is removed together with its round checkpoints)."""
        p = self.folder / self.STATE
        if not p.exists():
            if (self.folder / "rounds").exists():
                shutil.rmtree(self.folder / "rounds")
            return None
        try:
            tensors, rec = io.load_tensors(p)
        except io.ArtifactError:
            rec, tensors = {}, {}
        if rec.get("fingerprint") != self.fingerprint:
            self.clear()
            return None
        g = {k[len("global."):]: v for k, v in tensors.items() if k.startswith("global.")}
        b = {k[len("best."):]: v for k, v in tensors.items() if k.startswith("best.")}
        return g, b, rec

    def clear(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)


# ===================================================================== the run

@dataclass
class FedAvgResult:
    curve: list[dict]                       # one row per evaluated round (round 0 = init)
    final_state: dict[str, torch.Tensor]
    best_state: dict[str, torch.Tensor]
    best_round: int
    last_round: int
    stop_reason: str                        # early_stopping | max_rounds
    resumed_from: int | None = None
    seconds_per_round: list[float] = field(default_factory=list)

    @property
    def final_row(self) -> dict:
        return self.curve[-1]

    @property
    def best_row(self) -> dict:
        return next(r for r in self.curve if r["round"] == self.best_round)


class Interrupted(RuntimeError):
    """Raised by :func:`run_fedavg` after ``stop_after`` rounds (tests of resuming)."""


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@contextlib.contextmanager
def seeded_rng(seed: int, device: torch.device):
    """The global torch RNG (CPU and ``device``) seeded with ``seed`` inside, restored after:
    modules that draw from it (nn.Dropout, sampling bottlenecks) become reproducible."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def evaluate_global(model: nn.Module, pool: Pool, clients: Sequence[ClientShard], test_pos: np.ndarray,
                    protected: Sequence[int], batch_size: int, device: torch.device) -> dict[str, Any]:
    """The round's evaluation row (losses are mean cross-entropy, accuracies fractions)."""
    val_pos = np.concatenate([c.val for c in clients]) if clients else np.zeros(0, np.int64)
    loss, corr = per_sample_eval(model, pool, val_pos, batch_size, device)
    per_client, acc_n = [], 0
    start = 0
    for c in clients:
        seg = loss[start:start + len(c.val)]
        per_client.append(float(seg.mean()) if len(seg) else float("nan"))
        start += len(c.val)
    finite = [v for v in per_client if not math.isnan(v)]
    row: dict[str, Any] = {
        "mean_val_loss": float(np.mean(finite)) if finite else float("nan"),
        "val_acc": float(corr.mean()) if len(corr) else float("nan"),
        "val_loss_per_client": per_client,
    }
    tl, tc = per_sample_eval(model, pool, test_pos, batch_size, device)
    row["test_loss"] = float(tl.mean()) if len(tl) else float("nan")
    row["test_acc"] = float(tc.mean()) if len(tc) else float("nan")
    if protected:
        ppos = np.concatenate([clients[k].train for k in protected])
        pl, pc = per_sample_eval(model, pool, ppos, batch_size, device)
        row["protected_loss"], row["protected_acc"] = float(pl.mean()), float(pc.mean())
    else:
        row["protected_loss"] = row["protected_acc"] = float("nan")
    return row


def run_fedavg(model: nn.Module, pool: Pool, clients: Sequence[ClientShard], test_pos: np.ndarray,
               settings: Mapping[str, Any], *, seed: int, device: torch.device | str = "cpu",
               grad_fn_for: Callable[[int], GradFn] | None = None,
               store: CheckpointStore | None = None,
               evaluate: Callable[[nn.Module, int], dict] | None = None,
               on_round: Callable[[dict], None] | None = None,
               stop_after: int | None = None) -> FedAvgResult:
    """Train ``model`` (its current weights are the initial global model θ_0) with FedAvg.

    ``grad_fn_for(client) -> GradFn`` gives each client's gradient function (default: the
    plain gradient for all).  ``evaluate(model, round) -> row`` replaces the evaluation
    (tests construct loss curves with it).  ``store`` keeps round checkpoints and the resume
    state; a matching state is resumed.  ``stop_after`` raises :class:`Interrupted` after
    that many newly trained rounds (to test resuming)."""
    import time

    s = settings_from(settings)
    device = torch.device(device)
    model = model.to(device)
    grad_fn_for = grad_fn_for or (lambda k: plain_gradient(s["loss"]))
    grad_fns = {c.client: grad_fn_for(c.client) for c in clients}
    protected = [int(k) for k in s["protected_clients"]]
    for k in protected:
        if not 0 <= k < len(clients):
            raise FLConfigError(f"fl.protected_clients: client {k} does not exist ({len(clients)} clients)")
    # without validation data (val_fraction 0) there is nothing to monitor: no early stopping,
    # and the "best" model is the last one
    has_val = any(len(c.val) for c in clients)
    es = EarlyStopping(s["early_stopping"].get("patience") if has_val else None,
                       s["early_stopping"].get("min_delta", 0.0))
    opt_spec = s["optimizer"]
    sched = RoundSchedule(float(opt_spec.get("lr", 1e-3)), s["lr_schedule"])

    def do_eval(r: int) -> dict:
        with seeded_rng(derive_seed(seed, "fl_eval", round=r), device):
            if evaluate is not None:
                row = dict(evaluate(model, r))
            else:
                row = evaluate_global(model, pool, clients, test_pos, protected, s["eval_batch_size"], device)
        row.setdefault("val_loss_per_client", [])
        for key in ("val_acc", "test_loss", "test_acc", "protected_loss", "protected_acc"):
            row.setdefault(key, float("nan"))
        return row

    curve: list[dict] = []
    resumed_from = None
    loaded = store.load_state() if store is not None else None
    if loaded is not None:
        g, b, rec = loaded
        model.load_state_dict(g)
        best_state = b
        start = int(rec["round"])
        es.load_state_dict(rec["early_stopping"])
        sched.load_state_dict(rec["schedule"])
        curve = [dict(r) for r in rec["curve"]]
        resumed_from = start
    else:
        start = 0
        row = {"round": 0, "lr": float("nan"), "clients_trained": 0, "local_steps": 0, **do_eval(0)}
        row["is_best"] = es.update(0, row["mean_val_loss"])
        curve.append(row)
        best_state = _clone_state(model)
        if store is not None:
            store.save_round(0, best_state, row)
            store.save_state(round_=0, global_state=best_state, best_state=best_state,
                             extra={"early_stopping": es.state_dict(), "schedule": sched.state_dict(), "curve": curve})
        if on_round:
            on_round(row)

    local = copy.deepcopy(model)
    n_clients = len(clients)
    m = max(1, int(round(float(s["client_fraction"]) * n_clients)))
    seconds: list[float] = []
    trained_now = 0
    r = start
    stop_reason = "early_stopping" if es.should_stop else "max_rounds"
    while r < int(s["rounds"]) and not es.should_stop:
        r += 1
        t0 = time.perf_counter()
        lr = sched.lr_for(r)
        if m < n_clients:
            rng = np.random.default_rng(derive_seed(seed, "fl_sample", round=r))
            chosen = sorted(rng.choice(n_clients, size=m, replace=False).tolist())
        else:
            chosen = list(range(n_clients))
        global_state = _clone_state(model)
        states, weights, steps = [], [], 0
        for k in chosen:
            c = clients[k]
            local.load_state_dict(global_state)
            opt = make_optimizer(local.parameters(), opt_spec, lr)
            shuf = torch.Generator().manual_seed(derive_seed(seed, "fl_shuffle", round=r, client=k))
            # CPU generator: the defenses draw on the CPU so every device sees the same numbers
            dgen = torch.Generator().manual_seed(derive_seed(seed, "fl_defense", round=r, client=k))
            with seeded_rng(derive_seed(seed, "fl_torch", round=r, client=k), device):
                steps += local_train(local, pool, c.train, grad_fns[k], optimizer=opt, epochs=int(s["local_epochs"]),
                                     batch_size=int(s["batch_size"]), shuffle=bool(s["shuffle"]),
                                     drop_last=bool(s["drop_last"]), shuffle_generator=shuf,
                                     defense_generator=dgen, device=device)
            states.append(_clone_state(local))
            weights.append(len(c.train) if s["weighting"] == "samples" else 1.0)
        model.load_state_dict(fedavg_aggregate(states, weights))
        del states
        row = {"round": r, "lr": lr, "clients_trained": len(chosen), "local_steps": steps, **do_eval(r)}
        row["is_best"] = es.update(r, row["mean_val_loss"])
        sched.step(row["mean_val_loss"])
        curve.append(row)
        state_now = _clone_state(model)
        if row["is_best"]:
            best_state = state_now
        if store is not None:
            store.save_round(r, state_now, row)
        if store is not None and r % store.state_every == 0:
            store.save_state(round_=r, global_state=state_now, best_state=best_state,
                             extra={"early_stopping": es.state_dict(), "schedule": sched.state_dict(), "curve": curve})
        seconds.append(time.perf_counter() - t0)
        if on_round:
            on_round(row)
        trained_now += 1
        if es.should_stop:
            stop_reason = "early_stopping"
            break
        if stop_after is not None and trained_now >= stop_after and r < int(s["rounds"]):
            raise Interrupted(f"stopped after round {r} (stop_after={stop_after})")
    if es.should_stop:
        stop_reason = "early_stopping"
    final_state = _clone_state(model)
    best_round = es.best_round
    if best_round < 0:                   # no finite validation loss in any round
        best_round, best_state = r, final_state
    return FedAvgResult(curve=curve, final_state=final_state, best_state=best_state,
                        best_round=best_round, last_round=r, stop_reason=stop_reason,
                        resumed_from=resumed_from, seconds_per_round=seconds)


# ===================================================================== summaries for tables

#: which round's accuracy a table reports: the round with the lowest mean validation loss
#: (the model early stopping keeps) or the last round trained
REPORT_CHOICES = ("best_val", "final")


def accuracy_summary(result: FedAvgResult) -> dict[str, Any]:
    """The final accuracies of one run (what ``accuracy.json`` holds)."""
    b, f = result.best_row, result.final_row
    return {
        "best_round": result.best_round, "last_round": result.last_round, "stop_reason": result.stop_reason,
        "test_acc_best": b["test_acc"], "test_acc_final": f["test_acc"],
        "test_acc_max": max(r["test_acc"] for r in result.curve),
        "protected_acc_best": b["protected_acc"], "protected_acc_final": f["protected_acc"],
        "mean_val_loss_best": b["mean_val_loss"], "mean_val_loss_final": f["mean_val_loss"],
        "test_loss_best": b["test_loss"], "test_loss_final": f["test_loss"],
    }


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean and population standard deviation (ddof 0) of the finite values, and their count."""
    v = np.asarray([float(x) for x in values if x is not None and math.isfinite(float(x))], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=0)), int(len(v))


def accuracy_rows(rows: Iterable[Mapping[str, Any]], *, dataset: str | None = None, model: str | None = None,
                  defense: str | None = None, report: str = "best_val") -> list[dict[str, Any]]:
    """Accuracy cells (mean ± std over seeds, in percent) per (dataset, model, defense) from
    per-run rows (the gathered ``accuracy.parquet``: one row per run with the keys of
    :func:`accuracy_summary` plus dataset/model/defense/seed).  Filters by the given names.

    Returns dicts: dataset, model, defense, report, test_acc_mean, test_acc_std,
    protected_acc_mean, protected_acc_std, seeds (count), rounds (mean rounds trained)."""
    if report not in REPORT_CHOICES:
        raise ValueError(f"report must be one of {REPORT_CHOICES}, not {report!r}")
    suffix = "best" if report == "best_val" else "final"
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        if dataset is not None and r["dataset"] != dataset:
            continue
        if model is not None and r["model"] != model:
            continue
        if defense is not None and r["defense"] != defense:
            continue
        groups.setdefault((r["dataset"], r["model"], r["defense"]), []).append(r)
    out = []
    for (d, m, dfn), rs in groups.items():
        def pct(v):
            return None if v is None else 100.0 * float(v)

        tm, ts, n = mean_std([pct(x.get(f"test_acc_{suffix}")) for x in rs])
        pm, ps, _ = mean_std([pct(x.get(f"protected_acc_{suffix}")) for x in rs])
        out.append({"dataset": d, "model": m, "defense": dfn, "report": report,
                    "test_acc_mean": tm, "test_acc_std": ts, "protected_acc_mean": pm, "protected_acc_std": ps,
                    "seeds": n, "rounds": float(np.mean([x["last_round"] for x in rs]))})
    return out


def fingerprint(**parts: Any) -> str:
    """Digest of what determines a run (a resume state is only reused when it matches)."""
    return digest_obj(json.loads(json.dumps(parts, sort_keys=True, default=str)))
