# Thin Snakemake script: all logic lives in gibench.pipeline (unit-tested there).
from gibench.pipeline.runner import run_job

run_job(snakemake, "gibench.pipeline.jobs_significance:significance_job")  # noqa: F821 (injected by Snakemake)
