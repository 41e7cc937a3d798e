"""Which torch device a job runs on, and a loud stop when a GPU job finds no CUDA.

A Slurm job that asked for a GPU (``--gpus``, ``--gres=gpu``; the workflow profile's
``gpu: 1``) and then finds no usable CUDA -- a CPU-only torch wheel in the venv, a driver
mismatch, a node without the device -- would otherwise run on the CPU into its time limit.
:func:`pick_device` refuses that with a message naming what asked for the GPU and how to
fix it, unless the config's ``cpu_fallback: true`` allows the CPU (then it warns loudly).
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Mapping

import torch

# Slurm sets these in a job (or step) that was allocated GPUs (sbatch --gpus / --gres=gpu /
# --gpus-per-node ...); CUDA_VISIBLE_DEVICES is what Slurm's gres plugin (and most schedulers)
# hand to the job.  Values that mean "no device" are ignored.
SLURM_GPU_VARS = ("SLURM_GPUS", "SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS",
                  "SLURM_GPUS_PER_NODE", "SLURM_GPUS_PER_TASK", "SLURM_GPUS_PER_SOCKET")
_NO_DEVICE = {"", "-1", "none", "nodevfiles", "0"}


class NoCudaError(RuntimeError):
    """A job was given (or asked for) a GPU, but torch finds no usable CUDA device."""


def _resource_gpus(resources: Any) -> int:
    """The job's ``gpu`` resource (profiles/default ``set-resources``), 0 when absent."""
    if resources is None:
        return 0
    get = resources.get if isinstance(resources, Mapping) else (lambda k, d=None: getattr(resources, k, d))
    for key in ("gpu", "gpus", "nvidia_gpu"):
        try:
            n = int(get(key, 0) or 0)
        except (TypeError, ValueError):
            n = 0
        if n > 0:
            return n
    return 0


def gpu_request(env: Mapping[str, str] | None = None, resources: Any = None) -> str | None:
    """Why this process looks like a GPU job, or None.

    Signals: CUDA_VISIBLE_DEVICES naming a device; one of Slurm's GPU variables; or, inside a
    Slurm job (SLURM_JOB_ID set), the rule's ``gpu`` resource.  The resource alone is not a
    signal: the workflow profile sets it for local runs too, where it constrains nothing.
    """
    env = os.environ if env is None else env
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and cvd.strip().lower() not in _NO_DEVICE - {"0"}:
        return f"CUDA_VISIBLE_DEVICES={cvd}"
    for var in SLURM_GPU_VARS:
        val = env.get(var)
        if val is not None and val.strip().lower() not in _NO_DEVICE:
            return f"{var}={val}"
    tres = env.get("SLURM_TRES_PER_TASK", "")
    if "gpu" in tres.lower():
        return f"SLURM_TRES_PER_TASK={tres}"
    n = _resource_gpus(resources)
    if n and env.get("SLURM_JOB_ID"):
        return f"Slurm job {env['SLURM_JOB_ID']} with resource gpu={n}"
    return None


def _cuda_status() -> str:
    """What torch says about CUDA, for the error message."""
    build = torch.version.cuda
    if build is None:
        return (f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None); "
                "install a CUDA build into the job's environment (`make venv-gpu`, README 'Running on a cluster')")
    return (f"torch {torch.__version__} is built for CUDA {build}, but torch.cuda.is_available() is False "
            "(no visible device, or a driver older than the build needs; check `nvidia-smi` on the node)")


def pick_device(setting: str = "auto", *, cpu_fallback: bool = False,
                env: Mapping[str, str] | None = None, resources: Any = None,
                cuda_available: bool | None = None) -> torch.device:
    """The device for ``config['device']`` (``auto``, ``cpu`` or ``cuda``).

    * ``cpu``: the CPU, always (an explicit choice).
    * ``cuda``: CUDA, or :class:`NoCudaError`.
    * ``auto``: CUDA when available.  Otherwise the CPU -- unless the job was given or asked
      for a GPU (:func:`gpu_request`): then :class:`NoCudaError`, or, with ``cpu_fallback``,
      the CPU with a loud warning on stderr.
    """
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if setting == "cpu":
        return torch.device("cpu")
    if setting == "cuda":
        if not available:
            raise NoCudaError(f"config device: cuda, but no CUDA device is usable on this node: {_cuda_status()}")
        return torch.device("cuda")
    if setting != "auto":
        raise ValueError(f"config device: {setting!r} is not one of auto, cpu, cuda")
    if available:
        return torch.device("cuda")
    why = gpu_request(env, resources)
    if why is None:
        return torch.device("cpu")
    if not cpu_fallback:
        raise NoCudaError(
            f"this job asked for a GPU ({why}) but finds no CUDA: {_cuda_status()}. "
            "It stops rather than run on the CPU into its time limit; set `cpu_fallback: true` "
            "in the config to run such jobs on the CPU anyway (or `device: cpu` for a CPU-only run, e.g. "
            "the demo inside a Slurm allocation without GPUs).")
    msg = (f"GPU job running on the CPU: it asked for a GPU ({why}) but finds no CUDA "
           f"({_cuda_status()}); config cpu_fallback: true allows it. Expect it to be much slower.")
    bar = "!" * 78
    print(f"{bar}\n[gibench] WARNING: {msg}\n{bar}", file=sys.stderr, flush=True)
    warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return torch.device("cpu")


def job_device(smk: Any) -> torch.device:
    """The device of a Snakemake job object (``snakemake`` in a script, or a replay stand-in)."""
    cfg = getattr(smk, "config", {}) or {}
    return pick_device(cfg.get("device", "auto"), cpu_fallback=bool(cfg.get("cpu_fallback", False)),
                       resources=getattr(smk, "resources", None))
