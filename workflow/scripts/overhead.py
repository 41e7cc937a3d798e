# Thin Snakemake script for the overhead branch: all logic lives in gibench.studies.selective_encryption.jobs_overhead.
from gibench.pipeline.runner import run_job

OV = "gibench.studies.selective_encryption.jobs_overhead"
JOBS = {"overhead": f"{OV}:overhead_job", "he_overhead_table": f"{OV}:he_table_job",
        "he_cost_figure": f"{OV}:he_figure_job"}
run_job(snakemake, JOBS[snakemake.rule])  # noqa: F821 (injected by Snakemake)
