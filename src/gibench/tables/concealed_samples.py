"""Tables 1-7, 9-11 and the reconstruction grid (Fig. 2) of the concealed-samples study
(DCS², Wu et al. AAAI 2024).

Each table is a list of *blocks* (dataset, attack, cohort, defenses as rows, metric
columns), laid out like the paper's.  A cell is the mean ± standard deviation (population,
ddof 0) over the victims of the per-victim best restart (lowest attacker loss; DCS-2 runs one
restart); accuracy cells come from the study's FedAvg runs (mean over seeds, in percent).
Next to every measured column the paper's value (its mean, from config/paper_values/concealed_samples.yaml,
read by :mod:`gibench.paper_values`) is shown for comparison.  A
block whose dataset is not in ``cases`` shows "not run" with the reason (e.g. CelebA cannot
be downloaded here); accuracy columns say "not computed" when the study has no ``utility``
runs.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .. import io, privacy
from ..metrics import METRICS as IMAGE_METRICS
from ..paper_values import load
from ..studies.concealed_samples.layouts import (  # noqa: F401  (re-exported: Block, Table, P4, BASE, grid_cells)
    BASE, LAYOUTS, P4, TABLES, Block, Table, _cs, grid_cells, needed_blocks)
from ..studies.concealed_samples.spec import defense_steps, fl_settings
from . import budgets, figures
from .registry import TABLES as TABLES_REGISTRY, register_figure, register_table
from .render import TableDoc, fmt_mean_std

STUDY = "concealed_samples"
#: a configured defense as the paper's tables name it: the study's defenses by their records' labels
#: (gibench.defenses.DEFENSES, family concealed_samples), then the paper's combinations and variants
_VARIANT_LABEL = {"prune+dcs2": "Prune&DCS²", "dcs2_lg05": "DCS² (λg = 0.5)", "dcs2_lg10": "DCS² (λg = 1.0)",
                  "dcs2_start_proxy_mixup": "DCS² (MNIST ✓, Noise ✗, MixUP ✓)",
                  "dcs2_start_mixup": "DCS² (MNIST ✗, Noise ✗, MixUP ✓)",
                  "dcs2_start_noise": "DCS² (MNIST ✗, Noise ✓, MixUP ✗)",
                  "dcs2_start_cifar10": "DCS² (start points from CIFAR-10)"}


@functools.cache
def defense_labels() -> dict[str, str]:
    # deferred: gibench.defenses imports torch, and the tables are imported at DAG build
    from ..defenses import CONCEALED, DEFENSES

    return {"none": "None", **{n: DEFENSES.label(CONCEALED, n) for n in DEFENSES.of(CONCEALED).names()},
            **_VARIANT_LABEL}


DATASET = {"mnist": "MNIST", "cifar10": "CIFAR10", "celeba": "CelebA", "tiny_imagenet": "TinyImageNet"}
# the metric columns: the registered metrics' display names (gibench.metrics.METRICS), the arrow pointing to
# better protection (a defense table: lower similarity is better)
COLUMN = {**{n: IMAGE_METRICS.get(n).display + ("↑" if n == "lpips" else "↓") for n in ("psnr", "ssim", "lpips")},
          "acc_sensitive": "Acc↑ (Sensitive Data)",
          "acc_test": "Acc↑ (Test set)"}
ACC = ("acc_sensitive", "acc_test")


def attack_label(attack: str) -> str:
    """A configured attack as the tables name it: its registry entry's display name when the
    entry is named like a registered attack of this study (``GS``), else the entry's own name."""
    from ..attacks import ATTACKS  # deferred: the attack modules import torch; tables load at DAG build

    if attack in ATTACKS and ATTACKS.entry(attack).applies_to(STUDY):
        return ATTACKS.display(attack)
    return attack


def _paper(table: str, blk: Block, defense: str, column: str) -> float | None:
    """The paper's mean of one cell (config/paper_values/concealed_samples.yaml), None if it has none."""
    t = load(STUDY).table(table)
    row = t.get(dataset=blk.dataset, attack=blk.attack, cohort=blk.cohort, defense=defense) if t else None
    cell = row.cells.get(column) if row is not None else None
    return cell.value if cell is not None and cell.is_number else None


