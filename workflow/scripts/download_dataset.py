# Thin Snakemake script: fetch a hub dataset split to disk (runs on the login node).
from gibench.datasets import DATASETS
from gibench.datasets.hub import fetch_to_disk
from gibench.pipeline.runner import run_job


def _job(smk, device):
    ds = DATASETS.get(smk.wildcards.dataset)
    out = fetch_to_disk(ds, smk.wildcards.split, smk.config["hub_dir"])   # image and text datasets alike
    return {"path": str(out)}


run_job(snakemake, _job)  # noqa: F821
