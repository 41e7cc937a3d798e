"""Significance metrics (gibench.significance) against independent computations.

* ``sens`` = row norms of ∂g/∂x computed by central differences of the client gradient along
  every input coordinate in float64 (convolutions with stride/dilation/padding, pooling,
  single- and multi-row linear layers, tied and unused parameters, batches of 2, text
  models fed ``inputs_embeds`` or token ids);
* ``sens`` is not ``grad``: the label derivative FedML-HE's code ranks by equals |g|;
* ``sens_probe`` is unbiased within its stated (χ²_K) error, on fixed seeds;
* ``sens_discrete`` equals its written-out formula computed by an explicit loop;
* the block-fifths layer selectors partition the transformer blocks of tiny BERT / GPT-2 into fifths.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gibench.masks import make_mask, mask_for
from gibench.significance import (METRICS, NoTransformerBlocks, compute_scores, fifth_groups, sens_discrete_scores,
                                  sens_exact, sens_probe_estimate)
from gibench.significance.sens import GradientJacobian, conv2d_weight_grads, probe_interval_factors

F64 = torch.float64


# ----------------------------------------------------------------------------- tiny models

class TinyNet(nn.Module):
    """Every layer kind the factored Jacobian handles, plus the ones it must leave alone:
    a strided conv, a dilated conv, max-pooling, a tied weight used twice, an unused
    parameter, a multi-row and a single-row Linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(3, 4, 3, padding=2, dilation=2)
        self.pool = nn.MaxPool2d(2)
        self.tok = nn.Linear(4, 5)           # applied to every spatial position: several rows
        self.fc = nn.Linear(20, 6)
        self.tied = nn.Linear(6, 6)          # used twice: differentiated directly
        self.out = nn.Linear(6, 4)
        self.unused = nn.Parameter(torch.ones(3))

    def forward(self, x):
        x = torch.sigmoid(self.c1(x))
        x = self.pool(torch.relu(self.c2(x)))                     # B × 4 × 2 × 2
        x = torch.tanh(self.tok(x.flatten(2).transpose(1, 2)))    # B × 4 × 5
        x = torch.tanh(self.fc(x.flatten(1)))
        x = torch.tanh(self.tied(torch.tanh(self.tied(x))))
        return self.out(x)


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TinyNet().to(F64).eval()


def _grads_allow_unused(model, x, y) -> dict[str, torch.Tensor]:
    """The client gradient (mean cross-entropy, as gibench.gradient), zero for unused parameters."""
    named = [(n, p) for n, p in model.named_parameters()]
    loss = nn.functional.cross_entropy(model(x), y)
    gs = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True, materialize_grads=True)
    return {n: g for (n, _), g in zip(named, gs)}


def _flat_grad(model, x, y) -> torch.Tensor:
    g = _grads_allow_unused(model, x, y)
    return torch.cat([t.reshape(-1) for t in g.values()])


