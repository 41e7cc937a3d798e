"""Archive a run into one file, and verify an archive (``gibench archive`` / ``gibench verify``).

An archive (``.tar.gz``) is a snapshot of the working directory a result came from, laid out
like that directory, so that it can be unpacked and used as a checkout:

* the workflow: every file git knows in the project (tracked, plus untracked files that are
  not ignored — what ``snakemake --archive`` packs, without requiring a clean commit):
  Snakefile, rules, scripts, ``src/gibench``, configs, schema, envs, bundled resources;
* ``results/`` — everything the pipeline wrote, whatever the study (tables, figures, metric
  and cost rows, reconstructions, traces, masks, gradients, weights, victims, FL runs,
  overhead rows, ...), including ``results/configs/<digest>.yaml`` (the exact config each
  record names) and the ``<file>.prov.json`` records of tables and figures; patterns in
  ``exclude`` leave files out (default: significance scores, large and only needed to
  re-make masks; ``include_scores`` keeps them);
* ``logs/`` (each job's run record: start/end, host, SLURM job id) and
  ``.snakemake/metadata`` (Snakemake's own records, for ``--report`` and re-run detection);
* ``ARCHIVE/config.yaml`` — the config the final tables and figures came from,
  ``ARCHIVE/environment.txt`` / ``environment.json`` — Python, platform, torch build and the
  exact version of every installed package;
* ``ARCHIVE/MANIFEST.json`` — sha256 of every other member, code identity, config digests,
  inputs that were not archived; ``ARCHIVE/MANIFEST.sha256`` — the manifest's own sha256,
  the archive's id.

``verify`` checks (0) with ``expect_id``, the archive id against the published one, (1) the
manifest (every member's sha256, nothing missing or extra, the manifest's own digest), (2) the
configs (each snapshot's digest), (3) every tensor artifact's data against the digest recorded
when it was written, (4) the provenance chain (every artifact's record names the sha256 of its
inputs: they must match the archived files), (5) re-makes every table and figure from the
archived rows (cheap; a forged number in a table under a rewritten manifest differs from the
re-made one, shown as the differing line and position), and (6) re-runs a deterministic, seeded
sample of the other jobs — spread over the rules — from the archived inputs with the archived
code, comparing each output with the archived one: exactly (tensor values, row values, bytes) when the job was recorded on this kind of
device with the same torch/numpy, within ``atol``/``rtol`` otherwise; measured columns
(seconds, peak memory) are reported, not compared.  Each check prints a verdict; any FAIL
makes the exit status non-zero.
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io as _io
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from .provenance import (CONFIG_DIR, SIDECAR_SUFFIX, UNSEEDED_KEY, canonical_json, code_version, config_text,
                         digest_obj, dir_digest, embedded_record, sha256_file, sidecar_path)

META = "ARCHIVE"
MANIFEST = f"{META}/MANIFEST.json"
MANIFEST_SHA = f"{META}/MANIFEST.sha256"
ARCHIVE_FORMAT = 2
#: directories of the working directory that are archived whole (besides the workflow tree)
WORKDIR_TREES = ("results", "logs", ".snakemake/metadata")
#: fnmatch patterns (``*`` spans directories) left out by default: significance scores
DEFAULT_EXCLUDE = ("results/significance/*.safetensors",)
#: measured values (timings, memory): reported, never compared
MEASUREMENT = re.compile(r"(seconds?(_per_[a-z0-9]+)?|per_second|_s|_ms|_time_to_[a-z0-9]+"
                         r"|peak_bytes|peak_rss|rss_bytes|elapsed|wall_time)$")
#: record fields that may differ between the original run and a replay (reported, not compared)
RECORD_INFO_KEYS = ("code", "versions", "device", "format")
DEFAULT_ATOL, DEFAULT_RTOL = 1e-5, 1e-4


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
    from .config import load

    return load(path)


def create(output: str | Path, config: dict | None = None, workdir: str | Path = ".", repo: str | Path | None = None,
           include_scores: bool = False, exclude: Iterable[str] | None = None,
           configfile: str | Path | None = None) -> dict:
    """Write the archive atomically; return its manifest (plus ``id``: the manifest's sha256)."""
    from . import io

    workdir = Path(workdir).resolve()
    repo = Path(repo).resolve() if repo else Path(__file__).resolve().parents[2]
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


# ------------------------------------------------------------------ verdicts

@dataclass
class Verdict:
    item: str
    ok: bool
    detail: str
    info: bool = False          # a fact worth stating that is neither a pass nor a failure


@dataclass
class Report:
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    def add(self, item: str, ok: bool, detail: str) -> None:
        self.verdicts.append(Verdict(item, ok, detail))

    def note(self, item: str, detail: str) -> None:
        self.verdicts.append(Verdict(item, True, detail, info=True))

    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.ok]


