# Thin Snakemake script: all logic lives in gibench.pipeline.jobs_sd (unit-tested there).
from gibench.pipeline.jobs_sd import sd_metrics_job
from gibench.pipeline.runner import run_job

run_job(snakemake, sd_metrics_job)  # noqa: F821 (injected by Snakemake)
