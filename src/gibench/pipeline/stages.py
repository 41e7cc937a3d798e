"""The shared stage jobs: one skeleton per stage (attack, evaluate, gather, table) that every
study's job function calls, each study supplying only what differs.

* attack -- the study builds the attacker's view of one case (:class:`AttackerView`: the model,
  the shared update, the visible entries, what the threat model grants, the study's extras);
  :func:`attack_extras` adds what the attack declares it needs (``ATTACKS.entry(kind).needs``),
  resolved through the study's need registry; :func:`attack_stage` runs the registered attack
  and writes the reconstruction with its provenance record and its loss trace (one file per
  restart; :func:`gibench.io.load_trace` reads the trace back).
* evaluate -- :func:`evaluate_stage`: one row per attack output of the job (the study's row
  function: its ground truth, its reconstruction metrics), an optional study step over the
  rows (stochastic defenses keep one restart per slot), one Parquet file.
* gather -- :func:`gather_stage`: row files -> one Parquet (optionally reordered).
* table -- :func:`table_stage`: the table registry's builder (``gibench.tables.TABLES``)
  -> csv/md (and html) files.

The study job functions (``sd_attack_job``, ``cs_evaluate_job``, ...) keep their names and
their ``fn(smk, device) -> dict`` signature: the provenance record names them (``job``) and
:mod:`gibench.pipeline.replay` finds them again by that name."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

from .. import io
from ..provenance import make_record
from .runner import say

#: ``AttackResult.info`` keys never written into the artifact: measurements of one run (a re-run
#: must give the same bytes); they go to the job log through the job's return value
VOLATILE_INFO = ("seconds", "iterations_per_second")
#: the trace stored when an attack reports none (a closed-form attack)
EMPTY_TRACE = {"iteration": 0, "loss": float("nan"), "grad_distance": float("nan"), "tv": float("nan"),
               "lr": float("nan")}


# ====================================================================== attack

@dataclass
class AttackerView:
    """What the server holds for one attack case, as the study gives it, and how the attack
    is to be called (the registry's image-attack convention, :mod:`gibench.attacks`)."""
    #: registry name of the attack and its hyperparameters (``cfg=``)
    kind: str
    params: dict
    net: torch.nn.Module
    #: the shared update as the server received it (encrypted entries already zeroed)
    shared: dict
    #: name -> bool tensor, True where an entry is sent in plaintext; None: everything is
    visible: dict | None
    #: (batch, *input shape) and the dataset's normalisation
    input_shape: tuple
    mean: Any
    std: Any
    #: what the threat model grants (class indices) or None
    labels: torch.Tensor | None
    #: further keywords of the attack call (the study's: defenses, secrets, declared needs)
    extras: dict = field(default_factory=dict)
    #: the record's ``params`` (default ``{"type": kind, **params}``)
    record_params: dict | None = None
    #: facts the study adds to the record's ``attack`` block
    info: dict = field(default_factory=dict)
    #: further ``AttackResult.info`` keys not kept in the record (besides :data:`VOLATILE_INFO`)
    drop_info: tuple[str, ...] = ()
    #: the config the record digests and the files it names and digests (the job's)
    config: dict | None = None
    inputs: Any = None

    def call_kwargs(self) -> dict:
        return dict(input_shape=self.input_shape, mean=self.mean, std=self.std, labels=self.labels, cfg=self.params,
                    **self.extras)


def labels_tensor(knowledge: Mapping[str, Any], device: torch.device) -> torch.Tensor | None:
    """The knowledge file's labels as a tensor, None when the threat model withholds them."""
    labels = knowledge.get("labels")
    return torch.as_tensor(labels, device=device) if labels is not None else None


def attack_extras(kind: str, needs: Mapping[str, Any], inputs: Any, device: torch.device) -> dict:
    """The keywords of what attack ``kind`` declares it needs (``ATTACKS.entry(kind).needs``),
    each loaded by the study's need (an object with ``keyword`` and ``load(inputs, device)``,
    e.g. :data:`gibench.studies.concealed_samples.needs.NEEDS`)."""
    from ..attacks import ATTACKS

    extra: dict[str, Any] = {}
    for name in ATTACKS.entry(kind).needs:
        if name not in needs:
            raise ValueError(f"attack {kind!r} needs {name!r}, which this study does not provide "
                             f"(it provides: {', '.join(needs) or 'nothing'})")
        extra[needs[name].keyword] = needs[name].load(inputs, device)
    return extra


def progress_printer(rule: str, attack: str, label: str, iterations: int, t0: float) -> Callable[[int, float], None]:
    """The attack's progress callback: a log line every tenth of its iterations."""
    every = max(1, int(iterations) // 10)

    def progress(it: int, loss: float) -> None:
        if it % every == 0:
            say(f"{rule} {attack} {label}: iteration {it}, loss {loss:.4g}, {time.time() - t0:.0f} s")
    return progress


def save_attack(view: AttackerView, result: Any, *, rule: str, wildcards: dict, outputs: Any, recon: str,
                seed: int, device: torch.device, t0: float, extra_info: dict | None = None) -> dict:
    """Write one restart's reconstruction (``x``, ``labels``) with the record (the attack's info
    less the volatile keys, its status, the study's facts) and its loss trace (``result.trace``,
    or :data:`EMPTY_TRACE` for an attack that reports none) in the same file; return what goes
    to the job log (seconds and speed included)."""
    info = dict(result.info or {})
    # speed is a measurement of this run: it goes to the job log, not into the artifact
    # (re-running the job must give the same bytes)
    seconds = info.pop("seconds", round(time.time() - t0, 3))
    speed = info.pop("iterations_per_second", None)
    for key in view.drop_info:
        info.pop(key, None)
    info.update({"status": result.status, "message": result.message, "final_loss": result.final_loss})
    info.update(view.info)
    info.update(extra_info or {})
    params = view.record_params if view.record_params is not None else {"type": view.kind, **view.params}
    rec = make_record(rule=rule, wildcards=wildcards, params=params, config=view.config, inputs=view.inputs,
                      outputs=outputs, seed=seed, device=device, extra={"attack": info})
    io.save_tensors(recon, {"x": result.x.float().cpu(), "labels": result.labels.cpu()}, rec,
                    trace=result.trace or [dict(EMPTY_TRACE)])
    return {"attack_status": result.status, "final_loss": result.final_loss, "attack_seconds": seconds,
            "iterations_per_second": speed}


def attack_stage(smk: Any, device: torch.device, view: AttackerView, *, rule: str, seed: int, label: str) -> dict:
    """One restart of one case (output ``recon``): run the registered attack on the attacker's
    view, write the reconstruction with its record and trace, log the outcome."""
    from ..attacks import ATTACKS

    wc = dict(smk.wildcards)
    t0 = time.time()
    progress = progress_printer(rule, wc["attack"], label, int(view.params.get("iterations", 1000)), t0)
    result = ATTACKS.get(view.kind)(view.net, view.shared, view.visible, seed=seed, device=device, progress=progress,
                                    **view.call_kwargs())
    out = save_attack(view, result, rule=rule, wildcards=wc, outputs=smk.output, recon=smk.output.recon,
                      seed=seed, device=device, t0=t0)
    say(f"{rule} {wc['attack']} {label} done: {result.status}, loss {result.final_loss:.4g} ({result.message})")
    return out


# ====================================================================== evaluate

def evaluate_stage(smk: Any, device: torch.device, *, rule: str, params: dict, row: Callable[[dict, dict], dict],
                   load_device: torch.device | str = "cpu", record_device: torch.device | str | None = None,
                   finish: Callable[[list[dict]], list[dict]] | None = None,
                   summary: Callable[[list[dict]], str] | None = None,
                   then: Callable[[list[dict], list[str], dict], Any] | None = None) -> dict:
    """Rows of one evaluate job: ``row(tensors, record)`` of every attack output
    (``smk.input.recons``, loaded on ``load_device``), then the study's ``finish`` over them
    (e.g. one restart kept per slot); one Parquet file (the job's first output) whose record
    holds ``params`` (the evaluation settings the rows depend on).  ``then(rows, paths, record)``:
    the study's further output made from the rows (before ``finish``), the attack outputs they
    came from (``rows[k]`` is ``paths[k]``'s) and that record (e.g. the selective-encryption
    study's views of the slot)."""
    rows, paths = [], [str(p) for p in smk.input.recons]
    for path in paths:
        tensors, rec = io.load_tensors(path, device=load_device)
        rows.append(row(tensors, rec))
    kept = finish(rows) if finish is not None else rows
    rec = make_record(rule=rule, wildcards=dict(smk.wildcards), params=params, config=smk.config, inputs=smk.input,
                      outputs=smk.output, device=device if record_device is None else record_device)
    io.save_table(smk.output[0], kept, rec)
    if then is not None:
        then(rows, paths, rec)
    if summary is not None:
        say(summary(kept))
    return {"rows": len(kept)}


# ====================================================================== gather

def concat_rows(paths: Iterable[str]) -> Any:
    """The row files' tables, one after another (columns promoted where files differ)."""
    import pyarrow as pa

    tables = [io.load_table(p)[0] for p in paths]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


def gather_stage(smk: Any, device: torch.device, *, order: Callable[[Any], Any] | None = None,
                 empty: Mapping[str, list] | None = None) -> dict:
    """Row files (every input) -> one Parquet file: concatenated in input order, then the
    study's ``order`` if given; ``empty`` is the table written when there are no rows."""
    import pyarrow as pa

    table = concat_rows(list(smk.input))
    if order is not None:
        table = order(table)
    if table.num_rows == 0 and empty is not None:
        table = pa.table(dict(empty))
    rec = make_record(rule=smk.rule, wildcards=dict(smk.wildcards), config=smk.config, inputs=smk.input,
                      outputs=smk.output)
    io.save_table(smk.output[0], table, rec)
    say(f"{smk.rule}: {table.num_rows} rows from {len(smk.input)} files")
    return {"rows": table.num_rows}


# ====================================================================== table

def _input(smk: Any, name: str) -> Any:
    value = getattr(smk.input, name, None)
    return value if value is None or isinstance(value, (str, Path)) else list(value)


def table_stage(smk: Any, device: torch.device, *, entry: Any, config: Mapping[str, Any]) -> dict:
    """Table ``smk.wildcards.table``: its entry of the table registry (``gibench.tables.TABLES``,
    found by :func:`gibench.pipeline.targets.table_entry`) builds it from the gathered inputs the
    entry declares (``metrics_path``, ``cost_path``, ``accuracy_path``) and ``config`` (what the
    study's builders read: the study block or the whole config) into the job's outputs' folder,
    in the formats the job outputs (csv, md, html)."""
    from ..tables.render import table_formats

    table = smk.wildcards.table
    paths = {f"{name}_path": _input(smk, name) for name in entry.inputs}
    args = (table,) if entry.when == "kind" else ()        # one entry, several configured tables
    written = entry.build(*args, **paths, config=config, out_dir=Path(smk.output.csv).parent,
                          formats=table_formats(smk.output))
    say(f"table {entry.study}/{table}: {', '.join(str(p) for p in written)}")
    return {"written": [str(p) for p in written]}