def _safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    base = dest.resolve()
    for m in tar.getmembers():
        target = (dest / m.name).resolve()
        if not (target == base or str(target).startswith(str(base) + os.sep)) or m.issym() or m.islnk():
            raise ArchiveError(f"archive member {m.name!r} escapes the archive or is a link")
    tar.extractall(dest, filter="data")


def _archive_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.relative_to(root).as_posix().startswith(".verify/"))


def check_manifest(root: Path, report: Report, digests: dict[str, str] | None = None) -> dict | None:
    """Every member against the manifest; the manifest against its own digest."""
    mpath = root / MANIFEST
    if not mpath.exists():
        report.add(MANIFEST, False, "missing: not a gibench archive (or the manifest was removed)")
        return None
    mid = _sha(mpath)
    spath = root / MANIFEST_SHA
    if not spath.exists():
        report.add(MANIFEST_SHA, False, "missing: the manifest's own digest is gone")
    else:
        want = spath.read_text().split()[0] if spath.read_text().split() else ""
        if want != mid:
            report.add(MANIFEST, False, f"sha256 {mid[:16]}… differs from the {want[:16]}… recorded in {MANIFEST_SHA}: "
                                        "the manifest was altered")
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a mapping")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        report.add(MANIFEST, False, f"unreadable manifest ({e})")
        return None
    present = set(_archive_files(root)) - {MANIFEST, MANIFEST_SHA}
    bad = 0
    for name in sorted(set(files) | present):
        if name not in files:
            report.add(name, False, "in the archive but not in the manifest")
            bad += 1
        elif name not in present:
            report.add(name, False, "listed in the manifest but missing from the archive")
            bad += 1
        else:
            got = _sha(root / name)
            if digests is not None:
                digests[name] = got
            if got != files[name]:
                report.add(name, False, f"sha256 {got[:16]}… differs from the manifest's {str(files[name])[:16]}…")
                bad += 1
    if not bad:
        report.add("manifest", True, f"{len(files)} files match their sha256; archive id (sha256 of "
                                     f"{MANIFEST}) {mid}")
    return manifest


def check_configs(root: Path, manifest: dict, report: Report) -> dict[str, dict]:
    """{digest: config} of the archive: ``ARCHIVE/config.yaml`` and every snapshot."""
    configs: dict[str, dict] = {}
    cpath = root / META / "config.yaml"
    if cpath.exists():
        cfg = yaml.safe_load(cpath.read_text())
        d = digest_obj(cfg)
        if d != manifest.get("config_digest"):
            report.add(f"{META}/config.yaml", False, f"config digest {d[:16]}… differs from the manifest's "
                                                     f"{str(manifest.get('config_digest'))[:16]}…")
        configs[d] = cfg
    else:
        report.add(f"{META}/config.yaml", False, "missing")
    bad = 0
    snaps = sorted((root / CONFIG_DIR).glob("*.yaml")) if (root / CONFIG_DIR).is_dir() else []
    for p in snaps:
        cfg = yaml.safe_load(p.read_text())
        d = digest_obj(cfg)
        if d != p.stem:
            report.add(p.relative_to(root).as_posix(), False, f"content has config digest {d[:16]}…, "
                                                             f"not the {p.stem[:16]}… its name claims")
            bad += 1
        else:
            configs[d] = cfg
    if not bad and snaps:
        report.add("configs", True, f"{len(snaps)} config snapshot(s) match their digests")
    return configs


def all_records(root: Path) -> dict[str, dict]:
    files = {name: root / name for name in _archive_files(root)}
    return _records(files)


def check_chain(root: Path, records: dict[str, dict], digests: dict[str, str], report: Report) -> None:
    """Each record's input digests against the archived inputs (stale or altered artifacts)."""
    checked = bad = 0
    absent: set[str] = set()
    for name, rec in sorted(records.items()):
        for p, want in sorted((rec.get("inputs") or {}).items()):
            if os.path.isabs(p):
                absent.add(p)
                continue
            f = root / p
            if f.is_dir():
                got = dir_digest(f)
            elif f.is_file():
                got = digests.get(p) or _sha(f)
                digests[p] = got
            else:
                absent.add(p)
                continue
            checked += 1
            if got != want:
                bad += 1
                report.add(name, False, f"was made from {p} with sha256 {str(want)[:16]}…, but the archive's {p} has "
                                        f"{got[:16]}… (altered, or the artifact is stale)")
    if not bad:
        report.add("provenance chain", True, f"{checked} input digests in {len(records)} records match the archived files")
    if absent:
        shown = ", ".join(sorted(absent)[:3]) + (" …" if len(absent) > 3 else "")
        report.note("provenance chain", f"{len(absent)} recorded inputs are not in the archive (excluded or "
                                        f"external; their jobs are not re-run): {shown}")


