"""Text-metric and table parity with the selective-encryption paper's own code paths.

* ROUGE as LAMP's official code scores it (eth-sri/lamp ``remove_padding`` + ``decode`` under
  transformers 4.14.1 / tokenizers 0.10.3 / rouge-score 0.0.4): the expected strings are
  derived by hand from those rules, and the ROUGE values were produced by rouge-score 0.0.4
  itself (the version LAMP pins; its wheel, run once in a scratch environment on the literal
  strings below, outputs recorded here) and checked by hand (unigram / bigram counts in the
  comments);
* the tables name the ROUGE convention and the estimator of every Sens mask from the config;
* Table 6 shows a Sens job computed by another estimator in that estimator's column;
* Table 3 says when a OneFifth-i chunk is empty on the model attacked.
"""
from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers")

from gibench.datasets.text import load_tokenizer  # noqa: E402
from gibench.metrics import text as MX  # noqa: E402
from gibench.tables.selective_encryption import table3, table6, text_notes  # noqa: E402


@pytest.fixture(scope="module")
def bert(resources):
    return load_tokenizer("bert", "bundled", resources)


@pytest.fixture(scope="module")
def gpt2(resources):
    return load_tokenizer("gpt2", "bundled", resources)


# ------------------------------------------------------------------ ROUGE: LAMP's scoring

# (reference, prediction) -> (rouge1 P, R, F; rouge2 F) printed by rouge-score 0.0.4's RougeScorer
# (['rouge1', 'rouge2'], use_stemmer=False).score(reference, prediction)
ROUGE_004 = {
    # cls the boat sank quickly sep / cls zebra violin orbit piano sep: 2 of 6 unigrams, no bigram
    ("[CLS] the boat sank quickly [SEP]", "[CLS] zebra violin orbit piano [SEP]"): (1 / 3, 1 / 3, 1 / 3, 0.0),
    # 9 reference unigrams (cls it doesn t work don t go sep), 6 predicted, 4 shared; bigram (cls it) 1 of 8 / 5
    ("[CLS] it doesn't work, don't go. [SEP]", "[CLS] it does not work [SEP]"): (2 / 3, 4 / 9, 0.533333, 0.153846),
    # it does n t work / it doesn t work: 3 shared unigrams of 5 / 4
    ("it does n't work", "it doesn't work"): (0.75, 0.6, 0.666667, 0.285714),
    ("the boat sank quickly", "zebra violin orbit piano"): (0.0, 0.0, 0.0, 0.0),
}


def test_rouge_on_literal_strings_equals_rouge_score_004():
    for (ref, pred), (p, r, f, f2) in ROUGE_004.items():
        got = MX.rouge_scores([pred], [ref], types=("rouge1", "rouge2"))
        assert got["rouge1"] == pytest.approx(f, abs=1e-6) and got["rouge2"] == pytest.approx(f2, abs=1e-6)
        assert f == pytest.approx(2 * p * r / (p + r) if p + r else 0.0, abs=1e-6)


def test_lamp_text_bert_follows_lamps_decoding(bert):
    ids = bert("it does n't work, do not go.")["input_ids"]                    # [CLS] ... [SEP]
    assert bert.convert_ids_to_tokens(ids)[3:6] == ["n", "'", "t"]
    padded = ids + [0, 0, 0]                                                    # [PAD]s after [SEP]
    # joined "[CLS] it does n ' t work , do not go . [SEP]", then WordPiece's clean-up (" ," -> ",",
    # " ' " -> "'", " n't" -> "n't", " do not" -> " don't", " ." -> ".") and transformers' clean-up
    assert MX.lamp_text(padded, bert) == "[CLS] it doesn't work, don't go. [SEP]"
    # LAMP cuts at the LAST [SEP]: an earlier [SEP] (a reconstruction may contain one) stays as a word
    inner = [101, 2009, 102, 2147, 102, 0]
    assert MX.lamp_text(inner, bert) == "[CLS] it [SEP] work [SEP]"
    # gibench's convention drops every special token
    assert MX.decode(padded, bert, strip_special=True).startswith("it does n")


def test_lamp_text_gpt2_strips_trailing_pads_only(gpt2):
    eos = gpt2.eos_token_id
    assert eos == 50256
    a, b = gpt2("it does")["input_ids"], gpt2(" n't work")["input_ids"]
    ids = a + [eos] + b + [eos, eos]
    # trailing pads (pad = eos) removed, the inner <|endoftext|> kept, then " n't" -> "n't"
    assert MX.lamp_text(ids, gpt2) == "it does<|endoftext|>n't work"
    assert MX.lamp_text(gpt2("it does n't work")["input_ids"], gpt2) == "it doesn't work"
    assert MX.lamp_text([eos, eos], gpt2) == "<|endoftext|><|endoftext|>"     # LAMP keeps an all-pad row


