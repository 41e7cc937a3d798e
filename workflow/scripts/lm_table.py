# Thin Snakemake script: all logic lives in gibench.pipeline.jobs_lm.
from gibench.pipeline.runner import run_job

run_job(snakemake, "gibench.pipeline.jobs_lm:lm_table_job")  # noqa: F821
