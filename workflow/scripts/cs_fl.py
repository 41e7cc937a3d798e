# Thin Snakemake script: all logic lives in gibench.studies.concealed_samples.jobs_fl (unit-tested there).
from gibench.studies.concealed_samples.jobs_fl import fl_job
from gibench.pipeline.runner import run_job

run_job(snakemake, fl_job)  # noqa: F821 (injected by Snakemake)
