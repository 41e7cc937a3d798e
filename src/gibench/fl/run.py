"""The FedAvg run (:func:`run_fedavg`, :mod:`gibench.fl`): rounds of client sampling, local
training and aggregation, the evaluation after every round, early stopping, the per-round
checkpoints (:class:`CheckpointStore`) and resuming from them."""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .. import io
from ..provenance import digest_obj
from ..seeds import derive_seed

from .partition import ClientShard, Pool
from .settings import FLConfigError, settings_from
from .training import (
    EarlyStopping, GradFn, RoundSchedule, fedavg_aggregate, local_train, make_optimizer, per_sample_eval,
    plain_gradient)


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


def fingerprint(**parts: Any) -> str:
    """Digest of what determines a run (a resume state is only reused when it matches)."""
    return digest_obj(json.loads(json.dumps(parts, sort_keys=True, default=str)))
