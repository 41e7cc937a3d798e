"""The provenance record every artifact carries (see DESIGN.md, "Artifacts").

Two parts:

* ``record`` — embedded in the artifact (safetensors metadata, Parquet schema metadata, the
  ``provenance`` key of a JSON artifact) or, for files that cannot hold one (CSV/Markdown
  tables, PNG/PDF figures), written next to it as ``<file>.prov.json``
  (:func:`write_sidecars`).  Fields: rule, job function, wildcards, params (what the job
  depends on in the config) and the rule's own params, config digest, gibench version + git
  commit + dirty flag + sha256 of the package source, Python/torch/transformers/... versions,
  device, torch thread count, seed, sha256 of every input file, the input/output/log paths.
  It is a pure function of (code, config, inputs, device), so re-running a job reproduces
  the artifact byte for byte.
* ``run`` — the volatile facts of one execution (start/end time, host, SLURM job id, CUDA
  devices).  They would break byte-identical re-runs, so they go to the job's log
  (:func:`run_record`, written by :func:`gibench.pipeline.runner.run_job`); the record names
  that log (``log_files``) and :func:`run_facts` finds it again, so ``gibench provenance
  FILE`` shows both halves.

The config a record's ``config_digest`` names is kept verbatim in
``results/configs/<digest>.yaml`` (:func:`snapshot_config`, called by the Snakefile), so
every artifact can be traced to — and re-run with — the exact config it was made with,
even after partial re-runs under later configs.

Length: one record format: every field is made (:func:`make_record`, :func:`run_record`),
written (sidecars, config snapshots) and read back (:func:`read_any_record`, :func:`run_facts`)
here, so the format is defined in one place.
"""
from __future__ import annotations

import base64
import contextlib
import contextvars
import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

from . import __version__

RECORD_FORMAT = 2
SIDECAR_SUFFIX = ".prov.json"
#: record key under which a job lists the table columns that depend on randomness it cannot
#: seed (TenSEAL draws CKKS keys and encryption noise from the OS); ``gibench verify``
#: reports them and does not compare them
UNSEEDED_KEY = "unseeded_columns"
CONFIG_DIR = "results/configs"
#: environment variable ``gibench verify`` sets when it replays jobs with an archive's code:
#: the archive's code identity, honoured only if its ``source_sha256`` matches the running code
ARCHIVED_CODE_ENV = "GIBENCH_ARCHIVED_CODE"


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


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=4096)
def _file_digest_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def dir_digest(path: str | os.PathLike) -> str:
    """sha256 over the sorted (relative path, sha256) of every file under a directory output."""
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(root).as_posix()}\0{file_digest(p)}\n".encode())
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (of a directory: :func:`dir_digest`)."""
    if os.path.isdir(path):
        return dir_digest(path)
    st = os.stat(path)
    return _file_digest_cached(os.fspath(path), st.st_size, st.st_mtime_ns)


# ------------------------------------------------------------------ code and environment

PACKAGE_DIR = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 over the sorted (relative path, sha256) of the gibench package's ``*.py`` files:
    identifies the code exactly, also where git cannot (an unpacked archive, a wheel)."""
    h = hashlib.sha256()
    for p in sorted(PACKAGE_DIR.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        h.update(f"{p.relative_to(PACKAGE_DIR).as_posix()}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=10,
                          check=True).stdout


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """gibench version, git commit of the project checkout, whether it had local changes
    (tracked or untracked, not ignored), and :func:`source_digest`.

    The commit is read only when the package sits in the git checkout of its own project
    (``<root>/src/gibench`` with ``<root>`` the work tree), never from an enclosing repository
    an archive happens to be unpacked in."""
    commit, dirty = "unknown", None
    try:
        top = Path(_git("rev-parse", "--show-toplevel").strip()).resolve()
        if top == PACKAGE_DIR.parents[1]:
            commit = _git("rev-parse", "HEAD").strip()
            dirty = bool(_git("status", "--porcelain", "--untracked-files=normal").strip())
    except (OSError, subprocess.SubprocessError):
        pass
    out = {"gibench": __version__, "git_commit": commit, "git_dirty": dirty, "source_sha256": source_digest()}
    pinned = os.environ.get(ARCHIVED_CODE_ENV)
    if pinned and commit == "unknown":
        # replaying an archive's jobs with the archive's own code tree (gibench verify): that tree
        # is the commit the archive names, provided the sources really are the same bytes
        try:
            p = json.loads(pinned)
        except json.JSONDecodeError:
            p = {}
        if p.get("source_sha256") == out["source_sha256"]:
            out.update(git_commit=p.get("git_commit", "unknown"), git_dirty=p.get("git_dirty"))
    return out


# what the artifacts' computations import (torchmetrics is a test-only reference: not listed)
VERSIONED_PACKAGES = ("torch", "numpy", "transformers", "tenseal", "snakemake", "safetensors",
                      "pyarrow", "scipy", "dp-accounting")


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str | None]:
    import importlib.metadata as md

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
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


