"""Packing a run (``gibench archive``): what goes into an archive (the workflow as git sees it,
the working directory's results, logs and Snakemake metadata, the environment), its manifest
and id, and :func:`create`, which writes the ``.tar.gz`` atomically.  The layout is described in
:mod:`gibench.archive`."""
from __future__ import annotations

import fnmatch
import hashlib
import io as _io
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..provenance import (
    CONFIG_DIR, SIDECAR_SUFFIX, code_version, config_text, digest_obj, embedded_record, sha256_file,
    sidecar_path)


META = "ARCHIVE"
MANIFEST = f"{META}/MANIFEST.json"
MANIFEST_SHA = f"{META}/MANIFEST.sha256"
ARCHIVE_FORMAT = 2
#: directories of the working directory that are archived whole (besides the workflow tree)
WORKDIR_TREES = ("results", "logs", ".snakemake/metadata")
#: fnmatch patterns (``*`` spans directories) left out by default: significance scores
DEFAULT_EXCLUDE = ("results/significance/*.safetensors",)

class ArchiveError(RuntimeError):
    pass


_sha = sha256_file


# ------------------------------------------------------------------ what goes in

def _git_files(root: Path) -> list[str]:
    """The workflow as git sees it: tracked files, plus untracked (not ignored) files inside the
    top-level directories git tracks (new modules not committed yet) -- not loose files in the
    root (old archives, reports) and not an unpacked archive lying in the tree."""
    def ls(*args: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", "-z", *args], cwd=root, capture_output=True, check=True).stdout
        return [f for f in out.decode().split("\0") if f]

    try:
        tracked = ls("--cached")
        others = ls("--others", "--exclude-standard")
    except (OSError, subprocess.CalledProcessError) as e:
        raise ArchiveError(f"{root}: not a git checkout; the archive packs the workflow as git sees it ({e})") from e
    top = {f.split("/", 1)[0] for f in tracked if "/" in f}
    unpacked = {f[: -len("/ARCHIVE/MANIFEST.json")] for f in others if f.endswith("/ARCHIVE/MANIFEST.json")}
    keep = [f for f in others if "/" in f and f.split("/", 1)[0] in top
            and not any(f == u or f.startswith(u + "/") for u in unpacked)]
    return sorted({f for f in tracked + keep if (root / f).is_file() and not (root / f).is_symlink()})


def environment_info() -> dict:
    import importlib.metadata as md

    info: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable,
                            "platform": platform.platform(), "machine": platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu"] = f"{names[0]} x{len(names)}" if names else None
    except OSError:
        info["cpu"] = None
    try:
        import torch

        info["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                         "cuda_available": torch.cuda.is_available(),
                         "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                         "threads": torch.get_num_threads()}
    except Exception as e:  # pragma: no cover - torch is a dependency
        info["torch"] = {"error": str(e)}
    info["packages"] = dict(sorted((d.metadata["Name"], d.version) for d in md.distributions() if d.metadata["Name"]))
    return info


def environment_text(info: dict | None = None) -> str:
    info = info or environment_info()
    t = info.get("torch", {})
    lines = [f"python {info['python']} ({info['executable']})", f"platform {info['platform']}",
             f"cpu {info.get('cpu')}",
             f"torch {t.get('version')} cuda {t.get('cuda')} (available: {t.get('cuda_available')}) {t.get('devices')}",
             "", "# exact package versions (pip install -r this section reproduces them)"]
    lines += [f"{k}=={v}" for k, v in info["packages"].items()]
    return "\n".join(lines) + "\n"


def _excluded(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def collect(workdir: Path, repo: Path, exclude: Iterable[str] = DEFAULT_EXCLUDE,
            skip: Iterable[Path] = ()) -> dict[str, Path]:
    """{member name: file}: the workflow tree, then the working directory's result trees."""
    exclude = list(exclude)
    skip = {Path(p).resolve() for p in skip}
    members: dict[str, Path] = {}
    for f in _git_files(repo):
        members[f] = repo / f
    for tree in WORKDIR_TREES:
        base = workdir / tree
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if not p.is_file() or p.is_symlink() or p.resolve() in skip:
                continue
            if p.name.startswith(".") and p.name.endswith(".tmp"):       # an atomic write in flight
                continue
            name = p.relative_to(workdir).as_posix()
            if not _excluded(name, exclude):
                members[name] = p
    return members


def _records(members: dict[str, Path]) -> dict[str, dict]:
    """{member: record} of every artifact under results/ (embedded or sidecar)."""
    out = {}
    for name, p in members.items():
        if not name.startswith("results/") or name.endswith(SIDECAR_SUFFIX):
            continue
        rec = embedded_record(p)
        if rec is None:
            side = sidecar_path(p)
            if side.exists():
                try:
                    rec = json.loads(side.read_text())
                except (OSError, json.JSONDecodeError):
                    rec = None
        if isinstance(rec, dict):
            out[name] = rec
    return out


def _is_final(name: str) -> bool:
    return name.startswith(("results/tables/", "results/figures/"))


def _load_config(path: Path) -> dict:
    from ..config import load

    return load(path)


def create(output: str | Path, config: dict | None = None, workdir: str | Path = ".", repo: str | Path | None = None,
           include_scores: bool = False, exclude: Iterable[str] | None = None,
           configfile: str | Path | None = None) -> dict:
    """Write the archive atomically; return its manifest (plus ``id``: the manifest's sha256)."""
    from .. import io

    workdir = Path(workdir).resolve()
    repo = Path(repo).resolve() if repo else Path(__file__).resolve().parents[3]
    output = Path(output).resolve()
    if not (workdir / "results").is_dir():
        raise ArchiveError(f"{workdir / 'results'}: nothing to archive (run the pipeline first)")
    patterns = list(DEFAULT_EXCLUDE if exclude is None else exclude)
    if include_scores:
        patterns = [p for p in patterns if p not in DEFAULT_EXCLUDE]
    members = collect(workdir, repo, patterns, skip=[output])
    records = _records(members)

    # the configs the records name, and the one the final tables/figures came from
    used: dict[str, int] = {}
    final: dict[str, int] = {}
    for name, rec in records.items():
        d = rec.get("config_digest")
        if d:
            used[d] = used.get(d, 0) + 1
            if _is_final(name):
                final[d] = final.get(d, 0) + 1
    if configfile is not None:
        config = _load_config(Path(configfile))
    if config is None:
        ranked = sorted(final or used, key=lambda d: (-(final or used)[d], d))
        for d in ranked:
            p = workdir / CONFIG_DIR / f"{d}.yaml"
            if p.exists():
                config = yaml.safe_load(p.read_text())
                break
    if config is None:
        raise ArchiveError(f"{workdir}: no config snapshot under {CONFIG_DIR}/ matches the results' records "
                           "(results made before snapshots existed?); pass --configfile with the config they were made with")
    cfg_digest = digest_obj(config)
    missing_cfg = sorted(d for d in used if f"{CONFIG_DIR}/{d}.yaml" not in members)

    # inputs the records name that the archive does not hold (external files, excluded patterns)
    not_archived: dict[str, str] = {}
    for rec in records.values():
        for p, d in (rec.get("inputs") or {}).items():
            if os.path.isabs(p) or p not in members and not (workdir / p).is_dir():
                not_archived.setdefault(p, d)

    env = environment_info()
    extra = {
        f"{META}/config.yaml": config_text(config).encode(),
        f"{META}/environment.txt": environment_text(env).encode(),
        f"{META}/environment.json": (json.dumps(env, indent=1, sort_keys=True) + "\n").encode(),
    }
    files = {name: _sha(p) for name, p in sorted(members.items())}
    for name, data in extra.items():
        files[name] = hashlib.sha256(data).hexdigest()
    manifest = {
        "format": ARCHIVE_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": code_version(),
        "config_digest": cfg_digest,
        "configs_used": {d: {"artifacts": n, "final_outputs": final.get(d, 0)} for d, n in sorted(used.items())},
        "configs_missing": missing_cfg,
        "workdir_trees": list(WORKDIR_TREES),
        "excluded": patterns,
        "not_archived_inputs": dict(sorted(not_archived.items())),
        "records": len(records),
        "files": files,
    }
    mbytes = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    mid = hashlib.sha256(mbytes).hexdigest()
    now = int(time.time())
    with io.atomic_path(output) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for name, p in sorted(members.items()):
                tar.add(p, arcname=name, recursive=False)
            for name, data in list(extra.items()) + [(MANIFEST, mbytes),
                                                     (MANIFEST_SHA, f"{mid}  MANIFEST.json\n".encode())]:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), now, 0o644
                tar.addfile(info, _io.BytesIO(data))
        os.chmod(tmp, 0o644)
    return {**manifest, "id": mid}
