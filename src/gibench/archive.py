"""Archive a run into one file, and verify an archive by re-running a sample of its jobs.

An archive (``.tar.gz``) is a snapshot of the working directory a result came from:

* the git-tracked workflow tree (code, rules, configs, bundled resources),
* ``ARCHIVE/config.yaml`` — the validated config the jobs saw (defaults filled in),
* ``ARCHIVE/environment.txt`` — Python, platform and the exact package versions,
* ``results/`` — tables, figures, metric rows and the artifacts needed to recompute them
  (victims, weights, gradients, knowledge, masks, reconstructions, traces, cost rows;
  significance scores only with ``include_scores``),
* ``ARCHIVE/MANIFEST.json`` — sha256 of every other member.

``verify`` checks the manifest, then replays a deterministic sample of jobs from the
archived inputs (each artifact's embedded record names its rule, wildcards and input
files) and compares the new output with the archived one: tensors and rows exactly where
the computation is deterministic on this device, within a stated tolerance otherwise.
"""
from __future__ import annotations

import contextlib
import hashlib
import io as _io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import yaml

from . import io
from .provenance import code_version, digest_obj

META = "ARCHIVE"
RESULT_DIRS = ("data", "models", "gradients", "masks", "attacks", "metrics", "cost", "tables", "figures")
VOLATILE_COLUMNS = {"seconds", "peak_bytes"}        # measurements: reported, not compared


class ArchiveError(RuntimeError):
    pass


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _git_files(root: Path) -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise ArchiveError(f"{root}: not a git checkout; the archive packs the git-tracked tree ({e})") from e
    return [f for f in out.decode().split("\0") if f and (root / f).is_file()]


def environment_text() -> str:
    import importlib.metadata as md

    lines = [f"python {platform.python_version()} ({sys.executable})", f"platform {platform.platform()}", ""]
    lines += sorted(f"{d.metadata['Name']}=={d.version}" for d in md.distributions() if d.metadata["Name"])
    return "\n".join(lines) + "\n"


def create(output: str | Path, config: dict, workdir: str | Path = ".", repo: str | Path | None = None,
           include_scores: bool = False) -> dict:
    """Write the archive atomically; return its manifest."""
    workdir = Path(workdir).resolve()
    repo = Path(repo).resolve() if repo else Path(__file__).resolve().parents[2]
    members: dict[str, Path] = {f: repo / f for f in _git_files(repo)}
    results = workdir / "results"
    if not results.exists():
        raise ArchiveError(f"{results}: nothing to archive (run the pipeline first)")
    dirs = RESULT_DIRS + (("significance",) if include_scores else ())
    for d in dirs:
        for p in sorted((results / d).rglob("*")) if (results / d).exists() else []:
            if p.is_file() and not p.name.startswith("."):
                members[str(p.relative_to(workdir))] = p
    if not include_scores and (results / "significance").exists():
        for p in (results / "significance").rglob("*.cost.parquet"):
            members[str(p.relative_to(workdir))] = p
    extra = {
        f"{META}/config.yaml": yaml.safe_dump(config, sort_keys=True).encode(),
        f"{META}/environment.txt": environment_text().encode(),
    }
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": code_version(),
        "config_digest": digest_obj(config),
        "files": {name: _sha(p) for name, p in sorted(members.items())},
    }
    for name, data in extra.items():
        manifest["files"][name] = hashlib.sha256(data).hexdigest()
    output = Path(output)
    with io.atomic_path(output) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for name, p in sorted(members.items()):
                tar.add(p, arcname=name, recursive=False)
            for name, data in list(extra.items()) + [(f"{META}/MANIFEST.json",
                                                      json.dumps(manifest, indent=1, sort_keys=True).encode())]:
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), int(time.time())
                tar.addfile(info, _io.BytesIO(data))
    return manifest


@dataclass
class Verdict:
    item: str
    ok: bool
    detail: str


@dataclass
class Report:
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    def add(self, item: str, ok: bool, detail: str) -> None:
        self.verdicts.append(Verdict(item, ok, detail))


def _safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    for m in tar.getmembers():
        target = (dest / m.name).resolve()
        if not str(target).startswith(str(dest.resolve())) or m.issym() or m.islnk():
            raise ArchiveError(f"archive member {m.name!r} escapes the archive or is a link")
    tar.extractall(dest, filter="data")


def check_manifest(root: Path, report: Report) -> dict | None:
    mpath = root / META / "MANIFEST.json"
    if not mpath.exists():
        report.add(f"{META}/MANIFEST.json", False, "missing: not a gibench archive")
        return None
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        report.add(f"{META}/MANIFEST.json", False, f"unreadable manifest ({e})")
        return None
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {f"{META}/MANIFEST.json"}
    for name in sorted(set(files) | present):
        if name not in files:
            report.add(name, False, "in the archive but not in the manifest")
        elif name not in present:
            report.add(name, False, "listed in the manifest but missing from the archive")
        else:
            got = _sha(root / name)
            if got != files[name]:
                report.add(name, False, f"sha256 {got[:16]}… differs from the manifest's {files[name][:16]}…")
    if all(v.ok for v in report.verdicts):
        report.add("manifest", True, f"{len(files)} files match their sha256")
    return manifest


def replay_candidates(root: Path) -> list[Path]:
    from .pipeline.replay import job_functions

    funcs = job_functions()
    out = []
    for p in sorted((root / "results").rglob("*")):
        if p.suffix not in (".safetensors", ".parquet") or p.name.endswith(".trace.parquet"):
            continue
        try:
            rec = io.read_record(p)
        except Exception:
            continue
        if rec.get("rule") in funcs and rec.get("output_files"):
            inputs = [root / f for f in rec.get("inputs", {})]
            if all(f.exists() for f in inputs):
                out.append(p)
    return out


