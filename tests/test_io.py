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


# ---------------------------------------------------------------- an attack artifact's loss trace

def test_trace_rides_in_the_artifact_losslessly_and_out_of_the_record(tmp_path):
    import math
    import numpy as np

    p = tmp_path / "rep0.safetensors"
    x = {"x": torch.arange(6.0).reshape(1, 6), "labels": torch.tensor([3])}
    rec = {"rule": "attack", "wildcards": {"rep": "0"}}
    third = 1.0 / 3.0                                   # needs all 17 digits to come back exactly
    rows = [{"iteration": 0, "loss": third, "grad_distance": float("nan"), "status": "ok"},
            {"iteration": 10, "loss": float("inf"), "grad_distance": np.float64(2.5), "status": "no_move"},
            {"iteration": 20, "loss": -0.0, "grad_distance": torch.tensor(1e-300, dtype=torch.float64),
             "status": "diverged"}]
    io.save_tensors(p, x, rec, trace=rows)
    t = io.load_trace(p)
    assert t.column_names == ["iteration", "loss", "grad_distance", "status"]      # the attack's column order
    assert t.schema.field("iteration").type == pa.int64() and t.schema.field("status").type == pa.string()
    assert t.column("iteration").to_pylist() == [0, 10, 20]
    assert t.column("status").to_pylist() == ["ok", "no_move", "diverged"]
    loss = t.column("loss").to_pylist()
    assert loss[0] == third and loss[1] == math.inf and loss[2] == 0.0 and math.copysign(1, loss[2]) == -1
    dist = t.column("grad_distance").to_pylist()
    assert math.isnan(dist[0]) and dist[1:] == [2.5, 1e-300]
    # the same table the separate trace file held (pyarrow from the rows; NaN compared as NaN)
    old = pa.Table.from_pylist([{k: (float(v) if k == "grad_distance" else v) for k, v in r.items()} for r in rows])
    assert t.schema == old.schema
    # the record and the tensors are what they would be without a trace
    back, rec2 = io.load_tensors(p)
    assert rec2 == rec and io.read_record(p) == rec and io.TRACE_KEY not in rec2
    assert all(torch.equal(back[k], x[k]) for k in x)
    q = tmp_path / "plain.safetensors"
    io.save_tensors(q, x, rec)
    assert io.recorded_digest(p) == io.recorded_digest(q)
    # and it is written the same each time (one metadata entry, sorted keys): same bytes
    io.save_tensors(tmp_path / "again.safetensors", x, rec, trace=rows)
    assert (tmp_path / "again.safetensors").read_bytes() == p.read_bytes()


def test_trace_rows_with_different_columns_and_the_placeholder(tmp_path):
    import math

    p = tmp_path / "rep1.safetensors"
    io.save_tensors(p, {"x": torch.zeros(1)}, {"rule": "r"},
                    trace=[{"iteration": 0, "loss": float("nan")}, {"iteration": 1, "lr": 0.1}])
    t = io.load_trace(p)
    assert t.column_names == ["iteration", "loss", "lr"] and t.num_rows == 2
    assert math.isnan(t.column("loss")[0].as_py()) and t.column("loss")[1].as_py() is None
    assert t.column("lr").to_pylist() == [None, 0.1]


def test_an_artifact_without_a_trace_is_a_clear_error(tmp_path):
    p = tmp_path / "weights.safetensors"
    io.save_tensors(p, {"w": torch.ones(2)}, {"rule": "model"})
    with pytest.raises(io.ArtifactError, match=r"weights\.safetensors.*carries no loss trace"):
        io.load_trace(p)
    with pytest.raises(io.ArtifactError, match=r"missing\.safetensors: no such file"):
        io.load_trace(tmp_path / "missing.safetensors")
    # optional: a readable file without a trace gives None; a missing file stays an error
    assert io.load_trace(p, optional=True) is None
    with pytest.raises(io.ArtifactError, match=r"missing\.safetensors: no such file"):
        io.load_trace(tmp_path / "missing.safetensors", optional=True)
    with pytest.raises(TypeError, match="list of rows"):
        io.save_tensors(p, {"w": torch.ones(2)}, {"rule": "model"}, trace={"loss": [1.0]})
