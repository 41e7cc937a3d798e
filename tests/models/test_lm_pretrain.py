"""The local language model (issue 25): bundled training text, the held-out filter on the real
corpora, pretraining that lowers held-out perplexity, determinism, the trunk in the attacked
classifier, LAMP's prior under the trained model, and the config checks."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gibench import io
from gibench.datasets import DATASETS
from gibench.models import pretrain as PT

RES = "resources"


# ------------------------------------------------------------------ bundled training text

def test_bundled_train_splits_are_the_hub_splits():
    cola = DATASETS.get("cola").load("bundled", "train", RES)
    sst2 = DATASETS.get("sst2").load("bundled", "train", RES)
    rt = {s: DATASETS.get("rotten_tomatoes").load("bundled", s, RES) for s in ("train", "validation", "test")}
    # split sizes of GLUE CoLA / SST-2 train and of HF rotten_tomatoes (8,530 / 1,066 / 1,066)
    assert (len(cola), len(sst2)) == (8551, 67349)
    assert [len(rt[s]) for s in ("train", "validation", "test")] == [8530, 1066, 1066]
    # CoLA 1.1 raw/in_domain_train.tsv line 1 and GLUE SST-2 train row 0
    assert cola.texts[0] == "Our friends won't buy this analysis, let alone the next one we propose."
    assert sst2.texts[0] == "hide new secretions from the parental units " and sst2.labels[0] == 0
    # the first three rows of HF rotten_tomatoes validation (datasets documentation example)
    assert rt["validation"].texts[:3] == [
        "compassionately explores the seemingly irreconcilable situation between conservative christian parents "
        "and their estranged gay and lesbian children .",
        "the soundtrack alone is worth the price of admission .",
        "rodriguez does a splendid job of racial profiling hollywood style--casting excellent latin actors of all "
        "ages--a trend long overdue ."]
    assert rt["train"].labels[:4265].tolist() == [1] * 4265 and rt["train"].labels[4265:].tolist() == [0] * 4265
    # the first500 slice holds the first 500 lines of the same files (UTF-8 there, HF's latin-1 view here)
    first = DATASETS.get("rotten_tomatoes").load("bundled", "first500", RES)
    pairs = list(zip(first.texts[:500], rt["train"].texts[:500]))
    assert all(f.strip() == t for f, t in pairs if f.isascii()) and sum(f.isascii() for f, _ in pairs) > 480


# ------------------------------------------------------------------ held-out filter

def test_text_key_ignores_tokenisation_conventions():
    k = PT.text_key
    assert k("the 21st century 's new `` Conan ''") == k('the 21st century\'s new " conan "')
    assert k("it is n't funny -lrb- at all -rrb-") == k("It isn't funny (at all).")
    assert k("...") == "" and k("Café") == k("CAFÉ")


def test_overlapping_is_containment_both_ways():
    held = ["The cat sat on the mat.", "a b"]
    texts = ["the cat sat on the mat",            # equal up to case/punctuation
             "Yesterday the cat sat on the mat, again.",   # contains a held-out sentence
             "cat sat",                            # part of a held-out sentence
             "the dog sat on the mat",             # unrelated
             "?!",                                 # no letters: dropped (contained in everything)
             "ab c"]                               # contains "ab" = key of "a b"
    assert PT.overlapping(texts, held).tolist() == [True, True, True, False, True, True]
    assert PT.overlapping(texts, []).tolist() == [False] * 6


def _demo_like_config(extra_datasets: dict | None = None) -> dict:
    from gibench import config as gconfig

    cfg = {"datasets": {"cola": {"source": "bundled", "split": "in_domain_dev", "victims": 2, "max_tokens": 12},
                        **(extra_datasets or {})},
           "resources_dir": RES,
           "studies": {"selective_encryption": {"cases": [{"dataset": "cola", "model": "gpt2"}], "victims": 1,
                                                "models": {"gpt2": {"size": "demo"}}}}}
    return gconfig.validate(cfg)


def test_no_victim_sentence_in_the_pretraining_text():
    """Exact check on the real bundled corpora, for the demo's victims and for the paper's
    (LAMP's sampler on the GLUE / HF train splits, here bundled): no training text equals a
    victim, contains it, or is contained in it, under the comparison key or as plain strings."""
    from gibench.pipeline.jobs_lm import victim_texts

    paper = {d: {"source": "bundled", "split": "train", "sampler": "lamp", "victims": 10}
             for d in ("sst2", "rotten_tomatoes")}
    cfg = _demo_like_config(paper)
    victims, pools = victim_texts(cfg)
    assert len(victims) == 22 and pools["sst2"]["split"] == "train"
    # the paper-scale victims really are training sentences: the filter has work to do
    train = {d: DATASETS.get(d).load("bundled", "train", RES).texts for d in ("sst2", "rotten_tomatoes")}
    assert all(v in train["sst2"] for v in victims[2:12]) and all(v in train["rotten_tomatoes"] for v in victims[12:])
    corpus = PT.read_corpus(PT.defaults()["corpora"], RES, None, victims)
    assert len(corpus.texts) > 60000 and sum(p["dropped_overlap"] for p in corpus.parts) >= 20
    keys = [PT.text_key(t) for t in corpus.texts]
    plain = set(corpus.texts)
    for v in victims:
        kv = PT.text_key(v)
        assert v not in plain and v.strip() not in {t.strip() for t in corpus.texts}
        assert not any(kv in k for k in keys), v                  # no training text contains the victim
        assert not any(k and k in kv for k in keys), v            # nor is a part of it


# ------------------------------------------------------------------ training

TINY = {"config_overrides": {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 64},
        "corpora": [{"dataset": "cola", "split": "train"}],
        "heldout": [{"dataset": "cola", "split": "in_domain_dev"}], "heldout_sentences": 150,
        "steps": 100, "batch_size": 16, "lr": 1.0e-2, "warmup": 10, "log_every": 20, "max_length": 32}


@pytest.fixture(scope="module")
def tiny_lm():
    from gibench.pipeline.jobs_lm import pretrain

    torch.set_num_threads(1)
    victims = DATASETS.get("cola").load("bundled", "in_domain_dev", RES).texts[:3]
    model, facts, timing = pretrain("gpt2", PT.settings(TINY), 5, RES, None, victims)
    return model, facts


def test_pretraining_lowers_heldout_perplexity_far_below_random(tiny_lm):
    _, facts = tiny_lm
    p = facts["perplexity"]["heldout"]
    # a random GPT-2 head is near uniform over the 50,257 tokens
    assert 30000 < p["random"]["perplexity"] < 80000
    # measured: 50,171 -> 860 (100 steps of 16 sentences, ~12 CPU-s); the bound: below 1/20 of random
    assert p["trained"]["perplexity"] < p["random"]["perplexity"] / 20
    assert facts["trace"][-1]["train_loss"] < facts["trace"][0]["train_loss"] - 1.0
    assert facts["corpus"]["parts"][0]["dropped_overlap"] >= 3   # the victims and the dev split held out


def test_lamp_prior_prefers_the_real_word_order(tiny_lm):
    """LAMP's discrete step scores reorderings with ``lm_loss`` under the prior: held-out
    sentences score better in their real order than shuffled."""
    from gibench.attacks.lamp import lm_loss
    from gibench.datasets.text import load_tokenizer

    model, _ = tiny_lm
    tok = load_tokenizer("gpt2", "bundled", RES)
    texts = DATASETS.get("cola").load("bundled", "in_domain_dev", RES).texts[200:260]
    rng = np.random.default_rng(0)
    wins, diffs = 0, []
    for t in texts:
        ids = tok(t)["input_ids"]
        if len(ids) < 5:
            continue
        perm = rng.permutation(len(ids))
        if (perm == np.arange(len(ids))).all():
            continue
        both = torch.tensor([ids, [ids[i] for i in perm]])
        real, shuf = lm_loss(model, both, [len(ids)] * 2).tolist()
        wins += real < shuf
        diffs.append(shuf - real)
    # measured with this model: 48 of 57 sentences, mean difference 0.71 nats per token
    assert len(diffs) >= 40
    assert np.mean(diffs) > 0.3 and wins >= 0.7 * len(diffs)


def test_training_is_deterministic():
    cfg = PT.lm_config("gpt2", "demo", {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 16})
    seqs = [[int(x) for x in np.random.default_rng(i).integers(0, 50257, 7)] for i in range(20)]
    states = []
    for _ in range(2):
        m = PT.build_lm(cfg, 11)
        trace = PT.train_lm(m, seqs, steps=4, batch_size=8, lr=1e-2, warmup=1, min_lr_ratio=0.1,
                                   weight_decay=0.01, seed=3, pad=50256, log_every=2)
        states.append((PT.lm_state(m), trace))
    assert states[0][1] == states[1][1]
    assert all(torch.equal(states[0][0][k], states[1][0][k]) for k in states[0][0])
    assert PT.lr_at(0, 100, 1.0, 10, 0.1) == pytest.approx(0.1) and PT.lr_at(99, 100, 1.0, 10, 0.1) > 0.1


def test_next_token_nll_matches_the_hf_loss():
    """The head evaluated at the predicted positions only equals GPT2LMHeadModel's own loss."""
    cfg = PT.lm_config("gpt2", "demo", {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 16})
    m = PT.build_lm(cfg, 1).eval()
    ids = torch.tensor([[5, 9, 200, 7, 11]])
    with torch.no_grad():
        nll, n = PT.next_token_nll(m, ids, torch.ones_like(ids))
        ref = m(input_ids=ids, labels=ids).loss
    assert n == 4
    assert float(nll / n) == pytest.approx(float(ref), rel=1e-5)


# ------------------------------------------------------------------ artifact, trunk, prior loading

def _save_tiny(tmp_path, model, facts) -> str:
    path = str(tmp_path / "lm.safetensors")
    io.save_tensors(path, PT.lm_state(model), {"lm": io.plain(facts, nan="keep")})
    return path


def test_trunk_in_the_classifier_and_lm_round_trip(tiny_lm, tmp_path):
    from gibench.models import build_model
    from gibench.attacks.text import load_prior

    model, facts = tiny_lm
    path = _save_tiny(tmp_path, model, facts)
    over = TINY["config_overrides"]
    net = build_model("gpt2", 2, None, 7, size="demo", config_overrides=over)
    head = net.score.weight.detach().clone()
    info = PT.load_trunk(net, path)
    assert info["tensors_loaded"] == len([k for k in dict(net.named_parameters()) if k.startswith("transformer.")])
    for k, v in PT.lm_state(model).items():
        if k in dict(net.named_parameters()):
            assert torch.equal(dict(net.named_parameters())[k].detach(), v), k
    assert torch.equal(net.score.weight, head)                    # the seeded head is kept
    prior = load_prior(path, "unused", torch.device("cpu"))       # prior: pretrained_local resolves to this file
    ids = torch.tensor([[464, 3797, 3332, 319, 262]])
    assert torch.allclose(prior(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)
    wrong = build_model("gpt2", 2, None, 7, size="demo")          # 3 x 128: not the LM's architecture
    with pytest.raises(io.ArtifactError, match="does not match"):
        PT.load_trunk(wrong, path)


# ------------------------------------------------------------------ BERT: masked LM

TINY_BERT = {**TINY, "config_overrides": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                          "intermediate_size": 64, "max_position_embeddings": 64},
             "steps": 100, "batch_size": 16}


def test_mlm_choice_follows_berts_recipe():
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[101] + list(range(2000, 2040)) + [102, 0, 0], [101, 2000, 102] + [0] * 41])
    mask = (ids != 0).long()
    out, chosen = PT.mlm_choice(ids, mask, g)
    assert not chosen[ids == 101].any() and not chosen[ids == 102].any() and not chosen[mask == 0].any()
    assert chosen[1].sum() == 1 and chosen[1, 1]                   # a one-word sentence still has a target
    big = torch.randint(1000, 30000, (64, 100))
    out, ch = PT.mlm_choice(big, torch.ones_like(big), torch.Generator().manual_seed(1))
    rate = float(ch.float().mean())
    masked = float((out[ch] == 103).float().mean())
    kept = float((out[ch] == big[ch]).float().mean())
    assert abs(rate - 0.15) < 0.01 and abs(masked - 0.8) < 0.03 and 0.08 < kept < 0.13
    assert torch.equal(out[~ch], big[~ch])
    again, ch2 = PT.mlm_choice(big, torch.ones_like(big), torch.Generator().manual_seed(1))
    assert torch.equal(again, out) and torch.equal(ch2, ch)


