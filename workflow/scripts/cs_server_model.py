# Thin Snakemake script: all logic lives in gibench.studies.concealed_samples.jobs (unit-tested there).
from gibench.pipeline.runner import run_job

run_job(snakemake, "gibench.studies.concealed_samples.jobs:server_model_job")  # noqa: F821 (injected by Snakemake)