def fd_jacobian(grad_fn, x: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    """∂g/∂x by central differences along every input coordinate (M × n, float64)."""
    cols = []
    for j in range(x.numel()):
        e = torch.zeros(x.numel(), dtype=x.dtype)
        e[j] = h
        e = e.view_as(x)
        cols.append((grad_fn(x + e) - grad_fn(x - e)) / (2 * h))
    return torch.stack(cols, 1)


def _flat(scores: dict, names) -> torch.Tensor:
    return torch.cat([scores[n].reshape(-1) for n in names])


@pytest.fixture(scope="module")
def tiny_case():
    model = _tiny()
    x = torch.randn(1, 2, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([2])
    names = [n for n, _ in model.named_parameters()]
    J = fd_jacobian(lambda z: _flat_grad(model, z, y), x)
    return model, x, y, names, J


# ----------------------------------------------------------------------------- exact Sens

@pytest.mark.parametrize("factored", [True, False])
@pytest.mark.parametrize("chunk_size", [50, None])
def test_sens_matches_finite_differences(tiny_case, factored, chunk_size):
    model, x, y, names, J = tiny_case
    ref = J.norm(dim=1)
    sens, info = sens_exact(model, x, y, factored=factored, chunk_size=chunk_size)
    got = _flat(sens, names)
    assert got.dtype == F64
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-9 * float(ref.max()))
    if factored:   # the factored path really is taken where it applies, and only there
        assert set(info["factored_layers"]) == {"c1", "c2", "tok", "fc", "out"}
        assert info["rank2_layers"] == ["fc", "out"]
    assert info["jvp_columns"] == x.numel()


def test_sens_of_a_batch_matches_finite_differences():
    model = _tiny(3)
    x = torch.randn(2, 2, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(4))
    y = torch.tensor([0, 3])
    names = [n for n, _ in model.named_parameters()]
    ref = fd_jacobian(lambda z: _flat_grad(model, z, y), x).norm(dim=1)
    sens, info = sens_exact(model, x, y, chunk_size=32)
    torch.testing.assert_close(_flat(sens, names), ref, rtol=1e-6, atol=1e-9 * float(ref.max()))
    assert info["rank2_layers"] == []        # two rows: nothing single-row
    assert info["input_dim"] == 256


def test_sens_of_unused_parameter_is_zero_and_tied_weight_is_not_factored(tiny_case):
    model, x, y, names, _ = tiny_case
    sens, info = sens_exact(model, x, y)
    assert torch.equal(sens["unused"], torch.zeros(3, dtype=F64))
    assert "tied" not in info["factored_layers"]


def test_columns_equal_the_finite_difference_jacobian(tiny_case):
    """Full Jacobian columns (used by tests and the probe) for arbitrary directions."""
    model, x, y, names, J = tiny_case
    V = torch.randn(5, *x.shape, dtype=F64, generator=torch.Generator().manual_seed(2))
    gj = GradientJacobian(model, x, y)
    cols = torch.cat([c.reshape(5, -1) for c in gj.columns(V)], 1)      # 5 × M
    torch.testing.assert_close(cols, (J @ V.reshape(5, -1).T).T, rtol=1e-6, atol=1e-9)
    sq = torch.cat([s.reshape(-1) for s in gj.sum_squares(V)])
    torch.testing.assert_close(sq, cols.square().sum(0), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 1), (2, 1, 1), ((2, 1), (0, 2), (1, 2)), (3, 2, 2)])
def test_conv_weight_gradient_identity(stride, padding, dilation):
    """conv2d_weight_grads = autograd's weight gradient, for every pairing of N inputs / N grads."""
    m = nn.Conv2d(3, 4, (3, 2), stride=stride, padding=padding, dilation=dilation).to(F64)
    gen = torch.Generator().manual_seed(0)
    for na, nd in [(3, 3), (3, 1), (1, 3)]:
        a = torch.randn(na, 2, 3, 9, 8, dtype=F64, generator=gen)
        out_shape = m(a[0]).shape
        d = torch.randn(nd, *out_shape, dtype=F64, generator=gen)
        ref = []
        for c in range(3):
            w = m.weight.detach().clone().requires_grad_(True)
            o = nn.functional.conv2d(a[c if na > 1 else 0], w, None, m.stride, m.padding, m.dilation)
            ref.append(torch.autograd.grad(o, w, d[c if nd > 1 else 0])[0])
        torch.testing.assert_close(conv2d_weight_grads(a, d, m), torch.stack(ref), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- Sens is not Grad

def test_sens_differs_from_grad_which_equals_the_label_derivative(tiny_case):
    model, x, y, names, _ = tiny_case
    g = _grads_allow_unused(model, x, y)
    # FedML-HE's released "sensitivity": d g_i / d(soft label of the true class).  For a
    # soft-label cross-entropy -sum_c t_c log p_c at t = onehot(y) it is -d log p_y/d theta = g.
    t = nn.functional.one_hot(y, 4).to(F64).requires_grad_(True)
    params = [p for _, p in model.named_parameters()]
    loss = -(t * torch.log_softmax(model(x), -1)).sum()
    gs = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True, materialize_grads=True)
    flat_g = torch.cat([q.reshape(-1) for q in gs])
    label_deriv = torch.stack([torch.autograd.grad(flat_g[i], t, retain_graph=True)[0][0, y[0]]
                               for i in range(flat_g.numel())])
    grad_flat = _flat({n: v.abs() for n, v in g.items()}, names)
    torch.testing.assert_close(label_deriv.abs(), grad_flat, rtol=1e-9, atol=1e-12)
    # the input sensitivity ranks differently
    sens = _flat(compute_scores("sens", model, x, y, g, seed=0).scores, names)
    nz = grad_flat > 0
    ratio = sens[nz] / grad_flat[nz]
    assert float(ratio.max() / ratio.min()) > 10          # not a rescaled |g|
    m_s = make_mask(compute_scores("sens", model, x, y, g, seed=0).scores, 0.3, names=names).flat()
    m_g = make_mask(compute_scores("grad", model, x, y, g, seed=0).scores, 0.3, names=names).flat()
    assert (m_s & m_g).sum() / (m_s | m_g).sum() < 0.8    # Jaccard of the 30 % masks


