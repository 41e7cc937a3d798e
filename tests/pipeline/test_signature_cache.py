"""gibench.pipeline.signature_cache: Snakemake's get_function_params, remembered per function (issue 23).

Checked against the reference, ``inspect.signature(func).parameters`` (what Snakemake computes): plain
functions, lambdas, bound methods of different instances (a bound method's parameters lack ``self``),
``functools.partial`` objects and callable instances (passed through, never cached), and functions
whose parameters Snakemake's ``overwrite_function_params`` set (that answer wins, as in Snakemake);
that the answer for a function is computed once; and that ``apply`` installs it where Snakemake's
rules and input-function helpers call it.
"""
from __future__ import annotations

import functools
import inspect

from gibench.pipeline import signature_cache as SC

ATTR = "_overwritten"


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

    assert SC.apply() is True
    assert SC.apply() is True                                                   # idempotent
    assert common.get_function_params is rules.get_function_params
    assert getattr(common.get_function_params, SC._PATCHED, False)
    # Snakemake's own helper (which reads the module global) answers through it
    assert common.get_input_function_aux_params(_fn, {"input": 1, "output": 2, "attempt": 3}) == {"input": 1, "attempt": 3}
