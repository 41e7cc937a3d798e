"""Replaying archived jobs (checks 5-6 of :mod:`gibench.archive`): the re-runnable jobs of an
unpacked archive, a seeded sample spread over the rules, each re-run in the archive with the
archived code and inputs (its outputs set aside, then compared and put back), and the re-making
of every table and figure from the archived rows."""
from __future__ import annotations

import fnmatch
import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable


from ..provenance import canonical_json, sidecar_path

from .checks import Report
from .compare import Tolerance, compare_file
from .pack import _is_final


# ------------------------------------------------------------------ replaying jobs

@dataclass
class Job:
    name: str                   # job function (module:qualname)
    rule: str
    record: dict
    outputs: list[str]          # every output path of the job (files or directories)
    artifacts: list[str] = field(default_factory=list)   # archived files whose record is this job's


def _job_key(rec: dict) -> str:
    from ..pipeline.replay import job_name_of

    return canonical_json([job_name_of(rec), rec.get("rule"), rec.get("wildcards"), rec.get("output_files")])


def replay_jobs(root: Path, records: dict[str, dict], configs: dict[str, dict]) -> tuple[list[Job], dict[str, int]]:
    """Jobs that can be re-run from the archive, and why the others cannot (reason -> count)."""
    from ..pipeline.replay import job_name_of
    from ..provenance import flat_files

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
    from ..provenance import read_any_record

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