def test_bert_masked_lm_pretraining_and_trunk(tmp_path):
    from gibench.models import build_model
    from gibench.pipeline.jobs_lm import pretrain

    torch.set_num_threads(1)
    model, facts, _ = pretrain("bert", PT.settings(TINY_BERT), 5, RES, None, [])
    p = facts["perplexity"]["heldout"]
    # masked-token perplexity of a random head: near uniform over 30,522 tokens; measured after training: see below
    assert 15000 < p["random"]["perplexity"] < 60000
    assert p["trained"]["perplexity"] < p["random"]["perplexity"] / 20
    path = _save_tiny(tmp_path, model, facts)
    net = build_model("bert", 2, None, 7, size="demo", config_overrides=TINY_BERT["config_overrides"])
    fresh = {k: v.detach().clone() for k, v in net.named_parameters()}
    info = PT.load_trunk(net, path)
    own = dict(net.named_parameters())
    assert sorted(info["kept_initialisation"]) == sorted(k for k in own if k.startswith(("classifier.", "bert.pooler.")))
    for k in own:
        ref = PT.lm_state(model).get(k, fresh[k])
        assert torch.equal(own[k].detach(), ref), k
    with pytest.raises(io.ArtifactError, match="causal"):
        PT.load_lm(path)


# ------------------------------------------------------------------ config checks

