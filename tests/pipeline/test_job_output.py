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
    root = Path(__file__).resolve().parents[2]
    for smk in sorted((root / "rules").glob("*.smk")):
        text = smk.read_text()
        for m in re.finditer(r"\n(\s+)log:\n\s+(\"[^\"]+\"),\n\s+out=(\"[^\"]+\"),?\n", text):
            assert m.group(2).endswith('.json"') and m.group(3) == m.group(2).replace('.json"', '.log"'), smk
        assert text.count("log:") == len(re.findall(r"\n\s+log:\n\s+\"[^\"]+\",\n\s+out=", text)), smk


def test_where_print_tables_shows_each_table_and_names_its_notes(tmp_path, capsys):
    """`make demo` ends with `gibench where --print-tables`: every table's title and rows, its
    notes named by file (printed with --notes)."""
    from gibench.cli import main
    d = tmp_path / "results" / "tables" / "stochastic_defenses"
    d.mkdir(parents=True)
    (d / "table1.md").write_text("**Table 1: x**\n\n| a | ε/step |\n|---|---|\n| 1 | 2.01e+06 |\n\nnote one\nnote two\n")
    (d / "table2.md").write_text("**Table 2: y**\n\n| b |\n|---|\n| 3 |\n")
    assert main(["where", "--results", str(tmp_path / "results"), "--print-tables"]) == 0
    out = capsys.readouterr().out
    assert "**Table 1: x**" in out and "| 1 | 2.01e+06 |" in out and "| 3 |" in out
    assert "note one" not in out and f"(2 line(s) of notes: {d / 'table1.md'})" in out
    assert "tables  (2)" in out
    main(["where", "--results", str(tmp_path / "results"), "--print-tables", "--notes"])
    assert "note one\nnote two" in capsys.readouterr().out


def test_progress_lines_name_the_slurm_job(monkeypatch, capsys):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    runner.say("x")
    assert "slurm" not in capsys.readouterr().err
    monkeypatch.setenv("SLURM_JOB_ID", "90210")
    runner.say("fl s/d/m/none/seed0 round    1: ...")
    assert " slurm 90210] fl s/d/m/none/seed0 round    1:" in capsys.readouterr().err


def test_where_print_tables_ends_with_the_claims_summary(tmp_path, capsys):
    """Issue 22: the claims report is printed at the end of `make demo`: per study the verdict
    counts and each decided claim with our value beside the paper's."""
    import csv
    from gibench.cli import main
    d = tmp_path / "results" / "claims"
    d.mkdir(parents=True)
    cols = ["study", "claim", "variant", "where", "paper", "ours", "verdict", "reason_kind", "at_this_scale"]
    rows = [["selective_encryption", "t4-a", "", "Table 4", "0.3", "0.3", "holds", "", ""],
            ["selective_encryption", "t4-b", "init=dlg_uniform", "Table 4", "0.2", "NA", "fails", "", ""],
            ["selective_encryption", "t4-c", "", "Table 4", "0.2", "0.1", "not checkable here", "scale", "holds"],
            ["selective_encryption", "t4-d", "", "Table 4", "NA", "", "not checkable here", "not run", ""]]
    with open(d / "selective_encryption.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(rows)
    (d / "selective_encryption.md").write_text("# claims\n")
    assert main(["where", "--results", str(tmp_path / "results"), "--print-tables"]) == 0
    out = capsys.readouterr().out
    assert ("selective_encryption: 4 checks: 1 hold, 1 fail, 2 not checkable here (why: not run 1, scale 1; "
            "read at this run's scale anyway: holds 1, not computed 1)") in out
    assert "holds  t4-a (Table 4): ours 0.3; paper 0.3" in out
    assert "fails  t4-b [init=dlg_uniform] (Table 4): ours NA; paper 0.2" in out
    assert "t4-c (" not in out
    # without --print-tables only the paths
    main(["where", "--results", str(tmp_path / "results")])
    assert "4 checks" not in capsys.readouterr().out


def test_a_jobs_own_facts_never_overwrite_the_runners(tmp_path):
    """The significance job returns its metric's time as ``seconds``: the record keeps the job's
    whole time (the runner's timer, here over a 0.3 s sleep) and the metric's as job_seconds."""
    import time

    smk = _smk(tmp_path)

    def job(s, device):
        time.sleep(0.3)
        return {"seconds": 0.001, "start": "metric start", "status": "metric ok", "peak_bytes": 7}

    runner.run_job(smk, job)
    rec = json.loads((tmp_path / "logs" / "job.json").read_text())
    assert rec["job_seconds"] == 0.001 and rec["seconds"] >= 0.3
    assert rec["job_start"] == "metric start" and rec["start"] != "metric start"
    assert rec["job_status"] == "metric ok" and rec["status"] == "ok" and rec["peak_bytes"] == 7
