# Thin Snakemake script: concatenate Parquet row files into one table.
from gibench.pipeline.jobs_tables import gather_job
from gibench.pipeline.runner import run_job

run_job(snakemake, gather_job)  # noqa: F821
