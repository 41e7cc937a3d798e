"""One micro run of the real workflow, shared by the provenance tests (archive, report, partial
re-runs): the selective-encryption study on one LeNet/CIFAR-100 victim, one significance
metric (grad), two ratios (0 and 0.3), two small IG attacks (``ig``: 20 iterations,
``ig_fast``: 10), so that Tables 2, 4, 5, 6 and the curves/traces/grid figures exist.  LPIPS
uses VGG16, not downloaded here, so the run also has something it could not compute.

Paths in the config are relative (``resources`` is a link to the project's bundled data), so
the records name inputs the way a run in the project root does and an archive of the
directory replays from its own files.  The run is made once per test session (under
pytest's base temp directory) and copied by tests that change it.
"""
from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import yaml

from workflow_helpers import MICRO, ROOT, run_snakemake

PROV_MICRO = copy.deepcopy(MICRO)
PROV_MICRO.update({"resources_dir": "resources", "hub_dir": "hub"})
PROV_MICRO["studies"]["selective_encryption"].update({
    "significance": {"metrics": ["grad"], "ratios": [0.0, 0.3], "cost_metrics": ["grad"]},
    "attacks": {
        "ig": {"restarts": 1, "params": {"iterations": 20}},
        "ig_fast": {"type": "ig", "restarts": 1, "params": {"iterations": 10}},
    },
    "overhead": {"enabled": False},
    # LPIPS with VGG16, whose weights are not bundled (hub_dir is the run's own, empty): the
    # report shows what could not be computed (the default AlexNet is bundled and would compute)
    "evaluation": {"lpips": {"backbone": "vgg"}},
})

TABLES = ["table2", "table4", "table5", "table6"]
STUDY = "selective_encryption"


def write_micro(workdir: Path, cfg: dict | None = None) -> Path:
    """Config + a ``resources`` link in ``workdir``; returns the config path."""
    workdir.mkdir(parents=True, exist_ok=True)
    link = workdir / "resources"
    if not link.exists():
        os.symlink(ROOT / "resources", link)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg if cfg is not None else PROV_MICRO, sort_keys=False))
    return path


def micro_run(tmp_path_factory) -> Path:
    """The finished micro run (made on first use in this session)."""
    base = tmp_path_factory.getbasetemp() / "gibench_prov_micro"
    done = base / ".done"
    reuse = os.environ.get("GIBENCH_TEST_MICRO_RUN")     # a finished run to reuse (development)
    if reuse and not done.exists() and (Path(reuse) / ".done").exists():
        copy_run(Path(reuse), base)
    if not done.exists():
        if base.exists():
            shutil.rmtree(base)
        cfg = write_micro(base)
        run_snakemake(base, cfg)
        done.write_text("ok\n")
    return base


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a run directory (mtimes kept, the resources link kept as a link)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst
