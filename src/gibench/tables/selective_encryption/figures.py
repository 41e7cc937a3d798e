"""Figures of the selective-encryption study (paper Figures 3-6 and 15-33), PNG and PDF.

* ``curves_<model>_<dataset>_<attack>`` (Figs. 4-5): one panel per evaluation metric
  (LPIPS when available, MSE, PSNR, SSIM), one line per significance metric: the mean over
  samples of the best restart, with a band of ± one standard error of the mean; x is the
  encryption ratio (fraction of all gradient entries).  The protection threshold is drawn
  on its metric's panel.
* ``traces_<model>_<dataset>_<attack>_<slot>`` (Figs. 3, 15-33): the attacker's
  reconstruction loss against the iteration, one panel per significance metric, one line
  per ratio (log y axis; symlog if a loss is <= 0), for the restart the tables keep (its
  trace, :func:`gibench.io.load_trace` of its reconstruction artifact, as the slot's views file
  keeps it: :mod:`.views`).
* ``grid_<model>_<dataset>_<attack>`` (Fig. 6): reconstructions; the first row is the
  ground truth, then (if ratio 0 was run) the unencrypted attack, then one row per
  significance metric x selected ratio; one column per victim; under each reconstruction
  the kept restart's value of the protection metric (:func:`grid_value_metric`).  The pipeline
  draws the reconstructions from the slots' views files (:func:`.views.views_recon_provider`,
  written by the evaluate jobs), not from every restart's artifact.

Readable at a glance (issue 24): titles are wrapped to the figure's width
(:func:`~gibench.tables.figures.wrap_title`), image grids keep their aspect ratio
(:func:`~gibench.tables.figures.draw_montage`, shared with the other studies' grids), PSNR
carries its unit (:func:`~gibench.tables.figures.metric_label`), the protection threshold is a
legend entry, symlog axes label a few decades only.  The drawing helpers and the atomic saving
with fixed metadata (same bytes on re-runs) are :mod:`gibench.tables.figures`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ... import io
from ...studies.selective_encryption.spec import attack_runs_on, attack_victims, of_block
from ..figures import (
    FORMATS, _colors, draw_montage, _figure, _figure_legend, metric_label, metric_value_text, save_figure,
    _thin_symlog_ticks, wrap_title)
from ..registry import register_figure
from ..render import display, fmt_ratio
from ..select import SHARED_METRIC, as_records, best_of_restarts, is_missing, modality_of, ratio_key
from .common import (
    DEFAULT_PANELS, STUDY, attack_label, case_order, curve_means, evaluation, load_metric_rows, ratio_grid,
    selected_rows, significance_metrics, study_config)
from .text import text_model_short
from .views import SlotViews, numeric_trace, recon_image

DEFAULT_GRID_RATIOS = (0.1, 0.2, 0.3, 0.5)


# ------------------------------------------------------------------ curves (Figs. 4-5)

def panel_metrics(rows: list[dict], config: Mapping[str, Any], model: str) -> list[str]:
    """Evaluation metrics to draw: the configured ones, in the paper's order, that have values."""
    cfg = study_config(config)
    ev = evaluation(cfg)
    modality = modality_of(model)
    configured = ev.get("image_metrics") if modality == "image" else ev.get("text_metrics")
    order = list(DEFAULT_PANELS[modality])
    names = [m for m in order if configured is None or m in configured]
    names += [m for m in (configured or []) if m not in names]
    return [m for m in names if any(not is_missing(r.get(m)) for r in rows)]


