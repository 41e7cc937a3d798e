"""Warm mode, the client side: run a local ``script:`` job in a fork of a server that has torch
and gibench's job modules imported already (issue 23).

Why hand-written: Snakemake starts every ``script:`` job as a fresh ``python`` process, and each
pays Python start-up plus ``import torch`` (1.3-1.5 CPU-s on the reference machine; most of a
cheap job).  Snakemake has no way to keep a warm interpreter for ``script:`` jobs (its ``run:``
jobs are whole Snakemake processes, slower), so this small Unix-socket fork server is what the
environment forces.

How it works
    The thin script calls ``run_job(snakemake, "module:function")``.  With warm mode on
    (:func:`enabled`), :func:`submit` connects to the server for the current code tree (starting
    it if absent: detached, own session, own log, one starter at a time under an ``flock``) and
    sends the pickled ``snakemake`` object, the function reference, cwd, environment, umask,
    niceness, ``sys.path``/``sys.argv`` and its fds 0/1/2 (``SCM_RIGHTS``).  The server
    (:mod:`gibench.pipeline.warm_server`) forks one child per job; the child takes over all of
    that, resets signal handlers and calls :func:`gibench.pipeline.runner.run_job` with the
    function, exactly as a fresh process would (text log, run record, threads, device).  The
    server tells the client the child's pid, then its exit status; the client exits with it (or
    dies of the same signal).
Kill propagation
    SIGTERM/SIGINT/SIGHUP to the client are forwarded to the child's process group; if the
    client's connection closes before the child ends (client killed with SIGKILL), the server
    SIGKILLs the child's group; a child whose server dies gets SIGKILL (``PR_SET_PDEATHSIG``).
Never stale code
    The socket path is keyed by :func:`tree_digest`: ``sys.executable``, the Python, torch and
    Snakemake versions, the package directory, (path, mtime_ns, size) of every ``.py`` under it,
    and the environment variables read at import time (``PYTHONPATH``, ``GIBENCH_*``, thread
    settings).  A changed tree gets a new server; the server re-checks the digest after its
    imports and refuses to serve if the tree changed meanwhile.  Idle servers exit after
    ``GIBENCH_WARM_IDLE`` seconds (default 120) and remove their socket.
When on
    By default for local runs; never inside a Slurm job (``SLURM_JOB_ID`` set: one job per
    allocation, nothing to share); ``GIBENCH_WARM=0`` switches it off.  Any failure to reach or
    start the server prints one warning line on stderr and the job runs in-process as before.
Honest costs
    Snakemake's ``benchmark:`` TSV measures the client's process tree (``s`` is right; its
    ``cpu_time``/``max_rss`` count only the thin client under warm mode): the run record in the
    job's JSON log carries the job process's own ``cpu_s``, ``process_cpu_s`` and ``max_rss_mb``.

This module imports no torch (the DAG build and every thin client import it).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import importlib.util
import os
import pickle
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ENV = "GIBENCH_WARM"                 # "0": off; "1" or unset: on (never under Slurm)
IDLE_ENV = "GIBENCH_WARM_IDLE"       # seconds an idle server waits before it exits
DIR_ENV = "GIBENCH_WARM_DIR"         # socket directory (default /tmp/gibench-warm-<uid>)
START_TIMEOUT_ENV = "GIBENCH_WARM_START_TIMEOUT"   # seconds to wait for a new server
DEFAULT_IDLE_S = 120.0
DEFAULT_START_TIMEOUT_S = 120.0
PACKAGE_DIR = Path(__file__).resolve().parents[1]      # src/gibench
#: environment read when modules are imported: a server imported with other values is another server
_IMPORT_ENV_PREFIXES = ("GIBENCH_", "OMP_", "MKL_", "OPENBLAS_", "TORCH_", "PYTORCH_", "CUBLAS_", "CUDA_")
_IMPORT_ENV_NAMES = ("PYTHONPATH", "PYTHONHASHSEED", "PYTHONWARNINGS", "HF_HOME")
_HDR = struct.Struct("!Q")   # request length; then the pickled request
_PID = struct.Struct("!q")   # server -> client: the child's pid
_STATUS = struct.Struct("!i")  # server -> client: exit code (negative: killed by that signal)
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class WarmUnavailable(Exception):
    """The server could not be reached or started (the job then runs in-process)."""


def enabled(environ: Any = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("SLURM_JOB_ID"):
        return False
    return env.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def socket_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or f"/tmp/gibench-warm-{os.getuid()}")


def _stat_key(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_mtime_ns}:{st.st_size}"


def _package_origin(name: str) -> str:
    mod = sys.modules.get(name)
    if mod is not None and getattr(mod, "__file__", None):
        return str(mod.__file__)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    return str(spec.origin) if spec and spec.origin else f"{name}:absent"


def tree_digest(environ: Any = None) -> str:
    """Hex digest of everything that decides which code a server would run (module docstring)."""
    env = os.environ if environ is None else environ
    h = hashlib.sha256()
    torch_init = _package_origin("torch")
    parts = [sys.executable, sys.version, str(PACKAGE_DIR), _stat_key(torch_init),
             _stat_key(os.path.join(os.path.dirname(torch_init), "version.py")),
             _stat_key(_package_origin("snakemake"))]
    parts += sorted(f"{k}={v}" for k, v in env.items()
                    if (k in _IMPORT_ENV_NAMES or k.startswith(_IMPORT_ENV_PREFIXES)) and not k.startswith(ENV))
    for root, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        parts += [_stat_key(os.path.join(root, f)) for f in sorted(files) if f.endswith(".py")]
    h.update("\0".join(parts).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def socket_path(digest: str) -> Path:
    return socket_dir() / f"{digest[:16]}.sock"


def private_dir(path: Path) -> Path:
    """``path`` as a directory only this user can enter (created 0700); WarmUnavailable otherwise."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as e:
        raise WarmUnavailable(f"socket directory {path}: {e}") from e
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise WarmUnavailable(f"socket directory {path} is not a private directory of this user")
    if not os.access(path, os.W_OK | os.X_OK):
        raise WarmUnavailable(f"socket directory {path} is not writable")
    return path


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except OSError:
        s.close()
        raise
    return s


