"""Tables 4, 5 and 2 of the selective-encryption study (definitions in
:mod:`gibench.tables.selective_encryption`): the smallest ratio reaching the protection criterion
per significance metric (Table 4), the distance at one ratio (Table 5) and the star rating
derived from Table 4 (Table 2)."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .. import paper
from ..render import TableDoc, display, fmt_mean_std, fmt_ratio
from ..select import as_records, is_missing, modality_of, ratio_key, satisfies

from .common import (
    DEFAULT_TABLE5_METRIC, STAR_LEGEND, STARS, attack_grid, attack_label, attack_metric_names, caption,
    case_order, _criteria_text, curve_means, evaluation, _inits_of, label_attacks, model_labels, _pivot,
    regime_notes, restart_rule, _restarts_text, _rows_for, _samples_text, selected_rows,
    significance_metrics, study_config, _unavailable_reasons)
from .text import text_notes


# ------------------------------------------------------------------ Table 4

def table4_cells(rows: Any, config: Mapping[str, Any], max_ratio: float | None = None) -> list[dict]:
    """The Table 4 result per (attack, model, dataset, significance metric).

    ``rows``: raw metric rows (restarts are chosen here).  ``max_ratio`` optionally limits
    the search range (the paper's "range we choose"); by default the whole grid."""
    cfg = study_config(config)
    ev = evaluation(cfg)
    raw = as_records(rows)
    sel = selected_rows(raw, cfg)
    metrics = significance_metrics(cfg, raw)
    if max_ratio is None:
        max_ratio = ev.get("table4_max_ratio")
    cells = []
    inits = _inits_of(raw)
    for attack, model, dataset in case_order(cfg, raw):
        grid = [r for r in attack_grid(cfg, attack, raw) if max_ratio is None or r <= max_ratio + 1e-9]
        ran = attack_metric_names(cfg, attack, raw)
        modality = modality_of(model)
        crit = ev["protection"][modality]
        col, op, thr = crit["metric"], crit["op"], float(crit["threshold"])
        case_rows = _rows_for(sel, attack, model, dataset)
        for m in metrics:
            curve_rows = [r for r in case_rows if r["metric"] == m and ratio_key(r["ratio"]) in grid]
            cell = {"attack": attack, "model": model, "init": inits.get(model), "dataset": dataset,
                    "significance_metric": m, "criterion_metric": col, "op": op, "threshold": thr, "min_ratio": None,
                    "mean_at_min_ratio": None, "n_samples": len({r["slot"] for r in curve_rows}),
                    "n_missing_values": 0, "grid_max": max(grid) if grid else None, "reason": "",
                    "best_of_restarts": ev["best_of_restarts"], "modality": modality}
            if m not in ran:
                cell["status"] = "not_run"
                cell["reason"] = f"{m} is not among the metrics {attack} was run with"
            elif not curve_rows:
                cell["status"] = "missing"
            else:
                curve = curve_means(curve_rows, col)
                cell["n_missing_values"] = sum(c["n_missing"] for c in curve.values())
                if all(c["n"] == 0 for c in curve.values()):
                    cell["status"] = "unavailable"
                    cell["reason"] = "; ".join(_unavailable_reasons(curve_rows, col)) or f"{col} is null in every row"
                else:
                    cell["status"] = "NA"
                    for ratio in sorted(curve):
                        if curve[ratio]["n"] and satisfies(curve[ratio]["mean"], op, thr):
                            cell.update(status="reached", min_ratio=ratio, mean_at_min_ratio=curve[ratio]["mean"])
                            break
            cells.append(cell)
    return cells


def _cell_text(cell: dict) -> str:
    if cell["status"] == "reached":
        return fmt_ratio(cell["min_ratio"])
    if cell["status"] == "not_run":
        return "–"
    return cell["status"]


def table4(rows: Any, config: Mapping[str, Any], max_ratio: float | None = None) -> TableDoc:
    cfg = study_config(config)
    ev = evaluation(cfg)
    if max_ratio is None:
        max_ratio = ev.get("table4_max_ratio")
    raw = as_records(rows)
    cells = label_attacks(table4_cells(raw, cfg, max_ratio=max_ratio), cfg)
    metrics = significance_metrics(cfg, raw)
    grids = {a: [r for r in attack_grid(cfg, a, raw) if max_ratio is None or r <= max_ratio + 1e-9]
             for a in dict.fromkeys(c["attack"] for c in cells)}     # once per attack, in table order
    texts = {a: "{" + ", ".join(fmt_ratio(r) for r in g) + "}" for a, g in grids.items()}
    grid_text = (f"the grid {next(iter(texts.values()))}" if len(set(texts.values())) <= 1 and texts else
                 "the grids " + "; ".join(f"{attack_label(cfg, a)} {t}"
                                          for a, t in texts.items()))
    modality = modality_of(cells[0]["model"]) if cells else "image"
    title = (f"{caption('table4')}: Minimal encryption ratio at which the mean over samples of "
             f"{_criteria_text(cells)} is reached ({_samples_text(cells)}). The ratio is the fraction of all "
             f"gradient entries (every parameter tensor) that is encrypted, searched over {grid_text}; "
             f"NA: no ratio in the grid reaches the level; –: the attack was not run with that metric. "
             f"Per sample the best of {_restarts_text(raw)} restarts is kept: {restart_rule(ev, modality)}.")
    computed = sorted({str(r.get(f"{c}_status")) for c in {x["criterion_metric"] for x in cells} for r in raw
                       if str(r.get(f"{c}_status") or "").startswith("ok")})
    if computed:
        title += f" {display(cells[0]['criterion_metric'])}: {'; '.join(computed)}."
    notes = []
    unavailable = [c for c in cells if c["status"] == "unavailable"]
    if unavailable:
        reasons = sorted({c["reason"] for c in unavailable})
        title += (f" unavailable: {display(unavailable[0]['criterion_metric'])} could not be computed "
                  f"({'; '.join(reasons)}), so no ratio is reported.")
    partial = [c for c in cells if c["status"] != "unavailable" and c["n_missing_values"]]
    if partial:
        notes.append(f"{len(partial)} curve(s) lack the protection metric for some samples; "
                     f"their means are over the available samples (see n_missing_values in the CSV).")
    if any(c["status"] == "missing" for c in cells):
        notes.append("missing: no metric rows for that curve.")
    notes += text_notes(cfg, {c["model"] for c in cells})
    notes += regime_notes(raw, {(c["attack"], c["model"]) for c in cells})
    cols = ["attack", "model", "init", "dataset", "significance_metric", "status", "min_ratio", "mean_at_min_ratio",
            "criterion_metric", "op", "threshold", "n_samples", "n_missing_values", "grid_max",
            "best_of_restarts", "reason"]
    doc = TableDoc(name="table4", title=title,
                   header=["Attack", "Model", "Dataset"] + [display(m) for m in metrics],
                   body=_pivot(cells, ("attack", "model", "dataset"), metrics, _cell_text, model_labels(raw)),
                   tidy_columns=cols, tidy=cells, notes=notes, group_columns=3)
    return paper.join_se_pivot("table4", doc, cells, cfg, raw, ("attack", "model", "dataset"), metrics,
                               max_ratio=max_ratio)


# ------------------------------------------------------------------ Table 5

def table5_cells(rows: Any, config: Mapping[str, Any]) -> list[dict]:
    cfg = study_config(config)
    ev = evaluation(cfg)
    raw = as_records(rows)
    sel = selected_rows(raw, cfg)
    metrics = significance_metrics(cfg, raw)
    ratio = ratio_key(ev["table5_ratio"])
    overrides = ev.get("table5_metric") or {}
    cells = []
    inits = _inits_of(raw)
    for attack, model, dataset in case_order(cfg, raw):
        if ratio not in attack_grid(cfg, attack, raw):
            continue  # the attack was not run at the Table 5 ratio (e.g. DAGER's fine grid): no row
        ran = attack_metric_names(cfg, attack, raw)
        modality = modality_of(model)
        col = overrides.get(modality, DEFAULT_TABLE5_METRIC[modality]) if isinstance(overrides, Mapping) \
            else str(overrides)
        case_rows = [r for r in _rows_for(sel, attack, model, dataset) if ratio_key(r["ratio"]) == ratio]
        for m in metrics:
            rs = [r for r in case_rows if r["metric"] == m]
            vals = np.asarray([float(r[col]) for r in rs if not is_missing(r.get(col))], dtype=float)
            cell = {"attack": attack, "model": model, "init": inits.get(model), "dataset": dataset,
                    "significance_metric": m, "ratio": ratio, "value_metric": col, "mean": None, "std": None, "n": int(vals.size),
                    "n_missing_values": len(rs) - int(vals.size), "best_of_restarts": ev["best_of_restarts"],
                    "reason": ""}
            if m not in ran:
                cell["status"] = "not_run"
            elif not rs:
                cell["status"] = "missing"
            elif vals.size == 0:
                cell["status"] = "unavailable"
                cell["reason"] = "; ".join(_unavailable_reasons(rs, col)) or f"{col} is null in every row"
            else:
                cell.update(status="ok", mean=float(vals.mean()), std=float(vals.std()))
            cells.append(cell)
    return cells


def table5(rows: Any, config: Mapping[str, Any]) -> TableDoc:
    cfg = study_config(config)
    ev = evaluation(cfg)
    raw = as_records(rows)
    cells = label_attacks(table5_cells(raw, cfg), cfg)
    metrics = significance_metrics(cfg, raw)
    value_metrics = sorted({display(c["value_metric"]) for c in cells}) or ["MSE"]
    ns = sorted({c["n"] for c in cells if c["status"] == "ok"})
    n_text = (f"{ns[0]} samples" if len(ns) == 1 else f"{ns[0]}–{ns[-1]} samples") if ns else "no samples"
    modality = modality_of(cells[0]["model"]) if cells else "image"
    title = (f"{caption('table5')}: {' / '.join(value_metrics)} between the reconstruction and the ground truth at "
             f"encryption ratio {fmt_ratio(ratio_key(ev['table5_ratio']))} (fraction of all gradient entries): "
             f"mean ± std over {n_text} (population std, ddof = 0). Per sample the best of {_restarts_text(raw)} "
             f"restarts is kept: {restart_rule(ev, modality)}.")

    def text(c: dict) -> str:
        if c["status"] == "not_run":
            return "–"
        return fmt_mean_std(c["mean"], c["std"]) if c["status"] == "ok" else c["status"]

    notes = []
    if any(c["status"] == "unavailable" for c in cells):
        notes.append("unavailable: " + "; ".join(sorted({c["reason"] for c in cells if c["status"] == "unavailable"})))
    if any(c["status"] == "not_run" for c in cells):
        notes.append("–: the attack was not run with that significance metric.")
    skipped = sorted({attack_label(cfg, a) for a, _, _ in case_order(cfg, raw)
                      if ratio_key(ev["table5_ratio"]) not in attack_grid(cfg, a, raw)})
    if skipped:
        notes.append(f"Not run at ratio {fmt_ratio(ratio_key(ev['table5_ratio']))} (no row): {', '.join(skipped)}.")
    if any(c["status"] == "missing" for c in cells):
        notes.append(f"missing: no rows at ratio {fmt_ratio(ratio_key(ev['table5_ratio']))} "
                     f"(is it in significance.ratios?).")
    notes += text_notes(cfg, {c["model"] for c in cells})
    notes += regime_notes(raw, {(c["attack"], c["model"]) for c in cells})
    cols = ["attack", "model", "init", "dataset", "significance_metric", "status", "value_metric", "ratio", "mean",
            "std", "n", "n_missing_values", "best_of_restarts", "reason"]
    doc = TableDoc(name="table5", title=title,
                   header=["Attack", "Model", "Dataset"] + [display(m) for m in metrics],
                   body=_pivot(cells, ("attack", "model", "dataset"), metrics, text, model_labels(raw)),
                   tidy_columns=cols, tidy=cells, notes=notes, group_columns=3)
    return paper.join_se_pivot("table5", doc, cells, cfg, raw, ("attack", "model", "dataset"), metrics)


# ------------------------------------------------------------------ Table 2

def rating(average: float | None, any_na: bool = False) -> str:
    """excellent / good / moderate / poor for an average minimal ratio (module docstring)."""
    if any_na or average is None or not math.isfinite(average):
        return "poor"
    a = round(float(average), 6)
    if a <= 0.1:
        return "excellent"
    if a <= 0.5:
        return "good"
    if a <= 0.6:
        return "moderate"
    return "poor"


def table2_cells(rows: Any, config: Mapping[str, Any], max_ratio: float | None = None,
                 t4_cells: list[dict] | None = None) -> list[dict]:
    cfg = study_config(config)
    cells4 = t4_cells if t4_cells is not None else table4_cells(rows, cfg, max_ratio=max_ratio)
    groups: dict[tuple, list[dict]] = {}
    for c in cells4:
        groups.setdefault((c["attack"], c["model"], c["significance_metric"]), []).append(c)
    out = []
    for (attack, model, m), cs in groups.items():
        statuses = [c["status"] for c in cs]
        ratios = [c["min_ratio"] for c in cs if c["status"] == "reached"]
        cell = {"attack": attack, "model": model, "init": cs[0].get("init"), "significance_metric": m,
                "datasets": ";".join(c["dataset"] for c in cs), "n_datasets": len(cs),
                "n_na": statuses.count("NA"), "average_min_ratio": None}
        if "NA" in statuses:
            cell.update(status="ok", rating="poor")
        elif "unavailable" in statuses:
            cell.update(status="unavailable", rating=None)
        elif "missing" in statuses:
            cell.update(status="missing", rating=None)
        elif "not_run" in statuses:
            cell.update(status="not_run", rating=None)
        else:
            avg = float(np.mean(ratios))
            cell.update(status="ok", average_min_ratio=avg, rating=rating(avg))
        cell["stars"] = (STARS.get(cell["rating"], cell["status"]) if cell["rating"]
                         else ("–" if cell["status"] == "not_run" else cell["status"]))
        out.append(cell)
    return out


def table2(rows: Any, config: Mapping[str, Any], max_ratio: float | None = None) -> TableDoc:
    cfg = study_config(config)
    raw = as_records(rows)
    cells4 = table4_cells(raw, cfg, max_ratio=max_ratio)
    cells = label_attacks(table2_cells(raw, cfg, t4_cells=cells4), cfg)
    metrics = significance_metrics(cfg, raw)
    title = (f"{caption('table2')}: Qualitative summary of the significance metrics against each attack, from Table 4 "
             f"({_criteria_text(cells4)}; {_samples_text(cells4)}). The average is the mean over the model's "
             "datasets of the minimal encryption ratio; a dataset where the level is never reached (NA) "
             "makes the cell Poor.")
    notes = [STAR_LEGEND,
             "Boundaries: average ≤ 0.1 → ★★★; 0.1 < average ≤ 0.5 → ★★; 0.5 < average ≤ 0.6 → ★; "
             "average > 0.6 or any NA → ×."]
    if any(c["status"] == "not_run" for c in cells):
        notes.append("–: the attack was not run with that significance metric.")
    unavailable = [c for c in cells4 if c["status"] == "unavailable"]
    if unavailable:
        notes.append("unavailable: " + "; ".join(sorted({c["reason"] for c in unavailable})))
    notes += text_notes(cfg, {c["model"] for c in cells})
    notes += regime_notes(raw, {(c["attack"], c["model"]) for c in cells})
    cols = ["attack", "model", "init", "significance_metric", "status", "rating", "stars", "average_min_ratio",
            "n_datasets", "n_na", "datasets"]
    doc = TableDoc(name="table2", title=title,
                   header=["Attack", "Model"] + [display(m) for m in metrics],
                   body=_pivot(cells, ("attack", "model"), metrics, lambda c: c["stars"], model_labels(raw)),
                   tidy_columns=cols, tidy=cells, notes=notes, group_columns=2)
    return paper.join_se_pivot("table2", doc, cells, cfg, raw, ("attack", "model"), metrics, value="paper_rating",
                               max_ratio=max_ratio)
