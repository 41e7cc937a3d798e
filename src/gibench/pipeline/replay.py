"""Re-run one job from the provenance record embedded in its output (gibench verify)."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable


class Files(list):
    """A list of paths with attribute access by name (what Snakemake's Namedlist offers)."""

    def __init__(self, named: dict[str, Any]):
        flat, self._map = [], {}
        for name, v in sorted(named.items(), key=lambda kv: _pos(kv[0])):
            self._map[name] = v
            flat += [v] if isinstance(v, str) else list(v)
        super().__init__(flat)

    def __getattr__(self, name: str):
        try:
            return self.__dict__["_map"][name]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, name: str, default=None):
        return self._map.get(name, default)


def _pos(name: str) -> tuple[int, str]:
    return (int(name[1:]), "") if name.startswith("_") and name[1:].isdigit() else (-1, name)


def job_functions() -> dict[str, Callable]:
    from .jobs_attack import attack_job, metrics_job
    from .jobs_data import gradient_job, model_job, victims_job
    from .jobs_significance import masks_job, significance_job

    return {"data": victims_job, "model": model_job, "gradient": gradient_job,
            "significance": significance_job, "masks": masks_job, "masks_any": masks_job,
            "attack": attack_job, "metrics": metrics_job}


def replay(record: dict, config: dict, out_dir: str | Path) -> dict[str, str]:
    """Run ``record``'s job again with the same inputs (paths relative to the current working
    directory) and its outputs redirected under ``out_dir``; return {original: new path}."""
    from .runner import pick_device

    rule = record["rule"]
    funcs = job_functions()
    if rule not in funcs:
        raise ValueError(f"rule {rule!r} cannot be replayed (replayable: {', '.join(sorted(funcs))})")
    outs = record.get("output_files") or {}
    if not outs:
        raise ValueError(f"record of rule {rule!r} names no output files (written by an older gibench?)")
    mapping: dict[str, str] = {}

    def redirect(p: str) -> str:
        new = os.path.join(out_dir, p.lstrip("/"))
        Path(new).parent.mkdir(parents=True, exist_ok=True)
        mapping[p] = new
        return new

    new_outs = {k: redirect(v) if isinstance(v, str) else [redirect(x) for x in v] for k, v in outs.items()}
    smk = SimpleNamespace(input=Files(record.get("input_files") or {}), output=Files(new_outs),
                          wildcards=_Wildcards(record.get("wildcards", {})), config=config,
                          params=SimpleNamespace(), log=[], threads=1, rule=rule)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(record.get("torch_threads") or 1))
    try:
        funcs[rule](smk, pick_device(config.get("device", "auto")))
    finally:
        torch.set_num_threads(before)
    return mapping


class _Wildcards(SimpleNamespace):
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
