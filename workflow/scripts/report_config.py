# Thin Snakemake script: all logic lives in gibench.pipeline.jobs_report.
from gibench.pipeline.jobs_report import config_job
from gibench.pipeline.runner import run_job

run_job(snakemake, config_job)  # noqa: F821 (injected by Snakemake)
