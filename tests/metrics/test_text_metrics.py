"""Text metrics: ROUGE (hand-computed values, special tokens), the embedding Wasserstein
distance (0 iff identical clouds, against SciPy's 1-D and n-D implementations), token
accuracy and the Hungarian pairing of a batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from gibench.datasets.text import load_tokenizer  # noqa: E402
from gibench.metrics import text as MX  # noqa: E402


@pytest.fixture(scope="module")
def bert(resources):
    return load_tokenizer("bert", "bundled", resources)


@pytest.fixture(scope="module")
def gpt2(resources):
    return load_tokenizer("gpt2", "bundled", resources)


def test_rouge_hand_computed():
    r = MX.rouge_scores(["the cat"], ["the cat sat"])
    # ROUGE-1: P = 2/2, R = 2/3 -> F = 0.8; ROUGE-2: P = 1/1, R = 1/2 -> F = 2/3
    assert r["rouge1"] == pytest.approx(0.8) and r["rouge2"] == pytest.approx(2 / 3)
    assert MX.rouge_scores(["Sat, the cat!"], ["the cat sat"])["rouge1"] == pytest.approx(1.0)  # bag of words
    assert MX.rouge_scores(["dog"], ["the cat sat"])["rouge1"] == 0.0


def test_special_tokens_are_stripped_so_garbage_scores_zero(bert):
    ref = bert("the boat sank quickly near the harbour")["input_ids"]          # [CLS] ... [SEP]
    garbage = [ref[0]] + bert("zebra violin orbit")["input_ids"][1:-1] + [102]
    garbage += [0] * (len(ref) - len(garbage))                                  # [PAD]s
    stripped = MX.text_metrics([garbage], [ref], bert)
    assert stripped["rouge1"] == 0.0 and stripped["predictions"] == ["zebra violin orbit"]
    assert "[CLS]" not in stripped["references"][0] and "[SEP]" not in stripped["references"][0]
    kept = MX.text_metrics([garbage], [ref], bert, strip_special=False)
    # LAMP's convention: "cls" and "sep" match as words -> a floor of about 2 / (n + 2) on the unigrams
    import re

    words = lambda t: re.findall(r"[a-z0-9]+", t.lower())  # noqa: E731  (rouge_score's tokenisation)
    ref_words, pred_words = words(kept["references"][0]), words(kept["predictions"][0])
    assert ref_words[0] == "cls" and ref_words[-1] == "sep" and len(ref_words) == 7 + 2
    p, rcl = 2 / len(pred_words), 2 / len(ref_words)
    assert kept["rouge1"] == pytest.approx(2 * p * rcl / (p + rcl))
    assert kept["rouge1"] > 0.1


def test_gpt2_eos_is_special(gpt2):
    ids = gpt2("A short sentence.")["input_ids"]
    m = MX.text_metrics([ids + [50256, 50256]], [ids], gpt2)
    assert m["rouge1"] == 1.0 and m["rouge2"] == 1.0 and m["token_accuracy"] == 1.0


def test_wasserstein_zero_iff_identical_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    E = torch.randn(50, 8, generator=g)
    assert MX.embedding_wasserstein([3, 7, 9], [3, 7, 9], E) == pytest.approx(0.0, abs=1e-12)
    assert MX.embedding_wasserstein([9, 3, 7], [3, 7, 9], E) == pytest.approx(0.0, abs=1e-12)   # order-free
    assert MX.embedding_wasserstein([3, 7, 10], [3, 7, 9], E) > 0
    assert MX.embedding_wasserstein([3, 7], [3, 7, 9], E) > 0
    # one token replaced: W1 of uniform clouds = ||e_10 - e_9|| / 3 (move 1/3 of the mass)
    d = float((E[10].double() - E[9].double()).norm())
    assert MX.embedding_wasserstein([3, 7, 10], [3, 7, 9], E) == pytest.approx(d / 3, rel=1e-9)
    assert MX.embedding_wasserstein([3, 7, 10], [3, 7, 9], E, reduction="sum") == pytest.approx(d, rel=1e-9)
    # special tokens dropped before the distance
    assert MX.embedding_wasserstein([0, 3, 7], [3, 7, 0, 0], E, drop_ids={0}) == pytest.approx(0.0, abs=1e-12)


def test_wasserstein_matches_scipy():
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 1)), rng.normal(size=(7, 1))
    assert MX.wasserstein_point_clouds(a, b) == pytest.approx(wasserstein_distance(a[:, 0], b[:, 0]), rel=1e-7)
    try:
        from scipy.stats import wasserstein_distance_nd
    except ImportError:  # SciPy < 1.13
        pytest.skip("scipy.stats.wasserstein_distance_nd not available")
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(6, 3))
    assert MX.wasserstein_point_clouds(a, b) == pytest.approx(wasserstein_distance_nd(a, b), rel=1e-6)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    assert MX.wasserstein_point_clouds(a, b) == pytest.approx(wasserstein_distance_nd(a, b), rel=1e-6)


def test_token_accuracy_and_hungarian_pairing(gpt2):
    a = gpt2("The weights made the rope stretch.")["input_ids"]
    b = gpt2("John was lots more obnoxious than Fred.")["input_ids"]
    assert MX.token_accuracy(a, a) == 1.0
    assert MX.token_accuracy(a[:3] + [0] * (len(a) - 3), a) == pytest.approx(3 / len(a))
    m = MX.text_metrics([b, a], [a, b], gpt2)          # predictions in the other order
    assert m["assignment"] == [1, 0] and m["rouge1"] == 1.0 and m["token_accuracy"] == 1.0
    assert m["embed_dist"] is None                      # no embedding table given
    o = MX.text_metrics([b, a], [a, b], gpt2, match="order")
    assert o["rouge1"] < 0.5
    with pytest.raises(ValueError):
        MX.rouge_scores(["x"], ["x", "y"])
