# Thin Snakemake script: fetch a hub dataset split to disk (runs on the login node).
from gibench.datasets import DATASETS
from gibench.datasets.hub import download_split
from gibench.pipeline.runner import run_job


def _job(smk, device):
    out = download_split(DATASETS.get(smk.wildcards.dataset), smk.wildcards.split, smk.config["hub_dir"])
    return {"path": str(out)}


run_job(snakemake, _job)  # noqa: F821
