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

The package, by seam: :mod:`~gibench.tables.selective_encryption.common` (defaults, config access,
rows, curves, labels), :mod:`~gibench.tables.selective_encryption.protection` (Tables 4, 5, 2),
:mod:`~gibench.tables.selective_encryption.text` (Table 3 and the text notes),
:mod:`~gibench.tables.selective_encryption.cost` (Table 6),
:mod:`~gibench.tables.selective_encryption.build` (the builders, their registration, the summary)
and :mod:`~gibench.tables.selective_encryption.figures` (the study's figures, drawn with the shared
helpers of :mod:`gibench.tables.figures`).
This ``__init__`` is its public face: import from ``gibench.tables.selective_encryption``, not from
the submodules (:mod:`gibench.tables.paper` excepted: it reads ``common`` only, which does not
import it back).
"""
from __future__ import annotations

from .build import (
    TABLE_ORDER, build_table2, build_table3, build_table4, build_table5, build_table6, print_summary)
from .common import (
    DEFAULT_PANELS, DEFAULT_PROTECTION, DEFAULT_TABLE5_METRIC, DEFAULT_TABLE5_RATIO, MIB, STAR_LEGEND, STARS, STUDY,
    attack_grid, attack_label, attack_metric_names, caption, case_order, curve_means, evaluation, is_selector,
    label_attacks, load_metric_rows, model_labels, ratio_grid, regime_notes, restart_rule, selected_rows,
    significance_metrics, study_config)
from .cost import table6, table6_cells
from .figures import (
    DEFAULT_GRID_RATIOS, build_curves_figure, build_grid_figure, build_traces_figure, chosen_rows,
    default_trace_path, figure_specs, file_recon_provider, grid_ratios, grid_value_metric, load_trace,
    panel_metrics, parse_trace_path, plot_curves, plot_grid, plot_traces, victims_truth_provider)
from .protection import rating, table2, table2_cells, table4, table4_cells, table5, table5_cells
from .text import DAGER_VARIANT_TEXT, dager_variant_notes, table3, table3_cells, text_model_short, text_notes

__all__ = [
    # defaults, config access, rows, labels
    "DEFAULT_PANELS", "DEFAULT_PROTECTION", "DEFAULT_TABLE5_METRIC", "DEFAULT_TABLE5_RATIO", "MIB", "STAR_LEGEND",
    "STARS", "STUDY", "attack_grid", "attack_label", "attack_metric_names", "caption", "case_order", "curve_means",
    "evaluation", "is_selector", "label_attacks", "load_metric_rows", "model_labels", "ratio_grid", "regime_notes",
    "restart_rule", "selected_rows", "significance_metrics", "study_config",
    # the tables
    "rating", "table2", "table2_cells", "table4", "table4_cells", "table5", "table5_cells",
    "DAGER_VARIANT_TEXT", "dager_variant_notes", "table3", "table3_cells", "text_model_short", "text_notes",
    "table6", "table6_cells",
    # figures
    "DEFAULT_GRID_RATIOS", "build_curves_figure", "build_grid_figure", "build_traces_figure", "chosen_rows",
    "default_trace_path", "figure_specs", "file_recon_provider", "grid_ratios", "grid_value_metric", "load_trace",
    "panel_metrics", "parse_trace_path", "plot_curves", "plot_grid", "plot_traces", "victims_truth_provider",
    # builders
    "TABLE_ORDER", "build_table2", "build_table3", "build_table4", "build_table5", "build_table6", "print_summary",
]
