"""run_job copies a job's stdout/stderr into its `out` log and keeps the JSON run record in the
first log (rules/*.smk: log: "<x>.json", out="<x>.log")."""
import json
import sys
from types import SimpleNamespace

import pytest

from gibench.pipeline import runner


class _Logs(list):
    """Snakemake's log Namedlist: positional entries first, named ones as attributes."""


def _smk(tmp_path, with_out=True):
    logs = _Logs([str(tmp_path / "logs" / "job.json")])
    if with_out:
        logs.append(str(tmp_path / "logs" / "job.log"))
        logs.out = logs[1]
    return SimpleNamespace(config={"device": "cpu"}, resources=SimpleNamespace(), threads=1, rule="attack",
                           log=logs, input=[], output=[], params={}, wildcards={})


def test_stdout_and_stderr_reach_the_text_log_and_the_terminal(tmp_path, capsys):
    smk = _smk(tmp_path)

    def job(s, device):
        print("hello from stdout")
        runner.say("progress line")
        print("to stderr", file=sys.stderr)
        return {"n": 1}

    runner.run_job(smk, job)
    text = (tmp_path / "logs" / "job.log").read_text()
    assert "hello from stdout" in text and "progress line" in text and "to stderr" in text
    cap = capsys.readouterr()
    assert "hello from stdout" in cap.out and "to stderr" in cap.err  # still on the terminal
    rec = json.loads((tmp_path / "logs" / "job.json").read_text())
    assert rec["status"] == "ok" and rec["device"] == "cpu" and rec["n"] == 1
    assert sys.stdout is not None and not isinstance(sys.stdout, runner._Tee)


def test_failure_traceback_is_in_the_text_log(tmp_path):
    smk = _smk(tmp_path)

    def job(s, device):
        print("before the failure")
        raise ValueError("boom 123")

    with pytest.raises(ValueError):
        runner.run_job(smk, job)
    text = (tmp_path / "logs" / "job.log").read_text()
    assert "before the failure" in text and "ValueError: boom 123" in text and "Traceback" in text
    rec = json.loads((tmp_path / "logs" / "job.json").read_text())
    assert rec["status"].startswith("failed: ValueError")


def test_text_log_lookup(tmp_path):
    assert runner.text_log(_smk(tmp_path)).endswith("job.log")
    assert runner.text_log(_smk(tmp_path, with_out=False)) is None
    assert runner.text_log(SimpleNamespace(log=["a.json", "b.log"])) == "b.log"  # a replay's plain list


def test_every_rule_with_a_log_names_an_out_log():
    """Each rule's log: names its JSON record first and its stdout/stderr log as `out`."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    for smk in sorted((root / "rules").glob("*.smk")):
        text = smk.read_text()
        for m in re.finditer(r"\n(\s+)log:\n\s+(\"[^\"]+\"),\n\s+out=(\"[^\"]+\"),?\n", text):
            assert m.group(2).endswith('.json"') and m.group(3) == m.group(2).replace('.json"', '.log"'), smk
        assert text.count("log:") == len(re.findall(r"\n\s+log:\n\s+\"[^\"]+\",\n\s+out=", text)), smk