# ----------------------------------------------------------------------------- probe estimator

def test_probe_is_deterministic_per_seed(tiny_case):
    model, x, y, names, _ = tiny_case
    a, _, _ = sens_probe_estimate(model, x, y, probes=8, seed=11)
    b, _, _ = sens_probe_estimate(model, x, y, probes=8, seed=11, chunk_size=3)
    c, _, _ = sens_probe_estimate(model, x, y, probes=8, seed=12)
    torch.testing.assert_close(_flat(a, names), _flat(b, names), rtol=1e-12, atol=0)
    assert not torch.allclose(_flat(a, names), _flat(c, names))


def test_probe_total_is_unbiased_within_its_stated_error(tiny_case):
    """Σ_i est_i = (1/K) Σ_k ‖J v_k‖² estimates ‖J‖_F² with variance 2‖JᵀJ‖_F²/K."""
    model, x, y, names, J = tiny_case
    K = 16
    A = J.T @ J
    se = math.sqrt(2 * float(A.square().sum()) / K)
    truth = float(J.square().sum())
    for seed in range(3):
        est, _, _ = sens_probe_estimate(model, x, y, probes=K, seed=seed)
        assert abs(float(_flat(est, names).sum()) - truth) <= 4 * se


def test_probe_entries_are_unbiased_and_the_stated_error_holds(tiny_case):
    """Per entry, over S seeds: the mean is within 5 standard errors of the exact Sens²
    (from finite differences), the spread matches the stated sqrt(2/K) relative error, and
    the stated 95 % interval covers the truth about 95 % of the time."""
    model, x, y, names, J = tiny_case
    exact = J.square().sum(1)
    keep = exact > 1e-20 * float(exact.max())
    K, S = 16, 24
    ests, errs = [], []
    for seed in range(S):
        est, err, info = sens_probe_estimate(model, x, y, probes=K, seed=1000 + seed)
        ests.append(_flat(est, names))
        errs.append(_flat(err, names))
    E = torch.stack(ests)[:, keep]
    ex = exact[keep]
    z = (E.mean(0) - ex) / (ex * math.sqrt(2 / (K * S)))
    assert float(z.abs().max()) < 5
    rel_sd = (E.std(0) / ex).mean()
    assert 0.8 < float(rel_sd) / math.sqrt(2 / K) < 1.2
    torch.testing.assert_close(torch.stack(errs)[:, keep], E * math.sqrt(2 / (K + 2)))
    lo, hi = info["stated_error"]["ci95_factors_sens_sq"]
    assert (lo, hi) == probe_interval_factors(K)
    covered = ((lo * E <= ex) & (ex <= hi * E)).double().mean()
    assert 0.90 < float(covered) < 0.99


def test_probe_metric_scores_are_the_square_root_of_the_estimate(tiny_case):
    model, x, y, names, _ = tiny_case
    g = _grads_allow_unused(model, x, y)
    r = compute_scores("sens_probe", model, x, y, g, seed=5, params={"probes": 4})
    est, _, _ = sens_probe_estimate(model, x, y, probes=4, seed=5)
    torch.testing.assert_close(_flat(r.scores, names), _flat({n: v.sqrt() for n, v in est.items()}, names).float())
    assert r.info["probes"] == 4 and r.info["stated_error"]["relative_stderr_sens_sq"] == math.sqrt(2 / 4)


# ----------------------------------------------------------------------------- discrete approximation

