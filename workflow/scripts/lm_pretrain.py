# Thin Snakemake script: all logic lives in gibench.pipeline.jobs_lm (unit-tested there).
from gibench.pipeline.jobs_lm import lm_pretrain_job
from gibench.pipeline.runner import run_job

run_job(snakemake, lm_pretrain_job)  # noqa: F821 (injected by Snakemake)
