"""Significance on the text models: the layer selectors (Attn, OneFifth-i and the block-fifths
alternative) on the real BERT/GPT-2 parameter layouts, with the paper's Table 3 encryption
ratios as the independent facts, and the metrics of the significance registry on a text
model called as ``model(x)`` (token ids or input embeddings)."""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from gibench.masks import mask_from_selector  # noqa: E402
from gibench.models import build_model  # noqa: E402
from gibench.models.text import PAD_ID, BoundTextModel, pad_batch  # noqa: E402
from gibench.significance import compute_scores, fifth_names, onefifth_chunk, transformer_blocks  # noqa: E402
from gibench.significance import word_embedding_name  # noqa: E402
from gibench.significance.selectors import ONEFIFTH, SELECTORS, attention_names  # noqa: E402


def _meta_layout(family: str, size: str) -> tuple[dict[str, int], str]:
    """(parameter name -> entries, in named_parameters() order; the word-embedding name) of a
    text model built on the meta device: the real architecture, no weights, no memory."""
    with torch.device("meta"):
        m = build_model(family, 2, None, seed=0, size=size)
    return {n: p.numel() for n, p in m.named_parameters()}, word_embedding_name(m, [n for n, _ in m.named_parameters()])


@pytest.fixture(scope="module")
def layouts():
    return {fam: _meta_layout(fam, "base")[0] for fam in ("bert", "gpt2")}


def _onefifth_ratios(sizes: dict[str, int], emb: str, chunk: int = 32) -> list[float]:
    names, total = list(sizes), sum(sizes.values())
    return [sum(sizes[n] for n in onefifth_chunk(names, i, emb, chunk)["names"]) / total for i in range(1, 6)]


def test_onefifth_reproduces_the_papers_table3_ratios_on_full_gpt2():
    sizes, emb = _meta_layout("gpt2", "base")
    # the paper's GPT-2 (section 5.1): 124,441,344 parameters; Table 6: 149 layers (= tensors)
    assert sum(sizes.values()) == 124_441_344 and len(sizes) == 149
    assert emb == "transformer.wte.weight" and list(sizes).index(emb) == 0
    ratios = _onefifth_ratios(sizes, emb)
    # paper, Table 3 (GPT-2, CoLA): Enc. Ratio of OneFifth-1..5
    assert [round(r, 4) for r in ratios] == [0.1392, 0.1519, 0.1519, 0.1519, 0.0949]
    # "everything but the word embedding" (0.6898 in the paper's table, summed)
    assert sum(ratios) == pytest.approx(1 - sizes[emb] / sum(sizes.values()))
    assert round(sum(ratios), 4) == 0.6898
    # the chunks are consecutive and disjoint and cover every tensor, the embedding left out
    parts = [onefifth_chunk(list(sizes), i, emb) for i in range(1, 6)]
    assert [(p["start"], p["stop"]) for p in parts] == [(0, 32), (32, 64), (64, 96), (96, 128), (128, 149)]
    assert parts[0]["excluded"] == [emb] and not any(p["excluded"] for p in parts[1:])
    # the block-fifths alternative does not give the paper's ratios (3, 3, 2, 2, 2 blocks)
    total = sum(sizes.values())
    blocks = [sum(sizes[n] for n in fifth_names(list(sizes), i)[0]) / total for i in range(1, 6)]
    assert [round(b, 4) for b in blocks] == [0.1709, 0.1709, 0.1139, 0.1139, 0.1139]


def test_onefifth_literal_rule_on_bert_and_on_the_demo_gpt2():
    sizes, emb = _meta_layout("bert", "base")
    assert sum(sizes.values()) == 109_483_778 and len(sizes) == 201      # the paper's BERT; Table 6: 201
    assert emb == "bert.embeddings.word_embeddings.weight"
    names = list(sizes)
    parts = [onefifth_chunk(names, i, emb) for i in range(1, 6)]
    assert parts[4]["stop"] == 160                   # 201 tensors: five chunks of 32 end at tensor 160
    left = names[160:]
    assert len(left) == 41 and left[-1] == "classifier.bias" and left[0].startswith("bert.encoder.layer.9.")
    chosen = [n for p in parts for n in p["names"]]
    assert len(chosen) == len(set(chosen)) == 159 and emb not in chosen
    # demo GPT-2 (3 blocks): 41 tensors -> chunks 1 and 2 hold them, chunks 3-5 are empty
    sizes, emb = _meta_layout("gpt2", "demo")
    assert len(sizes) == 2 + 3 * 12 + 2 + 1
    parts = [onefifth_chunk(list(sizes), i, emb) for i in range(1, 6)]
    assert [len(p["names"]) for p in parts] == [31, 9, 0, 0, 0]


def test_empty_onefifth_selects_nothing_and_says_so():
    m = _tiny("gpt2")        # 2 blocks: 2 + 24 + 2 + 1 = 29 tensors, all in chunk 1
    ids, mask = pad_batch([[464, 3797, 13]], PAD_ID["gpt2"])
    w = BoundTextModel(m, mask)
    y = torch.tensor([1])
    from gibench.gradient import client_gradient as cg

    g = cg(w, ids, y)
    names = list(g)
    first = compute_scores("onefifth_1", w, ids, y, g, seed=0)
    assert first.info["tensor_range"] == [0, 29] and first.info["excluded"] == ["transformer.wte.weight"]
    assert [n for n in names if first.scores[n].all()] == names[1:]
    second = compute_scores("onefifth_2", w, ids, y, g, seed=0)
    assert second.info["empty"] is True and "empty" in second.info["warning"]
    assert not any(s.any() for s in second.scores.values())
    assert mask_from_selector(second.scores, names).encrypted_fraction() == 0.0
    # the chunk is an option: chunks of 10 tensors put tensors 10-19 in OneFifth-2
    ten = compute_scores("onefifth_2", w, ids, y, g, seed=0, params={"chunk": 10})
    assert [n for n in names if ten.scores[n].all()] == names[10:20]
    with pytest.raises(ValueError, match="chunk"):
        compute_scores("onefifth_2", w, ids, y, g, seed=0, params={"chunk": 0})


@pytest.mark.parametrize("family,n_blocks", [("bert", 12), ("gpt2", 12)])
def test_onefifth_blocks_partitions_cover_every_block_exactly_once(layouts, family, n_blocks):
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
