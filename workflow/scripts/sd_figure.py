# Thin Snakemake script: all logic lives in gibench.studies.stochastic_defenses.jobs (unit-tested there).
from gibench.studies.stochastic_defenses.jobs import sd_figure_job
from gibench.pipeline.runner import run_job

run_job(snakemake, sd_figure_job)  # noqa: F821 (injected by Snakemake)
