# Thin Snakemake script: all logic lives in gibench.pipeline.jobs_cs (unit-tested there).
from gibench.pipeline.jobs_cs import attack_job
from gibench.pipeline.runner import run_job

run_job(snakemake, attack_job)  # noqa: F821 (injected by Snakemake)
