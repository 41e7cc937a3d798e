"""Warm mode (gibench.pipeline.warm): jobs run in forks of a preloaded server exactly as in a fresh
process -- exit codes, stdout/stderr on the client's fds, env/cwd/umask, kill propagation, a new
server for a changed tree, the in-process fallback -- and a workflow's artifacts are the same
bytes with warm mode on and off.

Each client is a real subprocess (it exits as its job did); the servers live in a private short
socket directory and exit after a few idle seconds.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gibench.pipeline import warm
from workflow_helpers import MICRO, ROOT, run_snakemake, snakemake_env, write_config

TESTS = Path(__file__).resolve().parents[1]
CLIENT = ("import sys, warm_jobs\n"
          "from gibench.pipeline.runner import run_job\n"
          "run_job(warm_jobs.smk(sys.argv[1]), sys.argv[2])\n")


@pytest.fixture(scope="module")
def sockdir():
    d = tempfile.mkdtemp(prefix="gw", dir="/tmp")      # AF_UNIX paths are short
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _env(sockdir: str, **extra: str) -> dict:
    env = snakemake_env(str(TESTS))
    env.pop("SLURM_JOB_ID", None)
    env.update({warm.ENV: "1", warm.DIR_ENV: sockdir, warm.IDLE_ENV: "8"}, **extra)
    return env


def _client(tmp: Path, ref: str, env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLIENT, str(tmp), ref], cwd=tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _run(tmp: Path, ref: str, env: dict) -> tuple[int, str, str]:
    p = _client(tmp, ref, env)
    out, err = p.communicate(timeout=300)
    return p.returncode, out, err


def _record(tmp: Path) -> dict:
    return json.loads((tmp / "logs" / "job.json").read_text())


def _gone(pid: int, within_s: float = 60) -> bool:
    """Poll until ``pid`` no longer exists (a liveness bound, not a speed check)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_enabled_switches():
    assert warm.enabled({}) and warm.enabled({warm.ENV: "1"})
    assert not warm.enabled({warm.ENV: "0"})
    assert not warm.enabled({"SLURM_JOB_ID": "123"}) and not warm.enabled({"SLURM_JOB_ID": "1", warm.ENV: "1"})


def test_tree_digest_follows_file_changes(tmp_path, monkeypatch):
    pkg = tmp_path / "gibench"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    monkeypatch.setattr(warm, "PACKAGE_DIR", pkg)
    d0 = warm.tree_digest({})
    assert warm.tree_digest({}) == d0
    (pkg / "sub" / "b.py").write_text("y = 22\n")            # size changes
    d1 = warm.tree_digest({})
    st = os.stat(pkg / "a.py")
    os.utime(pkg / "a.py", ns=(st.st_atime_ns, st.st_mtime_ns + 1000))   # only mtime changes
    d2 = warm.tree_digest({})
    (pkg / "c.py").write_text("")                              # a new module
    d3 = warm.tree_digest({})
    assert len({d0, d1, d2, d3}) == 4
    assert warm.tree_digest({"GIBENCH_PLUGINS": "x"}) != d3    # import-time environment
    assert warm.tree_digest({warm.IDLE_ENV: "5"}) == d3        # warm mode's own settings: no
    assert len(str(warm.socket_path(d3))) < 108


@pytest.mark.slow
def test_round_trip_exit_codes_fds_env_cwd(tmp_path, sockdir):
    env = _env(sockdir, GIBENCH_TEST_VALUE="from the client")
    code, out, err = _run(tmp_path, "warm_jobs:facts_job", env)
    assert code == 0, err
    assert "line on stdout" in out and "line on stderr" in err          # the client's own fds
    facts = json.loads((tmp_path / "out.json").read_text())
    assert facts["cwd"] == str(tmp_path) and facts["env"] == "from the client"
    rec = _record(tmp_path)
    assert rec["warm"] is True and rec["status"] == "ok" and rec["answer"] == 42
    assert rec["cpu_s"] >= 0 and rec["max_rss_mb"] > 0
    text = (tmp_path / "logs" / "job.log").read_text()
    assert "line on stdout" in text and "line on stderr" in text      # captured_output as before

    code, out, err = _run(tmp_path, "warm_jobs:exit3_job", env)
    assert code == 3 and "leaving with 3" in err
    code, out, err = _run(tmp_path, "warm_jobs:fail_job", env)
    assert code == 1 and "ValueError: boom 123" in err and "Traceback" in err
    assert _record(tmp_path)["status"].startswith("failed: ValueError")

    # the same jobs without warm mode: the same exit codes and facts (the reference)
    cold = _env(sockdir, GIBENCH_TEST_VALUE="from the client", **{warm.ENV: "0"})
    assert _run(tmp_path, "warm_jobs:exit3_job", cold)[0] == 3
    assert _run(tmp_path, "warm_jobs:fail_job", cold)[0] == 1
    code, out, err = _run(tmp_path, "warm_jobs:facts_job", cold)
    assert code == 0 and _record(tmp_path)["warm"] is False
    cold_facts = json.loads((tmp_path / "out.json").read_text())
    assert {k: cold_facts[k] for k in ("cwd", "env", "umask")} == {k: facts[k] for k in ("cwd", "env", "umask")}


@pytest.mark.slow
def test_changed_digest_starts_a_new_server(tmp_path, sockdir):
    servers = []
    for salt in ("one", "two", "one"):
        code, _, err = _run(tmp_path, "warm_jobs:facts_job", _env(sockdir, GIBENCH_TEST_SALT=salt))
        assert code == 0, err
        servers.append(json.loads((tmp_path / "out.json").read_text())["ppid"])   # the child's parent
    assert servers[0] == servers[2] != servers[1]
    assert servers[0] != os.getpid()


