"""Tables 2, 4, 5, 6 of the selective-encryption study (paper sections 5.2-5.3).

Each table has a pure function from rows to a :class:`~gibench.tables.render.TableDoc`
(``table4(rows, config)``) and a builder that reads the rows file and writes the outputs
(``build_table4(metrics_path=..., config=..., out_dir=...)``), so each table can be its
own Snakemake rule.  ``config`` is either the whole gibench config or the
``studies.selective_encryption`` section.

Definitions (kept in the captions of the outputs too):

* Rows are reduced to one per (sample, significance metric, ratio, attack) with
  :func:`~gibench.tables.select.best_of_restarts` (``evaluation.best_of_restarts``), and
  the ratio-0/1 rows (metric ``any``) join every significance metric's curve.
* **Table 4**: for each (attack, model, dataset) and significance metric, the smallest
  ratio of the grid at which the *mean over samples* of the protection metric satisfies
  the criterion (LPIPS >= 0.3 for images, ROUGE-1 <= 0.2 for text).  ``NA``: no ratio of
  the grid does; ``unavailable``: the protection metric is missing (null) in every row of
  that curve (the reason, from ``lpips_status``, goes in the caption); ``missing``: the
  curve has no rows.  The ratio is the fraction of *all* gradient entries encrypted.
* **Table 5**: the distance (MSE for images, embedding distance for text) at ratio
  ``evaluation.table5_ratio``: mean ± std over samples (population std, ddof = 0).
* **Table 2**: stars from Table 4.  For an (attack, model) and significance metric the
  *average* is the mean over the model's datasets of its Table 4 ratios; any ``NA``
  makes the cell Poor.  Boundaries (after rounding the average to 6 decimals):
  average <= 0.1 -> ★★★ Excellent; 0.1 < average <= 0.5 -> ★★ Good;
  0.5 < average <= 0.6 -> ★ Moderate; average > 0.6 or any NA -> × Poor.
* **Table 6**: per (model, dataset): the number of parameter tensors ("Layer Num."), the
  parameter count, mean ± std seconds (ddof = 0) of each cost metric over the samples,
  and the peak memory (MiB = 2**20 bytes, largest over the samples).

CSV layout (one decision for all tables): *tidy*, one line per table cell, with the cell's
keys as columns (``attack, model, dataset, significance_metric`` ...), the numbers as plain
numbers (``min_ratio``; ``mean, std, n``; ``seconds_mean, seconds_std`` ...), and a
``status`` column (``ok``/``reached``, ``NA``, ``unavailable``, ``missing``) instead of
formatted strings.  The Markdown (and optional LaTeX) hold the paper-style layout.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .. import io, model_ids
from . import paper
from .registry import TABLES, register_table
from .render import TableDoc, display, fmt_mean_std, fmt_ratio
from .select import (SHARED_METRIC, as_records, best_of_restarts, expand_shared, is_missing,
                     modality_of, ratio_key, satisfies)

STUDY = "selective_encryption"
DEFAULT_PROTECTION = {"image": {"metric": "lpips", "op": ">=", "threshold": 0.3},
                      "text": {"metric": "rouge1", "op": "<=", "threshold": 0.2}}
DEFAULT_TABLE5_METRIC = {"image": "mse", "text": "embed_dist"}
DEFAULT_PANELS = {"image": ["lpips", "mse", "psnr", "ssim"],
                  "text": ["rouge1", "rouge2", "rougeL", "embed_dist"]}
DEFAULT_TABLE5_RATIO = 0.3
MIB = 2 ** 20

STARS = {"excellent": "★★★", "good": "★★", "moderate": "★", "poor": "×"}
STAR_LEGEND = "× Poor (fails to reach the protection level with an average ≤ 60% encryption), " \
              "★ Moderate (average in (50%, 60%]), ★★ Good (average in (10%, 50%]), " \
              "★★★ Excellent (average ≤ 10%)."


# ------------------------------------------------------------------ config access

def study_config(config: Mapping[str, Any], study: str = STUDY) -> dict:
    """The study section, from either the whole config or the section itself."""
    if "studies" in config:
        return dict(config["studies"][study])
    return dict(config)


def evaluation(cfg: Mapping[str, Any]) -> dict:
    ev = dict(cfg.get("evaluation") or {})
    prot = {k: dict(v) for k, v in DEFAULT_PROTECTION.items()}
    prot.update({k: dict(v) for k, v in (ev.get("protection") or {}).items()})
    ev["protection"] = prot
    ev.setdefault("best_of_restarts", "attacker_loss")
    ev.setdefault("table5_ratio", DEFAULT_TABLE5_RATIO)
    return ev


def is_selector(metric: Any) -> bool:
    """Layer selectors (attn, onefifth_i) are a fixed set of tensors, not a ranking: they have
    no curve over ratios and appear in Table 3 only."""
    from ..significance.selectors import SELECTORS

    return metric in SELECTORS


def significance_metrics(cfg: Mapping[str, Any], records: Iterable[dict] = (), selectors: bool = False) -> list[str]:
    """The significance metrics of the tables' columns: ``significance.metrics``, then every
    attack's own ``metrics``, then any other metric in the rows; selectors only if asked."""
    names = list((cfg.get("significance") or {}).get("metrics") or [])
    for entry in (cfg.get("attacks") or {}).values():
        for m in (entry or {}).get("metrics") or []:
            if m not in names:
                names.append(m)
    for r in records:
        m = r.get("metric")
        if m not in names and m != SHARED_METRIC:
            names.append(m)
    return [m for m in names if selectors or not is_selector(m)]


