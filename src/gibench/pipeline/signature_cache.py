"""Remember the parameters of the functions Snakemake calls while it builds the DAG (issue 23).

What costs (Snakemake 9.x up to at least 9.27; ``snakemake/common/__init__.py``): before it calls
an input function, a params function or a resource of a job, Snakemake asks
``get_function_params(func)``, which is ``inspect.signature(func).parameters`` -- computed afresh
for every job and every resource (each resource value is a bound ``Resource.evaluate``).  In the
paper-scale selective-encryption dry run that was ~5 % of the CPU time (py-spy), all of it for a
few dozen distinct functions whose signatures never change.

The fix: the same answer, remembered per function.  Plain functions are keyed by themselves and
bound methods by their underlying function (the parameters of a bound method are its function's
less the first, whatever the instance).  Anything else (``functools.partial`` objects, callable
instances) is passed to Snakemake's own function unchanged, as are functions whose parameters were
overwritten on purpose (``overwrite_function_params``, checked first as Snakemake does).

Written by hand because Snakemake offers no cache for it.  Applied from the Snakefile; if a
Snakemake version no longer has the function patched here, nothing is patched.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

_PATCHED = "_gibench_cached_params"
#: the Snakemake modules that call get_function_params through their own global name
_MODULES = ("snakemake.common", "snakemake.rules")


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


def apply() -> bool:
    """Patch Snakemake (idempotent).  True if the cache is (now) in place."""
    import importlib

    try:
        mods = [importlib.import_module(m) for m in _MODULES]
    except ImportError:
        return False
    common = mods[0]
    current = getattr(common, "get_function_params", None)
    attr = getattr(common, "FUNC_OVERWRITE_PARAMS_ATTR", None)
    if current is None or attr is None or any(getattr(m, "get_function_params", None) is not current for m in mods):
        # a version whose modules differ from the ones this patch knows (or already patched differently)
        return bool(current is not None and getattr(current, _PATCHED, False))
    if getattr(current, _PATCHED, False):
        return True
    patched = cached_params(current, attr)
    for m in mods:
        m.get_function_params = patched
    return True
