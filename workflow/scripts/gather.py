# Thin Snakemake script: concatenate Parquet row files into one table.
from gibench.pipeline.runner import run_job

run_job(snakemake, "gibench.pipeline.jobs_tables:gather_job")  # noqa: F821
