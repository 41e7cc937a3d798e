# Thin Snakemake script: concatenates the per-case metric rows (gibench.pipeline.jobs_tables).
from gibench.pipeline.runner import run_job

run_job(snakemake, "gibench.pipeline.jobs_tables:gather_job")  # noqa: F821 (injected by Snakemake)