def test_fallback_runs_in_process_with_a_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = _run(tmp_path, "warm_jobs:facts_job", _env(str(blocker / "sub")))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("gibench warm:")]
    assert len(warnings) == 1 and "running the job in this process" in warnings[0]
    assert _record(tmp_path)["warm"] is False and "line on stdout" in out
    assert json.loads((tmp_path / "out.json").read_text())["env"] is None     # GIBENCH_TEST_VALUE unset


def _start_sleeper(tmp: Path, sockdir: str) -> tuple[subprocess.Popen, int]:
    p = _client(tmp, "warm_jobs:sleep_job", _env(sockdir))
    pidfile = tmp / "out.json.pid"
    deadline = time.monotonic() + 120
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert child != p.pid and _not_forked_by(child, p.pid)
    return p, child


def _not_forked_by(child: int, client: int) -> bool:
    """The job runs in another process than the client (a fork of the server)."""
    with open(f"/proc/{child}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    return ppid != client


@pytest.mark.slow
def test_killing_the_client_kills_the_job(tmp_path, sockdir):
    p, child = _start_sleeper(tmp_path, sockdir)
    p.kill()                                   # SIGKILL: nothing forwarded, the server sees EOF
    p.communicate()
    assert _gone(child), f"job {child} outlived its client"


@pytest.mark.slow
def test_sigterm_is_forwarded_and_the_client_dies_of_it(tmp_path, sockdir):
    p, child = _start_sleeper(tmp_path, sockdir)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGTERM
    assert _gone(child)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _measured_time(rel: str) -> bool:
    """Artifacts that hold measured wall-clock times (two cold runs differ too): the significance
    cost files and Table 6 (significance computation cost) made from them, with its sidecars."""
    return rel.endswith(".cost.parquet") or rel.startswith("results/cost/") or "/table6." in rel


def _artifacts(wd: Path) -> dict[str, str]:
    """sha256 of every file under results/ (logs/ and .snakemake/ hold the volatile run records)."""
    return {str(p.relative_to(wd)): _sha(p) for p in sorted((wd / "results").rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_micro_workflow_artifacts_are_byte_identical_warm_and_cold(tmp_path, sockdir):
    found = {}
    for mode in ("0", "1"):
        wd = tmp_path / f"warm{mode}"
        wd.mkdir()
        cfg = write_config(wd, {**MICRO, "hub_dir": str(tmp_path / "hub")})
        env = _env(sockdir, **{warm.ENV: mode})
        run_snakemake(wd, cfg, env=env)
        found[mode] = _artifacts(wd)
        records = [json.loads(p.read_text()) for p in (wd / "logs").rglob("*.json")]
        assert records and all(r.get("warm") is (mode == "1") for r in records if "status" in r)
    assert set(found["0"]) == set(found["1"])
    same = {k: v for k, v in found["0"].items() if not _measured_time(k)}
    # data, model, gradient, knowledge, the four significance masks, config report, ...
    assert len(same) >= 8 and any(k.endswith(".safetensors") for k in same)
    assert same == {k: found["1"][k] for k in same}


def test_server_refuses_after_cuda_was_touched(monkeypatch):
    import torch

    from gibench.pipeline import warm_server

    warm_server.preload()
    assert not warm_server.cuda_touched()          # importing torch and the job modules does not
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert warm_server.cuda_touched()


def test_preload_starts_no_thread():
    """The libraries the server preloads beside torch and the job modules start no OS thread
    when imported (a forked child would lack a thread that held a lock at the fork)."""
    code = ("import os, sys, importlib\n"
            "from gibench.pipeline import warm_server as ws\n"
            "n = lambda: len(os.listdir('/proc/self/task'))\n"
            "for m in ws.base_modules():\n"
            "    importlib.import_module(m)\n"
            "before = n()\n"
            "ws.preload()\n"
            "assert all(m in sys.modules for m in ws.LAZY_LIBRARIES)\n"
            "print(before, n())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=snakemake_env(),
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = map(int, out.stdout.split())
    assert after == before


def test_thin_client_imports_no_heavy_library():
    """A thin script imports only the runner before handing its job to the server: no torch, numpy
    or pyarrow (pyarrow alone was about 0.2 CPU-s of every warm-mode job's client)."""
    code = ("import sys\n"
            "import gibench.pipeline.runner\n"
            "print(sorted(m for m in ('torch', 'numpy', 'pyarrow', 'pandas') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=snakemake_env(),
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_job_modules_cover_the_thin_scripts():
    """Every module a thin script names is preloaded by the server."""
    import re

    from gibench.pipeline import warm_server

    refs = {m for p in (ROOT / "workflow" / "scripts").glob("*.py")
            for m in re.findall(r'"(gibench[\w.]*):\w+"', p.read_text())}
    refs |= {m for p in (ROOT / "workflow" / "scripts").glob("*.py")
             for m in re.findall(r'= "(gibench[\w.]*)"', p.read_text())}
    assert len(refs) >= 10
    assert refs <= set(warm_server.job_modules())


def test_a_refused_tree_runs_in_process_without_starting_servers(tmp_path):
    sockdir = tempfile.mkdtemp(prefix="gw", dir="/tmp")
    try:
        env = _env(sockdir)
        warm.private_dir(Path(sockdir))
        (Path(sockdir) / f"{warm.tree_digest(env)[:16]}.refused").write_text("because of a test\n")
        code, out, err = _run(tmp_path, "warm_jobs:facts_job", env)
        assert code == 0, err
        assert "refused: because of a test" in err and _record(tmp_path)["warm"] is False
        assert not list(Path(sockdir).glob("*.sock")) and not list(Path(sockdir).glob("*.log"))
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)
