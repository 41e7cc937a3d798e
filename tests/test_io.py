"""Artifacts are written atomically, carry provenance, and re-runs give identical bytes."""
import json

import pyarrow as pa
import pytest
import torch

from gibench import io
from gibench.provenance import make_record


def test_tensor_roundtrip_with_record(tmp_path):
    t = {"a.weight": torch.randn(3, 4), "a.bias": torch.arange(3.0)}
    rec = make_record(rule="test", wildcards={"x": 1}, config={"k": 1})
    io.save_tensors(tmp_path / "t.safetensors", t, rec)
    back, rec2 = io.load_tensors(tmp_path / "t.safetensors")
    assert all(torch.equal(t[k], back[k]) for k in t)
    assert rec2 == rec and io.read_record(tmp_path / "t.safetensors") == rec
    for key in ("rule", "wildcards", "params", "config_digest", "code", "versions", "device", "seed", "inputs"):
        assert key in rec2
    assert rec2["versions"]["torch"] and "git_commit" in rec2["code"]


def test_table_roundtrip_with_record(tmp_path):
    rec = {"rule": "x"}
    io.save_table(tmp_path / "t.parquet", [{"a": 1, "b": "z"}, {"a": 2, "b": "y"}], rec)
    table, rec2 = io.load_table(tmp_path / "t.parquet")
    assert table.to_pylist() == [{"a": 1, "b": "z"}, {"a": 2, "b": "y"}] and rec2 == rec


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.safetensors"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("job killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_version(tmp_path):
    target = tmp_path / "x.json"
    io.write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        io.save_tensors(target.with_suffix(".safetensors"), {"a": [1, 2]}, {})
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_missing_record_is_an_error(tmp_path):
    from safetensors.torch import save_file
    save_file({"a": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(io.ArtifactError, match="provenance"):
        io.load_tensors(tmp_path / "plain.safetensors")


def test_record_input_digests(tmp_path):
    f = tmp_path / "in.bin"
    f.write_bytes(b"abc")
    rec = make_record(rule="r", inputs=[f])
    # sha256("abc"), an independent fact
    assert rec["inputs"][str(f)] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_plain_values_survive_strict_json_and_a_parquet_row(tmp_path):
    import json
    import math

    import numpy as np

    obj = {"t": torch.tensor([1.5, float("nan")]), 3: (np.float32(0.25), np.int64(7)), "inf": float("-inf"),
           "none": None, "flag": True}
    strict = io.plain(obj)
    assert json.loads(json.dumps(strict, allow_nan=False)) == {
        "t": [1.5, "nan"], "3": [0.25, 7], "inf": "-inf", "none": None, "flag": True}
    kept = io.plain([{"loss": float("nan"), "it": np.int32(2)}, {"loss": 0.5, "it": 3}], nan="keep")
    io.save_table(tmp_path / "t.parquet", kept, {"rule": "test"})
    table, _ = io.load_table(tmp_path / "t.parquet")
    loss = table.column("loss").to_pylist()
    assert math.isnan(loss[0]) and loss[1] == 0.5 and table.column("it").to_pylist() == [2, 3]
