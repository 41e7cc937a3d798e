"""Run one job: threads, device, timing, progress, and the volatile run record in the log."""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, Callable

import torch

from .. import io
from ..provenance import job_context, run_record, write_sidecars


def pick_device(setting: str) -> torch.device:
    if setting == "cpu":
        return torch.device("cpu")
    if setting == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("config device: cuda, but torch.cuda.is_available() is False on this node")
        return torch.device("cuda")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def say(msg: str) -> None:
    print(f"[gibench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_job(smk: Any, fn: Callable[[Any, torch.device], dict | None]) -> None:
    """Call ``fn(smk, device)``; write the run record (volatile facts) to the job's log."""
    threads = int(getattr(smk, "threads", 1) or 1)
    torch.set_num_threads(max(1, threads))
    device = pick_device(smk.config.get("device", "auto"))
    start = time.time()
    status, extra = "ok", {}
    try:
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
        logs = list(getattr(smk, "log", []) or [])
        if logs:
            # a job's own facts never overwrite the runner's (status, device, rule)
            extra = {(f"job_{k}" if k in ("status", "device", "rule") else k): v for k, v in extra.items()}
            rec = run_record(start, rule=getattr(smk, "rule", None), status=status,
                             device=str(device), **extra)
            try:
                io.write_json(logs[0], rec)
            except OSError:
                pass
