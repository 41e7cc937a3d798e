# Thin Snakemake script for the overhead branch: all logic lives in gibench.studies.selective_encryption.jobs_overhead.
from gibench.studies.selective_encryption import jobs_overhead as OV
from gibench.pipeline.runner import run_job

JOBS = {"overhead": OV.overhead_job, "he_overhead_table": OV.he_table_job,
        "he_cost_figure": OV.he_figure_job}
run_job(snakemake, JOBS[snakemake.rule])  # noqa: F821 (injected by Snakemake)