# ------------------------------------------------------------------ files of a job

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


def flat_files(files: Any) -> list[str]:
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


_flat = flat_files  # older name


def named_params(params: Any) -> dict[str, Any]:
    """A rule's ``params`` (Snakemake Params / dict / namespace) as a JSON-able dict."""
    if params is None:
        return {}
    if isinstance(params, dict):
        items = params.items()
    elif hasattr(params, "_names"):
        items = [(n, getattr(params, n)) for n in params._names]
    else:
        items = vars(params).items()
    return json.loads(canonical_json({k: v for k, v in items if not k.startswith("_")}))


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# ------------------------------------------------------------------ the job being run

_JOB: contextvars.ContextVar[dict | None] = contextvars.ContextVar("gibench_job", default=None)


def job_name(fn: Any) -> str:
    """``module:qualname`` of a job function (how :mod:`gibench.pipeline.replay` finds it again)."""
    return f"{fn.__module__}:{fn.__qualname__}"


@contextlib.contextmanager
def job_context(fn: Any, smk: Any) -> Iterator[None]:
    """While a job function runs: records made by :func:`make_record` also name the job
    function, the job's log file(s) (where the volatile run record goes) and the rule's params."""
    token = _JOB.set({"fields": {"job": job_name(fn),
                                 "log_files": [os.fspath(x) for x in (getattr(smk, "log", None) or [])],
                                 "rule_params": named_params(getattr(smk, "params", None))},
                      "input": getattr(smk, "input", None), "output": getattr(smk, "output", None)})
    try:
        yield
    finally:
        _JOB.reset(token)


def make_record(*, rule: str, wildcards: dict | None = None, params: dict | None = None,
                config: dict | None = None, inputs: Any = None,
                seed: int | None = None, device: Any = "cpu",
                extra: dict | None = None, outputs: Any = None) -> dict[str, Any]:
    """The record of an artifact.  Inside a job (:func:`job_context`) ``inputs`` and ``outputs``
    default to the job's own, so every record made by a job names and digests what it read."""
    ctx = _JOB.get()
    if ctx:
        inputs = ctx["input"] if inputs is None else inputs
        outputs = ctx["output"] if outputs is None else outputs
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
        "inputs": {p: file_digest(p) for p in flat_files(inputs)},
        "input_files": named_files(inputs),
        "output_files": named_files(outputs),
    }
    if ctx:
        rec.update(ctx["fields"])
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
        # which copy of gibench the job imported (the checkout's src/, Snakefile sets PYTHONPATH)
        "gibench_path": os.path.dirname(os.path.abspath(__file__)),
    }
    rec.update(extra)
    return rec


# ------------------------------------------------------------------ records of any file

def embedded_record(path: str | os.PathLike) -> dict | None:
    """The record a file carries itself (safetensors / Parquet metadata, JSON ``provenance``)."""
    from . import io

    p = Path(path)
    try:
        if p.suffix in (".safetensors", ".parquet"):
            return io.read_record(p)
        if p.suffix == ".json":
            obj = json.loads(p.read_text())
            if isinstance(obj, dict) and isinstance(obj.get("provenance"), dict):
                return obj["provenance"]
    except Exception:
        return None
    return None