def plot_curves(rows: Any, config: Mapping[str, Any], *, model: str, dataset: str, attack: str,
                out_dir: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Metric-vs-ratio curves of one (model, dataset, attack) from raw metric rows."""
    cfg = study_config(config)
    ev = evaluation(cfg)
    raw = as_records(rows)
    sel = [r for r in selected_rows(raw, cfg)
           if r["model"] == model and r["dataset"] == dataset and r["attack"] == attack]
    metrics = significance_metrics(cfg, raw)
    panels = panel_metrics(sel, cfg, model)
    crit = ev["protection"][modality_of(model)]
    missing_note = ""
    if crit["metric"] not in panels:
        reasons = sorted({str(r.get(f"{crit['metric']}_status")) for r in sel
                          if r.get(f"{crit['metric']}_status") and not str(r.get(f"{crit['metric']}_status")).startswith("ok")})
        missing_note = f"\n{display(crit['metric'])} unavailable" + (f": {'; '.join(reasons)}" if reasons else "")
    n = max(1, len(panels))
    fig = _figure(3.4 * n, 3.2)
    axes = fig.subplots(1, n, squeeze=False)[0]
    colors = _colors(len(metrics))
    n_samples = len({r["slot"] for r in sel})
    for ax, col in zip(axes, panels):
        for color, m in zip(colors, metrics):
            curve = curve_means([r for r in sel if r["metric"] == m], col)
            xs = [x for x in curve if curve[x]["n"] and math.isfinite(curve[x]["mean"])]
            if not xs:
                continue
            y = np.array([curve[x]["mean"] for x in xs])
            e = np.array([curve[x]["sem"] for x in xs])
            ax.plot(xs, y, marker="o", ms=3, lw=1.4, color=color, label=display(m))
            ax.fill_between(xs, y - e, y + e, color=color, alpha=0.18, lw=0)
        if col == crit["metric"]:
            ax.axhline(float(crit["threshold"]), color="k", ls="--", lw=0.8,
                       label=f"protected: {display(col)} {'≥' if crit['op'] == '>=' else '≤'} "
                             f"{float(crit['threshold']):g}")
        ax.set_xlabel("encryption ratio")
        ax.set_ylabel(metric_label(col))
        ax.grid(alpha=0.3)
    if not panels:
        axes[0].text(0.5, 0.5, "no metric values", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    else:
        # one legend for the figure: every line, the protection threshold included
        _figure_legend(fig, axes)
    weights = text_model_short(cfg, model)
    title = (f"{attack_label(cfg, attack)} on {display(model)} ({display(dataset)}): mean over {n_samples} "
             f"samples ± s.e.m.; best restart by {ev['best_of_restarts']}{missing_note}"
             + (f"\n{display(model)}: {weights}" if weights else ""))
    fig.suptitle(wrap_title(title, 3.4 * n - 0.3, 9), fontsize=9)
    return save_figure(fig, out_dir, f"curves_{model}_{dataset}_{attack}", formats)


# ------------------------------------------------------------------ traces (Figs. 3, 15-33)

#: the file that carries one restart's trace: its reconstruction artifact
TRACE_SUFFIX = ".safetensors"


def parse_trace_path(path: str | Path) -> dict:
    """The case of ``.../{study}/{dataset}/{model}/{slot}/{significance}/{ratio}/{attack}/rep{rep}.safetensors``
    (the restart's reconstruction, which carries its trace) keyed like a metric row (the row
    column ``metric`` holds the ``significance`` wildcard)."""
    p = Path(path)
    name = p.name
    if not (name.startswith("rep") and name.endswith(TRACE_SUFFIX) and name[3:-len(TRACE_SUFFIX)].isdigit()):
        raise ValueError(f"{path}: not a restart's reconstruction file name (rep<k>{TRACE_SUFFIX}), "
                         f"which carries its trace")
    parts = p.parts
    study, dataset, model, slot, metric, ratio, attack = parts[-8:-1]
    return {"study": study, "dataset": dataset, "model": model, "slot": slot, "metric": metric,
            "ratio": ratio_key(float(ratio.lstrip("r"))), "attack": attack,
            "restart": int(name[3:-len(TRACE_SUFFIX)])}


def default_trace_path(row: Mapping[str, Any], root: str | Path = "results") -> Path:
    return (Path(root) / "attacks" / str(row.get("study") or STUDY) / row["dataset"] / row["model"] / row["slot"]
            / row["metric"] / f"r{float(row['ratio']):.3f}" / row["attack"] / f"rep{int(row['restart'])}{TRACE_SUFFIX}")


def _trace_locator(trace_paths: Any, root: str | Path) -> Callable[[Mapping[str, Any]], Path | None]:
    if trace_paths is None:
        return lambda row: default_trace_path(row, root)
    if callable(trace_paths):
        return trace_paths
    index = {}
    for p in trace_paths:
        k = parse_trace_path(p)
        index[(k["dataset"], k["model"], k["slot"], k["metric"], k["ratio"], k["attack"], k["restart"])] = Path(p)
    return lambda row: index.get((row["dataset"], row["model"], row["slot"], row["metric"],
                                  ratio_key(row["ratio"]), row["attack"], int(row["restart"])))


def chosen_rows(rows: Any, config: Mapping[str, Any], *, model: str, dataset: str, attack: str,
                slot: str | None = None) -> dict[tuple[str, float, str], dict]:
    """(significance metric, ratio, slot) -> the kept restart's row, keeping the row's own
    metric name (``any`` for ratios 0/1) so its files can be found."""
    cfg = study_config(config)
    ev = evaluation(cfg)
    raw = [r for r in as_records(rows) if r["model"] == model and r["dataset"] == dataset and r["attack"] == attack
           and (slot is None or r["slot"] == slot)]
    best = best_of_restarts(raw, criterion=ev["best_of_restarts"], protection=ev["protection"])
    out = {}
    metrics = significance_metrics(cfg, raw)
    for r in best:
        targets = metrics if r["metric"] == SHARED_METRIC else [r["metric"]]
        for m in targets:
            out[(m, ratio_key(r["ratio"]), r["slot"])] = r
    return out


def load_trace(path: str | Path) -> dict[str, np.ndarray]:
    """The numeric columns of the trace a restart's reconstruction artifact carries (a per-step
    status string, e.g. DLG's, left out: :func:`.views.numeric_trace`, also what a views file keeps)."""
    return numeric_trace(io.load_trace(path))


def plot_traces(traces: Mapping[tuple[str, float], Mapping[str, Any]], *, model: str, dataset: str, attack: str,
                slot: str, out_dir: str | Path, metrics: Sequence[str] | None = None,
                y: str = "loss", note: str = "", formats: Sequence[str] = FORMATS) -> list[Path]:
    """``traces``: (significance metric, ratio) -> {"iteration": array, "loss": array, ...}."""
    metrics = list(metrics) if metrics is not None else list(dict.fromkeys(k[0] for k in traces))
    ratios = sorted({ratio_key(k[1]) for k in traces})
    colors = dict(zip(ratios, _colors(len(ratios), "viridis")))
    n = max(1, len(metrics))
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = _figure(3.6 * ncols, 2.9 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    all_vals = [np.asarray(t[y], float) for t in traces.values() if y in t]
    finite = np.concatenate([v[np.isfinite(v)] for v in all_vals]) if all_vals else np.array([])
    scale = "log" if finite.size and finite.min() > 0 else "symlog"
    for ax, m in zip(axes, metrics):
        drawn = False
        for r in ratios:
            t = traces.get((m, r))
            if t is None or y not in t:
                continue
            it = np.asarray(t.get("iteration", np.arange(len(t[y]))), float)
            v = np.asarray(t[y], float)
            ok = np.isfinite(v)
            if not ok.any():
                continue
            ax.plot(it[ok], v[ok], lw=1.0, color=colors[r], label=f"r = {fmt_ratio(r)}")
            drawn = True
        ax.set_title(display(m), fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"reconstruction {y}")
        if drawn and scale == "log":
            ax.set_yscale("log")
        elif drawn:
            _thin_symlog_ticks(ax, finite)
        else:
            ax.text(0.5, 0.5, "no trace", ha="center", va="center", transform=ax.transAxes)
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_axis_off()
    _figure_legend(fig, axes[:len(metrics)])
    fig.suptitle(wrap_title(f"{display(attack)} on {display(model)} ({display(dataset)}), victim {slot}: "
                            f"reconstruction loss during the attack{'; ' + note if note else ''}",
                            3.6 * ncols - 0.3, 9), fontsize=9)
    return save_figure(fig, out_dir, f"traces_{model}_{dataset}_{attack}_{slot}", formats)


# ------------------------------------------------------------------ grid (Fig. 6)

def grid_ratios(config: Mapping[str, Any], rows: Iterable[dict] = (),
                wanted: Sequence[float] = DEFAULT_GRID_RATIOS) -> list[float]:
    """Ratios shown in the grid: those of ``wanted`` in the grid, else every interior ratio."""
    grid = ratio_grid(study_config(config), list(rows))
    chosen = [r for r in grid if any(abs(r - w) < 1e-9 for w in wanted)]
    return chosen or [r for r in grid if 0.0 < r < 1.0]


def plot_grid(truth: Mapping[str, Any], recons: Mapping[tuple[str, float, str], Any], *, model: str,
              dataset: str, attack: str, out_dir: str | Path, metrics: Sequence[str],
              ratios: Sequence[float], slots: Sequence[str] | None = None, unencrypted: bool = True,
              values: Mapping[tuple[str, float, str], str] | None = None, value_note: str = "",
              formats: Sequence[str] = FORMATS) -> list[Path]:
    """Reconstruction grid. ``truth``: slot -> HWC array in [0, 1]; ``recons``:
    (significance metric, ratio, slot) -> HWC array in [0, 1] (ratio 0 under any metric
    or ``any``); ``values``: the same keys -> the text shown under that reconstruction (its
    metric value, e.g. ``LPIPS 0.41``).  Missing cells are left blank and labelled."""
    slots = list(slots) if slots is not None else sorted(truth)
    values = values or {}
    row_specs: list[tuple[str, Callable[[str], Any], Callable[[str], str]]] = [
        ("ground truth", lambda s: truth.get(s), lambda s: "")]
    if unencrypted:
        zero = {k[2]: v for k, v in recons.items() if ratio_key(k[1]) == 0.0}
        zero_vals = {k[2]: v for k, v in values.items() if ratio_key(k[1]) == 0.0}
        if zero:
            row_specs.append(("no encryption", lambda s: zero.get(s), lambda s: zero_vals.get(s, "")))
    for m in metrics:
        for r in ratios:
            row_specs.append((f"{display(m)} {fmt_ratio(r)}",
                              lambda s, m=m, r=ratio_key(r): recons.get((m, r, s)),
                              lambda s, m=m, r=ratio_key(r): values.get((m, r, s), "")))
    cells = [[get(s) for s in slots] for _, get, _ in row_specs]
    notes = [[val(s) for s in slots] for _, _, val in row_specs]
    title = (f"{display(attack)} on {display(model)} ({display(dataset)}): reconstructions; rows: significance "
             f"metric and encryption ratio, columns: victims" + (f"; under each: {value_note}" if value_note else ""))
    fig = draw_montage(cells, [label for label, _, _ in row_specs], slots, title=title, notes=notes,
                       cell_in=0.8, left_in=1.3)
    return save_figure(fig, out_dir, f"grid_{model}_{dataset}_{attack}", formats)


# ------------------------------------------------------------------ providers (files -> arrays)

def file_recon_provider(root: str | Path = "results", study: str = STUDY) -> Callable[[Mapping[str, Any]], np.ndarray]:
    """row -> the reconstruction of that restart, de-normalised to [0, 1] HWC (first image), read
    from its attack artifact (the library path; the pipeline's grid reads the slots' views files:
    :func:`.views.views_recon_provider`, the same arrays)."""
    def provide(row: Mapping[str, Any]) -> np.ndarray:
        p = (Path(root) / "attacks" / str(row.get("study") or study) / row["dataset"] / row["model"] / row["slot"]
             / row["metric"] / f"r{float(row['ratio']):.3f}" / row["attack"] / f"rep{int(row['restart'])}.safetensors")
        tensors, _ = io.load_tensors(p)
        return recon_image(row["dataset"], tensors["x"])
    return provide


def victims_truth_provider(config: Mapping[str, Any], root: str | Path = "results",
                           study: str = STUDY) -> Callable[[str, str], np.ndarray]:
    """(dataset, slot) -> the victim image as the model sees it, in [0, 1] HWC (first image)."""
    def provide(dataset: str, slot: str) -> np.ndarray:
        from ...datasets import DATASETS
        from ...victims import read_victims, slot_rows

        batch = int(study_config(config, study).get("gradient", {}).get("batch_size", 1))
        imgs, _, _ = read_victims(Path(root) / "data" / dataset / "victims.parquet", slot_rows(slot, batch))
        ds = DATASETS.get(dataset)
        x = ds.denormalize(ds.normalize(imgs)).clamp(0, 1)
        return x[0].permute(1, 2, 0).numpy()
    return provide


# ------------------------------------------------------------------ builders (one per figure)

def _rows(metrics_path: Any) -> list[dict]:
    if isinstance(metrics_path, (str, Path)):
        return load_metric_rows(metrics_path)
    return as_records(metrics_path)


def build_curves_figure(*, metrics_path: Any, config: Mapping[str, Any], model: str, dataset: str, attack: str,
                        out_dir: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    return plot_curves(_rows(metrics_path), config, model=model, dataset=dataset, attack=attack,
                       out_dir=out_dir, formats=formats)


def build_traces_figure(*, metrics_path: Any, config: Mapping[str, Any], model: str, dataset: str, attack: str,
                        slot: str, out_dir: str | Path, trace_paths: Any = None, root: str | Path = "results",
                        views: Iterable[str | Path] | None = None, formats: Sequence[str] = FORMATS) -> list[Path]:
    """The kept restarts' traces from ``views`` (the slot's views file, :mod:`.views`: what the
    pipeline's figure job reads) or else from the reconstruction artifacts, which carry them:
    ``trace_paths`` None (the pipeline's layout under ``root``), an iterable of the restarts'
    reconstruction files (matched by their path), or a callable row -> path."""
    cfg = study_config(config)
    rows = _rows(metrics_path)
    chosen = chosen_rows(rows, cfg, model=model, dataset=dataset, attack=attack, slot=slot)
    traces = {}
    if views is not None:
        sv = SlotViews(views)
        traces = {(m, r): sv.trace(row) for (m, r, _s), row in chosen.items()}
    else:
        locate = _trace_locator(trace_paths, root)
        for (m, r, _s), row in chosen.items():
            p = locate(row)
            if p is not None and Path(p).exists():
                traces[(m, r)] = load_trace(p)
    return plot_traces(traces, model=model, dataset=dataset, attack=attack, slot=slot, out_dir=out_dir,
                       metrics=significance_metrics(cfg, rows), formats=formats,
                       note=f"restart kept by {evaluation(cfg)['best_of_restarts']}")


def build_grid_figure(*, metrics_path: Any, config: Mapping[str, Any], model: str, dataset: str, attack: str,
                      out_dir: str | Path, recon_provider: Callable[[Mapping[str, Any]], Any],
                      truth_provider: Callable[[str, str], Any], ratios: Sequence[float] | None = None,
                      slots: Sequence[str] | None = None, formats: Sequence[str] = FORMATS) -> list[Path]:
    """``recon_provider(row)`` -> HWC array for the kept restart's row (its own metric
    name, ``any`` at ratios 0/1: :func:`.views.views_recon_provider` or :func:`file_recon_provider`);
    ``truth_provider(dataset, slot)`` -> HWC array."""
    cfg = study_config(config)
    rows = _rows(metrics_path)
    chosen = chosen_rows(rows, cfg, model=model, dataset=dataset, attack=attack)
    ratios = [ratio_key(r) for r in (ratios if ratios is not None else grid_ratios(cfg, rows))]
    slots = list(slots) if slots is not None else sorted({k[2] for k in chosen})
    metrics = significance_metrics(cfg, rows)
    shown = grid_value_metric(cfg, [row for row in chosen.values()], model)
    recons: dict[tuple[str, float, str], Any] = {}
    values: dict[tuple[str, float, str], str] = {}
    for (m, r, s), row in chosen.items():
        if s in slots and (r in ratios or r == 0.0):
            if r == 0.0 and (metrics and m != metrics[0]):
                continue                          # ratio 0 is one shared row
            recons[(m, r, s)] = recon_provider(row)
            if shown:
                values[(m, r, s)] = metric_value_text(shown, row.get(shown))
    truth = {s: truth_provider(dataset, s) for s in slots}
    note = f"{metric_label(shown)} of the kept restart" if shown else ""
    return plot_grid(truth, recons, model=model, dataset=dataset, attack=attack, out_dir=out_dir,
                     metrics=metrics, ratios=ratios, slots=slots, values=values, value_note=note, formats=formats)


def grid_value_metric(config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], model: str) -> str | None:
    """The metric a grid shows under each reconstruction: the study's protection metric (e.g.
    LPIPS) when the rows have values of it, else the first panel metric that has values."""
    crit = evaluation(study_config(config))["protection"][modality_of(model)]["metric"]
    if any(not is_missing(r.get(crit)) for r in rows):
        return crit
    panels = panel_metrics(list(rows), config, model)
    return panels[0] if panels else None


def figure_specs(config: Mapping[str, Any], rows: Any = None, study: str = STUDY) -> list[dict]:
    """The figures a config asks for: {kind, name, model, dataset, attack[, slot]}.

    From the config alone (cases x attacks x victim slots) unless ``rows`` are given."""
    cfg = study_config(config, study)
    if rows is not None:
        combos = case_order(cfg, as_records(rows))
        slots_of = {}
        for r in as_records(rows):
            slots_of.setdefault((r["model"], r["dataset"]), set()).add(r["slot"])
    else:
        attacks = cfg.get("attacks") or {}
        # each attack on the cases it runs on (text attacks on text models, ig on images, attacks.<a>.models),
        # each init of a case its own model id; (attacks that run only layer selectors have no curves: Table 3)
        combos = [(a, m, d) for a in attacks for d, m in of_block(cfg).case_list()
                  if attack_runs_on(cfg, a, d, m) and significance_metrics(
                      {"significance": {"metrics": (attacks[a] or {}).get("metrics")
                                        or (cfg.get("significance") or {}).get("metrics")}})]
        slots_of = {(m, d): {f"s{i:03d}" for i in range(attack_victims(cfg, a))} for a, m, d in combos}
    specs = []
    for a, m, d in combos:
        wc = {"model": m, "dataset": d, "attack": a}
        specs.append({"kind": "curves", "name": f"curves_{m}_{d}_{a}", **wc})
        if modality_of(m) != "image":
            continue  # text (Figs. 7-14): the curves only, as in the paper
        specs.append({"kind": "grid", "name": f"grid_{m}_{d}_{a}", **wc})
        for s in sorted(slots_of.get((m, d), ())):
            specs.append({"kind": "traces", "name": f"traces_{m}_{d}_{a}_{s}", "slot": s, **wc})
    return specs


# the study's figure kinds (gibench.tables.registry): one figure per figure_specs entry of a registered kind
register_figure(STUDY, "curves", build_curves_figure, when="specs",
                caption="metric value against encryption ratio (Figs. 4-5, 7-14)")
register_figure(STUDY, "traces", build_traces_figure, when="specs", caption="attack loss traces (Figs. 3, 15-33)")
register_figure(STUDY, "grid", build_grid_figure, when="specs", caption="reconstruction grid (Fig. 6)")