def ratio_grid(cfg: Mapping[str, Any], records: Iterable[dict] = ()) -> list[float]:
    grid = (cfg.get("significance") or {}).get("ratios")
    if grid:
        return sorted({ratio_key(r) for r in grid})
    return sorted({ratio_key(r["ratio"]) for r in records})


def case_order(cfg: Mapping[str, Any], records: Iterable[dict], selectors: bool = False) -> list[tuple[str, str, str]]:
    """(attack, model id, dataset) in config order (attacks, then cases; a case's inits in the
    order of its ``inits``), then any others; only combinations with rows of ranking metrics
    (``selectors=True``: with selector rows, Table 3)."""
    records = list(records)
    attacks = list(cfg.get("attacks") or {})
    init_of = {r["model"]: r.get("init") for r in records}
    cases = []
    for c in cfg.get("cases") or []:
        order = list(c.get("inits") or [])
        ids = sorted({m for m in init_of if model_ids.base(m) == c["model"]} | {c["model"]},
                     key=lambda m: (order.index(init_of.get(m)) if init_of.get(m) in order else -1, m))
        cases += [(m, c["dataset"]) for m in ids]
    seen = {(r["attack"], r["model"], r["dataset"]) for r in records if is_selector(r.get("metric")) == selectors}
    for a in sorted({k[0] for k in seen}):
        if a not in attacks:
            attacks.append(a)
    for m, d in sorted({(k[1], k[2]) for k in seen}):
        if (m, d) not in cases:
            cases.append((m, d))
    return [(a, m, d) for a in attacks for m, d in cases if (a, m, d) in seen]


def restart_rule(ev: Mapping[str, Any], modality: str = "image") -> str:
    if ev["best_of_restarts"] == "oracle":
        crit = ev["protection"][modality]
        best = "lowest" if crit["op"] == ">=" else "highest"
        return (f"the restart with the {best} {display(crit['metric'])} against the ground truth "
                f"(oracle: the paper's \"best recovery results\")")
    return "the restart with the lowest attacker loss (the attacker's own objective; no ground truth)"


# ------------------------------------------------------------------ rows

def load_metric_rows(path: str | Path) -> list[dict]:
    table, _ = io.load_table(path)
    return table.to_pylist()


