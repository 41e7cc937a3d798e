"""Text datasets and tokenizers: bundled readers (row counts of the official files), canonical
token ids of the released tokenizers, LAMP's victim sampler, the hub path on local files and
the text victims table of the pipeline."""
from __future__ import annotations

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from gibench import io  # noqa: E402
from gibench.datasets import DATASETS, DatasetUnavailable  # noqa: E402
from gibench.datasets import text as DT  # noqa: E402
from gibench.datasets.hub import fetch_to_disk  # noqa: E402


@pytest.fixture(scope="module")
def toks(resources):
    return {f: DT.load_tokenizer(f, "bundled", resources) for f in ("gpt2", "bert")}


def test_bundled_tokenizers_give_the_canonical_ids(toks):
    # ids of the released GPT-2 BPE and bert-base-uncased vocabularies
    assert toks["gpt2"]("Hello world")["input_ids"] == [15496, 995]
    assert toks["gpt2"].eos_token_id == 50256 and toks["gpt2"].pad_token_id == 50256
    assert len(toks["gpt2"]) == 50257
    assert toks["bert"]("Hello World")["input_ids"] == [101, 7592, 2088, 102]    # uncased
    assert toks["bert"].convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 100, 101, 102, 103]
    assert len(toks["bert"]) == 30522
    # round trip of a real sentence (GPT-2 BPE is lossless)
    s = "The sailors rode the breeze clear of the rocks."
    assert toks["gpt2"].decode(toks["gpt2"](s)["input_ids"]) == s


def test_tokenizer_errors(resources, tmp_path):
    with pytest.raises(ValueError, match="unknown text model family"):
        DT.load_tokenizer("t5", "bundled", resources)
    with pytest.raises(DatasetUnavailable, match="PROVENANCE"):
        DT.load_tokenizer("gpt2", "bundled", tmp_path)


@pytest.mark.parametrize("name,split,n", [("cola", "in_domain_dev", 527), ("sst2", "validation", 872),
                                          ("rotten_tomatoes", "first500", 1000)])
def test_bundled_readers_row_counts_and_labels(resources, name, split, n):
    ds = DATASETS.get(name)
    assert DT.is_text_dataset(ds) and ds.modality == "text" and ds.num_classes == 2
    sp = ds.load("bundled", split, resources)
    assert len(sp) == n and set(np.unique(sp.labels)) == {0, 1}
    assert all(isinstance(t, str) and t for t in sp.texts)
    with pytest.raises(DatasetUnavailable, match="bundled slice"):   # train is bundled too (tests/models/test_lm_pretrain.py)
        ds.load("bundled", "no_such_split", resources)


def test_cola_first_row_is_the_official_one(resources):
    sp = DATASETS.get("cola").load("bundled", "in_domain_dev", resources)
    # raw/in_domain_dev.tsv, line 1 (CoLA 1.1): gj04 1 The sailors rode the breeze clear of the rocks.
    assert sp.texts[0] == "The sailors rode the breeze clear of the rocks." and sp.labels[0] == 1


def test_lamp_sampler_first_index_on_cola_train_length():
    # LAMP's data_utils asserts that the first shuffled CoLA train index (8,551 rows, seed 101) is 2310
    split = DT.TextSplit(["x"] * 8551, np.zeros(8551), np.arange(8551), ["a", "b"], "synthetic")
    assert int(DT.choose_text_victims(split, 1, convention="lamp")[0]) == 2310


def test_victims_prefix_property_and_token_bounds(resources, toks):
    sp = DATASETS.get("cola").load("bundled", "in_domain_dev", resources)
    a = DT.choose_text_victims(sp, 3, seed=4)
    b = DT.choose_text_victims(sp, 6, seed=4)
    assert list(b[:3]) == list(a)
    both = [toks["gpt2"], toks["bert"]]
    c = DT.choose_text_victims(sp, 5, seed=4, tokenizer=both, max_tokens=9)
    for i in c:
        assert all(len(t(sp.texts[i])["input_ids"]) <= 9 for t in both)
    with pytest.raises(ValueError, match="tokens"):
        DT.choose_text_victims(sp, 5, seed=4, tokenizer=both, max_tokens=2)
    with pytest.raises(ValueError, match="convention"):
        DT.choose_text_victims(sp, 1, seed=0, convention="random")


def test_hub_path_on_local_files(tmp_path):
    """fetch_to_disk with a local data directory (the real HF `datasets` code path), then
    the data rule's reader of the saved copy."""
    datasets = pytest.importorskip("datasets")
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.csv").write_text("sentence,label\nA first sentence.,1\nAnother one.,0\n")
    ds = DATASETS.get("cola")
    out = fetch_to_disk(ds, "train", tmp_path / "hub", hub_id=str(src))
    assert (out / "dataset_info.json").exists()
    sp = DT.load_text_hub_split(ds, "train", tmp_path / "hub")
    assert sp.texts == ["A first sentence.", "Another one."] and sp.labels.tolist() == [1, 0]
    assert isinstance(datasets.load_from_disk(str(out)), datasets.Dataset)


def test_missing_hub_copy_names_the_download_rule(tmp_path):
    with pytest.raises(DatasetUnavailable, match="download rule"):
        DATASETS.get("sst2").load("hub", "train", "resources", tmp_path)


def test_pipeline_text_victims_table(resources, toks, tmp_path):
    from gibench.pipeline.jobs_text import make_text_victims, read_text_victims

    cfg = {"seed": 0, "resources_dir": str(resources), "hub_dir": str(tmp_path),
           "datasets": {"sst2": {"source": "bundled", "split": "validation", "victims": 3, "max_tokens": 14,
                                 "sampler": "gibench"}}}
    table, info = make_text_victims(cfg, "sst2")
    assert table.num_rows == 3 and info["sampler"] == "gibench"
    io.save_table(tmp_path / "v.parquet", table, {"rule": "test"})
    for fam in ("gpt2", "bert"):
        v = read_text_victims(tmp_path / "v.parquet", [0, 2], fam)
        assert [len(x) for x in v.ids] == [len(toks[fam](t)["input_ids"]) for t in v.texts]
        assert v.ids == [toks[fam](t)["input_ids"] for t in v.texts]
        assert max(len(x) for x in v.ids) <= 14
    again, _ = make_text_victims(cfg, "sst2")
    assert again.equals(table)  # seeded: the same victims every run
