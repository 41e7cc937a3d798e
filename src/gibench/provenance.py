"""The provenance record every artifact carries (see DESIGN.md, "Artifacts").

Two parts:
* ``record`` — embedded in the artifact: rule, wildcards, params, config digest, code
  version/commit/dirty flag, library versions, device, seed, input digests.  It is a pure
  function of (code, config, inputs, device), so re-running a job reproduces the artifact
  byte for byte.
* ``run`` — the volatile facts of one execution (start/end time, host, SLURM job id).  They
  would break byte-identical re-runs, so they go to the job's log (``run_record``), not
  into the artifact.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable

from . import __version__

RECORD_FORMAT = 1


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(o: Any):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if hasattr(o, "items"):
        return dict(o.items())
    if hasattr(o, "__iter__"):
        return list(o)
    return str(o)


def digest_obj(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


@functools.lru_cache(maxsize=4096)
def _file_digest_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    st = os.stat(path)
    return _file_digest_cached(os.fspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """gibench version, git commit of the source tree and whether it had local changes."""
    src = Path(__file__).resolve().parent
    commit, dirty = "unknown", None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=src, capture_output=True, text=True, timeout=10,
                                check=True).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"gibench": __version__, "git_commit": commit, "git_dirty": dirty}


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str | None]:
    import importlib.metadata as md

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "numpy", "transformers", "torchmetrics", "tenseal", "snakemake"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def device_description(device: Any) -> str:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return f"cpu:{platform.machine()}"


def named_files(files: Any) -> dict[str, Any]:
    """{name: path or [paths]} of a Snakemake Namedlist (or dict/list); unnamed entries get
    their position ("_0", ...).  Lets a job be replayed from its record (gibench verify)."""
    if files is None:
        return {}
    if isinstance(files, dict):
        return {k: (os.fspath(v) if isinstance(v, (str, os.PathLike)) else [os.fspath(x) for x in v])
                for k, v in files.items()}
    out: dict[str, Any] = {}
    covered: set[int] = set()
    for name, (i, end) in getattr(files, "_names", {}).items():
        covered.update(range(i, end) if end is not None else [i])
        v = getattr(files, name)
        out[name] = os.fspath(v) if isinstance(v, (str, os.PathLike)) else [os.fspath(x) for x in v]
    for i, v in enumerate(files):
        if i not in covered and isinstance(v, (str, os.PathLike)):
            out[f"_{i}"] = os.fspath(v)
    return out


def _flat(files: Any) -> list[str]:
    if files is None:
        return []
    if isinstance(files, dict):
        out = []
        for v in files.values():
            out += [os.fspath(v)] if isinstance(v, (str, os.PathLike)) else [os.fspath(x) for x in v]
        return out
    out = []
    for f in files:
        out += [os.fspath(f)] if isinstance(f, (str, os.PathLike)) else [os.fspath(x) for x in f]
    return out


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def make_record(*, rule: str, wildcards: dict | None = None, params: dict | None = None,
                config: dict | None = None, inputs: Any = (),
                seed: int | None = None, device: Any = "cpu",
                extra: dict | None = None, outputs: Any = None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "rule": rule,
        "wildcards": dict(wildcards or {}),
        "params": params or {},
        "config_digest": digest_obj(config) if config is not None else None,
        "code": code_version(),
        "versions": library_versions(),
        "device": device_description(device),
        # CPU reductions depend on the thread count: part of what makes the bytes
        "torch_threads": _torch_threads(),
        "seed": seed,
        "inputs": {p: file_digest(p) for p in _flat(inputs)},
        "input_files": named_files(inputs),
        "output_files": named_files(outputs),
    }
    if extra:
        rec.update(extra)
    return json.loads(canonical_json(rec))


def run_record(start: float, end: float | None = None, **extra: Any) -> dict[str, Any]:
    """Volatile facts of one execution; written to the job log, never into artifacts."""
    end = time.time() if end is None else end
    rec = {
        "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end)),
        "seconds": round(end - start, 3),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    rec.update(extra)
    return rec
