"""gibench.pipeline.dag_speed: answers Snakemake recomputes per job, remembered (issue 23).

1. get_function_params, remembered per function.
Checked against the reference, ``inspect.signature(func).parameters`` (what Snakemake computes): plain
functions, lambdas, bound methods of different instances (a bound method's parameters lack ``self``),
``functools.partial`` objects and callable instances (passed through, never cached), and functions
whose parameters Snakemake's ``overwrite_function_params`` set (that answer wins, as in Snakemake);
that the answer for a function is computed once; and that ``apply`` installs it where Snakemake's
rules and input-function helpers call it.

2. The script check of ``script:`` jobs, once per constant script path: Snakemake's own check runs
for the first job of each path (and for every job of a formatted path), a missing script still
raises Snakemake's error, and a real dry run of a workflow whose script is missing fails naming it.
"""
from __future__ import annotations

import functools
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gibench.pipeline import dag_speed as SC

ATTR = "_overwritten"
SRC = Path(__file__).resolve().parents[2] / "src"


class _Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self, func):
        self.calls += 1
        return inspect.signature(func).parameters


class _Thing:
    def method(self, wildcards, input, threads=1):
        return wildcards

    def __call__(self, wildcards, attempt):
        return attempt


def _fn(wildcards, *, input, attempt=1):
    return wildcards


def test_answers_as_inspect_signature_and_computes_once_per_function():
    ref = _Counting()
    get = SC.cached_params(ref, ATTR)
    lam = lambda wildcards, output: None  # noqa: E731
    a, b = _Thing(), _Thing()
    part = functools.partial(_fn, input=1)
    for f in (_fn, lam, a.method, b.method, part, a):
        assert list(get(f)) == list(inspect.signature(f).parameters), f
    assert list(get(a.method)) == ["wildcards", "input", "threads"]           # no self
    calls = ref.calls
    for _ in range(3):
        get(_fn), get(lam), get(a.method), get(_Thing().method)
    assert ref.calls == calls                                                   # all remembered
    get(part), get(a)
    assert ref.calls == calls + 2                                               # never remembered


def test_overwritten_params_win():
    get = SC.cached_params(_Counting(), ATTR)

    def f(*args):
        return args

    assert list(get(f)) == ["args"]
    setattr(f, ATTR, ["wildcards", "input"])
    assert get(f) == ["wildcards", "input"]


def test_apply_installs_it_where_snakemake_calls_it():
    import snakemake.api  # noqa: F401  (first: snakemake.rules alone is a circular import)
    import snakemake.common as common
    import snakemake.rules as rules

    assert SC.apply() == {"function_params": True, "script_check": True, "is_producer": True}
    assert SC.apply() == {"function_params": True, "script_check": True, "is_producer": True}  # idempotent
    assert common.get_function_params is rules.get_function_params
    assert getattr(common.get_function_params, SC._PATCHED, False)
    # Snakemake's own helper (which reads the module global) answers through it
    assert common.get_input_function_aux_params(_fn, {"input": 1, "output": 2, "attempt": 3}) == {"input": 1, "attempt": 3}


class _Rule:
    def __init__(self, script, basedir="/wf"):
        self.script, self.basedir, self.notebook = script, basedir, None


class _Job:
    def __init__(self, rule):
        self.rule, self.is_script, self.is_notebook = rule, True, False


class _Proc:
    script_type = "script"


def test_script_check_runs_once_per_constant_script():
    seen = []

    def original(self, job):
        seen.append(job.rule.script)
        if "missing" in job.rule.script:
            raise RuntimeError(f"Script {job.rule.script} not accessible")

    check = SC.checked_once(original)
    proc = _Proc()
    for _ in range(3):
        check(proc, _Job(_Rule("scripts/a.py")))
        check(proc, _Job(_Rule("scripts/{wildcards.x}.py")))        # formatted: every job
    check(proc, _Job(_Rule("scripts/a.py", basedir="/other")))      # another rule folder: its own check
    assert seen == ["scripts/a.py", "scripts/{wildcards.x}.py", "scripts/{wildcards.x}.py",
                    "scripts/{wildcards.x}.py", "scripts/a.py"]
    for _ in range(2):                                                # a failure is never remembered
        with pytest.raises(RuntimeError, match="not accessible"):
            check(proc, _Job(_Rule("scripts/missing.py")))
    assert seen[-2:] == ["scripts/missing.py", "scripts/missing.py"]
    job = _Job(_Rule("scripts/a.py"))
    job.is_script = False                                             # not a script job: Snakemake decides
    check(proc, job)
    assert len(seen) == 8


def test_a_missing_script_still_fails_the_dry_run(tmp_path):
    # a real Snakemake run in a subprocess (module state stays out of pytest's) with the patch applied
    (tmp_path / "Snakefile").write_text(
        "from gibench.pipeline import dag_speed\n"
        "assert all(dag_speed.apply().values())\n"
        "rule all:\n    input: expand('out/{i}.txt', i=range(3))\n"
        "rule make:\n    output: 'out/{i}.txt'\n    script: 'scripts/nowhere.py'\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert proc.returncode != 0
    assert "nowhere.py" in proc.stdout + proc.stderr and "not accessible" in proc.stdout + proc.stderr
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "nowhere.py").write_text("")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "make" in proc.stdout + proc.stderr


def test_is_producer_answers_as_snakemakes_own():
    # 3. the reference is Snakemake's Rule.is_producer itself, on the same rule-like object: every
    # file of a grid against outputs with and without constraints, several restarts and slots, a log
    import snakemake.api  # noqa: F401  (first: snakemake.rules alone is a circular import)
    from snakemake.io import IOFile
    from snakemake.rules import Rule

    original = Rule.__dict__["is_producer"]
    original = getattr(original, "_gibench_original", original)      # Snakemake's, even once patched
    assert not getattr(original, SC._PATCHED, False)

    class _R:
        def __init__(self, patterns, logs=()):
            self.output, self.log = [IOFile(p) for p in patterns], [IOFile(p) for p in logs]

        def products(self):
            return iter(self.output + self.log)

    rules = [
        _R([f"results/a/{{study}}/{{decade,s0[01]}}{d}/{{attack,ig|dlg}}/rep{k}.safetensors"
            for d in "0123456789" for k in range(5)], logs=["logs/a/{study}/{decade}x/{attack}.log"]),
        _R(["results/a/{study}/{slot}/{attack}/rep{rep}.safetensors"]),
        _R(["results/m/{study}/{slot}.parquet", "results/m/{study}/{slot}.views.safetensors"]),
        _R(["results/fixed.txt"]),
    ]
    files = [f"results/a/se/s0{d}{e}/{a}/rep{k}.safetensors" for d in "012" for e in "07" for a in ("ig", "lamp")
             for k in (0, 4, 7)]
    files += ["logs/a/se/s01x/ig.log", "results/m/se/s003.parquet", "results/m/se/s003.views.safetensors",
              "results/m/se/s003.json", "results/fixed.txt", "results/fixed.txt.bak", "results/a/se/s017/ig/rep0.json"]
    patched = SC.suffix_first(original)
    answers = {(i, f): original(r, f) for i, r in enumerate(rules) for f in files}
    assert any(answers.values()) and not all(answers.values())
    for (i, f), want in answers.items():
        assert patched(rules[i], f) is want, (i, f)