@pytest.mark.parametrize("step", [1.0, 0.01])
def test_sens_discrete_is_its_written_formula(tiny_case, step):
    model, x, y, names, _ = tiny_case
    D = fd_jacobian(lambda z: _flat_grad(model, z, y), x, h=step)       # (g(x+he_j) - g(x-he_j)) / 2h
    for aggregate, expect in [("mean_abs", D.abs().mean(1)), ("abs_mean", D.mean(1).abs()),
                              ("rms", D.square().mean(1).sqrt())]:
        got, info = sens_discrete_scores(model, x, y, step=step, aggregate=aggregate, chunk_size=50)
        torch.testing.assert_close(_flat(got, names), expect, rtol=1e-9, atol=1e-14)
        assert info["gradient_evaluations"] == 2 * x.numel() and info["aggregate"] == aggregate


def test_gradient_differences_of_a_batch_equal_autograd():
    """The factored g(x) − g(y) (one product per weight over both points) on a batch of 2."""
    model = _tiny(5)
    names = [n for n, _ in model.named_parameters()]
    gen = torch.Generator().manual_seed(6)
    x0 = torch.randn(2, 2, 8, 8, dtype=F64, generator=gen)
    y = torch.tensor([1, 3])
    X, Y = torch.randn(3, *x0.shape, dtype=F64, generator=gen), torch.randn(3, *x0.shape, dtype=F64, generator=gen)
    got = GradientJacobian(model, x0, y).differences(X, Y)
    for i in range(3):
        expect = _flat_grad(model, X[i], y) - _flat_grad(model, Y[i], y)
        torch.testing.assert_close(torch.cat([t[i].reshape(-1) for t in got]), expect, rtol=1e-10, atol=1e-14)


def test_sens_discrete_rms_tends_to_sens(tiny_case):
    model, x, y, names, J = tiny_case
    got, _ = sens_discrete_scores(model, x, y, step=1e-4, aggregate="rms")
    torch.testing.assert_close(_flat(got, names) * math.sqrt(x.numel()), J.norm(dim=1), rtol=1e-5, atol=1e-10)


# ----------------------------------------------------------------------------- compute_scores conventions

def test_simple_metrics_and_order(tiny_case):
    model, x, y, names, _ = tiny_case
    g = _grads_allow_unused(model, x, y)
    shuffled = {n: g[n] for n in reversed(names)}              # e.g. read back from a file
    params = dict(model.named_parameters())
    for name, expect in [("grad", {n: g[n].abs() for n in names}),
                         ("param", {n: params[n].detach().abs() for n in names}),
                         ("prodsig", {n: (g[n] * params[n].detach()).abs() for n in names})]:
        r = compute_scores(name, model, x, y, shuffled, seed=0)
        assert list(r.scores) == names and r.info["names"] == names
        assert r.info["num_entries"] == sum(p.numel() for p in params.values())
        for n in names:
            torch.testing.assert_close(r.scores[n], expect[n].float())
    r1 = compute_scores("random", model, x, y, g, seed=7)
    r2 = compute_scores("random", model, x, y, shuffled, seed=7)
    r3 = compute_scores("random", model, x, y, g, seed=8)
    assert all(torch.equal(r1.scores[n], r2.scores[n]) for n in names)
    assert not all(torch.equal(r1.scores[n], r3.scores[n]) for n in names)
    flat = _flat(r1.scores, names)
    assert 0 <= float(flat.min()) and float(flat.max()) < 1 and abs(float(flat.mean()) - 0.5) < 0.1


def test_compute_scores_rejects_bad_input(tiny_case):
    model, x, y, names, _ = tiny_case
    g = _grads_allow_unused(model, x, y)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['probe'\]"):
        compute_scores("sens_probe", model, x, y, g, seed=0, params={"probe": 3})
    with pytest.raises(ValueError, match=r"probes: 0 is not allowed; expected an integer >= 1"):
        compute_scores("sens_probe", model, x, y, g, seed=0, params={"probes": 0})
    with pytest.raises(ValueError, match="aggregate"):
        compute_scores("sens_discrete", model, x, y, g, seed=0, params={"aggregate": "max"})
    with pytest.raises(ValueError, match="gradient and model parameters differ"):
        compute_scores("grad", model, x, y, {n: v for n, v in g.items() if n != "fc.bias"}, seed=0)
    bad = dict(g)
    bad["fc.bias"] = torch.zeros(7, dtype=F64)
    with pytest.raises(ValueError, match="'fc.bias' has shape"):
        compute_scores("grad", model, x, y, bad, seed=0)
    with pytest.raises(KeyError, match="unknown significance metric 'hessian'"):
        compute_scores("hessian", model, x, y, g, seed=0)
    drop = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    gd = {n: torch.zeros_like(p) for n, p in drop.named_parameters()}
    with pytest.raises(ValueError, match="active dropout"):
        compute_scores("sens", drop, torch.randn(1, 3), torch.tensor([0]), gd, seed=0, mode="train")


