"""A victim slot's views (gibench.tables.selective_encryption.views): what the grid and traces
figures show of it -- the kept restart of each case, its reconstruction and its trace -- written by
the slot's evaluate job so that the figures need not declare every restart's artifact (issue 23)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from gibench import io
from gibench.datasets import DATASETS
from gibench.tables import FIGURES, file_recon_provider
from gibench.tables.selective_encryption import chosen_rows, load_trace
from gibench.tables.selective_encryption.views import (
    SlotViews, kept_rows, read_views, views_recon_provider, views_settings, write_views)
from se_table_rows import SLOTS, STUDY_CFG, synthetic_rows

ORACLE = copy.deepcopy(STUDY_CFG)
ORACLE["evaluation"]["best_of_restarts"] = "oracle"


def _artifact(root, row):
    return (root / "attacks" / "selective_encryption" / row["dataset"] / row["model"] / row["slot"] / row["metric"]
            / f"r{row['ratio']:.3f}" / row["attack"] / f"rep{row['restart']}.safetensors")


def _write_artifacts(root, rows):
    """One attack artifact per row: a random reconstruction in the model's normalised space and a
    loss trace with a NaN column and a per-step status string (as DLG's)."""
    gen = torch.Generator().manual_seed(0)
    paths = []
    for k, r in enumerate(rows):
        p = _artifact(root, r)
        it = np.arange(0, 60, 10)
        trace = [{"iteration": int(i), "loss": float(np.exp(-i / 20) + r["ratio"] + k * 1e-3), "tv": float("nan"),
                  "status": "ok"} for i in it]
        io.save_tensors(p, {"x": torch.randn(1, 3, 4, 4, generator=gen) * 2, "labels": torch.tensor([0])},
                        {"rule": "attack"}, trace=trace)
        paths.append(p)
    return paths


def _slot_rows(rows, slot):
    return [r for r in rows if r["model"] == "lenet" and r["slot"] == slot]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The lenet rows of four slots, their artifacts, and each slot's views under both criteria."""
    root = tmp_path_factory.mktemp("views") / "results"
    rows = [r for r in synthetic_rows() if r["model"] == "lenet"]
    paths = dict(zip((id(r) for r in rows), _write_artifacts(root, rows)))
    views = {}
    for name, cfg in (("attacker_loss", STUDY_CFG), ("oracle", ORACLE)):
        for slot in SLOTS:
            mine = _slot_rows(rows, slot)
            out = root / name / f"cifar100/lenet/{slot}.views.safetensors"
            write_views(out, mine, [paths[id(r)] for r in mine], views_settings(cfg, "cifar100", "lenet"),
                        {"rule": "evaluate"})
            views[(name, slot)] = out
    return root, rows, paths, views


def test_settings_are_what_chooses_the_kept_restart():
    assert views_settings(STUDY_CFG, "cifar100", "lenet") == {"best_of_restarts": "attacker_loss"}
    # the protection criterion only under oracle, and only the slot's modality's
    assert views_settings(ORACLE, "cifar100", "lenet") == {
        "best_of_restarts": "oracle", "protection": {"image": {"metric": "lpips", "op": ">=", "threshold": 0.3}}}
    # text slots have no grid/traces figures: no views, no setting
    assert views_settings(ORACLE, "cola", "gpt2") == {}


@pytest.mark.parametrize("criterion,cfg", [("attacker_loss", STUDY_CFG), ("oracle", ORACLE)])
def test_views_keep_the_restart_the_figures_choose(run, criterion, cfg):
    root, rows, paths, views = run
    # the figures choose on the gathered rows of every slot; the views on their slot's rows only
    chosen = chosen_rows(rows, cfg, model="lenet", dataset="cifar100", attack="ig")
    want = {(row["slot"], row["metric"], row["ratio"]): row["restart"] for row in chosen.values()}
    got = {}
    for slot in SLOTS:
        for (attack, metric, ratio), v in read_views(views[(criterion, slot)]).items():
            assert attack == "ig"
            got[(slot, metric, ratio)] = v.restart
    assert got == want
    # the designed restarts of se_table_rows: lowest attacker loss is restart 1, lowest LPIPS restart 2
    assert set(got.values()) == ({1} if criterion == "attacker_loss" else {2})
    # the case keys are the rows' own: ratios 0 and 1 under "any", once
    assert {(m, r) for (s, m, r) in got if s == "s000" and r in (0.0, 1.0)} == {("any", 0.0), ("any", 1.0)}
    # and kept_rows is that selection
    assert {(r["slot"], r["metric"], r["ratio"]): r["restart"]
            for s in SLOTS for r in kept_rows(_slot_rows(rows, s), views_settings(cfg, "cifar100", "lenet"))} == want


def test_views_hold_the_arrays_the_figures_drew_from_the_artifacts(run):
    root, rows, paths, views = run
    provide = file_recon_provider(root)
    sv = SlotViews([views[("oracle", s)] for s in SLOTS])
    for row in chosen_rows(rows, ORACLE, model="lenet", dataset="cifar100", attack="ig").values():
        v = sv.view(row)
        recon = provide(row)
        assert v.recon.dtype == recon.dtype and v.recon.shape == (4, 4, 3)
        assert np.array_equal(v.recon, recon)                      # bit for bit
        trace = load_trace(_artifact(root, row))
        assert list(v.trace) == list(trace) == ["iteration", "loss", "tv"]   # the status string left out
        for c in trace:
            np.testing.assert_array_equal(v.trace[c], trace[c])    # NaN where NaN
    # an independent check of the de-normalisation: the artifact's x * std + mean, clamped
    row = next(iter(chosen_rows(rows, ORACLE, model="lenet", dataset="cifar100", attack="ig").values()))
    x, _ = io.load_tensors(_artifact(root, row))
    ds = DATASETS.get("cifar100")
    by_hand = (x["x"][0] * ds.std_t()[0] + ds.mean_t()[0]).clamp(0, 1).permute(1, 2, 0).numpy()
    assert np.allclose(sv.recon(row), by_hand, atol=1e-6)


def test_figures_from_views_are_byte_identical_to_figures_from_artifacts(run, tmp_path):
    root, rows, paths, views = run
    for name, cfg in (("attacker_loss", STUDY_CFG), ("oracle", ORACLE)):
        config = {"studies": {"selective_encryption": cfg}}
        slot_views = [views[(name, s)] for s in SLOTS]
        truth = {s: np.full((4, 4, 3), 0.25 * i) for i, s in enumerate(SLOTS)}
        wc = dict(metrics_path=rows, config=config, model="lenet", dataset="cifar100", attack="ig")
        a = FIGURES.entry("selective_encryption", "traces")(**wc, slot="s002", out_dir=tmp_path / name / "a",
                                                            root=root)
        b = FIGURES.entry("selective_encryption", "traces")(**wc, slot="s002", out_dir=tmp_path / name / "b",
                                                            views=[views[(name, "s002")]])
        a += FIGURES.entry("selective_encryption", "grid")(**wc, out_dir=tmp_path / name / "a",
                                                           recon_provider=file_recon_provider(root),
                                                           truth_provider=lambda d, s: truth[s])
        b += FIGURES.entry("selective_encryption", "grid")(**wc, out_dir=tmp_path / name / "b",
                                                           recon_provider=views_recon_provider(slot_views),
                                                           truth_provider=lambda d, s: truth[s])
        assert [p.name for p in a] == [p.name for p in b] and len(a) == 4
        for pa, pb in zip(a, b):
            assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_views_of_another_selection_are_an_error_naming_the_file(run):
    root, rows, paths, views = run
    oracle_rows = chosen_rows(rows, ORACLE, model="lenet", dataset="cifar100", attack="ig")
    row = next(r for (m, ratio, s), r in oracle_rows.items() if s == "s001" and ratio == 0.3)
    sv = SlotViews([views[("attacker_loss", s)] for s in SLOTS])
    with pytest.raises(io.ArtifactError, match=r"s001\.views\.safetensors: keeps restart 1 .* rows keep restart 2"):
        sv.recon(row)
    with pytest.raises(io.ArtifactError, match="no views file of cifar100/cnn/s001"):
        sv.recon({**row, "model": "cnn"})


def test_text_slots_have_empty_views(tmp_path):
    out = tmp_path / "s000.views.safetensors"
    rows = [{"study": "selective_encryption", "dataset": "cola", "model": "gpt2", "slot": "s000", "metric": "grad",
             "ratio": 0.3, "attack": "lamp", "restart": 0, "status": "ok", "attacker_loss": 0.1}]
    # no artifact is read: the text slot's views hold no case
    assert write_views(out, rows, [tmp_path / "missing.safetensors"], views_settings(STUDY_CFG, "cola", "gpt2"),
                       {"rule": "evaluate"}) == []
    assert read_views(out) == {}
    tensors, rec = io.load_tensors(out)
    assert tensors == {} and rec["views"] == [] and rec["params"] == {}


def test_a_failure_leaves_the_previous_file_and_no_partial_one(run, tmp_path):
    root, rows, paths, views = run
    mine = _slot_rows(rows, "s003")
    files = [paths[id(r)] for r in mine]
    out = tmp_path / "s003.views.safetensors"
    settings = views_settings(STUDY_CFG, "cifar100", "lenet")
    cases = write_views(out, mine, files, settings, {"rule": "evaluate"})
    before = out.read_bytes()
    assert len(cases) == len({(r["metric"], r["ratio"]) for r in mine})
    # re-writing gives the same bytes
    write_views(out, mine, files, settings, {"rule": "evaluate"})
    assert out.read_bytes() == before
    # a kept restart whose artifact carries no trace: an error naming it, the old file untouched
    broken = tmp_path / "broken"
    kept = next(r for r in mine if r["restart"] == 1 and r["metric"] == "grad" and math.isclose(r["ratio"], 0.3))
    bad = broken / "rep1.safetensors"
    io.save_tensors(bad, {"x": torch.zeros(1, 3, 4, 4), "labels": torch.tensor([0])}, {"rule": "attack"})
    files2 = [bad if r is kept else p for r, p in zip(mine, files)]
    with pytest.raises(io.ArtifactError, match=r"broken/rep1\.safetensors: carries no loss trace"):
        write_views(out, mine, files2, settings, {"rule": "evaluate"})
    assert out.read_bytes() == before
    fresh = tmp_path / "fresh" / "s003.views.safetensors"
    with pytest.raises(io.ArtifactError):
        write_views(fresh, mine, files2, settings, {"rule": "evaluate"})
    assert not fresh.exists()
    assert not fresh.parent.exists() or list(fresh.parent.iterdir()) == []      # no temporary file left
    # rows and artifacts that do not pair up are refused before anything is read
    with pytest.raises(ValueError, match="rows for"):
        write_views(out, mine, files[:-1], settings, {"rule": "evaluate"})
