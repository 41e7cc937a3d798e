"""Significance on the text models: the layer selectors (Attn, OneFifth-i) on the real
BERT/GPT-2 parameter layouts, and the metrics of the significance registry on a text model
called as ``model(x)`` (token ids or input embeddings)."""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from gibench.masks import mask_from_selector  # noqa: E402
from gibench.models import build_model  # noqa: E402
from gibench.models.text import PAD_ID, BoundTextModel, pad_batch  # noqa: E402
from gibench.significance import compute_scores, fifth_names, transformer_blocks  # noqa: E402
from gibench.significance.selectors import SELECTORS, attention_names  # noqa: E402


@pytest.fixture(scope="module")
def layouts():
    out = {}
    for fam in ("bert", "gpt2"):
        m = build_model(fam, 2, None, seed=0, size="base")
        out[fam] = {n: p.numel() for n, p in m.named_parameters()}
        del m
    return out


@pytest.mark.parametrize("family,n_blocks", [("bert", 12), ("gpt2", 12)])
def test_onefifth_partitions_cover_every_block_exactly_once(layouts, family, n_blocks):
    names = list(layouts[family])
    blocks = transformer_blocks(names)
    assert len(blocks) == n_blocks
    seen: dict[int, int] = {}
    chosen_all: list[str] = []
    for i in range(1, 6):
        chosen, idx = fifth_names(names, i)
        assert idx and idx == sorted(idx) and all(b == idx[0] + k for k, b in enumerate(idx))   # contiguous
        for b in idx:
            seen[b] = seen.get(b, 0) + 1
            assert set(blocks[b]) <= set(chosen)
        chosen_all += chosen
    assert seen == {b: 1 for b in range(n_blocks)}                    # each block in exactly one fifth
    assert sorted(chosen_all) == sorted(n for b in blocks for n in b)  # nothing else, nothing twice
    emb = [n for n in names if "embeddings" in n or n.startswith(("transformer.wte", "transformer.wpe"))]
    assert emb and not set(emb) & set(chosen_all)                     # the embedding layer is never selected


def test_attn_fraction_of_gpt2_matches_paper_table3(layouts):
    sizes = layouts["gpt2"]
    att = attention_names(list(sizes))
    assert len(att) == 12 * 4  # c_attn.{weight,bias}, c_proj.{weight,bias} per block
    frac = sum(sizes[n] for n in att) / sum(sizes.values())
    assert round(frac, 4) == 0.2278   # paper, Table 3: Attn, Enc. Ratio 0.2278


def _tiny(family):
    over = {"bert": {"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32},
            "gpt2": {"n_layer": 2, "n_embd": 16, "n_head": 2}}[family]
    return build_model(family, 2, None, seed=2, size="demo", config_overrides=over)


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_registry_metrics_and_selectors_run_on_a_text_model(family):
    m = _tiny(family)
    seqs = [[101, 2023, 2003, 102], [101, 7592, 102]] if family == "bert" else [[464, 3797, 13], [15496, 995]]
    ids, mask = pad_batch(seqs, PAD_ID[family])
    w = BoundTextModel(m, mask)
    y = torch.tensor([1, 0])
    from gibench.gradient import client_gradient as cg

    g = cg(w, ids, y)
    names = [n for n, _ in m.named_parameters()]
    for metric in ("grad", "prodsig", "param", "random", "sens_probe", *SELECTORS):
        res = compute_scores(metric, w, ids, y, g, seed=0, params={"probes": 4} if metric == "sens_probe" else None)
        assert list(res.scores) == names
        assert all(torch.isfinite(s).all() and (s >= 0).all() for s in res.scores.values())
    sel = compute_scores("onefifth_1", w, ids, y, g, seed=0)
    mask1 = mask_from_selector(sel.scores, names)
    assert 0 < mask1.encrypted_fraction() < 1
    assert not mask1.bits[names[0]].any()    # the word embeddings stay visible


def test_sens_through_token_ids_equals_sens_through_inputs_embeds():
    """``model(ids)`` differentiates w.r.t. the word-embedding vectors of the tokens (hook on the
    embedding output); ``model(E[ids])`` w.r.t. the same vectors fed as inputs_embeds.  Every
    parameter but the word-embedding table must get the same exact Sens."""
    m = _tiny("gpt2")
    ids, mask = pad_batch([[464, 3797, 13, 50]], PAD_ID["gpt2"])
    w = BoundTextModel(m, mask)
    y = torch.tensor([1])
    from gibench.gradient import client_gradient as cg

    g = cg(w, ids, y)
    by_ids = compute_scores("sens", w, ids, y, g, seed=0).scores
    emb = m.get_input_embeddings()(ids).detach()
    by_emb = compute_scores("sens", w, emb, y, g, seed=0).scores
    for n in by_ids:
        if n == "transformer.wte.weight":
            assert by_ids[n].abs().sum() > 0     # the table's own gradient depends on its rows
            continue
        assert torch.allclose(by_ids[n], by_emb[n], rtol=1e-4, atol=1e-7), n
