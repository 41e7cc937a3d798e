# Thin Snakemake script: all logic lives in gibench.pipeline.jobs_cs (unit-tested there).
from gibench.pipeline.jobs_cs import class_means_job
from gibench.pipeline.runner import run_job

run_job(snakemake, class_means_job)  # noqa: F821 (injected by Snakemake)