# ---------------------------------------------------------------------- cells

def _records(path: Any) -> list[dict]:
    if path is None:
        return []
    t, _ = io.load_table(path)
    return t.to_pylist() if t.num_rows else []


def best_per_victim(rows: Iterable[dict]) -> list[dict]:
    """One row per victim: the restart with the lowest attacker loss (NaN losses last)."""
    by: dict[str, dict] = {}
    for r in rows:
        key = r["slot"]
        loss = r.get("attacker_loss")
        score = loss if loss is not None and math.isfinite(loss) else math.inf
        if key not in by or score < by[key][0]:
            by[key] = (score, r)
    return [v[1] for _, v in sorted(by.items())]


def _mean_std(vals: Sequence[float]) -> tuple[float, float, int]:
    v = np.asarray([x for x in vals if x is not None and not (isinstance(x, float) and math.isnan(x))], np.float64)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    if np.isinf(v).any():
        return float(v.mean()), float("nan"), int(len(v))
    return float(v.mean()), float(v.std(ddof=0)), int(len(v))


def _fmt(mean: float, std: float, column: str) -> str:
    if math.isinf(mean):
        return "inf (exact)"
    if column in ACC:
        return f"{mean:.2f} ± {std:.2f}" if math.isfinite(std) else f"{mean:.2f}"
    return fmt_mean_std(mean, std, sig=2, min_decimals=2)


def cells(table: str, metric_rows: list[dict], acc_rows: list[dict], config: Mapping[str, Any]) -> list[dict]:
    c = _cs(config)
    u = c.get("utility") or {}
    util = bool(u) and u.get("enabled", True)
    report = u.get("report", "final")
    suffix = "best" if report == "best_val" else "final"
    out = []
    for bi, blk in enumerate(TABLES[table].blocks):
        model = c["cases"].get(blk.dataset)
        for dfn in blk.defenses:
            for col in blk.columns:
                paper = _paper(table, blk, dfn, col)
                cell = {"table": table, "block": bi, "dataset": blk.dataset, "model": model, "attack": blk.attack,
                        "cohort": blk.cohort, "defense": dfn, "column": col, "mean": None, "std": None, "n": 0,
                        "paper": paper, "status": "ok", "note": ""}
                if model is None:
                    reason = c.get("unavailable", {}).get(blk.dataset, f"{blk.dataset} is not in studies.{STUDY}.cases")
                    cell.update(status="not run", note=reason)
                elif col in ACC:
                    if not util:
                        cell.update(status="not computed", note="no FedAvg runs (studies.concealed_samples.utility is off)")
                    elif blk.dataset not in u.get("datasets", list(c["cases"])):
                        cell.update(status="not computed", note=f"utility.datasets leaves out {blk.dataset}")
                    else:
                        rs = [r for r in acc_rows if r.get("dataset") == blk.dataset and r.get("cohort") == blk.cohort
                              and r.get("defense") == dfn]
                        key = "protected_acc_" + suffix if col == "acc_sensitive" else "test_acc_" + suffix
                        m, s, n = _mean_std([100.0 * float(r[key]) for r in rs])
                        cell.update(mean=m, std=s, n=n, status="ok" if n else "missing",
                                    note="" if n else "no FedAvg run found")
                else:
                    rs = [r for r in metric_rows if r.get("dataset") == blk.dataset and r.get("attack") == blk.attack
                          and r.get("cohort") == blk.cohort and r.get("defense") == dfn]
                    failed = [r for r in rs if r.get("status") not in ("ok",)]
                    best = best_per_victim(r for r in rs if r.get("status") == "ok")
                    vals = [r.get(col) for r in best]
                    if col == "lpips" and best and all(v is None for v in vals):
                        cell.update(status="unavailable", note=str(best[0].get("lpips_status")), n=len(best))
                    else:
                        m, s, n = _mean_std([v for v in vals if v is not None])
                        cell.update(mean=m, std=s, n=n, status="ok" if n else "missing",
                                    note=(f"{len(failed)} attack(s) failed" if failed else ""))
                out.append(cell)
    return out