def attack_metric_names(cfg: Mapping[str, Any], attack: str, records: Iterable[dict] = ()) -> list[str]:
    """The ranking metrics an attack was run with: ``attacks.<a>.metrics`` (else
    ``significance.metrics``), plus any other metric in its rows; selectors excluded."""
    entry = (cfg.get("attacks") or {}).get(attack) or {}
    names = list(entry.get("metrics") or (cfg.get("significance") or {}).get("metrics") or [])
    for r in records:
        if r.get("attack") == attack and r.get("metric") not in names and r.get("metric") != SHARED_METRIC:
            names.append(r["metric"])
    return [m for m in names if not is_selector(m)]


def attack_grid(cfg: Mapping[str, Any], attack: str, records: Iterable[dict] = ()) -> list[float]:
    """The ratios an attack was run at: ``attacks.<a>.ratios`` (else the significance grid)."""
    entry = (cfg.get("attacks") or {}).get(attack) or {}
    if entry.get("ratios"):
        return sorted({ratio_key(r) for r in entry["ratios"]})
    return ratio_grid(cfg, [r for r in records if r.get("attack") == attack])


def selected_rows(rows: Any, config: Mapping[str, Any]) -> list[dict]:
    """Best restart per case (``evaluation.best_of_restarts``), ``any`` rows (ratios 0 and 1)
    shared by the significance metrics each attack was run with."""
    cfg = study_config(config)
    ev = evaluation(cfg)
    records = as_records(rows)
    best = best_of_restarts(records, criterion=ev["best_of_restarts"], protection=ev["protection"])
    out: list[dict] = []
    for attack in dict.fromkeys(r["attack"] for r in best):
        out += expand_shared([r for r in best if r["attack"] == attack], attack_metric_names(cfg, attack, records))
    return out


def model_labels(records: Iterable[dict]) -> dict[str, str]:
    """Model id -> its row label: an image model with its init from the rows' ``init`` column
    ("LeNet (PyTorch init)", "LeNet (DLG init)"), a text model by its name."""
    out: dict[str, str] = {}
    for r in records:
        m = r.get("model")
        if m is None or (m in out and r.get("init") is None):
            continue
        init = r.get("init") if modality_of(m) == "image" else None
        out[m] = model_ids.label(display(model_ids.base(m)), init) if init else display(m)
    return out


def _inits_of(records: Iterable[dict]) -> dict[str, Any]:
    return {r["model"]: r.get("init") for r in records if r.get("model") is not None}


def regime_notes(records: list[dict], cases: Iterable[tuple[str, str]]) -> list[str]:
    """Caption notes on the image rows' regime: what each init is and where it comes from, and
    the precision each attack ran in (the rows' ``init`` and ``dtype`` columns)."""
    cases = set(cases)
    mine = [r for r in records if (r.get("attack"), r.get("model")) in cases and modality_of(r.get("model")) == "image"]
    inits = sorted({r["init"] for r in mine if r.get("init")})
    notes = []
    if inits:
        notes.append("Initialisation of the image models (paper A states none; docs/regimes_init.md): "
                     + "; ".join(f"{model_ids.INIT_LABELS.get(i, i)} = {model_ids.INIT_SOURCES.get(i, i)}" for i in inits)
                     + ".")
    labels = model_labels(mine)
    prec: dict[tuple[str, str], set] = {}
    for r in mine:
        prec.setdefault((r["attack"], r["model"]), set()).add(str(r.get("dtype") or "float32"))
    if prec:
        allp = {p for v in prec.values() for p in v}
        if len(allp) == 1:
            notes.append(f"Attack precision: {next(iter(allp))} throughout.")
        else:
            notes.append("Attack precision: " + "; ".join(
                f"{display(a)} on {labels.get(m, display(m))} {'/'.join(sorted(p))}"
                for (a, m), p in prec.items()) + ".")
    return notes


