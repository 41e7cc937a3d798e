"""An older results directory (one ``rep<k>.trace.parquet`` beside each reconstruction) is
brought to the one-file layout without re-running attacks: gibench.pipeline.legacy_traces."""
from __future__ import annotations

import math
import os

import pytest
import torch

from gibench import io
from gibench.pipeline.legacy_traces import embed_legacy_traces, main


def _old_layout(root):
    d = root / "attacks" / "selective_encryption" / "cifar100" / "lenet" / "s000" / "grad" / "r0.300" / "dlg"
    rows = [{"iteration": 0, "loss": 2.5, "tv": float("nan"), "status": "ok"},
            {"iteration": 1, "loss": 1.0 / 3.0, "tv": float("nan"), "status": "no_move"}]
    x = {"x": torch.linspace(0, 1, 12).reshape(1, 3, 2, 2), "labels": torch.tensor([4])}
    rec = {"rule": "attack", "wildcards": {"rep": "0"}}
    io.save_tensors(d / "rep0.safetensors", x, rec)                 # as the old attack job wrote them
    io.save_table(d / "rep0.trace.parquet", rows, rec)
    os.utime(d / "rep0.safetensors", ns=(1_000_000_000, 1_000_000_000))
    return d, rows, x, rec


def test_old_trace_files_move_into_their_artifacts(tmp_path):
    d, rows, x, rec = _old_layout(tmp_path)
    recon = d / "rep0.safetensors"
    with pytest.raises(io.ArtifactError, match="legacy_traces"):       # the error says what to do
        io.load_trace(recon)
    assert embed_legacy_traces(tmp_path, dry_run=True) == [recon]
    assert (d / "rep0.trace.parquet").exists()                         # a dry run changes nothing
    assert main([str(tmp_path)]) == 0
    assert not (d / "rep0.trace.parquet").exists()
    t = io.load_trace(recon)
    assert t.column_names == ["iteration", "loss", "tv", "status"] and t.column("loss").to_pylist() == [2.5, 1 / 3]
    assert all(math.isnan(v) for v in t.column("tv").to_pylist()) and t.column("status").to_pylist() == ["ok", "no_move"]
    back, rec2 = io.load_tensors(recon)
    assert rec2 == rec and all(torch.equal(back[k], x[k]) for k in x)
    assert recon.stat().st_mtime_ns == 1_000_000_000          # downstream jobs are not re-run for it
    # the same bytes an attack job of the new layout writes
    io.save_tensors(tmp_path / "new.safetensors", x, rec, trace=rows)
    assert (tmp_path / "new.safetensors").read_bytes() == recon.read_bytes()
    assert embed_legacy_traces(tmp_path) == []                 # nothing left to do
