"""Choosing one attack restart per case, and sharing the metric-independent ratios.

Rows are the metric rows of the pipeline: one per (case, attack, restart).  Both functions
take either a ``pyarrow.Table`` or a list of row dicts and return the same kind.

* :func:`best_of_restarts` keeps one restart per (study, dataset, model, slot, metric,
  ratio, attack):

  - ``criterion="attacker_loss"``: the restart with the lowest ``attacker_loss`` (the
    attacker's own final objective: what a real attacker, who has no ground truth, can do);
  - ``criterion="oracle"``: the restart with the best *recovery* by the protection metric
    (the paper's "best recovery results"): the lowest value when protection means a high
    value (LPIPS >= 0.3), the highest when protection means a low value (ROUGE-1 <= 0.2).
    Where that metric is missing for every restart of a case (LPIPS unavailable) the
    oracle falls back to the lowest MSE, and says so in ``selected_by``.

  Restarts whose ``status`` starts with ``failed`` are never chosen; a case whose restarts
  all failed has no output row.  Missing / NaN scores rank last; ties go to the lowest
  restart index.  Two columns are added: ``n_restarts`` (restarts that could be chosen)
  and ``selected_by`` (the rule that chose this row).

* :func:`expand_shared`: ratios 0 and 1 give the same mask whatever the significance
  metric, so the pipeline computes them once under metric ``any``; this copies those rows
  into every significance metric's curve.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

from .. import model_ids

CASE_KEYS = ("study", "dataset", "model", "slot", "metric", "ratio", "attack")
REQUIRED_KEYS = ("slot", "metric", "ratio", "attack")
SHARED_METRIC = "any"

# the modality a model's inputs belong to (decides the protection criterion)
MODEL_MODALITY = {"lenet": "image", "cnn": "image", "resnet18": "image", "mlp": "image",
                  "bert": "text", "gpt2": "text"}


def modality_of(model: str) -> str:
    """The modality of a model id (``lenet@dlg_uniform`` is LeNet's)."""
    return MODEL_MODALITY.get(model_ids.base(str(model)), "image")



# ------------------------------------------------------------------ row helpers

def as_records(rows: Any) -> list[dict]:
    if isinstance(rows, pa.Table):
        return rows.to_pylist()
    return [dict(r) for r in rows]


def _like(rows: Any, records: list[dict], extra_fields: Sequence[pa.Field] = ()) -> Any:
    """Return ``records`` as the same kind of container ``rows`` was."""
    if not isinstance(rows, pa.Table):
        return records
    schema = rows.schema.remove_metadata()
    for f in extra_fields:
        if f.name not in schema.names:
            schema = schema.append(f)
    return pa.Table.from_pylist(records, schema=schema)


def ratio_key(r: Any) -> float:
    """Ratios are compared at three decimals (the file names' precision)."""
    return round(float(r), 3)


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def is_failed(row: Mapping[str, Any]) -> bool:
    return str(row.get("status") or "").startswith("failed")


# ------------------------------------------------------------------ protection criteria

def recovery_direction(op: str) -> str:
    """'min' if the best recovery (for the attacker) has the lowest value, else 'max'.

    Protection ``metric >= t`` (LPIPS, MSE) means high values protect, so the best
    recovery is the lowest; protection ``metric <= t`` (ROUGE, SSIM, PSNR) the opposite."""
    if op == ">=":
        return "min"
    if op == "<=":
        return "max"
    raise ValueError(f"protection op must be '>=' or '<=', got {op!r}")


def satisfies(value: float, op: str, threshold: float) -> bool:
    if is_missing(value):
        return False
    return value >= threshold if op == ">=" else value <= threshold


def _criterion_for(protection: Mapping[str, Any] | None, model: str) -> Mapping[str, Any] | None:
    if protection is None:
        return None
    if "metric" in protection:           # one criterion for every row
        return protection
    return protection.get(modality_of(model))


# ------------------------------------------------------------------ best of restarts

def _score(row: Mapping[str, Any], column: str, direction: str) -> float:
    v = row.get(column)
    if is_missing(v):
        return math.inf
    v = float(v)
    return v if direction == "min" else -v


def best_of_restarts(rows: Any, by: Sequence[str] = CASE_KEYS, criterion: str = "attacker_loss",
                     protection: Mapping[str, Any] | None = None) -> Any:
    """One row per case (the ``by`` columns present in the rows; see the module docstring).

    ``protection`` is needed for ``criterion="oracle"``: either one criterion
    ``{"metric": "lpips", "op": ">="}`` or a mapping modality -> criterion."""
    if criterion not in ("attacker_loss", "oracle"):
        raise ValueError(f"best_of_restarts: criterion must be 'attacker_loss' or 'oracle', got {criterion!r}")
    records = as_records(rows)
    names = set(records[0]) if records else (set(rows.schema.names) if isinstance(rows, pa.Table) else set())
    missing = [k for k in REQUIRED_KEYS if k in by and names and k not in names]
    if missing:
        raise KeyError(f"best_of_restarts: rows lack the key columns {missing}")
    keys = [k for k in by if not names or k in names]

    groups: dict[tuple, list[dict]] = {}
    for r in records:
        k = tuple(ratio_key(r[c]) if c == "ratio" else r[c] for c in keys)
        groups.setdefault(k, []).append(r)

    out = []
    for k in sorted(groups, key=lambda t: tuple((x is None, x if x is not None else "") for x in t)):
        cands = [r for r in groups[k] if not is_failed(r)]
        if not cands:
            continue
        ranked = None
        if criterion == "attacker_loss":
            chain = [("attacker_loss", "min", "attacker_loss")]
        else:
            crit = _criterion_for(protection, str(cands[0].get("model")))
            if crit is None:
                raise ValueError("best_of_restarts(criterion='oracle') needs the protection criterion")
            chain = [(crit["metric"], recovery_direction(crit["op"]), f"oracle:{crit['metric']}")]
            if crit["metric"] != "mse":
                chain.append(("mse", "min", f"oracle:mse ({crit['metric']} unavailable)"))
            chain.append(("attacker_loss", "min", f"attacker_loss ({crit['metric']} unavailable)"))
        label = "first_restart (no score available)"
        for column, direction, name in chain:
            if any(not is_missing(r.get(column)) for r in cands):
                ranked = sorted(cands, key=lambda r: (_score(r, column, direction), int(r.get("restart") or 0)))
                label = name
                break
        if ranked is None:
            ranked = sorted(cands, key=lambda r: int(r.get("restart") or 0))
        best = dict(ranked[0])
        best["n_restarts"] = len(cands)
        best["selected_by"] = label
        out.append(best)
    return _like(rows, out, [pa.field("n_restarts", pa.int64()), pa.field("selected_by", pa.string())])


# ------------------------------------------------------------------ shared ratios

def expand_shared(rows: Any, metrics: Iterable[str], shared: str = SHARED_METRIC) -> Any:
    """Copy each row of metric ``shared`` (ratios 0 and 1) into every metric of ``metrics``.

    Rows of other metrics are kept as they are; the copies take the place of the shared
    row, in input order."""
    metrics = list(metrics)
    out = []
    for r in as_records(rows):
        if r.get("metric") == shared:
            for m in metrics:
                c = dict(r)
                c["metric"] = m
                out.append(c)
        else:
            out.append(r)
    return _like(rows, out)