def _rows_for(records: list[dict], attack: str, model: str, dataset: str) -> list[dict]:
    return [r for r in records if r["attack"] == attack and r["model"] == model and r["dataset"] == dataset]


def _unavailable_reasons(rows: Iterable[dict], metric: str) -> list[str]:
    reasons = set()
    for r in rows:
        st = r.get(f"{metric}_status")
        if st and not str(st).startswith("ok"):
            reasons.add(str(st))
    return sorted(reasons)


# ------------------------------------------------------------------ Table 4

def curve_means(rows: list[dict], column: str) -> dict[float, dict]:
    """ratio -> {mean, std, sem, n, n_missing, values} of ``column`` over samples."""
    by_ratio: dict[float, list[Any]] = {}
    for r in rows:
        by_ratio.setdefault(ratio_key(r["ratio"]), []).append(r.get(column))
    out = {}
    for ratio in sorted(by_ratio):
        vals = [float(v) for v in by_ratio[ratio] if not is_missing(v)]
        arr = np.asarray(vals, dtype=float)
        n = len(vals)
        out[ratio] = {"mean": float(arr.mean()) if n else None,
                      "std": float(arr.std()) if n else None,
                      "sem": float(arr.std(ddof=1) / math.sqrt(n)) if n > 1 else (0.0 if n else None),
                      "n": n, "n_missing": len(by_ratio[ratio]) - n, "values": vals}
    return out


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


def attack_label(cfg: Mapping[str, Any], attack: str) -> str:
    """An attack entry as the table rows name it.  DAGER always names its attacker under
    encryption (``DAGER (visible_rows)``, ``DAGER (zero_fill)``: the paper does not say which
    it ran); another entry whose name is not its registry name is a variant and carries that
    name (``IG (ig_zero_fill)``); otherwise the attack's display name."""
    entry = (cfg.get("attacks") or {}).get(attack) or {}
    kind = entry.get("type", attack)
    if kind == "dager":
        from ..attacks.dager import DEFAULTS as DAGER_DEFAULTS

        return f"{display(kind)} ({(entry.get('params') or {}).get('variant', DAGER_DEFAULTS['variant'])})"
    return display(kind) if attack == kind else f"{display(kind)} ({attack})"


def label_attacks(cells: list[dict], cfg: Mapping[str, Any]) -> list[dict]:
    """Each cell with the row label of its attack entry (``attack_label``; :func:`_pivot` shows it)."""
    for c in cells:
        c["attack_label"] = attack_label(cfg, c["attack"])
    return cells


def _pivot(cells: list[dict], keys: Sequence[str], metrics: list[str], text: Callable[[dict], str],
           labels: Mapping[str, str] | None = None) -> list[list[str]]:
    """One display row per key: the attack entry's label when the cells carry one
    (:func:`label_attacks`), the model id's label from ``labels`` (its init, from the rows)."""
    labels = labels or {}
    rows: dict[tuple, dict] = {}
    for c in cells:
        rows.setdefault(tuple(c[k] for k in keys), {})[c["significance_metric"]] = c

    def label(k: str, v: Any, row: dict) -> str:
        first = next(iter(row.values()))
        if k == "attack" and first.get("attack_label"):
            return str(first["attack_label"])
        if k == "model":
            return labels.get(v, display(v))
        return display(v)

    return [[label(k, v, row) for k, v in zip(keys, key)] + [text(row[m]) if m in row else "missing" for m in metrics]
            for key, row in rows.items()]


def _samples_text(cells: list[dict]) -> str:
    ns = sorted({c["n_samples"] for c in cells if c["status"] not in ("missing", "not_run")})
    if not ns:
        return "no samples"
    return f"{ns[0]} samples per case" if len(ns) == 1 else f"{ns[0]}–{ns[-1]} samples per case"


