"""Re-run one job from the provenance record of its output (``gibench verify``).

A record names everything a job needs to run again: its job function (``job``:
``module:qualname``, set by :func:`gibench.pipeline.runner.run_job`), rule, wildcards, input
and output paths, log paths, the rule's params, the config digest (the config itself is
``results/configs/<digest>.yaml``) and the torch thread count.  :func:`replay` calls the job
function with those, in the current working directory (the root of an unpacked archive), so
the outputs are written to the same relative paths as the first time and the new record can
equal the old one byte for byte.

``python -m gibench.pipeline.replay REQUEST.json`` does the same in a fresh process (what
``gibench verify`` runs, with the archive's own ``src/`` first on ``PYTHONPATH``): REQUEST holds
``{"record": ..., "config": ..., "device": "cpu" | "cuda" | null}``; it prints one JSON line
``{"ok": true, "device": ...}`` or ``{"ok": false, "error": ...}``.  A REQUEST ``{"jobs": [...]}``
of several such entries runs them one after another and prints ``{"results": [...]}``.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import sys
import traceback
from types import SimpleNamespace
from typing import Any, Callable

from ..wildcards import SIGNIFICANCE


class Files(list):
    """A list of paths with attribute access by name (what Snakemake's Namedlist offers)."""

    def __init__(self, named: dict[str, Any]):
        # unnamed entries ("_3") go back to their recorded positions, named ones (name order)
        # fill the other slots, so that provenance.named_files gives the recorded dict again
        self._map = dict(named)
        unnamed = {int(k[1:]): v for k, v in named.items() if k.startswith("_") and k[1:].isdigit()}
        blocks = [(k, [v] if isinstance(v, str) else list(v)) for k, v in sorted(named.items())
                  if not (k.startswith("_") and k[1:].isdigit())]
        total = len(unnamed) + sum(len(b) for _, b in blocks)
        slots: list[Any] = [None] * total
        for i, v in unnamed.items():
            if i < total:
                slots[i] = v
        self._names = {}
        pos = 0
        for name, block in blocks:
            while pos < total and slots[pos] is not None:
                pos += 1
            start = pos
            for v in block:
                while pos < total and slots[pos] is not None:
                    pos += 1
                if pos < total:
                    slots[pos] = v
                else:
                    slots.append(v)
                pos += 1
            single = isinstance(named[name], str)
            self._names[name] = (start, None if single else start + len(block))
        super().__init__([v for v in slots if v is not None])

    def __getattr__(self, name: str):
        try:
            return self.__dict__["_map"][name]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, name: str, default=None):
        return self._map.get(name, default)

    def keys(self):
        return [k for k in self._map if not k.startswith("_")]

    def items(self):
        return [(k, self._map[k]) for k in self.keys()]


def _pos(name: str) -> tuple[int, str]:
    return (int(name[1:]), "") if name.startswith("_") and name[1:].isdigit() else (-1, name)


class Params(SimpleNamespace):
    """A rule's params with attribute access and Snakemake's ``_names`` (for records)."""

    def __init__(self, d: dict):
        super().__init__(**d)
        self._names = {k: (i, None) for i, k in enumerate(d)}


class Wildcards(SimpleNamespace):
    """Attribute access + dict() conversion, like Snakemake's Wildcards."""

    def __init__(self, d: dict):
        super().__init__(**d)
        self._d = dict(d)

    def keys(self):
        return self._d.keys()

    def __getitem__(self, k):
        return self._d[k]

    def __iter__(self):
        return iter(self._d.values())

    def get(self, k, default=None):
        return self._d.get(k, default)


# records written before the job function was recorded (format 1) name only the rule
LEGACY_JOBS = {"data": "gibench.pipeline.jobs_data:victims_job", "model": "gibench.pipeline.jobs_data:model_job",
               "gradient": "gibench.pipeline.jobs_data:gradient_job",
               "significance": "gibench.pipeline.jobs_significance:significance_job",
               "masks": "gibench.pipeline.jobs_significance:masks_job",
               "masks_any": "gibench.pipeline.jobs_significance:masks_job",
               "attack": "gibench.pipeline.jobs_attack:attack_job",
               # rule `metrics` was renamed `evaluate` (issue 21); its job function is now evaluate_job
               "metrics": "gibench.pipeline.jobs_attack:evaluate_job",
               "gather_metrics": "gibench.pipeline.jobs_tables:gather_job",
               "gather_cost": "gibench.pipeline.jobs_tables:gather_job"}


