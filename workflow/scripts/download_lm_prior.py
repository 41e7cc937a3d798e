# Thin Snakemake script: fetch LAMP's BERT-vocabulary LM prior (.pth) to <hub_dir>/lamp/.
from gibench.pipeline.runner import run_job

run_job(snakemake, "gibench.pipeline.jobs_text:download_lm_prior_job")  # noqa: F821 (injected by Snakemake)
