"""Warm mode, the server side: ``python -m gibench.pipeline.warm_server <socket> <digest>``.

Started detached by :func:`gibench.pipeline.warm.connect` (see that module for the why and the
protocol).  It imports torch, Snakemake's pickled-object classes, every gibench job module and
the libraries most jobs import lazily (:data:`LAZY_LIBRARIES`) -- import only: no torch op, no
CUDA, no thread pool is ever started here, since forking after OpenMP/CUDA use is unsafe -- then
serves: per connection it reads the request (fds 0/1/2 and the pickled job), forks a child, tells
the client the child's pid and, when the child ends, its exit status.  A client whose connection
closes first gets its child's process group SIGKILLed.  No connection for ``GIBENCH_WARM_IDLE``
seconds and no child running: it removes its socket and exits.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from . import warm

_UCRED = struct.Struct("3i")


def _log(msg: str) -> None:
    print(f"[gibench warm {time.strftime('%H:%M:%S')} pid {os.getpid()}] {msg}", file=sys.stderr, flush=True)


def job_modules() -> list[str]:
    """The modules the thin scripts name: gibench.pipeline.jobs_* and gibench.studies.*.jobs*."""
    pkg = warm.PACKAGE_DIR
    files = sorted(pkg.glob("pipeline/jobs_*.py")) + sorted(pkg.glob("studies/*/jobs*.py"))
    return [".".join(("gibench",) + p.relative_to(pkg).with_suffix("").parts) for p in files]


#: libraries the job modules import lazily (inside functions, so that the DAG build and the thin
#: clients stay light) that most forked jobs would otherwise import again, each child on its own:
#: ``torch._dynamo`` (with sympy; imported by the first optimiser or ``torch.func`` transform of a
#: process: about 0.9 CPU-s, paid by every attack, significance and training job), pandas and
#: pyarrow's Parquet/dataset modules (the metric and cost tables), safetensors' torch API, PIL.
#: Measured on the demo's jobs replayed in forks of a preloaded process (first run minus a second
#: run in the same child): a significance job 2.0 -> 0.4 CPU-s, an SD/CS attack job 1.0 -> 0.2 or
#: less, an evaluate job 0.36 -> 0.09.  Each starts no thread when imported
#: (``test_preload_starts_no_thread``); transformers' ``modeling_utils`` does (one native thread),
#: so the text models stay imported per job.
LAZY_LIBRARIES = ("torch._dynamo", "torch.func", "torch.profiler", "pandas", "pyarrow.parquet", "pyarrow.dataset",
                  "safetensors.torch", "PIL.Image")


def base_modules() -> list[str]:
    """What the server imports before :data:`LAZY_LIBRARIES`: torch, the classes of the pickled
    ``snakemake`` object, the runner and every job module."""
    return ["torch", "snakemake.iocontainers", "snakemake.io", "snakemake.logging", "gibench.pipeline.runner",
            "gibench.device", *job_modules()]


def preload() -> None:
    for name in [*base_modules(), *LAZY_LIBRARIES]:
        try:
            importlib.import_module(name)
        except Exception as e:   # the child imports it again and fails there, on the job's stderr
            _log(f"preloading {name} failed: {type(e).__name__}: {e}")


def cuda_touched() -> bool:
    """Whether the preload initialised CUDA or asked the driver for devices (a forked child could
    then not use CUDA); the server refuses to serve then and jobs run in their own processes."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    return bool(torch.cuda.is_initialized() or getattr(torch.cuda, "_cached_device_count", None) is not None)


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    conn.settimeout(60)
    data, fds, _flags, _addr = socket.recv_fds(conn, warm._HDR.size, 3)
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise OSError(f"expected 3 fds, got {len(fds)}")
    rest = warm._recv_exact(conn, warm._HDR.size - len(data)) if len(data) < warm._HDR.size else b""
    if rest is None:
        raise OSError("connection closed in the header")
    (n,) = warm._HDR.unpack(data + rest)
    body = warm._recv_exact(conn, n)
    if body is None:
        raise OSError("connection closed in the request")
    conn.settimeout(None)
    return pickle.loads(body), fds


def _set_pdeathsig() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))   # PR_SET_PDEATHSIG


def child_main(req: dict, fds: list[int]) -> int:
    """In the forked child: become the job's process, run it, return its exit code."""
    os.setpgid(0, 0)
    _set_pdeathsig()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = os.fdopen(0, "r", closefd=False)
    sys.stdout = os.fdopen(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, errors="backslashreplace", closefd=False)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    os.umask(req["umask"])
    with contextlib.suppress(OSError):       # only ever lower the priority (unprivileged)
        if req["nice"] > os.getpriority(os.PRIO_PROCESS, 0):
            os.setpriority(os.PRIO_PROCESS, 0, req["nice"])
    sys.path[:] = req["sys_path"]
    sys.argv[:] = req["argv"]
    try:
        from . import runner
        from .replay import resolve

        smk = pickle.loads(req["smk"])
        runner.WARM = True
        runner.run_job(smk, resolve(req["ref"]))
        return 0
    except SystemExit as e:
        code = e.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return -int(signal.SIGINT)
    except BaseException:
        traceback.print_exc()
        return 1


