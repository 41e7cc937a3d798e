"""What every table of :mod:`gibench.tables.selective_encryption` shares: the study's defaults
(protection criterion, Table 5 metric and ratio, panels), its config access (``evaluation``, the
significance metrics and ratio grid, the case order), the metric rows (best of restarts, model
and regime labels), the per-ratio curve means, the attack row labels and the pivot and caption
fragments the tables are laid out with."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ... import io, model_ids
from ..registry import TABLES
from ..render import display
from ..select import (
    SHARED_METRIC, as_records, best_of_restarts, expand_shared, is_missing, modality_of, ratio_key)


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
    from ...significance.selectors import SELECTORS

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


# ------------------------------------------------------------------ curves (Tables 4, 5)

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


# ------------------------------------------------------------------ row labels and caption fragments (every table)

def attack_label(cfg: Mapping[str, Any], attack: str) -> str:
    """An attack entry as the table rows name it.  DAGER always names its attacker under
    encryption (``DAGER (visible_rows)``, ``DAGER (zero_fill)``: the paper does not say which
    it ran); another entry whose name is not its registry name is a variant and carries that
    name (``IG (ig_zero_fill)``); otherwise the attack's display name."""
    entry = (cfg.get("attacks") or {}).get(attack) or {}
    kind = entry.get("type", attack)
    if kind == "dager":
        from ...attacks.dager import DEFAULTS as DAGER_DEFAULTS

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


# ------------------------------------------------------------------ the registry's captions

def caption(name: str) -> str:
    """A table's display name (its registry entry's caption), e.g. ``Table 4``."""
    return TABLES.entry(STUDY, name).caption
