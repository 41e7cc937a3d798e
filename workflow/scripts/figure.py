# Thin Snakemake script: all logic lives in gibench.pipeline / gibench.tables.
from gibench.pipeline.jobs_tables import figure_job
from gibench.pipeline.runner import run_job

run_job(snakemake, figure_job)  # noqa: F821