def _run_child(req: dict, fds: list[int], keep_closed: list[Any]) -> None:
    for obj in keep_closed:
        with contextlib.suppress(Exception):
            obj.close()
    code = 1
    try:
        code = child_main(req, fds)
    except BaseException:
        traceback.print_exc()
    try:
        import atexit

        atexit._run_exitfuncs()      # as a process that ends normally would (logging, tempfiles)
    finally:
        warm.die(code)


class Server:
    def __init__(self, path: Path, idle_s: float):
        self.path, self.idle_s = path, idle_s
        self.sel = selectors.DefaultSelector()
        self.jobs: dict[int, dict] = {}        # pid -> {"conn", "pidfd"}
        self.last_active = time.monotonic()

    def serve(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(str(self.path))
        self.inode = os.stat(self.path).st_ino
        self.lsock.listen(64)
        self.sel.register(self.lsock, selectors.EVENT_READ, ("accept", None))
        _log(f"serving {self.path}")
        try:
            while True:
                events = self.sel.select(timeout=1.0 if self.jobs else min(1.0, self.idle_s))
                for key, _ in events:
                    kind, pid = key.data
                    if kind == "accept":
                        self._accept()
                    elif kind == "conn":
                        self._client_event(pid)
                    else:
                        self._reap(pid)
                if not self.pidfd_ok:
                    for pid in list(self.jobs):
                        self._reap(pid, block=False)
                if self.jobs or events:
                    self.last_active = time.monotonic()
                elif time.monotonic() - self.last_active > self.idle_s:
                    _log("idle: exiting")
                    return
        finally:
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == self.inode:
                    self.path.unlink()

    pidfd_ok = hasattr(os, "pidfd_open")

    def _accept(self) -> None:
        conn, _ = self.lsock.accept()
        try:
            uid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))[1]
            if uid != os.getuid():
                raise OSError(f"peer uid {uid}")
            req, fds = _recv_request(conn)
        except Exception as e:
            _log(f"bad request: {type(e).__name__}: {e}")
            conn.close()
            return
        others = [self.lsock, self.sel] + [j["conn"] for j in self.jobs.values()] + \
                 [j["pidfd"] for j in self.jobs.values() if j["pidfd"] is not None]
        pid = os.fork()
        if pid == 0:
            conn.close()
            _run_child(req, fds, others)     # never returns
        for fd in fds:
            os.close(fd)
        pidfd = None
        if self.pidfd_ok:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                type(self).pidfd_ok = False
        self.jobs[pid] = {"conn": conn, "pidfd": pidfd, "ref": req.get("ref")}
        try:
            conn.sendall(warm._PID.pack(pid))
        except OSError:
            pass                            # the client went away: its EOF below kills the child
        self.sel.register(conn, selectors.EVENT_READ, ("conn", pid))
        if pidfd is not None:
            self.sel.register(pidfd, selectors.EVENT_READ, ("exit", pid))

    def _client_event(self, pid: int) -> None:
        job = self.jobs.get(pid)
        if job is None:
            return
        try:
            data = job["conn"].recv(64)
        except OSError:
            data = b""
        if not data:        # the client is gone: no job survives its client
            _log(f"client of {pid} ({job['ref']}) went away: killing it")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            self.sel.unregister(job["conn"])
            job["conn"].close()
            job["conn"] = None
            if job["pidfd"] is None:
                self._reap(pid)

    def _reap(self, pid: int, block: bool = True) -> None:
        got, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        if got == 0:
            return
        job = self.jobs.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if job["pidfd"] is not None:
            self.sel.unregister(job["pidfd"])
            os.close(job["pidfd"])
        if job["conn"] is not None:
            with contextlib.suppress(OSError):
                job["conn"].sendall(warm._STATUS.pack(code))
            self.sel.unregister(job["conn"])
            job["conn"].close()


def main(argv: list[str]) -> int:
    path, digest, client_pythonpath = Path(argv[0]), argv[1], json.loads(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the starter's terminal is not ours
    preload()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}   # the digest of the client's
    if client_pythonpath is not None:                                   # environment (ours has src/ first)
        env["PYTHONPATH"] = client_pythonpath
    if cuda_touched():
        reason = "an import touched CUDA: forked jobs could not use it"
        _log(f"{reason}; not serving")
        path.with_suffix(".refused").write_text(reason + "\n")   # clients of this tree stop trying
        return 4
    now = warm.tree_digest(env)
    if now != digest:
        _log(f"the code tree changed while importing ({digest[:16]} -> {now[:16]}): not serving")
        return 3
    idle = float(os.environ.get(warm.IDLE_ENV) or warm.DEFAULT_IDLE_S)
    Server(path, idle).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