def sidecar_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def unavailable_notes(inputs: Any) -> dict[str, list[str]]:
    """What could not be computed, as the job's Parquet inputs say it: every ``<x>_status``
    column value starting with ``unavailable`` (e.g. LPIPS without its backbone weights)."""
    import pyarrow.parquet as pq

    out: dict[str, set[str]] = {}
    for f in flat_files(inputs):
        if not f.endswith(".parquet") or not os.path.isfile(f):
            continue
        try:
            cols = [c for c in pq.read_schema(f).names if c.endswith("_status")]
            if not cols:
                continue
            table = pq.read_table(f, columns=cols)
        except Exception:
            continue
        for c in cols:
            for v in set(table.column(c).to_pylist()):
                if isinstance(v, str) and v.startswith("unavailable"):
                    out.setdefault(c[: -len("_status")], set()).add(v)
    return {k: sorted(v) for k, v in sorted(out.items())}


def write_sidecars(smk: Any, device: Any = "cpu") -> list[Path]:
    """Give every output file of a finished job that carries no record of its own (tables,
    figures) a ``<file>.prov.json`` with the job's record.  Directories are skipped (their
    files carry records)."""
    from . import io

    outs = [f for f in flat_files(getattr(smk, "output", None)) if os.path.isfile(f)]
    bare = [f for f in outs if embedded_record(f) is None]
    if not bare:
        return []
    extra = {}
    notes = unavailable_notes(getattr(smk, "input", None))
    if notes:
        extra["unavailable"] = notes
    rec = make_record(rule=getattr(smk, "rule", None) or "unknown", wildcards=dict(smk.wildcards),
                      params=named_params(getattr(smk, "params", None)), config=smk.config,
                      inputs=getattr(smk, "input", None), outputs=smk.output, device=device, extra=extra)
    if rec.get("rule_params") == rec.get("params"):
        rec.pop("rule_params", None)     # a sidecar's params are the rule's params
    written = []
    for f in bare:
        io.write_text(sidecar_path(f), sidecar_text({**rec, "file": f}))
        written.append(sidecar_path(f))
    return written


#: record keys that can be long (one entry per input file): written last in a sidecar, so that
#: a report caption can show everything before them (``.. include:: ... :end-before: "inputs": {``)
BULKY_KEYS = ("inputs", "input_files", "output_files")
#: record keys a reader wants first (which file, made by which rule and code, from which config,
#: on what, what could not be computed): written first in a sidecar, up to ``"format"``, so that a
#: report caption shows them as a short block (``.. include:: ... :end-before: "format":``)
SUMMARY_KEYS = ("file", "rule", "code", "config_digest", "device", "seed", "unavailable")


def sidecar_text(record: dict) -> str:
    """The sidecar's JSON: the summary keys, then ``format`` and the rest sorted, the bulky keys last."""
    first = [k for k in SUMMARY_KEYS if k in record]
    rest = sorted(k for k in record if k not in SUMMARY_KEYS and k not in BULKY_KEYS and k != "format")
    order = first + (["format"] if "format" in record else []) + rest + [k for k in BULKY_KEYS if k in record]
    return json.dumps({k: record[k] for k in order}, indent=1) + "\n"


def read_any_record(path: str | os.PathLike) -> dict:
    """The record of any gibench result file: embedded, else its sidecar."""
    from . import io

    rec = embedded_record(path)
    if rec is not None:
        return rec
    side = sidecar_path(path)
    if side.exists():
        return json.loads(side.read_text())
    if not Path(path).exists():
        raise io.ArtifactError(f"{path}: no such file")
    raise io.ArtifactError(f"{path}: carries no gibench provenance record and has no {side.name} next to it")


# ------------------------------------------------------------------ config snapshots

