"""Gather row files and build tables/figures (the shared stages of :mod:`.stages`; the
selective-encryption study's order of its metric rows)."""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import torch

from .runner import say
from .stages import concat_rows, gather_stage, table_stage
from .targets import table_entry

__all__ = ["concat_rows", "order_metric_rows", "gather_job", "table_job", "figure_job"]


def order_metric_rows(table: pa.Table, config: dict) -> pa.Table:
    """The gathered selective-encryption metric rows in their fixed order (attack by attack in
    config order, then case by case: :func:`gibench.studies.selective_encryption.targets.metric_row_order`),
    restarts in order within a case; the evaluation jobs (one per victim slot) write them
    slot by slot."""
    from ..wildcards import fmt_ratio
    from ..studies.selective_encryption.targets import metric_row_order

    if table.num_rows == 0:
        return table
    order = metric_row_order(config)
    cols = {k: table.column(k).to_pylist() for k in ("attack", "dataset", "model", "slot", "metric", "ratio")}
    keys = [order.get((a, d, m, s, me, fmt_ratio(r)), len(order))
            for a, d, m, s, me, r in zip(*(cols[k] for k in ("attack", "dataset", "model", "slot", "metric", "ratio")))]
    idx = sorted(range(table.num_rows), key=lambda i: keys[i])      # stable: restarts keep their order
    return table.take(pa.array(idx, type=pa.int64()))


def gather_job(smk: Any, device: torch.device) -> dict:
    """Rules ``gather_metrics``/``gather_cost`` (and ``sd_gather``): the row files in one
    Parquet file; the selective-encryption metric rows in their fixed order."""
    order = None
    if smk.rule == "gather_metrics" and smk.wildcards.study == "selective_encryption":
        order = lambda table: order_metric_rows(table, smk.config)      # noqa: E731
    return gather_stage(smk, device, order=order)


def _study_cfg(smk: Any) -> dict:
    return smk.config["studies"][smk.wildcards.study]


def table_job(smk: Any, device: torch.device) -> dict:
    """Rule ``table``: a selective-encryption table from its registry entry (builders read the study block)."""
    study = smk.wildcards.study
    return table_stage(smk, device, entry=table_entry(smk.config, study, smk.wildcards.table),
                       config=_study_cfg(smk))


def figure_job(smk: Any, device: torch.device) -> dict:
    from pathlib import Path

    from ..tables import FIGURES, figure_specs, victims_truth_provider
    from ..tables.selective_encryption.views import views_recon_provider

    cfg = _study_cfg(smk)
    spec = next((s for s in figure_specs(cfg) if s["name"] == smk.wildcards.figure), None)
    if spec is None:
        raise ValueError(f"figure {smk.wildcards.figure!r} is not one this config asks for")
    root = str(Path(smk.input.metrics).parents[2])      # results/
    wc = {k: spec[k] for k in ("model", "dataset", "attack")}
    kw = dict(metrics_path=smk.input.metrics, config=cfg, out_dir=Path(smk.output.png).parent, **wc)
    # the kept restarts' traces and reconstructions: the slots' views files (rule evaluate)
    if spec["kind"] == "traces":
        kw.update(slot=spec["slot"], views=list(smk.input.views))
    elif spec["kind"] == "grid":
        kw.update(recon_provider=views_recon_provider(list(smk.input.views)),
                  truth_provider=victims_truth_provider(smk.config, root))
    written = FIGURES.entry(smk.wildcards.study, spec["kind"])(**kw)
    say(f"figure {smk.wildcards.figure}: {len(written)} files")
    return {"written": [str(p) for p in written]}
