"""Text models (BERT, GPT-2): paper parameter counts, the one-argument view used by the
significance metrics and the client gradient, pooling, and the pretrained-weights paths on
local files (the hub is not reachable here)."""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from gibench.gradient import client_gradient  # noqa: E402
from gibench.models import build_model, count_parameters  # noqa: E402
from gibench.models import text as MT  # noqa: E402


@pytest.mark.parametrize("family,params,tensors", [
    ("bert", 109_483_778, 201),    # paper, section 5.1; Table 6 "Layer Num." 201
    ("gpt2", 124_441_344, 149),    # paper, section 5.1; Table 6 "Layer Num." 149
])
def test_paper_parameter_counts_without_weights(family, params, tensors):
    m = build_model(family, 2, None, seed=0, size="base")
    assert count_parameters(m) == params
    assert len(list(m.named_parameters())) == tensors
    assert m.gibench_pretrained is None and m.gibench_size == "base"


def test_demo_models_keep_vocabulary_and_are_small():
    for family, vocab in (("bert", 30522), ("gpt2", 50257)):
        m = build_model(family, 2, None, seed=0, size="demo")
        assert m.get_input_embeddings().weight.shape[0] == vocab
        assert count_parameters(m) < 8_000_000
    g = build_model("gpt2", 2, None, seed=0, size="demo")
    assert g.config.n_layer >= 3  # DAGER reads blocks 0 and 1; block 1 must not be the last


def test_same_seed_same_weights_and_unknown_option_rejected():
    a = build_model("gpt2", 2, None, seed=5, size="demo")
    b = build_model("gpt2", 2, None, seed=5, size="demo")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="unknown option"):
        build_model("gpt2", 2, None, seed=0, size="demo", n_layers=3)
    with pytest.raises(ValueError, match="size"):
        build_model("bert", 2, None, seed=0, size="huge")


def _tiny(family):
    over = {"bert": {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64},
            "gpt2": {"n_layer": 2, "n_embd": 32, "n_head": 2}}[family]
    return build_model(family, 2, None, seed=1, size="demo", config_overrides=over)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_bound_model_same_names_outputs_and_gradient_as_hf_loss(family):
    m = _tiny(family)
    ids, mask = MT.pad_batch([[101, 2023, 2003, 102], [101, 7592, 102]] if family == "bert"
                             else [[464, 3797, 13, 50], [15496, 995]], MT.PAD_ID[family])
    w = MT.BoundTextModel(m, mask)
    assert [n for n, _ in w.named_parameters()] == [n for n, _ in m.named_parameters()]
    assert [n for n, _ in w.named_modules()][1:] == [n for n, _ in m.named_modules()][1:]
    y = torch.tensor([1, 0])
    ours = client_gradient(w, ids, y)
    # independent reference: the HF model's own mean cross-entropy (labels=) and autograd
    out = m(input_ids=ids, attention_mask=mask, labels=y, return_output=True)
    names, params = zip(*m.named_parameters())
    ref = dict(zip(names, torch.autograd.grad(out.loss, params, allow_unused=True)))
    for n in names:
        r = ref[n] if ref[n] is not None else torch.zeros_like(ours[n])
        assert torch.allclose(ours[n], r, atol=1e-6, rtol=1e-5), n
    # float input = inputs_embeds: the same logits as the ids
    emb = m.get_input_embeddings()(ids)
    assert torch.allclose(w(emb), w(ids), atol=1e-6)


def test_gpt2_pooling_matches_hf_sequence_classification_with_right_padding():
    m = _tiny("gpt2")
    ids, mask = MT.pad_batch([[464, 3797, 13, 50, 60], [15496, 995]], 50256)
    ours = m(input_ids=ids, attention_mask=mask)
    hf = transformers.GPT2ForSequenceClassification.forward(m, input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(ours, hf, atol=1e-6)


def test_text_model_info_describes_blocks_and_specials():
    info = MT.text_model_info(build_model("gpt2", 2, None, seed=0, size="demo"))
    assert info["family"] == "gpt2" and info["embedding_param"] == "transformer.wte.weight"
    assert info["block_prefixes"][0] == "transformer.h.0." and info["special_ids"]["eos"] == 50256
    binfo = MT.text_model_info(build_model("bert", 2, None, seed=0, size="demo"))
    assert binfo["special_ids"]["cls"] == 101 and binfo["special_ids"]["sep"] == 102
    assert len(binfo["unused_ids"]) == 99 + 895  # [unused0..993]: ids 1-99 and 104-998 (LAMP excludes them)


def test_pretrained_missing_names_the_download_rule(tmp_path):
    with pytest.raises(MT.ModelUnavailable, match="download rule"):
        build_model("gpt2", 2, None, seed=0, pretrained="no-such-owner/no-such-model", hub_dir=str(tmp_path),
                    local_files_only=True)
    with pytest.raises(MT.ModelUnavailable, match="download"):
        MT.load_lm_prior(str(tmp_path / "missing.pth"))


def test_pretrained_from_local_checkpoint_and_architecture_only(tmp_path):
    """The real loading path on a local directory: save a small checkpoint, load it by path and
    through the hub-dir layout; load_weights=False reads only its config."""
    src = _tiny("gpt2")
    name = "someone/tiny-gpt2"
    ckpt = MT.hub_model_dir(tmp_path, name)
    src.save_pretrained(str(ckpt))
    by_path = build_model("gpt2", 2, None, seed=0, pretrained=str(ckpt))
    by_name = build_model("gpt2", 2, None, seed=0, pretrained=name, hub_dir=str(tmp_path))
    for m in (by_path, by_name):
        assert m.gibench_pretrained and m.gibench_size == "pretrained"
        assert torch.equal(m.transformer.wte.weight, src.transformer.wte.weight)
    arch = build_model("gpt2", 2, None, seed=9, pretrained=name, hub_dir=str(tmp_path), load_weights=False)
    assert arch.config.n_embd == 32 and not torch.equal(arch.transformer.wte.weight, src.transformer.wte.weight)
    assert arch.gibench_pretrained == name
    # the same directory serves as LAMP's causal-LM prior (GPT-2 port: the prior is GPT-2 itself)
    prior = MT.load_lm_prior(name, hub_dir=str(tmp_path))
    logits = prior(input_ids=torch.tensor([[464, 3797]])).logits
    assert logits.shape == (1, 2, 50257)


def test_pad_batch_right_pads():
    ids, mask = MT.pad_batch([[5, 6, 7], [8]], 0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    with pytest.raises(ValueError):
        MT.pad_batch([[1], []], 0)

