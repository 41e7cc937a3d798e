# Thin Snakemake script: fetch an LPIPS backbone's ImageNet features weights.
from gibench.pipeline.jobs_attack import download_backbone_job
from gibench.pipeline.runner import run_job

run_job(snakemake, download_backbone_job)  # noqa: F821 (injected by Snakemake)
