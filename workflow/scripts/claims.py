# Thin Snakemake script: all logic lives in gibench.claims (unit-tested there).
from gibench.pipeline.jobs_claims import claims_job
from gibench.pipeline.runner import run_job

run_job(snakemake, claims_job)  # noqa: F821 (injected by Snakemake)