# ------------------------------------------------------------------ comparing a replay

@dataclass
class Tolerance:
    atol: float = 0.0
    rtol: float = 0.0

    @property
    def exact(self) -> bool:
        return self.atol == 0 and self.rtol == 0

    def describe(self) -> str:
        return "exact" if self.exact else f"within atol {self.atol:g}, rtol {self.rtol:g}"


def _num_close(u: float, v: float, tol: Tolerance) -> bool:
    import math

    if u == v or (math.isnan(u) and math.isnan(v)):
        return True
    return (not tol.exact) and abs(u - v) <= tol.atol + tol.rtol * abs(v)


def diff_values(a: Any, b: Any, path: str, tol: Tolerance) -> str | None:
    """The first difference between two JSON-like values (measurement keys skipped)."""
    if isinstance(a, dict) and isinstance(b, dict):
        ka = {k for k in a if not MEASUREMENT.search(str(k))}
        kb = {k for k in b if not MEASUREMENT.search(str(k))}
        if ka != kb:
            return f"{path}: keys differ ({sorted(ka ^ kb)[:5]})"
        for k in sorted(ka, key=str):
            d = diff_values(a[k], b[k], f"{path}.{k}" if path else str(k), tol)
            if d:
                return d
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} entries"
        for i, (u, v) in enumerate(zip(a, b)):
            d = diff_values(u, v, f"{path}[{i}]", tol)
            if d:
                return d
        return None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return None if _num_close(float(a), float(b), tol) else f"{path}: {a!r} vs {b!r}"
    if a == b:
        return None
    if isinstance(a, str) and isinstance(b, str) and max(len(a), len(b)) > 60:
        col, cu, cv, _ = _window(a, b, 60)
        return f"{path}: strings differ at character {col + 1}: {cu!r} vs {cv!r}"
    return f"{path}: {str(a)[:60]!r} vs {str(b)[:60]!r}"


def compare_records(old: dict, new: dict, tol: Tolerance) -> tuple[str | None, list[str]]:
    """(difference in what the job computed or was given, notes on what may differ)."""
    a = {k: v for k, v in old.items() if k not in RECORD_INFO_KEYS}
    b = {k: v for k, v in new.items() if k not in RECORD_INFO_KEYS}
    problem = diff_values(a, b, "record", tol)
    notes = []
    for k in RECORD_INFO_KEYS:
        if old.get(k) != new.get(k):
            if isinstance(old.get(k), dict) and isinstance(new.get(k), dict):
                ks = sorted(x for x in set(old[k]) | set(new[k]) if old[k].get(x) != new[k].get(x))
                notes.append(f"{k}." + "/".join(ks))
            else:
                notes.append(k)
    return problem, notes


def _volatile_record_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) & set(new), key=str):
        if MEASUREMENT.search(str(k)) and old[k] != new[k]:
            out.append(prefix + str(k))
        elif isinstance(old[k], dict) and isinstance(new[k], dict):
            out += _volatile_record_keys(old[k], new[k], f"{prefix}{k}.")
    return out


def _compare_tensors(old: Path, new: Path, tol: Tolerance) -> tuple[bool, str, dict, dict]:
    import torch

    from . import io

    a, ra = io.load_tensors(old, verify=False)       # an altered archived file: check_tensor_digests says so
    b, rb = io.load_tensors(new, verify=False)
    if sorted(a) != sorted(b):
        return False, f"tensor names differ: {sorted(set(a) ^ set(b))[:5]}", ra, rb
    for k in sorted(a):
        x, y = a[k], b[k]
        if x.shape != y.shape or x.dtype != y.dtype:
            return False, f"tensor {k!r}: {tuple(x.shape)} {x.dtype} vs {tuple(y.shape)} {y.dtype}", ra, rb
        if x.is_floating_point() or x.is_complex():
            same = bool(((x == y) | (x.isnan() & y.isnan())).all())
            if not same:
                diff = (x.double() - y.double()).abs().nan_to_num(float("inf")).max().item()
                if tol.exact or not torch.allclose(x.double(), y.double(), atol=tol.atol, rtol=tol.rtol, equal_nan=True):
                    return False, f"tensor {k!r} differs: max abs difference {diff:.3g} ({tol.describe()})", ra, rb
        elif not torch.equal(x, y):
            n = int((x != y).sum())
            return False, f"tensor {k!r} differs in {n} of {x.numel()} entries", ra, rb
    return True, f"{len(a)} tensors equal ({tol.describe()})", ra, rb


