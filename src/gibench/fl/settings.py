"""FedAvg settings (:mod:`gibench.fl`): :data:`DEFAULTS` (the schema fills the same at DAG build),
:func:`settings_from` and :class:`FLConfigError`, whose message names the key."""
from __future__ import annotations

import copy
from typing import Any, Mapping


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
