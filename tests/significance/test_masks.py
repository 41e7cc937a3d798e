"""Encryption masks (gibench.masks): exact k = round(ratio·M) for every ratio, global and
per layer; top-k by score; deterministic, documented tie-breaking; bit-packed round trip;
and bad metric names / ratios rejected at DAG build."""
from __future__ import annotations

import copy
import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pytest
import torch

from gibench import io
from gibench.config import ConfigError, validate
from gibench.masks import k_for, load_mask, make_mask, mask_for, mask_from_selector, save_mask
from workflow_helpers import MICRO, run_snakemake, write_config

SHAPES = {"conv.weight": (4, 3, 3, 3), "conv.bias": (4,), "fc.weight": (7, 13), "fc.bias": (7,)}
M = sum(math.prod(s) for s in SHAPES.values())          # 108 + 4 + 91 + 7 = 210
RATIOS = [0.0, 0.001, 0.1, 0.25, 0.3, 0.333, 0.5, 0.7, 0.999, 1.0]


def _scores(seed: int = 0, distinct: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if distinct:   # a random permutation of 0..M-1: no ties
        flat = torch.randperm(M, generator=g).to(torch.float32)
    else:          # only 5 distinct values: many ties
        flat = torch.randint(0, 5, (M,), generator=g).to(torch.float32)
    out, i = {}, 0
    for n, s in SHAPES.items():
        out[n] = flat[i:i + math.prod(s)].reshape(s)
        i += math.prod(s)
    return out


def _expected_k(ratio: float, total: int) -> int:
    """round half up of ratio·total in decimal arithmetic (independent of gibench.masks)."""
    return int((Decimal(str(ratio)) * total).quantize(Decimal(1), rounding=ROUND_HALF_UP))


# ------------------------------------------------------------------------- exact k

@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("distinct", [True, False])
def test_global_mask_has_exactly_k_entries(ratio, distinct):
    scores = _scores(1, distinct)
    mask = make_mask(scores, ratio, "global", names=list(SHAPES))
    k = _expected_k(ratio, M)
    assert mask.k == k == int(mask.flat().sum())
    assert mask.total == M and mask.names == list(SHAPES)
    assert [tuple(mask.bits[n].shape) for n in SHAPES] == list(SHAPES.values())
    assert math.isclose(mask.encrypted_fraction(), k / M)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("distinct", [True, False])
def test_per_layer_mask_has_exactly_k_per_tensor(ratio, distinct):
    scores = _scores(2, distinct)
    mask = make_mask(scores, ratio, "per_layer", names=list(SHAPES))
    for n, s in SHAPES.items():
        assert int(mask.bits[n].sum()) == _expected_k(ratio, math.prod(s)), n
    assert mask.k == sum(_expected_k(ratio, math.prod(s)) for s in SHAPES.values())


def test_ratio_zero_and_one_are_nothing_and_everything():
    for sel in ("global", "per_layer"):
        assert not make_mask(_scores(), 0.0, sel).flat().any()
        assert make_mask(_scores(), 1.0, sel).flat().all()


def test_k_is_exact_where_float_products_are_not():
    # 0.7 * 10 = 7.000000000000001 and 0.35 * 10 = 3.4999999999999996 in binary floats
    assert k_for(0.7, 10) == 7
    assert k_for(0.35, 10) == 4            # 3.5 rounds half up
    assert k_for(0.5, 7) == 4 and k_for(0.5, 5) == 3
    for r in RATIOS + [0.015, 0.125, 0.875]:
        for total in (1, 2, 3, 7, 8, 210, 88_648, 2_202_660):
            assert k_for(r, total) == _expected_k(r, total), (r, total)


# ------------------------------------------------------------------------- top-k by score

def test_global_mask_takes_the_largest_scores():
    scores = _scores(3)
    mask = make_mask(scores, 0.3, "global", names=list(SHAPES))
    flat = torch.cat([scores[n].reshape(-1) for n in SHAPES])
    bits = mask.flat()
    assert flat[bits].min() > flat[~bits].max()
    # distinct scores 0..M-1: exactly the k largest values
    k = _expected_k(0.3, M)
    assert sorted(flat[bits].tolist()) == list(range(M - k, M))


def test_per_layer_mask_takes_the_largest_scores_within_each_tensor():
    scores = _scores(4)
    mask = make_mask(scores, 0.3, "per_layer", names=list(SHAPES))
    for n in SHAPES:
        s, b = scores[n].reshape(-1), mask.bits[n].reshape(-1)
        if b.any() and (~b).any():
            assert s[b].min() > s[~b].max()


# ------------------------------------------------------------------------- ties

def test_ties_break_by_lower_index_in_parameter_order():
    # all scores equal: the first k entries of the concatenation in names order
    const = {n: torch.ones(s) for n, s in SHAPES.items()}
    order = list(SHAPES)
    mask = make_mask(const, 0.3, "global", names=order)
    k = _expected_k(0.3, M)
    expect = torch.zeros(M, dtype=torch.bool)
    expect[:k] = True
    assert torch.equal(mask.flat(), expect)
    # another order of the same tensors puts other entries first
    rev = order[::-1]
    mask_rev = make_mask(const, 0.3, "global", names=rev)
    assert torch.equal(torch.cat([mask_rev.bits[n].reshape(-1) for n in rev]), expect)
    assert int(mask.bits["conv.weight"].sum()) == k and not mask_rev.bits["conv.weight"].any()


def test_ties_at_the_threshold_take_the_lowest_indices():
    flat = torch.tensor([5., 1., 3., 3., 0., 3., 9., 3.])
    # top 4: 9 and 5, then two of the four 3s -> the lowest indices 2 and 3
    mask = make_mask({"w": flat}, 0.5, "global")
    assert mask.bits["w"].tolist() == [True, False, True, True, False, False, True, False]


def test_ties_break_the_same_way_every_run_and_in_any_dict_order():
    scores = _scores(5, distinct=False)
    ref = make_mask(scores, 0.37, "global", names=list(SHAPES))
    for _ in range(3):
        again = make_mask(copy.deepcopy(scores), 0.37, "global", names=list(SHAPES))
        assert torch.equal(again.flat(), ref.flat())
    shuffled = {n: scores[n] for n in reversed(list(SHAPES))}
    same = make_mask(shuffled, 0.37, "global", names=list(SHAPES))
    assert all(torch.equal(same.bits[n], ref.bits[n]) for n in SHAPES)


def test_scores_read_back_from_a_file_give_the_same_mask(tmp_path):
    """safetensors stores keys sorted; the names in the scores' record restore the order."""
    scores = _scores(6, distinct=False)
    order = list(SHAPES)
    path = tmp_path / "scores.safetensors"
    io.save_tensors(path, scores, {"significance": {"names": order}})
    loaded, rec = io.load_tensors(path)
    assert list(loaded) != order                      # the file's order is another one
    from_file = mask_for(loaded, 0.37, "global", rec["significance"])
    direct = make_mask(scores, 0.37, "global", names=order)
    assert from_file.names == order
    assert all(torch.equal(from_file.bits[n], direct.bits[n]) for n in order)


# ------------------------------------------------------------------------- selectors

def test_selector_scores_give_exactly_the_selected_set():
    scores = {n: torch.zeros(s) for n, s in SHAPES.items()}
    scores["fc.weight"] = torch.ones(SHAPES["fc.weight"])
    mask = mask_for(scores, 0.3, "global", {"selector": True, "names": list(SHAPES)})
    assert mask.selection == "selector"
    assert mask.bits["fc.weight"].all() and not mask.bits["conv.weight"].any()
    assert mask.k == 91 and math.isclose(mask.ratio, 91 / M)
    assert torch.equal(mask_from_selector(scores).flat(), mask.flat())


# ------------------------------------------------------------------------- storage

@pytest.mark.parametrize("selection", ["global", "per_layer"])
def test_bit_packed_round_trip(tmp_path, selection):
    scores = _scores(7)
    mask = make_mask(scores, 0.3, selection, names=list(SHAPES))
    path = tmp_path / "mask.safetensors"
    save_mask(path, mask, {"rule": "test"})
    back, rec = load_mask(path)
    assert back.names == mask.names and back.shapes == mask.shapes
    assert back.k == mask.k and back.selection == selection and back.ratio == 0.3
    for n in SHAPES:
        assert back.bits[n].dtype == torch.bool and torch.equal(back.bits[n], mask.bits[n])
    # stored compactly: one bit per entry, rounded up to whole bytes per tensor
    packed, _ = io.load_tensors(path)
    for n, s in SHAPES.items():
        assert packed[n].dtype == torch.uint8 and packed[n].numel() == math.ceil(math.prod(s) / 8)
    # the packing is numpy's big-endian packbits of the row-major flattened bits
    ref = np.packbits(mask.bits["fc.weight"].numpy().reshape(-1))
    assert np.array_equal(packed["fc.weight"].numpy(), ref)
    assert rec["rule"] == "test" and rec["mask"]["names"] == list(SHAPES)


def test_load_mask_rejects_a_record_that_disagrees(tmp_path):
    mask = make_mask(_scores(8), 0.3, "global")
    path = tmp_path / "m.safetensors"
    save_mask(path, mask, {})
    packed, rec = io.load_tensors(path)
    rec["mask"]["k"] += 1
    io.save_tensors(path, packed, rec)
    with pytest.raises(io.ArtifactError, match="set bits"):
        load_mask(path)
    io.save_tensors(path, packed, {"rule": "x"})
    with pytest.raises(io.ArtifactError, match="not a mask file"):
        load_mask(path)


# ------------------------------------------------------------------------- bad input

def test_bad_mask_arguments_fail_clearly():
    s = _scores()
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\]"):
        make_mask(s, 1.5)
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\]"):
        make_mask(s, -0.1)
    with pytest.raises(ValueError, match="selection must be one of"):
        make_mask(s, 0.3, "per_block")
    with pytest.raises(ValueError, match="do not match the score tensors"):
        make_mask(s, 0.3, names=["conv.weight"])
    bad = dict(s)
    bad["fc.bias"] = torch.full((7,), float("nan"))
    with pytest.raises(ValueError, match="NaN scores in 'fc.bias'"):
        make_mask(bad, 0.3)