def _restarts_text(rows: list[dict]) -> str:
    per_case: dict[tuple, set] = {}
    for r in rows:
        per_case.setdefault((r.get("dataset"), r.get("model"), r.get("slot"), r.get("metric"),
                             ratio_key(r["ratio"]), r.get("attack")), set()).add(r.get("restart"))
    ns = sorted({len(v) for v in per_case.values()})
    if not ns:
        return "0"
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"


def _criteria_text(cells: list[dict]) -> str:
    seen: dict[str, str] = {}
    for c in cells:
        t = f"{display(c['criterion_metric'])} {'≥' if c['op'] == '>=' else '≤'} {c['threshold']:g}"
        seen.setdefault(t, c.get("modality") or modality_of(c["model"]))
    if not seen:
        return "the protection level"
    if len(seen) == 1:
        return next(iter(seen))
    return " / ".join(f"{t} ({mod})" for t, mod in seen.items())


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


# ------------------------------------------------------------------ Table 3 (text)

def table3_cells(rows: Any, config: Mapping[str, Any]) -> list[dict]:
    """Layer selectors (Attn, OneFifth-i) against each attack they were run with: the mask's
    encrypted fraction and EmbedDist / ROUGE-1 / ROUGE-2 (mean ± population std over samples)."""
    from ..significance.selectors import SELECTORS

    cfg = study_config(config)
    ev = evaluation(cfg)
    raw = [r for r in as_records(rows) if is_selector(r.get("metric"))]
    best = best_of_restarts(raw, criterion=ev["best_of_restarts"], protection=ev["protection"])
    cells = []
    for attack, model, dataset in case_order(cfg, best, selectors=True):
        rs = _rows_for(best, attack, model, dataset)
        for sel in [m for m in SELECTORS if any(r["metric"] == m for r in rs)]:
            mine = [r for r in rs if r["metric"] == sel]
            cell = {"attack": attack, "model": model, "dataset": dataset, "defense": sel, "n": len(mine),
                    "statuses": ";".join(sorted({str(r.get("status")) for r in mine})),
                    "best_of_restarts": ev["best_of_restarts"]}
            for col, key in (("encrypted_fraction", "enc_ratio"), ("embed_dist", "embed_dist"),
                             ("rouge1", "rouge1"), ("rouge2", "rouge2")):
                vals = np.asarray([float(r[col]) for r in mine if not is_missing(r.get(col))], dtype=float)
                cell[f"{key}_mean"] = float(vals.mean()) if vals.size else None
                cell[f"{key}_std"] = float(vals.std()) if vals.size else None
            cell["status"] = "ok" if cell["rouge1_mean"] is not None else "unavailable"
            cells.append(cell)
    return cells


