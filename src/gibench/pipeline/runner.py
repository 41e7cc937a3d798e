"""Run one job: threads, device, timing, progress, and the volatile run record in the log."""
from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, Iterator, TextIO

from ..provenance import job_context, run_record, write_sidecars
from . import warm
from .replay import resolve
from .slot_groups import is_decade_job, run_decade

# torch (and gibench.device, which imports it) only when a job runs: the DAG build imports this
# module (every job module's `say`) and needs no torch (tests/test_import_graph.py)
if TYPE_CHECKING:
    import torch


def __getattr__(name: str) -> Any:
    if name == "pick_device":       # kept importable from here, loaded on first use
        from ..device import pick_device

        return pick_device
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: True in a warm-mode child (:mod:`gibench.pipeline.warm_server` sets it): the run record says so
WARM = False


def say(msg: str) -> None:
    """A progress line on stderr (and in the job's `out` log), with the Slurm job id on a cluster."""
    job = os.environ.get("SLURM_JOB_ID")
    print(f"[gibench {time.strftime('%H:%M:%S')}{f' slurm {job}' if job else ''}] {msg}", file=sys.stderr, flush=True)


class _Tee:
    """A text stream that writes to the terminal stream and to the job's text log."""

    def __init__(self, stream: TextIO, log: TextIO):
        self._stream, self._log = stream, log

    def write(self, s: str) -> int:
        self._log.write(s)
        return self._stream.write(s)

    def flush(self) -> None:
        self._log.flush()
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the terminal's
        return getattr(self._stream, name)


def text_log(smk: Any) -> str | None:
    """The job's stdout/stderr log: its ``log:`` file named ``out`` (rules/*.smk), else the first
    log path ending in ``.log`` (a replay's plain list), else None."""
    logs = getattr(smk, "log", None) or []
    named = getattr(logs, "out", None)
    if isinstance(named, str):
        return named
    return next((str(p) for p in logs if str(p).endswith(".log")), None)


@contextlib.contextmanager
def captured_output(path: str | None) -> Iterator[None]:
    """Copy everything the job prints through ``sys.stdout``/``sys.stderr`` (progress lines,
    warnings, tracebacks) into ``path`` while still showing it on the terminal.  Output that
    bypasses Python's streams (C libraries writing to fd 1/2 directly) reaches only the
    terminal or the Slurm log."""
    if not path:
        yield
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8", buffering=1) as log:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)
        try:
            yield
        except BaseException:
            log.write(traceback.format_exc())  # the terminal gets it from the interpreter
            raise
        finally:
            sys.stdout, sys.stderr = out, err


def run_job(smk: Any, fn: str | Callable[[Any, torch.device], dict | None]) -> None:
    """Call ``fn(smk, device)``; write the run record (volatile facts) to the job's log and
    its stdout/stderr to its text log (:func:`text_log`).  A decade job (a ``decade`` wildcard:
    :mod:`gibench.pipeline.slot_groups`) runs ``fn`` once per slot, each slot exactly as its
    per-slot rule's job (run record and text log included), and records the decade's run.

    ``fn`` may be a reference ``"module:qualname"`` (what the thin scripts pass, so that they
    import no torch): with warm mode on (:mod:`gibench.pipeline.warm`) the job then runs in a
    fork of the warm server and this process exits as that child did; otherwise (or when the
    server cannot be reached: one warning line) it is imported and run here."""
    if isinstance(fn, str):
        if warm.enabled():
            try:
                code = warm.submit(smk, fn)
            except warm.WarmUnavailable as e:
                print(f"gibench warm: {e}; running the job in this process", file=sys.stderr, flush=True)
            else:
                warm.exit_with(code)
                return
        fn = resolve(fn)
    with captured_output(text_log(smk)):
        if is_decade_job(smk):
            _run_decade(smk, fn)
        else:
            _run_job(smk, fn)


def _run_decade(smk: Any, fn: Callable) -> None:
    start = time.time()
    cpu0 = _cpu_seconds()
    status, extra = "ok", {}
    try:
        extra = run_decade(smk, fn, _run_job_logged, say)
    except BaseException as e:
        status = f"failed: {type(e).__name__}: {e}"
        raise
    finally:
        _write_run_record(smk, start, status, None, {**extra, "cpu_s": round(_cpu_seconds() - cpu0, 3)})


def _run_job_logged(smk: Any, fn: Callable) -> None:
    with captured_output(text_log(smk)):
        _run_job(smk, fn)


def _run_job(smk: Any, fn: Callable[[Any, torch.device], dict | None]) -> None:
    import torch

    from ..device import job_device

    threads = int(getattr(smk, "threads", 1) or 1)
    torch.set_num_threads(max(1, threads))
    start = time.time()
    cpu0 = _cpu_seconds()
    status, extra, device = "ok", {}, None
    try:
        # a job given a GPU that finds no CUDA stops here (or warns, with cpu_fallback: true)
        device = job_device(smk)
        # records made inside name the job function, its log and the rule's params (replayable);
        # outputs that cannot embed a record (tables, figures) get a <file>.prov.json
        with job_context(fn, smk):
            extra = fn(smk, device) or {}
            write_sidecars(smk, device)
    except BaseException as e:
        status = f"failed: {type(e).__name__}: {e}"
        extra = {"traceback": traceback.format_exc()}
        raise
    finally:
        extra = {**extra, "cpu_s": round(_cpu_seconds() - cpu0, 3)}
        _write_run_record(smk, start, status, device, extra)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of the children it waited for."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def process_usage() -> dict[str, Any]:
    """The job process's own costs for the run record (Snakemake's ``benchmark:`` TSV measures the
    client's process tree, which under warm mode is only the thin client): CPU seconds of the whole
    process (a fresh process: with its Python start-up and imports; a warm child: from its fork)
    and its peak resident memory (a warm child's is counted by the kernel from its fork and was
    lower than a fresh process's in the micro workflow, 172 vs 251 MB: compare it within one mode),
    and whether it ran warm."""
    rss_kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"process_cpu_s": round(_cpu_seconds(), 3), "max_rss_mb": round(rss_kib / 1024, 1), "warm": WARM}


def _write_run_record(smk: Any, start: float, status: str, device: Any, extra: dict) -> None:
    logs = list(getattr(smk, "log", []) or [])
    if logs:
        rec = run_record(start, rule=getattr(smk, "rule", None), status=status,
                         device=None if device is None else str(device), **process_usage())
        # a job's own facts never overwrite the runner's: a job key the record already has
        # (status, device, rule, seconds -- the significance job's metric time --, start, ...)
        # is kept as job_<key>
        rec.update({(f"job_{k}" if k in rec else k): v for k, v in extra.items()})
        from .. import io     # here, not at the top: a warm-mode thin client never needs it (pyarrow)

        try:
            io.write_json(logs[0], rec)
        except OSError:
            pass
