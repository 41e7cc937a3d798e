"""Run the real Snakefile on a small config in a temporary working directory."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def snakemake_bin() -> str:
    exe = ROOT / ".venv" / "bin" / "snakemake"
    return str(exe) if exe.exists() else "snakemake"


def write_config(workdir: Path, cfg: dict) -> Path:
    cfg = dict(cfg)
    cfg.setdefault("resources_dir", str(ROOT / "resources"))
    cfg.setdefault("hub_dir", str(workdir / "hub"))
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_snakemake(workdir: Path, config_path: Path, *args: str, timeout: int = 1200,
                  check: bool = True) -> subprocess.CompletedProcess:
    cmd = [snakemake_bin(), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config_path), "--cores", "2", *args]
    env = dict(os.environ)
    env["PATH"] = str(ROOT / ".venv" / "bin") + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


MICRO = {
    "seed": 1,
    "datasets": {"cifar100": {"victims": 2}},
    "studies": {"selective_encryption": {
        "cases": [{"dataset": "cifar100", "model": "lenet"}],
        "victims": 1,
    }},
}
