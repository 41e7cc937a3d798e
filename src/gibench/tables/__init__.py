"""Tables and figures of the studies.

``TABLES`` and ``FIGURES`` (:mod:`gibench.tables.registry`) hold one entry per table or
figure a study can make, keyed ``<study>/<name>``; each study's table and figure targets are
derived from them (:func:`gibench.pipeline.targets.registered_outputs`).  A selective-encryption
table builder takes keyword arguments ``metrics_path`` / ``cost_path`` (a Parquet path or
rows), ``config`` (whole config or the study section), ``out_dir`` and ``formats`` (default
``("csv", "md")``; ``"tex"`` too), ignores the arguments it does not need, and returns the
paths it wrote::

    TABLES.entry("selective_encryption", "table4")(metrics_path=..., config=cfg, out_dir="results/tables/selective_encryption")

Entries made once per config entry (``when="kind"``: the stochastic-defenses tables and figures)
take that entry's name as first argument.  Importing this package imports every study's table
module, so that every entry is registered.
See :mod:`gibench.tables.selective_encryption` for the definitions and the CSV layout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import concealed_samples as _concealed_samples  # noqa: F401  (registers the study's tables)
from . import stochastic_defenses as _stochastic_defenses  # noqa: F401  (registers the study's tables)
from .registry import FIGURES, TABLES, OutputEntry, register_figure, register_table
from .render import TableDoc, fmt_mean_std, fmt_ratio
from .select import best_of_restarts, expand_shared
from .selective_encryption import (STUDY as _SE, TABLE_ORDER, build_curves_figure, build_grid_figure,
                                   build_table2, build_table3, build_table4, build_table5, build_table6,
                                   build_traces_figure, figure_specs, file_recon_provider, load_metric_rows,
                                   plot_curves, plot_grid, plot_traces, print_summary, rating, selected_rows,
                                   table2, table3, table4, table5, table6, victims_truth_provider)


def build_selective_encryption_outputs(metric_rows_path: Any, cost_rows_path: Any, trace_paths: Any,
                                       recon_provider: Callable[[Mapping[str, Any]], Any] | None,
                                       config: Mapping[str, Any], out_tables_dir: str | Path,
                                       out_figures_dir: str | Path, *,
                                       truth_provider: Callable[[str, str], Any] | None = None,
                                       table_formats: Sequence[str] = ("csv", "md"),
                                       results_root: str | Path = "results") -> list[Path]:
    """Every table and figure of the study in one call (the pipeline has a rule per output).

    ``metric_rows_path`` / ``cost_rows_path``: Parquet files (or None to skip those
    tables); ``trace_paths``: see :func:`build_traces_figure`; the reconstruction grid is
    drawn only when both ``recon_provider`` and ``truth_provider`` are given."""
    out: list[Path] = []
    rows = load_metric_rows(metric_rows_path) if metric_rows_path is not None else None
    for entry in TABLES.of_study(_SE):
        if "cost" in entry.inputs:
            if cost_rows_path is not None:
                out += entry(cost_path=cost_rows_path, config=config, out_dir=out_tables_dir, formats=table_formats)
        elif rows is not None and rows:
            out += entry(metrics_path=rows, config=config, out_dir=out_tables_dir, formats=table_formats)
    if rows:
        for spec in figure_specs(config, rows):
            wc = {k: spec[k] for k in ("model", "dataset", "attack")}
            if spec["kind"] == "curves":
                out += build_curves_figure(metrics_path=rows, config=config, out_dir=out_figures_dir, **wc)
            elif spec["kind"] == "traces":
                out += build_traces_figure(metrics_path=rows, config=config, out_dir=out_figures_dir,
                                           slot=spec["slot"], trace_paths=trace_paths, root=results_root, **wc)
            elif spec["kind"] == "grid" and recon_provider is not None and truth_provider is not None:
                out += build_grid_figure(metrics_path=rows, config=config, out_dir=out_figures_dir,
                                         recon_provider=recon_provider, truth_provider=truth_provider, **wc)
    return out


__all__ = [
    "TABLES", "FIGURES", "OutputEntry", "register_table", "register_figure", "TableDoc", "best_of_restarts", "expand_shared", "selected_rows", "rating",
    "table2", "table3", "table4", "table5", "table6", "build_table2", "build_table3", "build_table4", "build_table5", "build_table6",
    "plot_curves", "plot_traces", "plot_grid", "build_curves_figure", "build_traces_figure", "build_grid_figure",
    "figure_specs", "file_recon_provider", "victims_truth_provider", "print_summary", "load_metric_rows",
    "build_selective_encryption_outputs", "fmt_mean_std", "fmt_ratio",
]
