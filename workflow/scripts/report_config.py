# Thin Snakemake script: all logic lives in gibench.pipeline.jobs_report.
from gibench.pipeline.runner import run_job

run_job(snakemake, "gibench.pipeline.jobs_report:config_job")  # noqa: F821 (injected by Snakemake)
