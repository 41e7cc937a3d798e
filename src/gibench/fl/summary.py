"""FedAvg runs summarised for the tables (:mod:`gibench.fl`): one run's final accuracies and the
accuracy cells (mean ± std over seeds) per dataset, model and defense."""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np


from .run import FedAvgResult


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