def _cell_text(cell: dict) -> str:
    if cell["status"] == "ok" and cell["mean"] is not None:
        return _fmt(cell["mean"], cell["std"], cell["column"])
    return {"not run": "not run", "not computed": "not computed", "unavailable": "unavailable",
            "missing": "missing"}.get(cell["status"], cell["status"])


def _paper_text(v: float | None, col: str) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}"


def table_doc(table: str, metric_rows: list[dict], acc_rows: list[dict], config: Mapping[str, Any]) -> TableDoc:
    spec = TABLES[table]
    cl = cells(table, metric_rows, acc_rows, config)
    header = ["Defense"]
    for blk in spec.blocks:
        for col in blk.columns:
            header += [f"{DATASET.get(blk.dataset, blk.dataset)} {COLUMN[col]}", "paper"]
    rows_order: list[str] = []
    for blk in spec.blocks:
        for d in blk.defenses:
            if d not in rows_order:
                rows_order.append(d)
    body = []
    for d in rows_order:
        row = [defense_labels().get(d, d)]
        for bi, blk in enumerate(spec.blocks):
            for col in blk.columns:
                cell = next((x for x in cl if x["block"] == bi and x["defense"] == d and x["column"] == col), None)
                row += ["", ""] if cell is None else [_cell_text(cell), _paper_text(cell["paper"], col)]
        body.append(row)
    notes = []
    c = _cs(config)
    for bi, blk in enumerate(spec.blocks):
        bc = [x for x in cl if x["block"] == bi]
        ns = sorted({x["n"] for x in bc if x["column"] not in ACC and x["status"] == "ok"})
        where = f"{DATASET.get(blk.dataset, blk.dataset)} ({attack_label(blk.attack)}, {blk.cohort})"
        if bc and bc[0]["status"] == "not run":
            notes.append(f"{where}: not run — {bc[0]['note']}.")
            continue
        model = c["cases"][blk.dataset]
        notes.append(f"{where}: model {model}; mean ± std over {', '.join(map(str, ns)) or '0'} sensitive image(s), "
                     f"one attack each (best of {c.get('restarts', 1)} restart(s) by attacker loss).")
        reasons = sorted({x["note"] for x in bc if x["note"] and x["status"] != "ok" or (x["status"] == "ok" and x["note"])})
        for r in reasons:
            notes.append(f"{where}: {r}.")
    notes.append("'paper' columns: the published means (Wu et al., AAAI 2024) for comparison. PSNR and SSIM are "
                 "computed on the sensitive image, de-normalised and clamped to [0, 1]; SSIM as the DCS-2 code "
                 "(Gaussian 11/1.5, zero padding); accuracies (%) from the study's FedAvg runs on the protected "
                 "client's data and the held-out test set.")
    if any("lpips" in blk.columns for blk in spec.blocks):
        notes.append(_lpips_note(c))
    tidy_cols = ["table", "dataset", "model", "attack", "cohort", "defense", "column", "mean", "std", "n", "paper",
                 "status", "note"]
    eps_notes = _with_epsilon(spec, rows_order, header, body, cl, config)
    if eps_notes:
        notes += eps_notes
        tidy_cols += [c for c in EPS_FIELDS if c not in tidy_cols]
    return TableDoc(name=table, title=TABLES_REGISTRY.entry(STUDY, table).caption, header=header, body=body, tidy_columns=tidy_cols, tidy=cl,
                    notes=notes, group_columns=0)


EPS_FIELDS = ("epsilon_step", "epsilon_delta", "privacy_guarantee", "epsilon_fedavg", "epsilon_fedavg_rounds")