def job_name_of(record: dict) -> str | None:
    return record.get("job") or LEGACY_JOBS.get(record.get("rule"))


def resolve(name: str) -> Callable:
    """The function ``module:qualname`` names."""
    module, _, qual = name.partition(":")
    if not module or not qual or "<" in qual:
        raise ValueError(f"job {name!r} is not an importable function")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def job_functions() -> dict[str, Callable]:
    """rule -> job function for records that do not name their job (older records)."""
    return {rule: resolve(name) for rule, name in LEGACY_JOBS.items()}


def _current_names(wildcards: dict) -> dict:
    """A record's wildcards under today's names: records written before issue 21 call the
    significance-metric wildcard ``metric`` (:mod:`gibench.wildcards`)."""
    if "metric" in wildcards and SIGNIFICANCE not in wildcards:
        return {(SIGNIFICANCE if k == "metric" else k): v for k, v in wildcards.items()}
    return dict(wildcards)


def smk_from_record(record: dict, config: dict) -> SimpleNamespace:
    """The ``snakemake`` object a job function expects, rebuilt from a record."""
    params = record.get("rule_params")
    if params is None and "file" in record:      # a sidecar: its params are the rule's params
        params = record.get("params")
    return SimpleNamespace(input=Files(record.get("input_files") or {}), output=Files(record.get("output_files") or {}),
                           wildcards=Wildcards(_current_names(record.get("wildcards", {}))), config=config,
                           params=Params(params or {}), log=list(record.get("log_files") or []),
                           threads=int(record.get("torch_threads") or 1), rule=record.get("rule"),
                           resources=SimpleNamespace())


def replay_device(record: dict, config: dict, device: str | None = None):
    """The device a replay runs on: ``device`` if given, else the record's kind (a CPU-made
    artifact is re-made on the CPU) when available here, else what the config picks."""
    import torch

    from ..device import pick_device

    fallback = bool(config.get("cpu_fallback", False))
    if device:
        return pick_device(device, cpu_fallback=fallback)
    if str(record.get("device", "")).startswith("cpu"):
        return torch.device("cpu")
    return pick_device(config.get("device", "auto"), cpu_fallback=fallback)


def replay(record: dict, config: dict, device: str | None = None) -> str:
    """Run ``record``'s job again in the current working directory (outputs at their recorded
    paths; the caller moves the originals aside).  Returns the device it ran on."""
    import torch

    from ..provenance import job_context, write_sidecars

    name = job_name_of(record)
    if not name:
        raise ValueError(f"record of rule {record.get('rule')!r} names no job function (not written by run_job)")
    if not record.get("output_files"):
        raise ValueError(f"record of rule {record.get('rule')!r} names no output files")
    fn = resolve(name)
    smk = smk_from_record(record, config)
    dev = replay_device(record, config, device)
    before = torch.get_num_threads()
    torch.set_num_threads(int(record.get("torch_threads") or 1))
    # a record that names its job function was made inside run_job's job context: so is the replay
    # (older records were not, and their replays must not gain the context's fields either)
    ctx = job_context(fn, smk) if record.get("job") else contextlib.nullcontext()
    try:
        with ctx:
            fn(smk, dev)
            if record.get("job"):
                write_sidecars(smk, dev)
    finally:
        torch.set_num_threads(before)
    return str(dev)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m gibench.pipeline.replay REQUEST.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        req = json.load(f)
    if "jobs" in req:                   # several jobs, one after another (gibench verify: tables, figures)
        results = []
        for r in req["jobs"]:
            try:
                results.append({"ok": True, "device": replay(r["record"], r["config"], r.get("device"))})
            except Exception as e:      # reported to the caller, which names the job
                results.append({"ok": False, "error": f"{type(e).__name__}: {e}",
                                "traceback": traceback.format_exc()[-2000:]})
        print(json.dumps({"results": results}))
        return 0 if all(r["ok"] for r in results) else 1
    try:
        dev = replay(req["record"], req["config"], req.get("device"))
    except BaseException as e:          # reported to the caller, which names the job
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}",
                          "traceback": traceback.format_exc()[-4000:]}))
        return 1
    print(json.dumps({"ok": True, "device": dev}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