def test_text_metrics_conventions_floor_and_specials_never_in_embed_or_accuracy(bert):
    ref = bert("the boat sank quickly")["input_ids"]
    garbage = bert("zebra violin orbit piano")["input_ids"]
    assert len(ref) == len(garbage) == 6                                        # 4 words + [CLS], [SEP]
    E = bert_embedding_stub(bert)
    lamp = MX.text_metrics([garbage + [0]], [ref], bert, E, strip_special=False)
    ours = MX.text_metrics([garbage + [0]], [ref], bert, E, strip_special=True)
    # LAMP's floor 2 / (n + 2) with n = 4 words (rouge-score 0.0.4 on these strings: 1/3)
    assert lamp["rouge1"] == pytest.approx(1 / 3) and ours["rouge1"] == 0.0
    assert lamp["predictions"] == ["[CLS] zebra violin orbit piano [SEP]"]
    assert lamp["references"] == ["[CLS] the boat sank quickly [SEP]"]
    assert lamp["conventions"]["rouge"] == "lamp" and ours["conventions"]["rouge"] == "stripped"
    # both conventions are reported whichever is configured, each equal to the configured one's value
    for m in (lamp, ours):
        assert m["rouge_by_convention"]["lamp"]["rouge1"] == pytest.approx(1 / 3)
        assert m["rouge_by_convention"]["stripped"]["rouge1"] == 0.0
    # pinned [CLS]/[SEP] earn nothing in token accuracy or EmbedDist under either convention
    assert lamp["token_accuracy"] == ours["token_accuracy"] == 0.0
    assert lamp["embed_dist"] == pytest.approx(ours["embed_dist"]) and ours["embed_dist"] > 0


def bert_embedding_stub(tok):
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.randn(len(tok.get_vocab()), 4, generator=g)


# ------------------------------------------------------------------ captions from the config

def _text_cfg(**models):
    return {"cases": [{"dataset": "cola", "model": "gpt2"}], "victims": 1,
            "models": {"gpt2": {"size": "demo", **models}},
            "significance": {"metrics": ["grad", "sens"], "ratios": [0.0, 0.3, 1.0],
                             "cost_metrics": ["sens", "sens_discrete", "sens_probe", "prodsig"]},
            "attacks": {"lamp": {"metrics": ["grad", "sens", "onefifth_1", "onefifth_3"]}},
            "evaluation": {"text": {"strip_special": True}}}


def test_captions_name_the_sens_estimator_and_the_rouge_convention():
    notes = " ".join(text_notes(_text_cfg(), {"gpt2"}))
    assert "Sens on GPT-2: every Sens mask was made by Sens (Discrete)" in notes
    assert MX.ROUGE_CAPTION in notes and "LAMP's official code" not in notes
    cfg = _text_cfg(sens_estimator="sens_probe")
    cfg["evaluation"]["text"]["strip_special"] = False
    notes = " ".join(text_notes(cfg, {"gpt2"}))
    assert "made by Sens (Probe)" in notes and "not the paper's Sens (Discrete)" in notes
    assert MX.ROUGE_CAPTION_LAMP in notes
    assert "Sens on" not in " ".join(text_notes(_text_cfg(sens_estimator="sens"), {"gpt2"}))


def test_table6_puts_a_sens_job_in_its_estimators_column(tmp_path):
    rows = [{"model": "gpt2", "dataset": "cola", "slot": f"s00{i}", "metric": m, "seconds": s, "peak_bytes": 2 ** 20,
             "num_tensors": 41, "num_parameters": 7060992, "device": "cpu", "estimator": est, "threads": 2}
            for i, (m, est, s) in enumerate([("sens", "sens_discrete", 30.0), ("sens", "sens_discrete", 32.0),
                                             ("prodsig", "prodsig", 0.01)])]
    doc = table6(rows, {"studies": {"selective_encryption": _text_cfg()}})
    doc.write(tmp_path)
    md = (tmp_path / "table6.md").read_text()
    header = [h.strip() for h in md.splitlines()[2].strip("|").split("|")]
    line = [c.strip() for c in next(x for x in md.splitlines() if x.startswith("| GPT-2")).strip("|").split("|")]
    row = dict(zip(header, line))
    assert row["Sens (s)"] == "-" and row["Sens (Discrete) (s)"].startswith("31.0")   # mean of 30, 32
    assert "the Sens (Discrete) time is that of the job that made GPT-2's Sens masks" in md


def test_table3_says_which_onefifth_is_empty():
    base = {"dataset": "cola", "model": "gpt2", "slot": "s000", "attack": "lamp", "restart": 0, "status": "ok",
            "attacker_loss": 0.1, "rouge1": 0.5, "rouge2": 0.2, "rougeL": 0.5, "embed_dist": 3.0,
            "token_accuracy": 0.1, "ratio": 0.001}
    rows = [{**base, "metric": "onefifth_1", "encrypted_fraction": 0.0702},
            {**base, "metric": "onefifth_3", "encrypted_fraction": 0.0}]
    doc = table3(rows, {"studies": {"selective_encryption": _text_cfg()}})
    text = " ".join(doc.notes)
    assert "OneFifth-3 select nothing on this GPT-2" in text and "OneFifth-1 select" not in text
    assert "chunk of 32 consecutive parameter tensors" in doc.title