def table3(rows: Any, config: Mapping[str, Any]) -> TableDoc:
    cfg = study_config(config)
    ev = evaluation(cfg)
    raw = as_records(rows)
    cells = table3_cells(raw, cfg)
    ns = sorted({c["n"] for c in cells})
    n_text = (f"{ns[0]} samples" if len(ns) == 1 else f"{ns[0]}–{ns[-1]} samples") if ns else "no samples"
    sel_raw = [r for r in raw if is_selector(r.get("metric"))]
    title = (f"{caption('table3')}: Layer-selective encryption (Attn: every attention-layer entry; OneFifth-i: every entry of "
             "the i-th chunk of 32 consecutive parameter tensors in the model's named_parameters() order, the word "
             "embedding excluded: the paper's partition, which gives its GPT-2 ratios; OneFifth-i (blocks): the i-th "
             "fifth of the transformer blocks, an alternative) against the text attacks. "
             "Enc. Ratio: encrypted entries over all gradient entries; EmbedDist, ROUGE-1, ROUGE-2: mean ± std over "
             f"{n_text} (population std, ddof = 0). Per sample the best of {_restarts_text(sel_raw)} restarts is "
             f"kept: {restart_rule(ev, 'text')}.")

    def ms(c: dict, key: str, sig: int = 4) -> str:
        m, sd = c[f"{key}_mean"], c[f"{key}_std"]
        return "-" if m is None else fmt_mean_std(m, sd, sig=sig, min_decimals=4)

    kinds = {a: (e or {}).get("type", a) for a, e in (cfg.get("attacks") or {}).items()}
    body = [[display(kinds.get(c["attack"], c["attack"])), display(c["model"]), display(c["dataset"]), display(c["defense"]),
             "-" if c["enc_ratio_mean"] is None else f"{c['enc_ratio_mean']:.4f}",
             ms(c, "embed_dist"), ms(c, "rouge1"), ms(c, "rouge2")] for c in cells]
    notes = text_notes(cfg, {c["model"] for c in cells})
    empty = [c for c in cells if c["enc_ratio_mean"] == 0.0 and c["defense"] != "attn"]
    for model in sorted({c["model"] for c in empty}):
        which = ", ".join(dict.fromkeys(display(c["defense"]) for c in empty if c["model"] == model))
        notes.append(f"{which} select nothing on this {display(model)} (too few parameter tensors for that chunk or "
                     f"fifth): Enc. Ratio 0, the attack ran on the unencrypted gradient.")
    if any("no_recovery" in c["statuses"] for c in cells):
        notes.append("no_recovery: the attack recovered nothing (e.g. DAGER with its attention gradients "
                     "encrypted); its metrics are those of the empty reconstruction.")
    cols = ["attack", "model", "dataset", "defense", "status", "enc_ratio_mean", "embed_dist_mean", "embed_dist_std",
            "rouge1_mean", "rouge1_std", "rouge2_mean", "rouge2_std", "n", "statuses", "best_of_restarts"]
    doc = TableDoc(name="table3", title=title,
                   header=["Attack", "Model", "Dataset", "Defense", "Enc. Ratio", "EmbedDist", "ROUGE-1", "ROUGE-2"],
                   body=body, tidy_columns=cols, tidy=cells, notes=notes, group_columns=3)
    return paper.join_se_table3(doc, cells, cfg, raw)


# ------------------------------------------------------------------ what a text row depends on

def _text_model_description(cfg: Mapping[str, Any], model: str) -> str:
    from ..models.text import SIZES

    opts = (cfg.get("models") or {}).get(model) or {}
    name = display(model)
    pre = opts.get("pretrained")
    if pre:
        return f"{name}: pretrained weights {pre if isinstance(pre, str) else 'from the hub'} (classification head random)"
    if opts.get("weights") == "pretrained_local":
        from ..pipeline.jobs_lm import lm_description

        return (f"{name}: the trunk of {lm_description(model)}, with a fresh seeded two-class head (as the paper "
                f"attacks not-fine-tuned checkpoints); a small model trained here, not the pretrained checkpoint "
                f"the paper attacks")
    size = opts.get("size", "base")
    arch = dict(SIZES[model][size], **(opts.get("config_overrides") or {}))
    layers = arch.get("n_layer", arch.get("num_hidden_layers"))
    width = arch.get("n_embd", arch.get("hidden_size"))
    kind = "full size" if size == "base" and not opts.get("config_overrides") else "reduced size"
    return (f"{name}: RANDOM weights, {kind} ({layers} blocks of width {width}, the real vocabulary and tokenizer), "
            f"not the pretrained checkpoint the paper attacks; the numbers are not comparable with the paper's")


def text_model_short(cfg: Mapping[str, Any], model: str) -> str:
    """A figure-title fragment: which weights a text model had."""
    if modality_of(model) != "text":
        return ""
    opts = (cfg.get("models") or {}).get(model) or {}
    if opts.get("pretrained"):
        return f"pretrained {opts['pretrained'] if isinstance(opts['pretrained'], str) else display(model)}"
    if opts.get("weights") == "pretrained_local":
        return "pretrained here (rule lm_pretrain), reduced size (not the paper's checkpoint)"
    size = opts.get("size", "base")
    return ("random weights, " + ("full size" if size == "base" and not opts.get("config_overrides")
                                  else "reduced size") + " (not the paper's pretrained model)")


