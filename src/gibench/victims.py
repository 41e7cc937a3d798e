"""The victims table (``results/data/<dataset>/victims.parquet``, written by the victims job of
:mod:`gibench.pipeline.jobs_data`): its reader and the rows a victim slot holds.  Outside the
pipeline package so that tables and figures read victims without importing job code."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import io
from .wildcards import parse_slot


def read_victims(path: str | Path, rows: list[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 NHWC, labels, source indices) for the given victim rows (all if None)."""
    table, _ = io.load_table(path)
    d = table.to_pydict()
    idx = range(table.num_rows) if rows is None else rows
    imgs = []
    for i in idx:
        if i >= table.num_rows:
            raise IndexError(f"{path}: victim {i} requested but the pool has {table.num_rows}; raise datasets.<name>.victims")
        h, w, c = d["height"][i], d["width"][i], d["channels"][i]
        imgs.append(np.frombuffer(d["image"][i], dtype=np.uint8).reshape(h, w, c))
    return (np.stack(imgs), np.asarray([d["label"][i] for i in idx], np.int64),
            np.asarray([d["source_index"][i] for i in idx], np.int64))


def slot_rows(slot: str, batch_size: int) -> list[int]:
    s = parse_slot(slot)
    return list(range(s * batch_size, (s + 1) * batch_size))
