# Thin Snakemake script: all logic lives in gibench.studies.stochastic_defenses.jobs (unit-tested there).
from gibench.pipeline.runner import run_job

run_job(snakemake, "gibench.studies.stochastic_defenses.jobs:sd_attack_job")  # noqa: F821 (injected by Snakemake)