def _lamp_priors(cfg: Mapping[str, Any], models: Iterable[str]) -> list[str]:
    out = []
    for name, entry in (cfg.get("attacks") or {}).items():
        if (entry or {}).get("type", name) != "lamp":
            continue
        for m in sorted(models):
            params = dict((entry or {}).get("params") or {})
            params.update(((entry or {}).get("model_params") or {}).get(m) or {})
            prior = params.get("prior", "none")
            if prior in (None, "none"):
                what = "none: the discrete reordering steps are scored by the gradient distance alone"
            elif prior == "pretrained_local":
                from ..pipeline.jobs_lm import lm_description

                what = lm_description(m)
            else:
                what = f"{prior}"
            out.append(f"{display(name)} prior on {display(m)}: {what}")
    return out


DAGER_VARIANT_TEXT = {
    "visible_rows": "each span is built from the rows of the c_attn gradient whose entries are all visible (exact "
                    "while the visible rows still reach the rank; ours, stronger than any published attacker)",
    "zero_fill": "encrypted entries are replaced by 0 and the whole gradient is used (the naive attacker: every "
                 "touched row leaves the span)",
}


def dager_variant_notes(cfg: Mapping[str, Any]) -> list[str]:
    """What each configured DAGER entry's attacker under encryption does (paper A does not say
    how its DAGER treats encrypted entries; both are run and labelled)."""
    from ..attacks.dager import DEFAULTS as DAGER_DEFAULTS

    seen = {}
    for name, entry in (cfg.get("attacks") or {}).items():
        if (entry or {}).get("type", name) == "dager":
            v = ((entry or {}).get("params") or {}).get("variant", DAGER_DEFAULTS["variant"])
            seen.setdefault(v, f"{attack_label(cfg, name)}: {DAGER_VARIANT_TEXT.get(v, v)}.")
    if not seen:
        return []
    return list(seen.values()) + ["Paper A does not say how its DAGER treats encrypted entries; "
                                  "docs/regimes_variants.md compares the two."]


def text_notes(cfg: Mapping[str, Any], models: Iterable[str]) -> list[str]:
    """Caption notes for tables/figures with text rows: the models' weights, LAMP's prior, the
    Sens estimator and the conventions of ROUGE and EmbedDist."""
    from ..metrics.text import ROUGE_CAPTION, ROUGE_CAPTION_LAMP

    text_models = sorted({m for m in models if modality_of(m) == "text"})
    if not text_models:
        return []
    ev = cfg.get("evaluation") or {}
    t = dict(ev.get("text") or {})
    p, red = int(t.get("embed_p", 1)), t.get("embed_reduction", "sum")
    notes = [_text_model_description(cfg, m) for m in text_models]
    notes += _lamp_priors(cfg, text_models)
    notes += dager_variant_notes(cfg)
    from ..attacks import ATTACKS

    text_attacks = ATTACKS.names(modality="text")
    sig = list((cfg.get("significance") or {}).get("metrics") or [])
    sens_used = any("sens" in ((e or {}).get("metrics") or sig) for a, e in (cfg.get("attacks") or {}).items()
                    if (e or {}).get("type", a) in text_attacks)
    from ..pipeline.jobs_text import sens_estimator

    for m in text_models:
        est = sens_estimator(cfg, m)   # the function the significance job uses: the same estimator
        if sens_used and est != "sens":
            why = ("the paper's estimator for BERT/GPT-2, Table 6" if est == "sens_discrete" else
                   "not the paper's Sens (Discrete)")
            notes.append(f"Sens on {display(m)}: every Sens mask was made by {display(est)} ({why}; exact Sens is "
                         f"infeasible at this model size).")
    # evaluation.text.strip_special: the convention of every ROUGE value of the table (the metric
    # rows carry it too, as rouge_convention, and both conventions as rouge1_stripped / rouge1_lamp)
    notes.append(ROUGE_CAPTION if t.get("strip_special", True) else ROUGE_CAPTION_LAMP)
    notes.append(f"EmbedDist: Wasserstein-{p} distance between the input word-embedding vectors of the reconstructed "
                 f"and of the true tokens (the model's own embedding table; special tokens removed), Euclidean cost, "
                 + ("total transport cost with unit mass per true token (W × number of true tokens)"
                    if red == "sum" else "uniform weights (W of the two empirical distributions)")
                 + ", computed exactly.")
    return notes


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


