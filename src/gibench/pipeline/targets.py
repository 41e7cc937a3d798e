"""Which artifacts a config asks for: the target list of `rule all`, study by study."""
from __future__ import annotations

from pathlib import Path

from ..config import fmt_ratio, fmt_slot
from ..datasets import DATASETS
from . import paths as P

BUNDLED_FILES = {
    "cifar100": ["test_first916", "meta", "PROVENANCE.jsonl"],
    "cifar10": ["test_batch_first1017", "batches.meta", "PROVENANCE.jsonl"],
    "mnist": ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "PROVENANCE.jsonl"],
    "tiny_imagenet": ["val_sample_labels.tsv", "wnids.txt", "words_200.txt", "PROVENANCE.jsonl"],
}


def dataset_inputs(config: dict, dataset: str) -> list[str]:
    spec = config["datasets"][dataset]
    if spec["source"] == "hub":
        return [f"{config['hub_dir']}/{dataset}/{spec['split']}/dataset_info.json"]
    root = Path(config["resources_dir"]) / "data" / dataset
    return [str(root / f) for f in BUNDLED_FILES.get(dataset, [])]


def se_cases(config: dict):
    """(study, dataset, model, slot) for the selective-encryption study."""
    se = config["studies"].get("selective_encryption")
    if not se:
        return
    for case in se["cases"]:
        for s in range(se["victims"]):
            yield "selective_encryption", case["dataset"], case["model"], fmt_slot(s)


def se_gradient_targets(config: dict) -> list[str]:
    out = []
    for study, dataset, model, slot in se_cases(config):
        wc = dict(study=study, dataset=dataset, model=model, slot=slot)
        out += [P.fmt(P.GRADIENT, **wc), P.fmt(P.KNOWLEDGE, **wc)]
    return out


def all_targets(config: dict) -> list[str]:
    targets: list[str] = []
    for d in config["datasets"]:
        targets.append(P.fmt(P.VICTIMS, dataset=d))
    targets += se_gradient_targets(config)
    return sorted(dict.fromkeys(targets))