RECORD_KEYS = ("rule", "wildcards", "params", "seed", "config_digest", "inputs")


def _record_mismatch(ra: dict, rb: dict) -> str | None:
    """Provenance fields that must agree (code/library versions and device may differ)."""
    for k in RECORD_KEYS:
        if ra.get(k) != rb.get(k):
            return f"provenance field {k!r} differs: {str(ra.get(k))[:80]} vs {str(rb.get(k))[:80]}"
    return None


def compare_artifacts(old: Path, new: Path, atol: float = 0.0, rtol: float = 0.0) -> tuple[bool, str]:
    import torch

    bad = _record_mismatch(io.read_record(old), io.read_record(new))
    if bad:
        return False, bad
    if old.suffix == ".safetensors":
        a, _ = io.load_tensors(old)
        b, _ = io.load_tensors(new)
        if sorted(a) != sorted(b):
            return False, f"tensor names differ: {sorted(set(a) ^ set(b))[:5]}"
        for k in a:
            if a[k].shape != b[k].shape or a[k].dtype != b[k].dtype:
                return False, f"tensor {k!r}: {tuple(a[k].shape)} {a[k].dtype} vs {tuple(b[k].shape)} {b[k].dtype}"
            if atol == 0 and rtol == 0:
                x, y = a[k], b[k]
                same = bool(((x == y) | (x.isnan() & y.isnan())).all()) if x.is_floating_point() else torch.equal(x, y)
                if not same:
                    diff = (a[k].double() - b[k].double()).abs().max().item()
                    return False, f"tensor {k!r} differs (max abs diff {diff:.3g}; exact comparison)"
            elif not torch.allclose(a[k].double(), b[k].double(), atol=atol, rtol=rtol, equal_nan=True):
                diff = (a[k].double() - b[k].double()).abs().max().item()
                return False, f"tensor {k!r}: max abs diff {diff:.3g} exceeds atol {atol} rtol {rtol}"
        mode = "exact" if atol == 0 and rtol == 0 else f"atol {atol}, rtol {rtol}"
        same_bytes = old.read_bytes() == new.read_bytes()
        return True, f"{len(a)} tensors equal ({mode}){'; byte-identical' if same_bytes else ''}"
    ta, _ = io.load_table(old)
    tb, _ = io.load_table(new)
    cols = [c for c in ta.column_names if c not in VOLATILE_COLUMNS]
    if sorted(cols) != sorted(c for c in tb.column_names if c not in VOLATILE_COLUMNS):
        return False, f"columns differ: {ta.column_names} vs {tb.column_names}"
    if ta.num_rows != tb.num_rows:
        return False, f"{ta.num_rows} rows vs {tb.num_rows}"
    for c in cols:
        x, y = ta.column(c).to_pylist(), tb.column(c).to_pylist()
        for i, (u, v) in enumerate(zip(x, y)):
            if isinstance(u, float) and isinstance(v, float):
                if not (u == v or (np.isnan(u) and np.isnan(v)) or abs(u - v) <= atol + rtol * abs(v)):
                    return False, f"column {c!r} row {i}: {u!r} vs {v!r}"
            elif u != v:
                return False, f"column {c!r} row {i}: {str(u)[:40]!r} vs {str(v)[:40]!r}"
    skipped = [c for c in ta.column_names if c in VOLATILE_COLUMNS]
    note = f"; measurement columns not compared: {skipped}" if skipped else ""
    return True, f"{ta.num_rows} rows equal{note}"


def verify(archive: str | Path, sample: int = 4, seed: int = 0, atol: float = 0.0, rtol: float = 0.0,
           keep: str | Path | None = None) -> Report:
    from .pipeline.replay import replay

    report = Report()
    archive = Path(archive)
    if not archive.exists():
        report.add(str(archive), False, "no such file")
        return report
    tmpctx = tempfile.TemporaryDirectory(prefix="gibench-verify-") if keep is None else contextlib.nullcontext(str(keep))
    with tmpctx as tmp:
        root = Path(tmp) / "archive"
        root.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(archive, "r:gz") as tar:
                _safe_extract(tar, root)
        except (tarfile.TarError, OSError, EOFError) as e:
            report.add(str(archive), False, f"not a readable archive ({e})")
            return report
        manifest = check_manifest(root, report)
        if manifest is None or not report.ok:
            return report
        config = yaml.safe_load((root / META / "config.yaml").read_text())
        if digest_obj(config) != manifest.get("config_digest"):
            report.add(f"{META}/config.yaml", False, "config digest differs from the manifest's")
            return report
        cands = replay_candidates(root)
        rng = np.random.default_rng(seed)
        picks = sorted(rng.choice(len(cands), size=min(sample, len(cands)), replace=False).tolist()) if cands else []
        if not picks:
            report.add("replay", False, "no replayable artifacts in the archive")
            return report
        cwd = os.getcwd()
        os.chdir(root)
        try:
            for i in picks:
                path = cands[i]
                rel = str(path.relative_to(root))
                rec = io.read_record(path)
                if rec.get("config_digest") != manifest["config_digest"]:
                    report.add(rel, False, "made with a different config than the archive's")
                    continue
                try:
                    mapping = replay(rec, config, root / ".replay" / str(i))
                except Exception as e:
                    report.add(rel, False, f"re-running rule {rec['rule']!r} failed: {type(e).__name__}: {e}")
                    continue
                if rel not in mapping:
                    report.add(rel, False, f"replay of rule {rec['rule']!r} did not produce this file")
                    continue
                ok, detail = compare_artifacts(path, Path(mapping[rel]), atol, rtol)
                report.add(rel, ok, f"rule {rec['rule']} re-run: {detail}")
        finally:
            os.chdir(cwd)
    return report