def _cfg(models: dict, prior: str = "none", cases=None) -> dict:
    return {"datasets": {"cola": {"source": "bundled", "split": "in_domain_dev", "victims": 1}},
            "resources_dir": RES,
            "studies": {"selective_encryption": {
                "cases": cases or [{"dataset": "cola", "model": "gpt2"}], "victims": 1, "models": models,
                "significance": {"metrics": ["grad"], "ratios": [0.0, 1.0]},
                "attacks": {"lamp": {"params": {"prior": prior}}}}}}


def test_config_checks_name_the_key():
    from gibench import config as gconfig

    ok = gconfig.validate(_cfg({"gpt2": {"size": "demo", "weights": "pretrained_local"}}, "pretrained_local"))
    assert ok["lm_pretrain"]["gpt2"]["steps"] == PT.defaults()["steps"]
    gconfig.validate(_cfg({"bert": {"weights": "pretrained_local"}}, cases=[{"dataset": "cola", "model": "bert"}]))
    bad = [
        (_cfg({"gpt2": {"weights": "pretrained_local", "size": "base"}}), "models.gpt2.size"),
        (_cfg({"gpt2": {"weights": "pretrained_local", "pretrained": "gpt2"}}), "models.gpt2.weights"),
        (_cfg({"bert": {"size": "demo"}}, "pretrained_local", cases=[{"dataset": "cola", "model": "bert"}]),
         "attacks.lamp.params.prior"),
        (_cfg({"gpt2": {"weights": "pretrained"}}), "models.gpt2.weights"),
    ]
    for cfg, key in bad:
        with pytest.raises(gconfig.ConfigError, match=key.replace(".", r"\.")):
            gconfig.validate(copy.deepcopy(cfg))
    c = _cfg({"gpt2": {"size": "demo"}})
    c["lm_pretrain"] = {"gpt2": {"corpora": [{"dataset": "cola", "split": "validation"}]}}
    with pytest.raises(gconfig.ConfigError, match=r"lm_pretrain\.gpt2\.corpora\[0\]\.split"):
        gconfig.validate(c)