@pytest.mark.slow
def test_float32_lenet_sens_on_a_cifar_sized_input_matches_float64():
    """The real LeNet at CIFAR size (n = 3072), one image: float32 chunked scores agree with
    the float64 computation (the factored float32 path loses no accuracy that matters)."""
    from gibench.models import build_model

    model = build_model("lenet", 100, (3, 32, 32), 0, init="torch_default")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([7])
    s32, _ = sens_exact(model, x, y, chunk_size=512)
    s64, _ = sens_exact(model.to(F64), x.to(F64), y, chunk_size=512)
    for n in s32:
        torch.testing.assert_close(s32[n].to(F64), s64[n], rtol=2e-3, atol=1e-6 * float(s64[n].max()))
    assert sum(v.numel() for v in s32.values()) == 88_648        # the paper's LeNet


# ----------------------------------------------------------------------------- text models

def _hf_bert(layers: int = 1, hidden: int = 8):
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=40, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=16, num_labels=2,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager")
    torch.manual_seed(0)
    return BertForSequenceClassification(cfg).eval()


def _hf_gpt2(layers: int = 1, hidden: int = 8):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    cfg = GPT2Config(vocab_size=40, n_embd=hidden, n_layer=layers, n_head=2, n_positions=16, num_labels=2,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0, attn_implementation="eager")
    torch.manual_seed(0)
    return GPT2ForSequenceClassification(cfg).eval()


class EmbedsModel(nn.Module):
    """``model(x)`` with ``x`` the input embeddings (the text helper's wrapping)."""

    def __init__(self, hf):
        super().__init__()
        self.hf = hf

    def forward(self, x):
        return self.hf(inputs_embeds=x).logits


class IdsModel(EmbedsModel):
    """``model(ids)``; Sens is taken w.r.t. the word-embedding vectors of the tokens."""

    def forward(self, ids):
        return self.hf(input_ids=ids).logits

    def get_input_embeddings(self):
        return self.hf.get_input_embeddings()


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_sens_on_text_models_through_input_embeddings(family):
    hf = (_hf_bert if family == "bert" else _hf_gpt2)().to(F64)
    ids = torch.tensor([[5, 17, 3]])
    y = torch.tensor([1])
    emb = hf.get_input_embeddings().weight.detach()[ids]                 # 1 × 3 × 8
    by_embeds, by_ids = EmbedsModel(hf), IdsModel(hf)
    names = [n for n, _ in by_embeds.named_parameters()]

    def flat_grad(z):
        return torch.cat([g.reshape(-1) for g in _grads_allow_unused(by_embeds, z, y).values()])

    ref = fd_jacobian(flat_grad, emb).norm(dim=1)
    r = compute_scores("sens", by_embeds, emb, y, _grads_allow_unused(by_embeds, emb, y), seed=0)
    assert r.info["input_space"] == "input" and r.info["input_dim"] == 24
    torch.testing.assert_close(_flat(r.scores, names), ref.float(), rtol=1e-4, atol=1e-7 * float(ref.max()))
    # token ids: the derivative w.r.t. the same embedding vectors; equal on every tensor but
    # the word-embedding table (unused, zero, when the embeddings are the input)
    r_ids = compute_scores("sens", by_ids, ids, y, _grads_allow_unused(by_ids, ids, y), seed=0)
    assert r_ids.info["input_space"] == "word_embeddings"
    word = "hf." + ("bert.embeddings.word_embeddings.weight" if family == "bert" else "transformer.wte.weight")
    for n in names:
        if n != word:
            torch.testing.assert_close(r_ids.scores[n], r.scores[n], rtol=1e-6, atol=1e-9)
    assert not r.scores[word].any() and r_ids.scores[word].any()


# ----------------------------------------------------------------------------- selectors

