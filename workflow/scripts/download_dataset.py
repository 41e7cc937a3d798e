# Thin Snakemake script: fetch a hub dataset split to disk (runs on the login node).
from gibench.datasets import DATASETS
from gibench.datasets.hub import download_split
from gibench.datasets.text import download_text_split, is_text_dataset
from gibench.pipeline.runner import run_job


def _job(smk, device):
    ds = DATASETS.get(smk.wildcards.dataset)
    fetch = download_text_split if is_text_dataset(ds) else download_split
    out = fetch(ds, smk.wildcards.split, smk.config["hub_dir"])
    return {"path": str(out)}


run_job(snakemake, _job)  # noqa: F821