def _with_epsilon(spec: Table, rows_order: list[str], header: list[str], body: list[list[str]], cl: list[dict],
                  config: Mapping[str, Any]) -> list[str]:
    """ε columns (gibench.tables.budgets) when a row's defense adds noise: per step (the
    attacked gradient) and, in tables with accuracy columns, over the FedAvg run; the cells of
    each row's defense carry the numbers in the CSV.  Returns the notes (none: no column)."""
    c = _cs(config)
    u = c.get("utility") or {}
    priv = c.get("privacy")
    blocks = [b for b in spec.blocks if b.dataset in c["cases"]]
    steps = {(b.dataset, d): defense_steps(config, d, b.dataset) for b in blocks for d in b.defenses}
    if not any(privacy_budget_exists(s) for s in steps.values()):
        return []
    util = bool(u) and u.get("enabled", True)
    fed = util and any(set(b.columns) & set(ACC) for b in blocks)
    header.append(budgets.step_header(priv))
    if fed:
        header.append(budgets.fedavg_header(priv))
    unclipped = False
    per: dict[tuple[str, str, str], dict] = {}
    for b in blocks:
        for d in b.defenses:
            text, fields = budgets.step_cell(steps[(b.dataset, d)], None, priv)
            unclipped |= fields["privacy_guarantee"] == "none"
            if fields["privacy_guarantee"] is None:          # no noise: nothing to account, run or not
                ftext, ff = "—", {"epsilon_fedavg": None, "epsilon_fedavg_rounds": None}
            elif fed and b.dataset in u.get("datasets", list(c["cases"])):
                fsteps = defense_steps(config, d, b.dataset, u.get("defense_overrides", {}))
                ftext, ff = budgets.fedavg_cell(fsteps, fl_settings(config, b.dataset, b.cohort), priv)
            else:
                ftext, ff = budgets.fedavg_cell(None, None, priv)
            per[(b.dataset, b.cohort, d)] = {"step": text, "fedavg": ftext, **fields, **ff}
    for d, line in zip(rows_order, body):
        mine = {k[0]: v for k, v in per.items() if k[2] == d}
        for key in ("step", "fedavg") if fed else ("step",):
            texts = list(dict.fromkeys(v[key] for v in mine.values()))
            line.append(texts[0] if len(texts) == 1 else
                        "; ".join(f"{DATASET.get(ds, ds)}: {v[key]}" for ds, v in mine.items()) if texts else "")
    for cell in cl:
        v = per.get((cell["dataset"], cell["cohort"], cell["defense"]))
        if v is not None:
            cell.update({k: v.get(k) for k in EPS_FIELDS})
    return [budgets.note(priv, fedavg=fed, unclipped=unclipped)]


def privacy_budget_exists(steps: Any) -> bool:
    """Whether a defense adds noise (and so gets an ε or a 'no guarantee' cell)."""
    return privacy.mechanism_of(list(steps)) is not None


def _lpips_note(c: Mapping[str, Any]) -> str:
    lp = {"backbone": "alex", "version": "0.1", "input": "raw01", **((c.get("evaluation") or {}).get("lpips") or {})}
    how = ("the [0, 1] images fed unmapped, as DCS-2's code does (lpips.LPIPS(net)(x, y) without normalize=True), "
           "so the values compare with the paper's" if lp["input"] == "raw01" else
           "the [0, 1] images mapped to [-1, 1] (the LPIPS authors' convention), not DCS-2's unmapped input: "
           "the values do not compare directly with the paper's")
    return f"LPIPS: {lp['backbone']} v{lp['version']} (evaluation.lpips.input: {lp['input']}), {how}."


def build_table(table: str, metrics_path: Any, accuracy_path: Any, config: Mapping[str, Any]) -> TableDoc:
    return table_doc(table, _records(metrics_path), _records(accuracy_path), config)


# ---------------------------------------------------------------------- Fig. 2

