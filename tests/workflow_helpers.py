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


def snakemake_env(*pythonpath: str) -> dict:
    """The environment a Snakemake run gets: the venv first on PATH, this checkout's ``src``
    (then ``pythonpath``) first on PYTHONPATH."""
    env = dict(os.environ)
    env["PATH"] = str(ROOT / ".venv" / "bin") + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *pythonpath, env.get("PYTHONPATH", "")])
    return env


def run_snakemake(workdir: Path, config_path: Path, *args: str, timeout: int = 1200,
                  check: bool = True, cores: int = 2, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [snakemake_bin(), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config_path), "--cores", str(cores), *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env=snakemake_env() if env is None else env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def run_with_plugin(workdir: Path, config_path: Path, *args: str, plugin: str | None, cores: int = 2,
                    check: bool = True, timeout: int = 1200) -> subprocess.CompletedProcess:
    """:func:`run_snakemake` with ``workdir/plugins`` on PYTHONPATH and ``GIBENCH_PLUGINS`` set to
    ``plugin`` (None: unset, whatever the caller's environment says)."""
    env = snakemake_env(str(workdir / "plugins"))
    env.pop("GIBENCH_PLUGINS", None)
    if plugin:
        env["GIBENCH_PLUGINS"] = plugin
    return run_snakemake(workdir, config_path, *args, timeout=timeout, check=check, cores=cores, env=env)


MICRO = {
    "seed": 1,
    "datasets": {"cifar100": {"victims": 2}},
    "studies": {"selective_encryption": {
        "cases": [{"dataset": "cifar100", "model": "lenet"}],
        "victims": 1,
    }},
}


class Named(dict):
    """What Snakemake hands a script as ``snakemake.input`` / ``output`` / ``wildcards``: a dict
    whose keys are also attributes (for job functions called without Snakemake)."""

    def __getattr__(self, k: str):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None
