# Thin Snakemake script: all logic lives in gibench.studies.concealed_samples.jobs (unit-tested there).
from gibench.studies.concealed_samples.jobs import public_job
from gibench.pipeline.runner import run_job

run_job(snakemake, public_job)  # noqa: F821 (injected by Snakemake)
