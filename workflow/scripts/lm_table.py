# Thin Snakemake script: all logic lives in gibench.pipeline.jobs_lm.
from gibench.pipeline.jobs_lm import lm_table_job
from gibench.pipeline.runner import run_job

run_job(snakemake, lm_table_job)  # noqa: F821
