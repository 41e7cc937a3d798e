# Thin Snakemake script: all logic lives in gibench.pipeline / gibench.tables.
from gibench.pipeline.runner import run_job

run_job(snakemake, "gibench.pipeline.jobs_tables:figure_job")  # noqa: F821
