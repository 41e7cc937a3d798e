"""The shared stage skeletons (gibench.pipeline.stages) that the three studies' attack,
evaluate, gather and table jobs call: what reaches the attack, what reaches the record, that a
re-run writes the same bytes, and that the gathered rows are the rows of the files."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest
import torch

from gibench import io
from gibench.attacks import ATTACKS, AttackResult
from gibench.pipeline import stages
from gibench.tables.registry import OutputEntry
from workflow_helpers import Named




def _smk(tmp_path: Path, **kw: Any) -> SimpleNamespace:
    base = dict(config={"seed": 3}, rule="toy", log=[], params=None,
                wildcards=Named(attack="toy", slot="s000", rep="0"), input=Named())
    base.update(kw)
    return SimpleNamespace(**base)


# ---------------------------------------------------------------- attack

def test_attack_extras_loads_what_the_attack_declares_and_names_what_is_missing():
    assert ATTACKS.entry("adaptive").needs == ("class_means",)
    needs = {"class_means": SimpleNamespace(keyword="means", load=lambda inp, device: inp["file"] + "!")}
    assert stages.attack_extras("adaptive", needs, {"file": "m"}, torch.device("cpu")) == {"means": "m!"}
    assert stages.attack_extras("gs", needs, {}, torch.device("cpu")) == {}      # gs declares nothing
    with pytest.raises(ValueError, match="'adaptive' needs 'class_means'"):
        stages.attack_extras("adaptive", {}, {}, torch.device("cpu"))


def test_attack_stage_calls_the_attack_with_the_view_and_a_rerun_writes_the_same_bytes(tmp_path, monkeypatch):
    seen: list[dict] = []
    timings = iter([(1.5, 10.0), (99.0, 0.5)])          # two runs, different speeds

    def toy(model, shared, visible, **kw):
        seen.append({"model": model, "shared": shared, "visible": visible, **kw})
        seconds, speed = next(timings)
        return AttackResult(x=torch.full((2, 1, 2, 2), 0.25, dtype=torch.float64), labels=torch.tensor([1, 0]),
                            final_loss=0.125, message="done",
                            info={"iterations": 7, "seconds": seconds, "iterations_per_second": speed,
                                  "latent": [0.1, 0.2]})

    monkeypatch.setattr(ATTACKS, "get", lambda kind: toy)
    net = torch.nn.Linear(2, 2)
    view = stages.AttackerView(kind="ig", params={"iterations": 7}, net=net, shared={"w": torch.ones(2)},
                               visible=None, input_shape=(2, 1, 2, 2), mean=(0.5,), std=(0.5,),
                               labels=torch.tensor([1, 0]), extras={"defenses": "chain"},
                               info={"read_secrets": False}, drop_info=("latent",), config={"seed": 3})
    out = Named(recon=str(tmp_path / "rep0.safetensors"))
    smk = _smk(tmp_path, output=out)
    first = stages.attack_stage(smk, torch.device("cpu"), view, rule="toy_attack", seed=11, label="case")
    bytes1 = [Path(p).read_bytes() for p in out.values()]
    second = stages.attack_stage(smk, torch.device("cpu"), view, rule="toy_attack", seed=11, label="case")
    # the timings reach the job log (the return value), never the files
    assert (first["attack_seconds"], first["iterations_per_second"]) == (1.5, 10.0)
    assert (second["attack_seconds"], second["iterations_per_second"]) == (99.0, 0.5)
    assert [Path(p).read_bytes() for p in out.values()] == bytes1
    # the attack got the view: its model, update, labels, settings, seed and the study's keywords
    call = seen[0]
    assert call["model"] is net and call["visible"] is None and call["defenses"] == "chain"
    assert call["cfg"] == {"iterations": 7} and call["seed"] == 11 and call["input_shape"] == (2, 1, 2, 2)
    assert call["labels"].tolist() == [1, 0]
    tensors, rec = io.load_tensors(out.recon)
    assert tensors["x"].dtype == torch.float32 and tensors["x"].eq(0.25).all()
    assert rec["rule"] == "toy_attack" and rec["seed"] == 11 and rec["params"] == {"type": "ig", "iterations": 7}
    assert rec["attack"] == {"iterations": 7, "status": "ok", "message": "done", "final_loss": 0.125,
                             "read_secrets": False}
    # one file per restart: the trace rides in the reconstruction artifact; an attack without a
    # trace (a closed-form one) gets a one-row placeholder
    assert sorted(p.name for p in tmp_path.glob("rep0*")) == ["rep0.safetensors"]
    trace = io.load_trace(out.recon)
    assert trace.column_names == list(stages.EMPTY_TRACE) and trace.column("iteration").to_pylist() == [0]
    assert all(math.isnan(trace.column(c)[0].as_py()) for c in ("loss", "grad_distance", "tv", "lr"))


# ---------------------------------------------------------------- evaluate

def test_evaluate_stage_writes_one_row_per_output_then_the_study_step(tmp_path):
    recons = []
    for rep, value in enumerate((0.0, 0.5)):
        p = tmp_path / f"rep{rep}.safetensors"
        io.save_tensors(p, {"x": torch.full((1, 4), value)}, {"wildcards": {"rep": str(rep)}})
        recons.append(str(p))
    out = tmp_path / "rows.parquet"
    smk = _smk(tmp_path, input=Named(recons=recons), output=[str(out)], rule="toy_evaluate")

    def row(tensors: dict, rec: dict) -> dict:       # mean squared error against ones, by hand below
        return {"restart": int(rec["wildcards"]["rep"]), "mse": float(((tensors["x"] - 1) ** 2).mean())}

    seen = []
    got = stages.evaluate_stage(smk, torch.device("cpu"), rule="toy_evaluate", params={"k": 1}, row=row,
                                finish=lambda rows: [min(rows, key=lambda r: r["mse"])],
                                then=lambda rows, paths, rec: seen.append((rows, paths, rec)))
    table, rec = io.load_table(out)
    assert got == {"rows": 1}
    assert table.to_pylist() == [{"restart": 1, "mse": 0.25}]        # (0.5 - 1)^2
    assert rec["rule"] == "toy_evaluate" and rec["params"] == {"k": 1}
    # the study's further output (the selective-encryption views) sees every row before the
    # study step, each beside the attack output it came from, and the rows' record
    [(rows, paths, then_rec)] = seen
    assert rows == [{"restart": 0, "mse": 1.0}, {"restart": 1, "mse": 0.25}] and paths == recons
    assert then_rec == rec


# ---------------------------------------------------------------- gather

def test_gather_stage_concatenates_in_input_order_like_one_table_of_all_rows(tmp_path):
    a = [{"slot": "s000", "lpips": None, "psnr": 10.0}]
    b = [{"slot": "s001", "lpips": 0.5, "psnr": 12.0}, {"slot": "s002", "lpips": 0.25, "psnr": 14.0}]
    paths = []
    for i, rows in enumerate((a, b)):
        paths.append(str(tmp_path / f"{i}.parquet"))
        io.save_table(paths[-1], rows, {"rule": "evaluate"})
    out = tmp_path / "all.parquet"
    smk = _smk(tmp_path, input=paths, output=[str(out)], rule="toy_gather", wildcards=Named())
    assert stages.gather_stage(smk, torch.device("cpu")) == {"rows": 3}
    table, rec = io.load_table(out)
    # the same table as one built from every row at once (how the concealed-samples gather made it)
    assert table.equals(pa.Table.from_pylist(a + b))
    assert table.schema.field("lpips").type == pa.float64()
    assert rec["rule"] == "toy_gather" and rec["wildcards"] == {}
    # no rows at all: the study's empty table
    io.save_table(paths[0], pa.table({"slot": pa.array([], pa.string())}), {"rule": "evaluate"})
    smk.input = [paths[0]]
    stages.gather_stage(smk, torch.device("cpu"), empty={"dataset": []})
    assert io.load_table(out)[0].column_names == ["dataset"]


# ---------------------------------------------------------------- table

def test_table_stage_gives_the_entry_its_declared_inputs_and_a_kind_entry_its_name(tmp_path):
    calls: list[tuple] = []

    def build(*args, **kw):
        calls.append((args, kw))
        return [Path(kw["out_dir"]) / "t.csv"]

    kind = OutputEntry(study="toy", name="attacks", build=build, inputs=("metrics", "accuracy"), when="kind")
    out = Named(csv=str(tmp_path / "table1.csv"), md=str(tmp_path / "table1.md"))
    smk = _smk(tmp_path, input=Named(metrics=("a.parquet", "b.parquet"), cost="c.parquet"), output=out,
               wildcards=Named(table="table1"))
    got = stages.table_stage(smk, torch.device("cpu"), entry=kind, config={"block": 1})
    args, kw = calls[0]
    assert args == ("table1",)
    assert kw == {"metrics_path": ["a.parquet", "b.parquet"], "accuracy_path": None, "config": {"block": 1},
                  "out_dir": tmp_path, "formats": ("csv", "md")}          # no cost_path: not declared
    assert got == {"written": [str(tmp_path / "t.csv")]}
    # a fixed-name entry is called without the name
    fixed = OutputEntry(study="toy", name="table1", build=build, inputs=("cost",))
    stages.table_stage(smk, torch.device("cpu"), entry=fixed, config={})
    assert calls[1][0] == () and calls[1][1]["cost_path"] == "c.parquet" and "metrics_path" not in calls[1][1]