def _compare_rows(old: Path, new: Path, tol: Tolerance) -> tuple[bool, str, dict, dict]:
    from . import io

    ta, ra = io.load_table(old)
    tb, rb = io.load_table(new)
    # columns the producing job declares unseeded (e.g. CKKS's fresh encryption randomness)
    unseeded = set((ra or {}).get(UNSEEDED_KEY) or []) | set((rb or {}).get(UNSEEDED_KEY) or [])
    measured = sorted(c for c in set(ta.column_names) | set(tb.column_names)
                      if MEASUREMENT.search(c) or c in unseeded)
    ca = [c for c in ta.column_names if c not in measured]
    cb = [c for c in tb.column_names if c not in measured]
    if sorted(ca) != sorted(cb):
        return False, f"columns differ: {sorted(set(ca) ^ set(cb))}", ra, rb
    if ta.num_rows != tb.num_rows:
        return False, f"{ta.num_rows} rows vs {tb.num_rows}", ra, rb
    for c in ca:
        x, y = ta.column(c).to_pylist(), tb.column(c).to_pylist()
        for i, (u, v) in enumerate(zip(x, y)):
            d = diff_values(u, v, "", tol)
            if d:
                shown = (d.split(": ", 1)[1] if isinstance(u, str) and isinstance(v, str) and d.startswith(": ")
                         else f"{u!r} vs {v!r}")
                return False, f"column {c!r} row {i}: {shown}", ra, rb
    note = f"; measured or unseeded columns reported, not compared: {measured}" if measured else ""
    return True, f"{ta.num_rows} rows x {len(ca)} columns equal ({tol.describe()}){note}", ra, rb


