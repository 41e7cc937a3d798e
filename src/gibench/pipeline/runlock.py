"""A stale Snakemake lock left by a killed run is removed on the next run, without manual steps.

Snakemake (9.x, file persistence) locks the working directory with ``.snakemake/locks/*.lock``
files that name the locked paths but not the process holding them; a run killed by SIGKILL
(out of memory, a node lost, ``kill -9``) leaves them behind and every later run stops with
``LockException`` until someone runs ``--unlock``.  Snakemake offers no stale-lock detection,
so the Snakefile records which process holds the lock: ``onstart`` (the lock is held by then)
writes ``.snakemake/gibench-owners/<host>-<pid>.json`` with the process's start time,
``onsuccess``/``onerror`` remove it.  When the next run is parsed, locks whose every recorded
holder is a process of this host that no longer runs (or whose pid now belongs to a process
started later) are removed.  Nothing is removed when a holder still runs, when a holder ran on
another host (it cannot be checked from here), or when locks exist that no holder recorded
(an older gibench, or a run killed before ``onstart``): Snakemake then says ``--unlock``, as before.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

LOCK_DIR = Path(".snakemake") / "locks"
OWNER_DIR = Path(".snakemake") / "gibench-owners"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc/<pid>/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _owner_file(workdir: Path, host: str, pid: int) -> Path:
    return workdir / OWNER_DIR / f"{host}-{pid}.json"


def register(workdir: str | os.PathLike = ".") -> Path:
    """Record this process as the holder of the working directory's lock."""
    from .. import io

    pid, host = os.getpid(), socket.gethostname()
    path = _owner_file(Path(workdir), host, pid)
    io.write_json(path, {"host": host, "pid": pid, "start": _start_time(pid)})
    return path


def release(workdir: str | os.PathLike = ".") -> None:
    try:
        _owner_file(Path(workdir), socket.gethostname(), os.getpid()).unlink()
    except FileNotFoundError:
        pass


def _running(owner: dict) -> bool:
    """False only when the holder is known to be gone; a holder on another host counts as running."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = int(owner.get("pid", -1))
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # exists, someone else's
        pass
    started = _start_time(pid)
    return not (owner.get("start") and started is not None and started != owner["start"])   # pid reused


def clear_stale(workdir: str | os.PathLike = ".") -> str | None:
    """Remove the lock files of a killed run; returns what was done (None: nothing)."""
    workdir = Path(workdir)
    owners_dir = workdir / OWNER_DIR
    owner_files = sorted(owners_dir.glob("*.json")) if owners_dir.is_dir() else []
    owners = []
    for f in owner_files:
        try:
            owners.append((f, json.loads(f.read_text())))
        except (OSError, ValueError):
            owners.append((f, {}))            # unreadable: treated as running (nothing removed)
    locks = sorted((workdir / LOCK_DIR).glob("*.lock")) if (workdir / LOCK_DIR).is_dir() else []
    gone = [(f, o) for f, o in owners if o and not _running(o)]
    if not locks:
        for f, _ in gone:                     # holders that ended without their onsuccess/onerror hook
            f.unlink(missing_ok=True)
        return None
    if not owners or len(gone) != len(owners):
        return None
    for lock in locks:
        lock.unlink(missing_ok=True)
    for f, _ in gone:
        f.unlink(missing_ok=True)
    pids = ", ".join(str(o.get("pid")) for _, o in gone)
    return (f"removed the lock of Snakemake process {pids} on {socket.gethostname()}, which no longer runs "
            f"(killed or crashed); outputs it left incomplete are recomputed (rerun-incomplete)")


__all__ = ["register", "release", "clear_stale", "LOCK_DIR", "OWNER_DIR"]
