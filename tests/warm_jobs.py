"""Job functions for tests/pipeline/test_warm.py (importable by a warm child: tests/ is on its path)."""
import json
import os
import sys
import time


def smk(tmp, out="out.json"):
    """A picklable stand-in for Snakemake's object (logs: run record JSON, text log)."""
    from types import SimpleNamespace

    return SimpleNamespace(config={"device": "cpu"}, resources=SimpleNamespace(), threads=1, rule="warm_test",
                           log=[os.path.join(tmp, "logs", "job.json"), os.path.join(tmp, "logs", "job.log")],
                           input=[], output=[os.path.join(tmp, out)], params={}, wildcards={})


def facts_job(s, device):
    print("line on stdout")
    print("line on stderr", file=sys.stderr)
    with open(s.output[0], "w") as f:
        json.dump({"cwd": os.getcwd(), "env": os.environ.get("GIBENCH_TEST_VALUE"), "pid": os.getpid(),
                   "ppid": os.getppid(), "umask": os.umask(0o022)}, f)
    return {"answer": 42}


def exit3_job(s, device):
    print("leaving with 3", file=sys.stderr)
    raise SystemExit(3)


def fail_job(s, device):
    raise ValueError("boom 123")


def sleep_job(s, device):
    with open(s.output[0] + ".pid", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)
