"""ε columns of the tables: the privacy budget of each row's defense (gibench.privacy).

A table row whose defense adds noise gets ε at the study's δ (``studies.<study>.privacy``,
default 1e-5): per step -- the one gradient the attacks invert, a single noisy release -- and,
where the table reports FedAvg accuracies, over the FedAvg run (rounds × local epochs composed;
no amplification by the clients' shuffled batches is claimed).  Noise without clipping (the
concealed-samples ``dp_gaussian``) has no sensitivity bound and shows "none (no clipping)".
Rows without noise show "—".  A table none of whose rows adds noise gets no ε column.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from .. import privacy

NO_FEDAVG = "no FedAvg run"


def delta_of(privacy_cfg: Mapping[str, Any] | None) -> float:
    return float(privacy.settings_from(privacy_cfg)["delta"])


def step_header(privacy_cfg: Mapping[str, Any] | None) -> str:
    return f"ε/step (δ = {delta_of(privacy_cfg):g}) ↓"


def fedavg_header(privacy_cfg: Mapping[str, Any] | None) -> str:
    return f"ε FedAvg (δ = {delta_of(privacy_cfg):g}) ↓"


def _value(rec: Mapping[str, Any] | None) -> float | None:
    """The number behind a cell: None without noise or without a formal guarantee."""
    if rec is None or rec.get("guarantee") != "formal":
        return None
    eps = float(rec["epsilon"])
    return eps if math.isfinite(eps) else None


def step_cell(defense: Any, gradient: Mapping[str, Any] | None,
              privacy_cfg: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """(text, tidy fields) of the attacked gradient's ε (one release)."""
    rec = privacy.attack_budget(defense, gradient, privacy_cfg)
    return privacy.format_epsilon(rec), {
        "epsilon_step": _value(rec),
        "privacy_guarantee": None if rec is None else rec["guarantee"],
        "epsilon_delta": None if rec is None else rec["delta"],
    }


def fedavg_cell(defense: Any, fl_settings: Mapping[str, Any] | None, privacy_cfg: Mapping[str, Any] | None,
                rounds: int | None = None) -> tuple[str, dict[str, Any]]:
    """(text, tidy fields) of ε over a FedAvg run; ``fl_settings`` None: no run."""
    if fl_settings is None:
        return NO_FEDAVG, {"epsilon_fedavg": None, "epsilon_fedavg_rounds": None}
    rec = privacy.fedavg_budget(defense, fl_settings, rounds=rounds, privacy=privacy_cfg)
    text = privacy.format_epsilon(rec)
    if rec is not None and rec.get("guarantee") == "formal":
        text += f" ({rec['rounds']}×{rec['local_epochs']})"
    return text, {"epsilon_fedavg": _value(rec), "epsilon_fedavg_rounds": None if rec is None else rec["rounds"]}


def note(privacy_cfg: Mapping[str, Any] | None, *, fedavg: bool, unclipped: bool = False,
         oracle: bool = False) -> str:
    s = privacy.settings_from(privacy_cfg)
    rel = {"replace_one": "replace-one (sensitivity 2τ)", "zero_out": "zero-out (sensitivity τ)"}[s["relation"]]
    text = (f"ε: sample-level (ε, δ)-DP at δ = {s['delta']:g}, {rel} relation, the analytic Gaussian mechanism's "
            "exact ε (Google's dp-accounting; gibench.privacy, docs/privacy_budgets.md). ε/step: the one "
            "gradient the attacks invert (a single noisy release)")
    if fedavg:
        text += ("; ε FedAvg: the whole FedAvg run (R×E = rounds trained × local epochs, each sample in one noisy "
                 "step per epoch, no amplification by the shuffled batches claimed)")
    text += "; —: the defense adds no noise. DP assumes the noise is secret"
    text += " (WIIG's oracle reads it)." if oracle else "."
    if unclipped:
        text += (" none (no clipping): Gaussian noise added without clipping bounds no sensitivity, so it carries "
                 "no formal (ε, δ) guarantee.")
    return text
