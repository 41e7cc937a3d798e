# Thin Snakemake script: fetch a hub checkpoint (text model or LM prior) to <hub_dir>/models/.
from gibench.pipeline.runner import run_job

run_job(snakemake, "gibench.pipeline.jobs_text:download_pretrained_job")  # noqa: F821 (injected by Snakemake)