@pytest.mark.parametrize("family, layers, sizes", [("bert", 12, [3, 3, 2, 2, 2]), ("gpt2", 7, [2, 2, 1, 1, 1]),
                                                   ("bert", 5, [1, 1, 1, 1, 1])])
def test_fifths_partition_the_transformer_blocks(family, layers, sizes):
    hf = (_hf_bert if family == "bert" else _hf_gpt2)(layers=layers, hidden=4)
    names = [n for n, _ in hf.named_parameters()]
    block_of = {}
    for n in names:
        parts = n.split(".")
        key = "layer" if family == "bert" else "h"
        if key in parts and parts[parts.index(key) + 1].isdigit() and ("encoder" in parts or family == "gpt2"):
            block_of[n] = int(parts[parts.index(key) + 1])
    assert len(set(block_of.values())) == layers
    x, y = torch.tensor([[1, 2]]), torch.tensor([0])
    grads = {n: torch.zeros_like(p) for n, p in hf.named_parameters()}
    seen: dict[str, int] = {}
    blocks_per_fifth = []
    for i in range(1, 6):
        r = compute_scores(f"onefifth_blocks_{i}", hf, x, y, grads, seed=0)
        chosen = [n for n in names if r.scores[n].all()]
        assert all(not r.scores[n].any() for n in names if n not in chosen)      # 0/1 per tensor
        assert r.info["selector"] is True
        for n in chosen:
            assert n in block_of, f"{n} is not in a transformer block"
            assert n not in seen, f"{n} in fifths {seen[n]} and {i}"
            seen[n] = i
        blocks = sorted({block_of[n] for n in chosen})
        # whole blocks only: every parameter of a chosen block is chosen
        assert set(chosen) == {n for n, b in block_of.items() if b in blocks}
        blocks_per_fifth.append(blocks)
    assert set(seen) == set(block_of)                          # every block param in exactly one fifth
    assert [len(b) for b in blocks_per_fifth] == sizes
    assert [b for bs in blocks_per_fifth for b in bs] == list(range(layers))    # contiguous, in order
    assert not any("embeddings" in n or ".wte." in n or ".wpe." in n for n in seen)
    assert [len(g) for g in fifth_groups(layers)] == sizes


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_attn_selects_exactly_the_attention_sublayers(family):
    hf = (_hf_bert if family == "bert" else _hf_gpt2)(layers=3, hidden=4)
    names = [n for n, _ in hf.named_parameters()]
    grads = {n: torch.zeros_like(p) for n, p in hf.named_parameters()}
    r = compute_scores("attn", hf, torch.tensor([[1, 2]]), torch.tensor([0]), grads, seed=0)
    marker = ".attention." if family == "bert" else ".attn."
    expect = [n for n in names if marker in n]
    assert [n for n in names if r.scores[n].all()] == expect
    # per block: BERT query, key, value, output dense and output LayerNorm; GPT-2 c_attn, c_proj (weight + bias each)
    assert len(expect) == 3 * (10 if family == "bert" else 4)
    mask = mask_for(r.scores, 0.3, "global", r.info)
    assert mask.selection == "selector" and mask.k == sum(grads[n].numel() for n in expect)
    assert math.isclose(r.info["selected_fraction"], mask.k / sum(g.numel() for g in grads.values()))


def test_selectors_refuse_models_without_transformer_blocks(tiny_case):
    model, x, y, names, _ = tiny_case
    g = _grads_allow_unused(model, x, y)
    for name in ("attn", "onefifth_1"):
        with pytest.raises(NoTransformerBlocks, match="need a transformer"):
            compute_scores(name, model, x, y, g, seed=0)


def test_every_registered_metric_scores_every_entry(tiny_case):
    model, x, y, names, _ = tiny_case
    g = _grads_allow_unused(model, x, y)
    for name in ("grad", "param", "prodsig", "random", "sens", "sens_discrete", "sens_probe"):
        assert name in METRICS
        r = compute_scores(name, model, x, y, g, seed=1)
        assert all(r.scores[n].shape == g[n].shape and r.scores[n].dtype == torch.float32 for n in names)
        assert "formula" in r.info


# ----------------------------------------------------------------------------- cost