# ------------------------------------------------------------------ builders (one per output)

def _metric_rows(metrics_path: Any) -> list[dict]:
    if isinstance(metrics_path, (str, Path)):
        return load_metric_rows(metrics_path)
    return as_records(metrics_path)


def build_table2(*, metrics_path: Any, config: Mapping[str, Any], out_dir: str | Path,
                 formats: Sequence[str] = ("csv", "md"), **_: Any) -> list[Path]:
    return table2(_metric_rows(metrics_path), config).write(out_dir, formats)


def build_table4(*, metrics_path: Any, config: Mapping[str, Any], out_dir: str | Path,
                 formats: Sequence[str] = ("csv", "md"), **_: Any) -> list[Path]:
    return table4(_metric_rows(metrics_path), config).write(out_dir, formats)


def build_table5(*, metrics_path: Any, config: Mapping[str, Any], out_dir: str | Path,
                 formats: Sequence[str] = ("csv", "md"), **_: Any) -> list[Path]:
    return table5(_metric_rows(metrics_path), config).write(out_dir, formats)


def build_table3(*, metrics_path: Any, config: Mapping[str, Any], out_dir: str | Path,
                 formats: Sequence[str] = ("csv", "md"), **_: Any) -> list[Path]:
    """Table 3 exists only for studies that ran layer selectors (the pipeline asks for it then)."""
    rows = _metric_rows(metrics_path)
    if not any(is_selector(r.get("metric")) for r in rows):
        return []
    return table3(rows, config).write(out_dir, formats)


def build_table6(*, cost_path: Any, config: Mapping[str, Any], out_dir: str | Path,
                 formats: Sequence[str] = ("csv", "md"), **_: Any) -> list[Path]:
    return table6(_metric_rows(cost_path), config).write(out_dir, formats)


# the study's tables (gibench.tables.registry): the pipeline's targets come from these entries,
# in this order (the order they are built and printed)
register_table(STUDY, "table2", build_table2, inputs=("metrics",), when="attacks", caption="Table 2")
register_table(STUDY, "table3", build_table3, inputs=("metrics",), when="selectors", caption="Table 3")
register_table(STUDY, "table4", build_table4, inputs=("metrics",), when="attacks", caption="Table 4")
register_table(STUDY, "table5", build_table5, inputs=("metrics",), when="attacks", caption="Table 5")
register_table(STUDY, "table6", build_table6, inputs=("cost",), when="always", caption="Table 6")
TABLE_ORDER = tuple(e.name for e in TABLES.of_study(STUDY))


def caption(name: str) -> str:
    """A table's display name (its registry entry's caption), e.g. ``Table 4``."""
    return TABLES.entry(STUDY, name).caption


def print_summary(tables_dir: str | Path, out: Callable[[str], Any] = print) -> list[Path]:
    """Print the Markdown tables found in ``tables_dir`` (Tables 2, 4, 5, 6 first)."""
    tables_dir = Path(tables_dir)
    found = sorted(tables_dir.glob("*.md"))
    ordered = [tables_dir / f"{n}.md" for n in TABLE_ORDER if (tables_dir / f"{n}.md") in found]
    ordered += [p for p in found if p not in ordered]
    if not ordered:
        out(f"(no tables in {tables_dir})")
    for p in ordered:
        out(p.read_text(encoding="utf-8"))
    return ordered
