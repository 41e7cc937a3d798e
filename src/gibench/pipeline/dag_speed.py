"""Answers Snakemake recomputes for every job and file of the DAG, remembered (issue 23).

Each is the same answer every time it is asked, and Snakemake (9.x up to at least 9.27) offers
no setting to compute it once; in the paper-scale selective-encryption dry run (py-spy) they
were ~5 %, ~3 % and ~5 % of the CPU time.  Written by hand for that reason; applied from the Snakefile.
Where a Snakemake version no longer has what is patched here, that patch is skipped and the run
is unaffected.

1. **Function parameters** (``snakemake/common/__init__.py``): before calling an input function, a
   params function or a resource of a job, Snakemake asks ``get_function_params(func)``, i.e.
   ``inspect.signature(func).parameters`` -- afresh for every job and every resource (each resource
   is a bound ``Resource.evaluate``), for a few dozen distinct functions.  Now remembered per
   function: plain functions keyed by themselves, bound methods by their underlying function (a
   bound method's parameters are its function's less the first, whatever the instance); anything
   else (``functools.partial`` objects, callable instances) goes to Snakemake's own function
   unchanged, as do functions whose parameters were set with ``overwrite_function_params`` (that
   answer is checked first, as Snakemake does).
2. **The script check** (``snakemake/dag.py``, ``ScriptProcessor.process_job``): for every job of a
   ``script:`` rule Snakemake locates the script through its source cache and reads it, only to
   raise if it is not accessible.  Now done once per (script, rule folder) where the script's path
   is a constant (no ``{...}`` to format with the job's wildcards or params); a formatted path is
   still checked job by job.  A missing script still fails as before, at its first job.
3. **Which rule makes a file** (``snakemake/rules.py``, ``Rule.is_producer``): for every input file
   of every job Snakemake tries the regular expression of each output (and log) pattern of each
   candidate rule in turn -- up to 50 for a decade job of a 5-restart attack.  A pattern's regular
   expression ends with the text after its last wildcard (anchored at the end), so a file that
   does not end with that text cannot match it: now tested first, with the text computed once
   per pattern (Snakemake recomputes it with a regular expression on each call).  The answer is
   the same; Snakemake's own errors for a bad pattern still come from its code.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

_PATCHED = "_gibench_dag_speed"
#: the Snakemake modules that call get_function_params through their own global name
_PARAM_MODULES = ("snakemake.common", "snakemake.rules")


def cached_params(original: Callable[[Callable], Any], overwrite_attr: str) -> Callable[[Callable], Any]:
    """A ``get_function_params`` that answers as ``original`` does, remembering the answer for plain
    functions and bound methods."""
    cache: dict[tuple[Any, bool], Any] = {}

    def get_function_params(func: Callable) -> Any:
        if hasattr(func, overwrite_attr):
            return getattr(func, overwrite_attr)
        if inspect.ismethod(func):
            key = (func.__func__, True)
        elif inspect.isfunction(func):
            key = (func, False)
        else:
            return original(func)
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = original(func)
        return hit

    setattr(get_function_params, _PATCHED, True)
    return get_function_params


def checked_once(original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """A ``ScriptProcessor.process_job`` that checks each constant script path once (per processor:
    ``script_type`` is ``script``, or ``notebook`` for its subclass, which calls it via super())."""

    def process_job(self: Any, job: Any) -> None:
        kind = getattr(self, "script_type", "script")
        entry = getattr(job.rule, kind, None) if getattr(job, f"is_{kind}", False) else None
        if entry is None or "{" in str(entry):
            return original(self, job)
        key = (kind, str(entry), str(job.rule.basedir))
        done = self.__dict__.setdefault("_gibench_checked", set())
        if key in done:
            return None
        original(self, job)            # raises as Snakemake does when the script is not accessible
        done.add(key)
        return None

    setattr(process_job, _PATCHED, True)
    return process_job


def suffix_first(original: Callable[[Any, str], bool]) -> Callable[[Any, str], bool]:
    """A ``Rule.is_producer`` that skips a pattern whose constant end the file does not have, then
    asks Snakemake's own method for the rest (same answer: see the module's point 3)."""

    def is_producer(self: Any, requested_output: str) -> bool:
        ends = self.__dict__.get("_gibench_ends")
        if ends is None:
            ends = self.__dict__["_gibench_ends"] = {}
        try:
            for o in self.products():
                # keyed by identity (hashing a pattern is a Python-level call); the entry holds the
                # pattern, so its id is not reused while the entry exists
                hit = ends.get(id(o))
                if hit is None or hit[0] is not o:
                    hit = ends[id(o)] = (o, str(o.constant_suffix()))
                if requested_output.endswith(hit[1]) and o.match(requested_output):
                    return True
            return False
        except Exception:
            return original(self, requested_output)   # Snakemake's own errors (a bad wildcard regex)

    setattr(is_producer, _PATCHED, True)
    is_producer._gibench_original = original       # Snakemake's own (the tests compare with it)
    return is_producer


def _patch_method(module: str, cls_name: str, name: str, wrap: Callable[[Any], Any],
                  fits: Callable[[Any], bool] = lambda cls: True) -> bool:
    """Replace ``cls_name.name`` of Snakemake's ``module`` by ``wrap(current)`` (idempotent); skipped
    where the class, its own method or what ``fits`` checks is missing (another Snakemake)."""
    import importlib

    try:
        importlib.import_module("snakemake.api")   # first: snakemake.dag / .rules alone are circular imports
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError):
        return False
    current = cls.__dict__.get(name)
    if current is None or not fits(cls):
        return False
    if not getattr(current, _PATCHED, False):
        setattr(cls, name, wrap(current))
    return True


def _patch_is_producer() -> bool:
    return _patch_method("snakemake.rules", "Rule", "is_producer", suffix_first, lambda cls: hasattr(cls, "products"))


def _patch_params() -> bool:
    import importlib

    try:
        mods = [importlib.import_module(m) for m in _PARAM_MODULES]
    except ImportError:
        return False
    current = getattr(mods[0], "get_function_params", None)
    attr = getattr(mods[0], "FUNC_OVERWRITE_PARAMS_ATTR", None)
    if current is None or attr is None:
        return False
    if getattr(current, _PATCHED, False):
        return all(getattr(m, "get_function_params", None) is current for m in mods)
    if any(getattr(m, "get_function_params", None) is not current for m in mods):
        return False        # a version whose modules hold different functions: leave it alone
    patched = cached_params(current, attr)
    for m in mods:
        m.get_function_params = patched
    return True


def _patch_script_check() -> bool:
    return _patch_method("snakemake.dag", "ScriptProcessor", "process_job", checked_once,
                         lambda cls: getattr(cls, "script_type", None) == "script")


def apply() -> dict[str, bool]:
    """Patch Snakemake (idempotent).  Which patches are (now) in place."""
    return {"function_params": _patch_params(), "script_check": _patch_script_check(),
            "is_producer": _patch_is_producer()}
