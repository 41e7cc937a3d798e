"""The source files a dataset's victims are drawn from (rule ``data``'s inputs): the bundled
slices under ``resources/`` or the downloaded hub split.  A leaf: the target lists and the
language-model rule (:mod:`.jobs_lm`, its corpora) read it."""
from __future__ import annotations

from pathlib import Path

BUNDLED_FILES = {
    "cifar100": ["test_first916", "meta", "PROVENANCE.jsonl"],
    "cifar10": ["test_batch_first1017", "batches.meta", "PROVENANCE.jsonl"],
    "mnist": ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "PROVENANCE.jsonl"],
    "tiny_imagenet": ["val_sample_labels.tsv", "wnids.txt", "words_200.txt", "PROVENANCE.jsonl"],
}


# text datasets live under resources/text/<name> (gibench.datasets.text)
BUNDLED_TEXT_FILES = {
    "cola": ["in_domain_dev.tsv", "in_domain_train.tsv.xz", "PROVENANCE.jsonl"],
    "sst2": ["dev.tsv", "train.tsv.xz", "PROVENANCE.jsonl"],
    "rotten_tomatoes": ["rt-polarity.pos.first500", "rt-polarity.neg.first500", "rt-polarity.pos.xz",
                        "rt-polarity.neg.xz", "PROVENANCE.jsonl"],
}


def dataset_inputs(config: dict, dataset: str) -> list[str]:
    spec = config["datasets"][dataset]
    if spec["source"] == "hub":
        return [f"{config['hub_dir']}/{dataset}/{spec['split']}/dataset_info.json"]
    if dataset in BUNDLED_TEXT_FILES:
        root = Path(config["resources_dir"]) / "text" / dataset
        return [str(root / f) for f in BUNDLED_TEXT_FILES[dataset]]
    root = Path(config["resources_dir"]) / "data" / dataset
    return [str(root / f) for f in BUNDLED_FILES.get(dataset, [])]
