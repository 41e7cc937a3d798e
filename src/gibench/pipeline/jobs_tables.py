"""Gather row files and build tables/figures."""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import torch

from .. import io
from ..provenance import make_record
from .runner import say


def concat_rows(paths: list[str]) -> pa.Table:
    tables = [io.load_table(p)[0] for p in paths]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


def gather_job(smk: Any, device: torch.device) -> dict:
    table = concat_rows(list(smk.input))
    rec = make_record(rule=smk.rule, wildcards=dict(smk.wildcards), config=smk.config, inputs=smk.input, outputs=smk.output)
    io.save_table(smk.output[0], table, rec)
    say(f"{smk.rule}: {table.num_rows} rows from {len(smk.input)} files")
    return {"rows": table.num_rows}