def _start_server(path: Path, digest: str) -> subprocess.Popen:
    log = open(path.with_suffix(".log"), "ab")
    try:
        env = dict(os.environ)
        # the server imports the same gibench as this client (its src/ first on the path)
        src = str(PACKAGE_DIR.parent)
        env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                     if p and p != src])
        return subprocess.Popen(
            [sys.executable, "-m", "gibench.pipeline.warm_server", str(path), digest,
             json.dumps(os.environ.get("PYTHONPATH"))],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, close_fds=True,
            start_new_session=True, cwd="/", env=env)
    finally:
        log.close()


def connect(digest: str | None = None) -> socket.socket:
    """A connection to the server for this code tree, started here if none runs."""
    digest = digest or tree_digest()
    path = socket_path(digest)
    private_dir(path.parent)
    with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
        return _connect(path)
    refused = path.with_suffix(".refused")
    if refused.exists():
        raise WarmUnavailable(f"the server for this code tree refused: {refused.read_text().strip()}")
    try:
        lock = open(path.with_suffix(".lock"), "a")
    except OSError as e:
        raise WarmUnavailable(f"lock file: {e}") from e
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # one starter; the others find its socket after
        with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
            return _connect(path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()                         # a dead server's socket
        try:
            proc = _start_server(path, digest)
        except OSError as e:
            raise WarmUnavailable(f"cannot start the server: {e}") from e
        deadline = time.monotonic() + float(os.environ.get(START_TIMEOUT_ENV) or DEFAULT_START_TIMEOUT_S)
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
                return _connect(path)
            if proc.poll() is not None:
                raise WarmUnavailable(f"the server exited with {proc.returncode} (log {path.with_suffix('.log')})")
            time.sleep(0.05)
        raise WarmUnavailable(f"the server did not open {path} in time (log {path.with_suffix('.log')})")


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except InterruptedError:
            continue
        if not chunk:
            return None
        buf += chunk
    return buf


def _open_fds() -> list[int]:
    """fds 0, 1, 2 of this process (/dev/null in place of a closed one)."""
    out = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            out.append(fd)
        except OSError:
            out.append(os.open(os.devnull, os.O_RDWR))
    return out


def request(smk: Any, ref: str) -> bytes:
    return pickle.dumps({
        "ref": ref, "smk": pickle.dumps(smk, protocol=pickle.HIGHEST_PROTOCOL), "cwd": os.getcwd(),
        "env": dict(os.environ), "umask": _umask(), "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "sys_path": list(sys.path), "argv": list(sys.argv)}, protocol=pickle.HIGHEST_PROTOCOL)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def submit(smk: Any, ref: str) -> int:
    """Run ``ref`` on ``smk`` in a warm child; its exit code (negative: killed by that signal).
    WarmUnavailable when nothing was sent (the caller then runs the job in-process)."""
    try:
        payload = request(smk, ref)
    except Exception as e:   # an unpicklable snakemake object: run in-process
        raise WarmUnavailable(f"cannot pickle the job: {type(e).__name__}: {e}") from e
    try:
        sock = connect()
    except OSError as e:
        raise WarmUnavailable(str(e)) from e
    with sock:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            socket.send_fds(sock, [_HDR.pack(len(payload))], _open_fds())
            sock.sendall(payload)
        except OSError as e:
            raise WarmUnavailable(f"cannot send the job: {e}") from e
        return _wait(sock)


def _wait(sock: socket.socket) -> int:
    """Forward signals to the child while waiting for its exit code."""
    child = {"pid": None}

    def forward(signum, frame):
        if child["pid"] is None:       # the server has not forked yet: dropping the
            sock.close()               # connection makes it kill the child it forks
            die(-signum)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child["pid"], signum)

    old = {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}
    try:
        raw = _recv_exact(sock, _PID.size)
        if raw is None:
            print("gibench warm: the server closed the connection before starting the job", file=sys.stderr)
            return 1
        child["pid"] = _PID.unpack(raw)[0]
        raw = _recv_exact(sock, _STATUS.size)
        if raw is None:
            print(f"gibench warm: the server went away while job pid {child['pid']} ran", file=sys.stderr)
            return 1
        return _STATUS.unpack(raw)[0]
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def die(code: int) -> None:
    """Flush stdout/stderr and end this process with ``code``, or for a negative one die of that
    signal (the client, as its child did; the child, as its job asked), 128 + signal should the
    signal not kill."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(128 - code if code < 0 else code & 0xFF)


def exit_with(code: int) -> None:
    """End this client as the job's process ended (0 returns: the script then ends normally)."""
    if code != 0:
        die(code)
