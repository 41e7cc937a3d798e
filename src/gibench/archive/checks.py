"""The static checks of ``gibench verify`` (checks 0-4 of :mod:`gibench.archive`): the archive id,
the manifest, the config snapshots, every tensor artifact's recorded digest and the provenance
chain; their verdicts are collected in a :class:`Report`."""
from __future__ import annotations

import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..provenance import CONFIG_DIR, digest_obj, dir_digest

from .pack import MANIFEST, MANIFEST_SHA, META, ArchiveError, _records, _sha


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


def check_tensor_digests(root: Path, report: Report) -> None:
    """Each archived tensor artifact's data against the digest recorded when it was written (what
    a byte changed after the fact, under a rewritten manifest, cannot hide from)."""
    from .. import io

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