def _window(u: str, v: str, width: int = 72) -> tuple[int, str, str, str]:
    """(first differing position, the two strings cut to ``width`` characters around it, a caret
    line under it): the difference itself, never two identically truncated prefixes."""
    col = next((i for i, (x, y) in enumerate(zip(u, v)) if x != y), min(len(u), len(v)))
    start = max(0, col - width // 3)

    def cut(s: str) -> str:
        return ("…" if start else "") + s[start:start + width] + ("…" if len(s) > start + width else "")

    return col, cut(u), cut(v), " " * (col - start + (1 if start else 0)) + "^"


def _first_line_diff(a: bytes, b: bytes) -> str:
    la, lb = a.decode("utf-8", "replace").splitlines(), b.decode("utf-8", "replace").splitlines()
    n_diff = sum(1 for u, v in zip(la, lb) if u != v) + abs(len(la) - len(lb))
    for i, (u, v) in enumerate(zip(la, lb)):
        if u != v:
            col, cu, cv, caret = _window(u, v)
            return (f"line {i + 1}, column {col + 1} (first of {n_diff} differing line(s)):\n"
                    f"        archived: {cu}\n        re-made:  {cv}\n                  {caret}")
    longer, who = (la, "archived") if len(la) > len(lb) else (lb, "re-made")
    extra = longer[min(len(la), len(lb))]
    return f"{len(la)} vs {len(lb)} lines; the {who} file goes on with line {min(len(la), len(lb)) + 1}: {extra[:100]!r}"


def _compare_png(old: Path, new: Path, tol: Tolerance) -> tuple[bool, str]:
    import numpy as np
    from matplotlib import image as mimg

    a, b = mimg.imread(old), mimg.imread(new)
    if a.shape != b.shape:
        return False, f"image size {a.shape} vs {b.shape}"
    diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
    if diff <= max(tol.atol, 0.0):
        return True, f"pixels equal within {tol.atol:g} (max difference {diff:.3g}); bytes differ"
    return False, f"pixels differ: max difference {diff:.3g} (of 1.0){'' if tol.exact else f' > atol {tol.atol:g}'}"


#: the empty marker Snakemake writes into a ``directory()`` output after its job; a job run
#: outside Snakemake (a replay) does not write it, and it holds no result
SNAKEMAKE_DIR_MARKER = ".snakemake_timestamp"


def _dir_files(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and p.name != SNAKEMAKE_DIR_MARKER)


def compare_file(old: Path, new: Path, tol: Tolerance) -> tuple[bool, str]:
    """Compare an archived output with its replay: values, then the embedded record."""
    if not new.exists():
        return False, "the re-run did not write it"
    if old.is_dir():
        fa, fb = _dir_files(old), _dir_files(new)
        if fa != fb:
            return False, f"directory contents differ: {sorted(set(fa) ^ set(fb))[:5]}"
        for f in fa:
            ok, d = compare_file(old / f, new / f, tol)
            if not ok:
                return False, f"{f}: {d}"
        return True, f"{len(fa)} files equal"
    same_bytes = old.read_bytes() == new.read_bytes()
    ra = rb = None
    if old.suffix == ".safetensors":
        ok, detail, ra, rb = _compare_tensors(old, new, tol)
    elif old.suffix == ".parquet":
        ok, detail, ra, rb = _compare_rows(old, new, tol)
    elif old.suffix == ".json" and old.name.endswith(SIDECAR_SUFFIX):
        ra, rb = json.loads(old.read_text()), json.loads(new.read_text())
        ok, detail = True, "provenance record"
    elif old.suffix == ".json":
        ja, jb = json.loads(old.read_text()), json.loads(new.read_text())
        ra, rb = ja.get("provenance") if isinstance(ja, dict) else None, jb.get("provenance") if isinstance(jb, dict) else None
        strip = lambda j: {k: v for k, v in j.items() if k != "provenance"} if isinstance(j, dict) else j  # noqa: E731
        d = diff_values(strip(ja), strip(jb), "", tol)
        ok, detail = (d is None), (d or f"JSON values equal ({tol.describe()})")
    elif same_bytes:
        ok, detail = True, "bytes equal"
    elif old.suffix == ".png":
        ok, detail = _compare_png(old, new, tol)
    elif old.suffix in (".csv", ".md", ".tex", ".txt", ".tsv"):
        ok, detail = False, f"text differs at {_first_line_diff(old.read_bytes(), new.read_bytes())}"
    else:
        ok, detail = False, f"bytes differ ({old.stat().st_size} vs {new.stat().st_size} bytes)"
    if not ok:
        return False, detail
    if isinstance(ra, dict) and isinstance(rb, dict):
        problem, notes = compare_records(ra, rb, tol)
        if problem:
            return False, f"{detail}, but the provenance record differs: {problem}"
        vol = _volatile_record_keys(ra, rb)
        if same_bytes:
            detail += "; byte-identical"
        else:
            why = notes + [f"measured {k}" for k in vol]
            detail += f"; bytes differ only in provenance facts ({', '.join(why) or 'encoding'})"
    elif same_bytes and "byte" not in detail:
        detail += "; byte-identical"
    return True, detail


# ------------------------------------------------------------------ replaying jobs

@dataclass
class Job:
    name: str                   # job function (module:qualname)
    rule: str
    record: dict
    outputs: list[str]          # every output path of the job (files or directories)
    artifacts: list[str] = field(default_factory=list)   # archived files whose record is this job's


def _job_key(rec: dict) -> str:
    from .pipeline.replay import job_name_of

    return canonical_json([job_name_of(rec), rec.get("rule"), rec.get("wildcards"), rec.get("output_files")])


def replay_jobs(root: Path, records: dict[str, dict], configs: dict[str, dict]) -> tuple[list[Job], dict[str, int]]:
    """Jobs that can be re-run from the archive, and why the others cannot (reason -> count)."""
    from .pipeline.replay import job_name_of
    from .provenance import flat_files

    jobs: dict[str, Job] = {}
    skipped: dict[str, int] = {}
    bare: list[str] = []                 # records that name no outputs (e.g. a JSON co-output's own record)
    for name, rec in sorted(records.items()):
        if not rec.get("output_files"):
            bare.append(name)
            continue
        key = _job_key(rec)
        if key in jobs:
            jobs[key].artifacts.append(name)
            continue
        jname = job_name_of(rec)
        outs = flat_files(rec.get("output_files") or {})
        why = None
        if not jname:
            why = "record names no job function"
        elif rec.get("config_digest") not in configs:
            why = "its config is not in the archive"
        else:
            for p in rec.get("inputs") or {}:
                if os.path.isabs(p):
                    why = "reads files outside the archive"
                    break
                if not (root / p).exists():
                    why = "an input is not archived"
                    break
        jobs[key] = Job(jname or "", rec.get("rule", "?"), rec, [] if why else outs, [name])
        if why:
            skipped[why] = skipped.get(why, 0) + 1
    owner = {o: j for j in jobs.values() for o in flat_files(j.record.get("output_files") or {})}
    for name in bare:
        if name in owner:
            owner[name].artifacts.append(name)
        else:
            skipped["record names no output files"] = skipped.get("record names no output files", 0) + 1
    return [j for j in jobs.values() if j.outputs], skipped


def sample_jobs(jobs: list[Job], n: int | None, seed: int, only: Iterable[str] = ()) -> list[Job]:
    """A deterministic sample of ``n`` jobs (all if None), spread over the rules round-robin."""
    only = list(only)
    if only:
        jobs = [j for j in jobs if any(fnmatch.fnmatch(o, pat) for o in j.outputs + j.artifacts for pat in only)]
    rng = random.Random(seed)
    by_rule: dict[str, list[Job]] = {}
    for j in sorted(jobs, key=lambda j: j.outputs[0]):
        by_rule.setdefault(j.rule, []).append(j)
    rules = sorted(by_rule)
    rng.shuffle(rules)
    for r in rules:
        rng.shuffle(by_rule[r])
    picked: list[Job] = []
    limit = len(jobs) if n is None else min(n, len(jobs))
    while len(picked) < limit:
        for r in rules:
            if by_rule[r] and len(picked) < limit:
                picked.append(by_rule[r].pop())
    return picked


def _move(src: Path, dst: Path) -> None:
    if src.exists() or src.is_symlink():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))