_MEASURE_SCRIPT = """
import json, time, torch
from gibench.significance.cost import measure
def work():
    t = torch.ones(64 * 2**20 // 4)          # 64 MiB, touched
    time.sleep(0.3)                          # held longer than any sampling interval
    return float(t.sum())
result, seconds, peak = measure(work, device="cpu")
_, _, small = measure(lambda: 1 + 1, device="cpu")
print(json.dumps([result, seconds, peak, small]))
"""


def test_measure_reports_time_and_peak_memory():
    # In a fresh interpreter: RSS is a whole-process figure, and after hundreds of tests the
    # allocator may serve 64 MiB from pages that are already resident (no RSS growth to see).
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _MEASURE_SCRIPT], capture_output=True, text=True, check=True)
    result, seconds, peak, small = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == 64 * 2**20 // 4
    assert seconds >= 0.3
    assert peak >= 48 * 2**20, f"peak {peak} B for a 64 MiB tensor"
    assert small < 48 * 2**20


# ----------------------------------------------------------------------------- pipeline (real snakemake run)

@pytest.mark.slow
def test_micro_run_writes_scores_masks_and_table6(tmp_path):
    """The significance and masks rules and Table 6 on a micro config (LeNet, one image)."""
    import copy
    import csv

    from gibench import io
    from gibench.masks import k_for, load_mask
    from gibench.models import build_model
    from workflow_helpers import MICRO, run_snakemake, write_config

    cfg = copy.deepcopy(MICRO)
    cfg["studies"]["selective_encryption"]["significance"] = {
        "metrics": ["grad", "sens", "random"], "ratios": [0.0, 0.3, 1.0], "selection": "global",
        "params": {"sens_probe": {"probes": 8}},
        "cost_metrics": ["sens", "sens_discrete", "sens_probe", "prodsig"]}
    path = write_config(tmp_path, cfg)
    base = "results/masks/selective_encryption/cifar100/lenet/s000"
    masks = [f"{base}/{m}/r0.300.safetensors" for m in ("grad", "sens", "random")]
    masks += [f"{base}/any/r0.000.safetensors", f"{base}/any/r1.000.safetensors"]
    tables = ["results/tables/selective_encryption/table6.csv", "results/tables/selective_encryption/table6.md"]
    run_snakemake(tmp_path, path, *masks, *tables, timeout=3000)

    order = [n for n, _ in build_model("lenet", 100, (3, 32, 32), 0).named_parameters()]
    total = 88_648
    for m in masks:
        mask, rec = load_mask(tmp_path / m)
        assert mask.names == order and mask.total == total
        expect = {"r0.000": 0, "r0.300": k_for(0.3, total), "r1.000": total}[m.rsplit("/", 1)[1][:6]]
        assert mask.k == expect == int(mask.flat().sum())
    # the sens mask is the global top-30 % of the stored exact Sens scores
    scores, rec = io.load_tensors(tmp_path / "results/significance/selective_encryption/cifar100/lenet/s000/sens.safetensors")
    assert rec["significance"]["names"] == order and rec["significance"]["jvp_columns"] == 3072
    flat = torch.cat([scores[n].reshape(-1) for n in order])
    sens_mask, _ = load_mask(tmp_path / masks[1])
    bits = sens_mask.flat()
    assert float(flat[bits].min()) >= float(flat[~bits].max())

    with open(tmp_path / tables[0], newline="") as f:
        rows = {r["cost_metric"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"sens", "sens_discrete", "sens_probe", "prodsig"}
    for r in rows.values():
        assert r["model"] == "lenet" and r["status"] == "ok" and r["n"] == "1"
        assert r["num_tensors"] == "10" and r["num_parameters"] == "88648"     # paper: LeNet, 10 layers
        assert float(r["seconds_mean"]) > 0 and float(r["seconds_std"]) == 0.0
    md = (tmp_path / tables[1]).read_text()
    assert md.startswith("**Table 6:") and "Device: cpu" in md.splitlines()[0]
    assert "| LeNet | CIFAR-100 | 10 | 10 | 88,648 |" in md      # Layer Num., then the paper's (10)


def test_probe_interval_uses_exact_chi2_quantiles():
    from scipy.stats import chi2

    for k in (1, 4, 16, 64, 256):
        lo, hi = probe_interval_factors(k)
        assert lo == pytest.approx(k / chi2.ppf(0.975, k), rel=1e-9)
        assert hi == pytest.approx(k / chi2.ppf(0.025, k), rel=1e-9)