def test_targets_follow_the_selection():
    from gibench import config as gconfig
    from gibench.pipeline import targets as T

    local = gconfig.validate(_cfg({"gpt2": {"size": "demo", "weights": "pretrained_local"}}, "pretrained_local"))
    rnd = gconfig.validate(_cfg({"gpt2": {"size": "demo"}}))
    assert T.model_inputs(local, "selective_encryption", "gpt2") == ["results/lm/gpt2/lm.safetensors"]
    assert T.model_inputs(rnd, "selective_encryption", "gpt2") == []
    assert "results/tables/selective_encryption/lm_pretrain.md" in T.all_targets(local)
    assert not [t for t in T.all_targets(rnd) if "lm_pretrain" in t or "/lm/" in t]


# ------------------------------------------------------------------ through the real Snakefile

MICRO_LOCAL = {
    "seed": 4,
    "lm_pretrain": {"gpt2": {"config_overrides": {"n_embd": 32, "n_layer": 3, "n_head": 2, "n_positions": 64},
                             "corpora": [{"dataset": "cola", "split": "train"}],
                             "heldout": [{"dataset": "cola", "split": "in_domain_dev"}], "heldout_sentences": 20,
                             "steps": 3, "batch_size": 8, "warmup": 1, "log_every": 1}},
    "datasets": {"cola": {"source": "bundled", "split": "in_domain_dev", "victims": 1, "max_tokens": 9}},
    "studies": {"selective_encryption": {
        "cases": [{"dataset": "cola", "model": "gpt2"}],
        "victims": 1,
        "models": {"gpt2": {"weights": "pretrained_local", "cost_metrics": ["prodsig"]}},
        "significance": {"metrics": ["grad"], "ratios": [0.0, 0.3, 1.0], "cost_metrics": ["prodsig"]},
        "attacks": {"lamp": {"ratios": [0.0, 1.0],
                             "params": {"n_steps": 12, "init_candidates": 2, "init_permutations": 1, "swap_every": 5,
                                        "swap_candidates": 3, "prior": "pretrained_local"}}},
        "evaluation": {"best_of_restarts": "oracle"},
    }},
}