def _replay_env(root: Path, manifest: dict) -> dict:
    env = dict(os.environ)
    src = root / "src"
    if src.is_dir():      # the archived code, not whatever gibench this process imported
        env["PYTHONPATH"] = str(src) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["GIBENCH_ARCHIVED_CODE"] = json.dumps(manifest.get("code") or {})
    return env


def _run_replays(root: Path, jobs: list[Job], configs: list[dict], manifest: dict, device: str | None,
                 timeout: float | None, work: Path) -> list[tuple[bool, str]]:
    """Re-run ``jobs`` one after another in one fresh process; (ok, device or why not) per job."""
    req = work / "request.json"
    req.parent.mkdir(parents=True, exist_ok=True)
    req.write_text(json.dumps({"jobs": [{"record": j.record, "config": c, "device": device}
                                        for j, c in zip(jobs, configs)]}))
    try:
        proc = subprocess.run([sys.executable, "-m", "gibench.pipeline.replay", str(req)], cwd=root,
                              env=_replay_env(root, manifest), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [(False, f"re-running rule {j.rule!r} took longer than {timeout:g} s") for j in jobs]
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    try:
        res = json.loads(last)
        results = res["results"] if "results" in res else [res]
    except (json.JSONDecodeError, KeyError, TypeError):
        results = [{"ok": False, "error": (proc.stderr or proc.stdout)[-1500:]}]
    out = []
    for k, j in enumerate(jobs):
        r = results[k] if k < len(results) else {"ok": False, "error": (proc.stderr or proc.stdout)[-1500:]}
        out.append((True, r.get("device", "?")) if r.get("ok") else
                   (False, f"re-running rule {j.rule!r} ({j.name}) failed: {r.get('error')}"))
    return out


def _run_replay(root: Path, job: Job, config: dict, manifest: dict, device: str | None, timeout: float | None,
                work: Path) -> tuple[bool, str]:
    return _run_replays(root, [job], [config], manifest, device, timeout, work)[0]


def _tolerance_for(old_rec: dict, new_rec: dict | None, atol: float, rtol: float) -> tuple[Tolerance, str]:
    if new_rec is None:
        return Tolerance(), ""
    same = (old_rec.get("device") == new_rec.get("device")
            and all((old_rec.get("versions") or {}).get(k) == (new_rec.get("versions") or {}).get(k)
                    for k in ("torch", "numpy")))
    if same:
        return Tolerance(), ""
    why = (f"recorded on {old_rec.get('device')} with torch {(old_rec.get('versions') or {}).get('torch')}, "
           f"re-run on {new_rec.get('device')} with torch {(new_rec.get('versions') or {}).get('torch')}: ")
    return Tolerance(atol, rtol), why


def _set_aside(root: Path, job: Job, work: Path) -> list[tuple[Path, Path]]:
    """Move the job's archived outputs (and their sidecars) to ``work/archived``."""
    moved = []
    for o in job.outputs:
        p = root / o
        for q in (p, sidecar_path(p)):
            if q.exists():
                dst = work / "archived" / q.relative_to(root)
                _move(q, dst)
                moved.append((q, dst))
    return moved


def _put_back(root: Path, job: Job, moved: list[tuple[Path, Path]], work: Path) -> None:
    """Keep the replay's files under ``work/replayed`` for inspection, restore the archived ones."""
    for q, dst in moved:
        if q.exists() or q.is_symlink():
            _move(q, work / "replayed" / q.relative_to(root))
        _move(dst, q)
    for o in job.outputs:
        q = root / o
        if q.exists() and not any(m[0] == q for m in moved):
            _move(q, work / "replayed" / o)


def _compare_outputs(root: Path, job: Job, info: str, work: Path, atol: float,
                     rtol: float) -> list[tuple[str, bool | None, str]]:
    """(output, ok (None: a note), detail) of each output of a finished replay."""
    from .provenance import read_any_record

    out: list[tuple[str, bool | None, str]] = []
    for o in job.outputs:
        new, old = root / o, work / "archived" / o
        if not old.exists():
            out.append((o, None, f"rule {job.rule} re-run wrote it; it is not in the archive (excluded)"))
            continue
        try:
            new_rec = read_any_record(new) if new.is_file() else None
        except Exception:
            new_rec = None
        tol, why = _tolerance_for(job.record, new_rec, atol, rtol)
        try:
            good, detail = compare_file(old, new, tol)
        except Exception as e:
            good, detail = False, f"could not compare ({type(e).__name__}: {e})"
        side_old, side_new = sidecar_path(old), sidecar_path(new)
        if good and side_old.exists():
            g2, d2 = compare_file(side_old, side_new, tol)
            if not g2:
                good, detail = False, f"{detail}; its {side_old.name}: {d2}"
        if not good and new_rec is not None:
            sa = (job.record.get("code") or {}).get("source_sha256")
            sb = (new_rec.get("code") or {}).get("source_sha256")
            if sa != sb:
                detail += (("\n        " if "\n" in detail else " ")
                           + f"(note: it was made by gibench source {str(sa)[:12]}…, the archive holds source "
                             f"{str(sb)[:12]}…: a code change since may explain the difference)")
        out.append((o, good, f"rule {job.rule} re-run on {info}: {why}{detail}"))
    return out


def _report(report: Report, verdicts: list[tuple[str, bool | None, str]]) -> None:
    for item, ok, detail in verdicts:
        if ok is None:
            report.note(item, detail)
        else:
            report.add(item, ok, detail)


def replay_and_compare(root: Path, job: Job, config: dict, manifest: dict, report: Report, k: int,
                       atol: float, rtol: float, device: str | None, timeout: float | None) -> None:
    work = root / ".verify" / f"job{k:03d}"
    moved = _set_aside(root, job, work)
    try:
        ok, info = _run_replay(root, job, config, manifest, device, timeout, work)
        if not ok:
            report.add(job.outputs[0], False, info)
            return
        _report(report, _compare_outputs(root, job, info, work, atol, rtol))
    finally:
        _put_back(root, job, moved, work)


def _independent(jobs: list[Job]) -> tuple[list[Job], list[Job]]:
    """(jobs that read no output of another job of the list, the others)."""
    outs = {o for j in jobs for o in j.outputs}
    free, tied = [], []
    for j in jobs:
        (tied if any(p in outs for p in (j.record.get("inputs") or {})) else free).append(j)
    return free, tied


def rederive(root: Path, jobs: list[Job], configs: dict[str, dict], manifest: dict, report: Report,
             atol: float, rtol: float, device: str | None, timeout: float | None) -> None:
    """Re-make every table and figure from the archived rows (all in one process: they are cheap);
    a job whose output differs there is re-run alone before a mismatch is reported, so that no
    state shared between jobs of one process can cause it."""
    free, tied = _independent(jobs)
    work = root / ".verify" / "tables_and_figures"
    moved = {id(j): _set_aside(root, j, work) for j in free}
    retry: list[Job] = []
    try:
        results = _run_replays(root, free, [configs[j.record["config_digest"]] for j in free], manifest, device,
                               None if timeout is None else timeout * max(1, len(free)), work)
        for j, (ok, info) in zip(free, results):
            verdicts = _compare_outputs(root, j, info, work, atol, rtol) if ok else [(j.outputs[0], False, info)]
            if all(v[1] is not False for v in verdicts):
                _report(report, verdicts)
            else:
                retry.append(j)
    finally:
        for j in free:
            _put_back(root, j, moved[id(j)], work)
    for k, j in enumerate(retry + tied):
        replay_and_compare(root, j, configs[j.record["config_digest"]], manifest, report, 900 + k, atol, rtol,
                           device, timeout)


def is_table_or_figure(job: Job) -> bool:
    return any(_is_final(o) for o in job.outputs)


def check_tensor_digests(root: Path, report: Report) -> None:
    """Each archived tensor artifact's data against the digest recorded when it was written (what
    a byte changed after the fact, under a rewritten manifest, cannot hide from)."""
    from . import io

    checked = old = bad = 0
    for name in _archive_files(root):
        if not (name.startswith("results/") and name.endswith(".safetensors")):
            continue
        try:
            want = io.recorded_digest(root / name)
            if want is None:
                old += 1
                continue
            tensors, _ = io.load_tensors(root / name, verify=False)
        except Exception as e:  # noqa: BLE001 - unreadable: say so, naming it
            report.add(name, False, f"unreadable tensor artifact ({type(e).__name__}: {e})")
            bad += 1
            continue
        checked += 1
        got = io.tensor_digest(tensors)
        if got != want:
            bad += 1
            report.add(name, False, f"tensor data has sha256 {got[:16]}…, not the {str(want)[:16]}… recorded when "
                                    f"it was written (altered after the job wrote it)")
    if not bad and checked:
        report.add("tensor data", True, f"{checked} tensor artifacts match the digest recorded when they were written")
    if old:
        report.note("tensor data", f"{old} tensor artifact(s) were written before digests were recorded (not checked)")


def check_id(root: Path, expect_id: str, report: Report) -> None:
    """The archive id (sha256 of the manifest) against the one a paper or README publishes."""
    want = expect_id.strip().lower()
    mpath = root / MANIFEST
    got = _sha(mpath) if mpath.exists() else None
    if not re.fullmatch(r"[0-9a-f]{64}", want):
        report.add("archive id", False, f"--expect-id {expect_id!r} is not an archive id (64 hexadecimal digits, "
                                        f"as `gibench archive` prints it)")
    elif got != want:
        report.add("archive id", False, f"{got} is not the expected {want}: this is another archive (or one whose "
                                        f"contents and manifest were both changed)")
    else:
        report.add("archive id", True, f"{got} is the expected id")


def verify(archive: str | Path, sample: int | None = 4, seed: int = 0, atol: float = DEFAULT_ATOL,
           rtol: float = DEFAULT_RTOL, keep: str | Path | None = None, only: Iterable[str] = (),
           device: str | None = None, timeout: float | None = 3600.0, derive: bool = True,
           expect_id: str | None = None) -> Report:
    """Check an archive; see the module docstring.  ``sample``: other jobs to re-run (None: all, 0:
    none); ``derive``: re-make every table and figure from the archived rows; ``expect_id``: the
    archive id the archive must have."""
    report = Report()
    archive = Path(archive)
    if not archive.exists():
        report.add(str(archive), False, "no such file")
        return report
    ctx = tempfile.TemporaryDirectory(prefix="gibench-verify-") if keep is None else contextlib.nullcontext(str(keep))
    with ctx as tmp:
        root = Path(tmp) / "archive"
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        try:
            with tarfile.open(archive, "r:gz") as tar:
                _safe_extract(tar, root)
        except (tarfile.TarError, OSError, EOFError, ArchiveError) as e:
            report.add(str(archive), False, f"not a readable archive ({e})")
            return report
        if expect_id is not None:
            check_id(root, expect_id, report)
        digests: dict[str, str] = {}
        manifest = check_manifest(root, report, digests) or {}
        configs = check_configs(root, manifest, report)
        check_tensor_digests(root, report)
        records = all_records(root)
        check_chain(root, records, digests, report)
        if sample == 0 and not derive:
            report.note("replay", "no jobs re-run (--jobs 0 --no-derive)")
            return report
        jobs, skipped = replay_jobs(root, records, configs)
        if skipped:
            report.note("replay", "not re-runnable from the archive: " +
                        ", ".join(f"{n} job(s): {why}" for why, n in sorted(skipped.items())))
        final = [j for j in jobs if is_table_or_figure(j)] if derive else []
        if derive:
            n_final = len({_job_key(r) for n, r in records.items() if _is_final(n)})
            if not final and n_final:
                report.add("tables and figures", False, f"none of the {n_final} table/figure jobs can be re-made "
                                                        f"from the archive")
            elif final:
                report.note("tables and figures", f"re-making all {len(final)} table and figure jobs from the "
                                                  f"archived rows" + (f" ({n_final - len(final)} cannot be)"
                                                                      if n_final > len(final) else ""))
                rederive(root, final, configs, manifest, report, atol, rtol, device, timeout)
        if sample == 0:
            report.note("replay", "no other jobs re-run (--jobs 0)")
            return report
        others = [j for j in jobs if j not in final]
        picked = sample_jobs(others, sample, seed, only)
        if not picked:
            if not final:
                report.add("replay", False, "no job could be re-run from the archive"
                           + (f" matching {list(only)}" if only else ""))
            return report
        report.note("replay", f"re-running {len(picked)} of {len(others)} other re-runnable jobs (seed {seed}; rules "
                              f"{', '.join(sorted({j.rule for j in picked}))})")
        for k, job in enumerate(picked):
            config = configs[job.record["config_digest"]]
            replay_and_compare(root, job, config, manifest, report, k, atol, rtol, device, timeout)
    return report
