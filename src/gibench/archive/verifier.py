"""``gibench verify``: :func:`verify` unpacks an archive and runs the checks of
:mod:`gibench.archive` in order (id, manifest, configs, tensor digests, provenance chain, tables
and figures re-made, a sample of other jobs replayed)."""
from __future__ import annotations

import contextlib
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Iterable


from .checks import (
    Report, all_records, check_chain, check_configs, check_id, check_manifest, check_tensor_digests,
    _safe_extract)
from .compare import DEFAULT_ATOL, DEFAULT_RTOL
from .pack import ArchiveError, _is_final
from .replay import is_table_or_figure, _job_key, rederive, replay_and_compare, replay_jobs, sample_jobs


def verify(archive: str | Path, sample: int | None = 4, seed: int = 0, atol: float = DEFAULT_ATOL,
           rtol: float = DEFAULT_RTOL, keep: str | Path | None = None, only: Iterable[str] = (),
           device: str | None = None, timeout: float | None = 3600.0, derive: bool = True,
           expect_id: str | None = None) -> Report:
    """Check an archive; see :mod:`gibench.archive`.  ``sample``: other jobs to re-run (None: all, 0:
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