@pytest.mark.slow
def test_local_model_micro_run(tmp_path):
    import hashlib

    from workflow_helpers import run_snakemake, write_config

    cfg = write_config(tmp_path, MICRO_LOCAL)
    run_snakemake(tmp_path, cfg, timeout=3000)
    res = tmp_path / "results"
    lm_file = res / "lm" / "gpt2" / "lm.safetensors"
    lm_state, rec = io.load_tensors(lm_file)
    lm = rec["lm"]
    assert lm["heldout"]["victim_pools"]["cola"]["victims"] == 1 and lm["corpus"]["parts"][0]["dropped_overlap"] > 0
    assert lm["perplexity"]["heldout"]["trained"]["perplexity"] < lm["perplexity"]["heldout"]["random"]["perplexity"]
    # the attacked model: the LM's trunk, a seeded head of its own
    init, mrec = io.load_tensors(res / "models" / "selective_encryption" / "cola" / "gpt2" / "init.safetensors")
    assert all(torch.equal(init[k], v) for k, v in lm_state.items() if k in init)
    assert "score.weight" in init and "score.weight" not in lm_state
    assert mrec["model"]["weights"]["source"] == "pretrained_local"
    # LAMP read the LM as its prior
    attacks = list((res / "attacks").rglob("*.safetensors"))
    lamp = [p for p in attacks if io.read_record(p)["attack"]["status"] == "ok"]
    assert lamp and all("results/lm/gpt2/lm.safetensors" in io.read_record(p)["inputs"] for p in lamp)
    assert all(io.read_record(p)["attack"]["prior"].endswith("lm.safetensors") for p in lamp)
    tables = res / "tables" / "selective_encryption"
    md = (tables / "lm_pretrain.md").read_text()
    assert "Held-out ppl (trained)" in md and "not the pretrained GPT-2/BERT of the paper" in md
    t4 = (tables / "table4.md").read_text()
    assert "trunk of the local gpt2 language model" in t4 and "LAMP prior on GPT-2: the local gpt2" in t4
    assert "held-out perplexity" in t4
    # re-running the job gives the same bytes
    digest = hashlib.sha256(lm_file.read_bytes()).hexdigest()
    lm_file.unlink()
    run_snakemake(tmp_path, cfg, "results/lm/gpt2/lm.safetensors", timeout=1200)
    assert hashlib.sha256(lm_file.read_bytes()).hexdigest() == digest
