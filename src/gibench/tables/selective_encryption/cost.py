"""Table 6 of the selective-encryption study: per (model, dataset) the parameter tensors and count,
the seconds of each significance metric (mean ± std over samples) and the peak memory."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .. import paper
from ..render import TableDoc, display, fmt_mean_std
from ..select import as_records, is_missing

from .common import MIB, caption, study_config


# ------------------------------------------------------------------ Table 6

def table6_cells(cost_rows: Any, config: Mapping[str, Any]) -> list[dict]:
    """Time and peak memory per (model, dataset, metric).  A ``sens`` job whose row names
    another estimator (``models.<m>.sens_estimator``: text models compute Sens by
    ``sens_discrete``) is shown in that estimator's column, where its time belongs (the
    paper's Table 6: "-" under Sens, the time under Sens (Discrete)); ``via_metric`` says so."""
    cfg = study_config(config)
    recs = []
    for r in as_records(cost_rows):
        est = r.get("estimator")
        if r["metric"] == "sens" and not is_missing(est) and est and est != "sens":
            r = {**r, "metric": str(est), "via_metric": "sens"}
        recs.append(r)
    metrics = list((cfg.get("significance") or {}).get("cost_metrics") or [])
    for r in recs:
        if r["metric"] not in metrics:
            metrics.append(r["metric"])
    order = [(c["model"], c["dataset"]) for c in cfg.get("cases") or []]
    for key in sorted({(r["model"], r["dataset"]) for r in recs}):
        if key not in order:
            order.append(key)
    present = {(r["model"], r["dataset"]) for r in recs}
    out = []
    for model, dataset in [k for k in order if k in present]:
        rs = [r for r in recs if r["model"] == model and r["dataset"] == dataset]
        tensors = sorted({int(r["num_tensors"]) for r in rs if not is_missing(r.get("num_tensors"))})
        params = sorted({int(r["num_parameters"]) for r in rs if not is_missing(r.get("num_parameters"))})
        for m in metrics:
            ms = [r for r in rs if r["metric"] == m]
            secs = np.asarray([float(r["seconds"]) for r in ms if not is_missing(r.get("seconds"))], dtype=float)
            peaks = np.asarray([float(r["peak_bytes"]) for r in ms if not is_missing(r.get("peak_bytes"))],
                               dtype=float)
            out.append({
                "model": model, "dataset": dataset, "cost_metric": m,
                "status": "ok" if secs.size else "missing",
                "num_tensors": tensors[0] if len(tensors) == 1 else (";".join(map(str, tensors)) or None),
                "num_parameters": params[0] if len(params) == 1 else (";".join(map(str, params)) or None),
                "seconds_mean": float(secs.mean()) if secs.size else None,
                "seconds_std": float(secs.std()) if secs.size else None,
                "n": int(secs.size),
                "peak_mib_max": float(peaks.max() / MIB) if peaks.size else None,
                "peak_mib_mean": float(peaks.mean() / MIB) if peaks.size else None,
                "devices": ";".join(sorted({str(r.get("device")) for r in ms if r.get("device")})),
                # the estimator that computed the metric (text models compute "sens" by sens_discrete by default)
                "estimators": ";".join(sorted({str(r["estimator"]) for r in ms if not is_missing(r.get("estimator"))})),
                "via_metric": ";".join(sorted({str(r["via_metric"]) for r in ms if r.get("via_metric")})),
                "threads": ";".join(map(str, sorted({int(r["threads"]) for r in ms
                                                     if not is_missing(r.get("threads"))}))),
            })
    return out


def table6(cost_rows: Any, config: Mapping[str, Any]) -> TableDoc:
    cfg = study_config(config)
    recs = as_records(cost_rows)
    cells = table6_cells(recs, cfg)
    metrics = list(dict.fromkeys(c["cost_metric"] for c in cells))
    devices = sorted({d for c in cells for d in c["devices"].split(";") if d})
    ns = sorted({c["n"] for c in cells if c["n"]})
    n_text = (f"{ns[0]} samples" if len(ns) == 1 else f"{ns[0]}–{ns[-1]} samples") if ns else "no samples"
    threads = sorted({t for c in cells for t in c["threads"].split(";") if t}, key=int)
    title = (f"{caption('table6')}: Calculation time (s) of the significance metrics: mean ± std over {n_text} "
             f"(population std, ddof = 0); Layer Num. is the number of parameter tensors; peak memory is the "
             f"largest over the samples (MiB, growth of the job's memory during the computation). Each time is "
             f"one job's computation of the metric, after a one-time library warm-up of the process. "
             f"Device: {', '.join(devices) or 'unknown'}"
             + (f"; CPU threads per job: {', '.join(threads)}" if threads else "") + ".")
    rows: dict[tuple, dict] = {}
    for c in cells:
        rows.setdefault((c["model"], c["dataset"]), {})[c["cost_metric"]] = c
    body = []
    for (model, dataset), by_m in rows.items():
        first = next(iter(by_m.values()))
        line = [display(model), display(dataset), str(first["num_tensors"] if first["num_tensors"] is not None else "-"),
                f"{first['num_parameters']:,}" if isinstance(first["num_parameters"], int) else
                str(first["num_parameters"] or "-")]
        line += [fmt_mean_std(by_m[m]["seconds_mean"], by_m[m]["seconds_std"])
                 if m in by_m and by_m[m]["status"] == "ok" else "-" for m in metrics]
        line += [f"{by_m[m]['peak_mib_max']:.1f}" if m in by_m and by_m[m]["peak_mib_max"] is not None else "-"
                 for m in metrics]
        body.append(line)
    notes = ["-: not computed (infeasible or not configured for this model)."] if any(
        c["status"] != "ok" for c in cells) else []
    other = sorted({(c["model"], c["cost_metric"], c["estimators"]) for c in cells
                    if c["estimators"] and c["estimators"] != c["cost_metric"]})
    notes += [f"{display(m)}: {display(metric)} computed by {display(est)}." for m, metric, est in other]
    via = sorted({(c["model"], c["cost_metric"]) for c in cells if c["via_metric"]})
    notes += [f"{display(m)}: the {display(metric)} time is that of the job that made {display(m)}'s Sens masks "
              f"(Sens computed by {display(metric)}: sens_estimator)." for m, metric in via]
    cols = ["model", "dataset", "cost_metric", "status", "num_tensors", "num_parameters", "seconds_mean",
            "seconds_std", "n", "peak_mib_max", "peak_mib_mean", "devices", "estimators", "via_metric", "threads"]
    doc = TableDoc(name="table6", title=title,
                   header=["Model", "Dataset", "Layer Num.", "Params"]
                   + [f"{display(m)} (s)" for m in metrics] + [f"{display(m)} peak (MiB)" for m in metrics],
                   body=body, tidy_columns=cols, tidy=cells, notes=notes, group_columns=1)
    return paper.join_se_table6(doc, cells, metrics)
