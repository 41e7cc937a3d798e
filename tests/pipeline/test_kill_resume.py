"""Kill and resume without manual steps (issue 26, item 8).

A real micro run (cifar100/lenet, one victim, grad, ratios 0 and 0.3, IG 1000 iterations) is
killed with SIGKILL -- the whole process group, as the kernel's OOM killer or a lost node
would -- while an attack job runs; the same command run again must finish (before: it stopped
with LockException, then IncompleteFilesException, until --unlock and --rerun-incomplete).
The stale-lock logic is also checked on its own: a live holder keeps its lock.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gibench.pipeline import runlock
from workflow_helpers import MICRO, ROOT, snakemake_bin, write_config

STUDY = "selective_encryption"
TARGET = f"results/attacks/{STUDY}/cifar100/lenet/s000/grad/r0.300/ig/rep0.safetensors"


def _cmd(workdir, cfg):
    return [snakemake_bin(), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(cfg), "--cores", "1", TARGET]


def _env():
    env = dict(os.environ)
    env["PATH"] = str(ROOT / ".venv" / "bin") + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
def test_a_run_killed_by_sigkill_resumes_when_run_again(tmp_path):
    cfg = copy.deepcopy(MICRO)
    cfg["studies"][STUDY].update({
        "significance": {"metrics": ["grad"], "ratios": [0.0, 0.3], "cost_metrics": ["grad"]},
        "attacks": {"ig": {"params": {"iterations": 1000}}},
        "overhead": {"enabled": False},
    })
    path = write_config(tmp_path, cfg)
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(_cmd(tmp_path, path), cwd=tmp_path, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 900
        # the attack's first progress line: it is running now (a warm-mode job starts at once,
        # so a fixed sleep after "rule attack:" could outlast it); 1000 iterations take seconds
        while ": iteration 0," not in (tmp_path / "first.log").read_text():
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "the attack job never started"
            time.sleep(0.1)
        assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)              # Snakemake and its job, no clean-up
        proc.wait(timeout=60)
    finally:
        log.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (tmp_path / TARGET).exists()
    assert list((tmp_path / ".snakemake" / "locks").glob("*.lock")), "the killed run left no lock to clear"
    # a kill between a job's outputs (a restarts or decade job writes its restarts' / slots'
    # artifacts one after another; each restart is one file now, its trace inside) leaves an
    # output on disk that Snakemake marked incomplete: put one there (its bytes are junk)
    (tmp_path / TARGET).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / TARGET).write_bytes(b"half a reconstruction")

    again = subprocess.run(_cmd(tmp_path, path), cwd=tmp_path, env=_env(), capture_output=True, text=True,
                           timeout=1800)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-5000:]
    assert "gibench: removed the lock of Snakemake process" in out
    from gibench import io
    io.load_tensors(tmp_path / TARGET)                    # recomputed (rerun-incomplete), not trusted
    assert not list((tmp_path / ".snakemake" / "locks").glob("*.lock"))
    assert not list((tmp_path / ".snakemake" / "gibench-owners").glob("*.json"))    # the hooks cleaned up
    dry = subprocess.run(_cmd(tmp_path, path) + ["-n"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                         timeout=600)
    assert "Nothing to be done" in dry.stdout + dry.stderr


def _lock(workdir):
    d = workdir / runlock.LOCK_DIR
    d.mkdir(parents=True, exist_ok=True)
    (d / "0.output.lock").write_text("results/x\n")


def _owner(workdir, pid, host=None, start=None):
    import socket

    d = workdir / runlock.OWNER_DIR
    d.mkdir(parents=True, exist_ok=True)
    (d / f"h-{pid}.json").write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid,
                                                 "start": start if start is not None else runlock._start_time(pid)}))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_dead_holders_lock_is_removed(tmp_path):
    _lock(tmp_path)
    _owner(tmp_path, _dead_pid(), start="1")
    assert "removed the lock" in runlock.clear_stale(tmp_path)
    assert not list((tmp_path / runlock.LOCK_DIR).iterdir())


@pytest.mark.parametrize("case", ["alive", "other_host", "no_owner", "pid_reused_kept_when_same_start"])
def test_a_lock_that_may_be_held_is_kept(tmp_path, case):
    _lock(tmp_path)
    if case == "alive":
        _owner(tmp_path, os.getpid())                      # this very process holds it
    elif case == "other_host":
        _owner(tmp_path, _dead_pid(), host="another-login-node")
    elif case == "pid_reused_kept_when_same_start":
        _owner(tmp_path, os.getpid(), start=runlock._start_time(os.getpid()))
    assert runlock.clear_stale(tmp_path) is None
    assert list((tmp_path / runlock.LOCK_DIR).iterdir())


def test_a_reused_pid_does_not_keep_a_stale_lock(tmp_path):
    # the recorded holder's pid now belongs to a process started at another time (this one)
    _lock(tmp_path)
    _owner(tmp_path, os.getpid(), start="1")
    assert "removed the lock" in runlock.clear_stale(tmp_path)


def test_register_and_release(tmp_path):
    p = runlock.register(tmp_path)
    assert json.loads(p.read_text())["pid"] == os.getpid()
    runlock.release(tmp_path)
    assert not p.exists()