def config_path(digest: str, root: str | os.PathLike = ".") -> Path:
    return Path(root) / CONFIG_DIR / f"{digest}.yaml"


def snapshot_config(config: dict, root: str | os.PathLike = ".") -> Path:
    """Write the (validated) config to ``results/configs/<digest>.yaml`` once; the digest is the
    ``config_digest`` every record of a job run with this config carries."""
    from . import io

    digest = digest_obj(config)
    path = config_path(digest, root)
    if not path.exists():
        try:
            io.write_text(path, config_text(config))
        except OSError as e:          # a read-only copy (e.g. building a report of an archive)
            import sys

            print(f"gibench: could not keep the config as {path} ({e}); records still name its digest {digest}",
                  file=sys.stderr)
    return path


def plain_config(config: Any) -> Any:
    """The config as plain JSON types, keys in their original order."""
    return json.loads(json.dumps(config, default=_json_default))


def config_text(config: dict) -> str:
    """YAML of a config that reads back to the same digest *and the same key order*: Snakemake
    compares a rule's params by their ``repr``, so a re-ordered config would look changed."""
    import yaml

    plain = plain_config(config)
    text = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True)
    back = yaml.safe_load(text)
    if back != plain or json.dumps(back) != json.dumps(plain):
        text = json.dumps(plain, indent=1) + "\n"          # JSON is YAML too
    return text


def load_config_snapshot(digest: str, root: str | os.PathLike = ".") -> dict | None:
    import yaml

    path = config_path(digest, root)
    if not path.exists():
        return None
    cfg = yaml.safe_load(path.read_text())
    return cfg if digest_obj(cfg) == digest else None


# ------------------------------------------------------------------ the run half

def _snakemake_metadata(path: str, root: Path) -> dict | None:
    key = base64.urlsafe_b64encode(os.path.normpath(path).encode()).decode()
    for base in (root / ".snakemake" / "metadata",):
        f = base / key
        if f.exists():
            try:
                return json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                return None
    return None


def run_facts(path: str | os.PathLike, record: dict, root: str | os.PathLike = ".") -> dict:
    """The volatile half of a file's provenance: the run record in the job's log (start, end,
    host, SLURM job id, status), and Snakemake's own metadata of the file when present."""
    root = Path(root)
    out: dict[str, Any] = {}
    for log in record.get("log_files") or []:
        lp = root / log if not os.path.isabs(log) else Path(log)
        if lp.exists():
            try:
                out["log"] = {"path": log, **json.loads(lp.read_text())}
            except (OSError, json.JSONDecodeError) as e:
                out["log"] = {"path": log, "error": f"unreadable ({e})"}
            break
    rel = os.path.relpath(os.path.abspath(path), root.resolve()) if os.path.isabs(path) else os.fspath(path)
    meta = _snakemake_metadata(rel, root)
    if meta:
        fmt = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None  # noqa: E731
        out["snakemake"] = {"rule": meta.get("rule"), "start": fmt(meta.get("starttime")),
                            "end": fmt(meta.get("endtime")), "log": meta.get("log"),
                            "incomplete": meta.get("incomplete")}
        if "log" not in out:
            for log in meta.get("log") or []:
                lp = root / log
                if lp.exists():
                    try:
                        out["log"] = {"path": log, **json.loads(lp.read_text())}
                    except (OSError, json.JSONDecodeError):
                        pass
                    break
    return out


REQUIRED_FIELDS = ("rule", "wildcards", "params", "config_digest", "code", "versions", "device", "seed", "inputs")


def missing_fields(record: dict) -> list[str]:
    """DESIGN.md's record fields a record lacks (``code`` must name version, commit, dirty flag;
    ``versions`` Python, torch and transformers)."""
    miss = [k for k in REQUIRED_FIELDS if k not in record]
    code = record.get("code") or {}
    miss += [f"code.{k}" for k in ("gibench", "git_commit", "git_dirty") if k not in code]
    vers = record.get("versions") or {}
    miss += [f"versions.{k}" for k in ("python", "torch", "transformers") if k not in vers]
    return miss
