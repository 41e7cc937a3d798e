# Thin Snakemake script: fetch an LPIPS backbone's ImageNet features weights.
from gibench.pipeline.runner import run_job

run_job(snakemake, "gibench.pipeline.jobs_attack:download_backbone_job")  # noqa: F821 (injected by Snakemake)