def _micro(**significance) -> dict:
    cfg = copy.deepcopy(MICRO)
    cfg["studies"]["selective_encryption"]["significance"] = significance
    return cfg


@pytest.mark.parametrize("significance, where, what", [
    ({"metrics": ["grad", "sensitivity"]}, "significance.metrics[1]", "unknown significance metric 'sensitivity'"),
    ({"cost_metrics": ["sens", "hessian"]}, "significance.cost_metrics[1]", "unknown significance metric 'hessian'"),
    ({"ratios": [0.1, 1.5]}, "significance.ratios[1]", "[0, 1]"),
    ({"ratios": [-0.1]}, "significance.ratios[0]", "[0, 1]"),
    ({"ratios": [0.1234]}, "significance.ratios[0]", "3 decimals"),
    ({"ratios": [0.1, 0.1]}, "significance.ratios", "duplicate"),
    ({"selection": "per_block"}, "significance.selection", "'global', 'per_layer'"),
    ({"params": {"sens_probe": {"probe": 8}}}, "significance.params.sens_probe", "unknown option(s) ['probe']"),
    ({"params": {"sens_probe": {"probes": 0}}}, "significance.params.sens_probe.probes", ">= 1"),
    ({"params": {"sens_discrete": {"aggregate": "max"}}}, "significance.params.sens_discrete.aggregate", "mean_abs"),
    ({"params": {"hessian": {}}}, "significance.params.hessian", "unknown significance metric"),
])
def test_bad_significance_config_fails_validation_naming_the_key(significance, where, what):
    with pytest.raises(ConfigError) as err:
        validate(_micro(**significance))
    msg = str(err.value)
    assert f"studies.selective_encryption.{where}" in msg and what in msg, msg


@pytest.mark.parametrize("significance, what", [
    ({"metrics": ["grad", "sensitivity"]}, "unknown significance metric 'sensitivity'"),
    ({"ratios": [0.1, 1.5]}, "significance.ratios[1]"),
])
def test_bad_metric_or_ratio_fails_at_dag_build(tmp_path: Path, significance, what):
    path = write_config(tmp_path, _micro(**significance))
    proc = run_snakemake(tmp_path, path, "-n", check=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert what in out, out[-3000:]
    assert not (tmp_path / "results").exists()
