# Thin Snakemake script: all logic lives in gibench.studies.concealed_samples.jobs_fl (unit-tested there).
from gibench.pipeline.runner import run_job

run_job(snakemake, "gibench.studies.concealed_samples.jobs_fl:fl_gather_job")  # noqa: F821 (injected by Snakemake)
