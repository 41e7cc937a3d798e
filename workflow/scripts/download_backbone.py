# Thin Snakemake script: download an LPIPS backbone (torchvision ImageNet weights).
from pathlib import Path

from gibench.metrics.lpips import BACKBONE_FILES, download_backbone
from gibench.pipeline.runner import run_job


def _job(smk, device):
    name = Path(smk.output[0]).name
    backbone = {v: k for k, v in BACKBONE_FILES.items()}.get(name)
    if backbone is None:
        raise ValueError(f"{name}: not an LPIPS backbone file ({', '.join(BACKBONE_FILES.values())})")
    download_backbone(backbone, Path(smk.output[0]).parent)
    return {"file": smk.output[0]}


run_job(snakemake, _job)  # noqa: F821