def _img(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x[0] if x.shape[0] == 1 else np.transpose(x, (1, 2, 0))


def build_grid(figure: str, recon_paths: Sequence[str], secret_paths: Sequence[str], config: Mapping[str, Any],
               out_dir: str | Path, metrics_path: Any = None) -> list[Path]:
    """The paper's Fig. 2 layout: rows: (dataset, attack) blocks (GS on MNIST, GS on CIFAR10, GGL
    on CelebA, Imprint on TinyImageNet); columns: the sensitive image, then one reconstruction per
    defense (victim slot 0, restart 0), its PSNR and SSIM against the sensitive image under it
    (from the metric rows, ``metrics_path``)."""
    from ..studies.concealed_samples.prep import prep_for    # deferred: prep imports torch (the study's models)
    recs: dict[tuple, np.ndarray] = {}
    for p in recon_paths:
        t, rec = io.load_tensors(p)
        w = rec["wildcards"]
        prep = prep_for(config, w["dataset"])
        recs[(w["dataset"], w["attack"], w["defense"])] = prep.denormalize(t["x"]).clamp(0, 1)[0].numpy()
    truth: dict[str, np.ndarray] = {}
    for p in secret_paths:
        t, rec = io.load_tensors(p)
        w = rec["wildcards"]
        if w["defense"] in ("none",) or w["dataset"] not in truth:
            prep = prep_for(config, w["dataset"])
            truth[w["dataset"]] = prep.denormalize(t["sensitive_x"]).clamp(0, 1)[0].numpy()
    values: dict[tuple, str] = {}
    for r in _records(metrics_path):
        if str(r.get("slot")) == "s000" and int(r.get("restart", -1)) == 0:
            key = (r["dataset"], r["attack"], r["defense"])
            values.setdefault(key, "\n".join(t for t in (figures.metric_value_text("psnr", r.get("psnr")),
                                                         figures.metric_value_text("ssim", r.get("ssim"))) if t))
    c = _cs(config)
    blocks = [b for b in TABLES["fig2"].blocks if b.dataset in c["cases"]]
    cols = ["sensitive image"] + [defense_labels().get(d, d) for d in BASE]
    cells, notes, row_labels = [], [], []
    for b in blocks:
        cells.append([None if truth.get(b.dataset) is None else _img(truth[b.dataset])]
                     + [None if recs.get((b.dataset, b.attack, d)) is None else _img(recs[(b.dataset, b.attack, d)])
                        for d in BASE])
        notes.append([""] + [values.get((b.dataset, b.attack, d), "") for d in BASE])
        row_labels.append(f"{attack_label(b.attack).split(' (')[0]} on {DATASET.get(b.dataset, b.dataset)}")
    missing = [DATASET.get(b.dataset, b.dataset) for b in TABLES["fig2"].blocks if b.dataset not in c["cases"]]
    title = ("Fig. 2 (Wu et al., DCS²): reconstructions of victim s000 (restart 0) by each attack (rows) under "
             "each defense (columns); under each: PSNR [dB] and SSIM against the sensitive image (lower: better "
             "protected)" + ("; not run in this config: " + ", ".join(missing) if missing else ""))
    if not cells:
        cells, notes, row_labels = [[None] * len(cols)], [[""] * len(cols)], ["not run"]
    fig = figures.draw_montage(cells, row_labels, cols, title=title, notes=notes, cell_in=0.95, left_in=1.2,
                       min_width_in=6.0)
    return figures.save_figure(fig, out_dir, figure)


# ---------------------------------------------------------------------- registration

def _table_builder(name: str):
    def build(*, metrics_path: Any, config: Mapping[str, Any], out_dir: str | Path, accuracy_path: Any = None,
              formats: Sequence[str] = ("csv", "md"), **_: Any) -> list[Path]:
        return build_table(name, metrics_path, accuracy_path, config).write(out_dir, formats)
    return build


def _figure_builder(name: str):
    def build(*, recon_paths: Sequence[str], secret_paths: Sequence[str], config: Mapping[str, Any],
              out_dir: str | Path, metrics_path: Any = None, **_: Any) -> list[Path]:
        return build_grid(name, recon_paths, secret_paths, config, out_dir, metrics_path=metrics_path)
    return build


# every layout is a registry entry, made when the study's `tables:` list names it
for _t in LAYOUTS:
    if _t.name.startswith("fig"):
        register_figure(STUDY, _t.name, _figure_builder(_t.name), inputs=("metrics",), when="listed",
                        caption=_t.title, layout=_t)
    else:
        register_table(STUDY, _t.name, _table_builder(_t.name), inputs=("metrics", "accuracy"), when="listed",
                       caption=_t.title, layout=_t)
del _t
