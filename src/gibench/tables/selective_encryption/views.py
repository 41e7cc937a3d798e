"""A victim slot's *views*: what the reconstruction figures (``grid``, ``traces``) show of it.

The figures show one restart per case -- the restart the tables keep
(:func:`~gibench.tables.select.best_of_restarts` under ``evaluation.best_of_restarts`` and, for
``oracle``, ``evaluation.protection``) -- but that restart is known only once every restart is
evaluated.  Reading every restart's reconstruction artifact in the figure jobs made them declare
all of them (issue 23: ~26,000 of the paper-scale dry run's ~75,000 input references).  The
per-slot evaluate job reads every artifact of its slot anyway, so it also writes the slot's views
(``results/metrics/<study>/<dataset>/<model>/<slot>.views.safetensors``), and the figures read
those instead.

The kept restart is chosen on the slot's own rows: ``best_of_restarts`` groups by case (the slot
is one of its keys), so the rows of other slots never change it -- the figure, which chooses on
the gathered rows, finds the same restart (:func:`views_recon_provider` checks it).

One safetensors file (:func:`gibench.io.save_tensors`: written atomically, its record embedded);
case ``i`` of the record's ``views`` list (attack, the row's own significance metric -- ``any``
at ratios 0/1 --, ratio, restart) has

* ``<i>.recon``: the reconstruction as the grid draws it (:func:`recon_image`: de-normalised,
  clamped to [0, 1], the first image, HWC, float32), and
* ``<i>.trace.<j>``: column ``j`` of the record's ``trace`` list of the artifact's loss trace
  (:func:`gibench.io.load_trace`), as the traces figure reads it (:func:`numeric_trace`: the
  numeric columns as float64; a per-step status string has no figure and is left out).

Text slots have no grid or traces figures (:func:`.figures.figure_specs`): their views file
holds no case, and does not depend on the selection settings (:func:`views_settings`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ... import io
from ..select import as_records, best_of_restarts, modality_of, ratio_key
from .common import evaluation, study_config

#: the record key that lists a views file's cases
VIEWS_KEY = "views"


def views_settings(config: Mapping[str, Any], dataset: str, model: str) -> dict:
    """What the views of a slot of (``dataset``, ``model``) depend on in ``evaluation`` -- the
    keys that choose the kept restart -- and nothing else: the evaluate job's ``views`` params,
    so that changing them re-runs exactly the evaluate jobs whose views change (and what reads
    them).  Text slots have no views (``{}``); ``protection`` only matters to ``oracle``, and
    then only the criterion of the slot's modality."""
    from ...datasets import DATASETS

    if getattr(DATASETS.get(dataset), "modality", "image") == "text":
        return {}
    ev = evaluation(study_config(config))
    out: dict[str, Any] = {"best_of_restarts": ev["best_of_restarts"]}
    if ev["best_of_restarts"] == "oracle":
        modality = modality_of(model)
        out["protection"] = {modality: ev["protection"][modality]}
    return out


def kept_rows(rows: Any, settings: Mapping[str, Any]) -> list[dict]:
    """The kept restart's row of every case of ``rows`` under ``settings`` (:func:`views_settings`):
    the selection :func:`.figures.chosen_rows` makes, before it fans the ``any`` rows out to the
    significance metrics."""
    if not settings:
        return []
    return best_of_restarts(as_records(rows), criterion=settings["best_of_restarts"],
                            protection=settings.get("protection"))


def recon_image(dataset: str, x: Any) -> np.ndarray:
    """A reconstruction ``x`` (the attack artifact's tensor, in the model's normalised space) as
    the figures draw it: de-normalised on the CPU, clamped to [0, 1], the first image, HWC."""
    from ...datasets import DATASETS

    img = DATASETS.get(dataset).denormalize(x.detach().cpu().float()).clamp(0, 1)
    return img[0].permute(1, 2, 0).numpy()


def numeric_trace(table: Any) -> dict[str, np.ndarray]:
    """The numeric columns of a loss trace (:func:`gibench.io.load_trace`'s table) as float64
    arrays; a per-step status string (e.g. DLG's) is left out."""
    import pyarrow as pa

    return {c: np.asarray(table.column(c).to_numpy(zero_copy_only=False), dtype=float) for c in table.column_names
            if pa.types.is_integer(table.schema.field(c).type) or pa.types.is_floating(table.schema.field(c).type)}


def _case_key(attack: str, metric: str, ratio: Any) -> tuple[str, str, float]:
    return (str(attack), str(metric), ratio_key(float(ratio)))


def write_views(path: str | Path, rows: Sequence[Mapping[str, Any]], artifacts: Sequence[str | Path],
                settings: Mapping[str, Any], record: Mapping[str, Any]) -> list[dict]:
    """Write the views of one slot: ``rows[k]`` is the metric row of attack artifact
    ``artifacts[k]``; ``settings``: :func:`views_settings`; ``record``: the provenance record
    (its ``params`` become ``settings``, the cases go under :data:`VIEWS_KEY`).  Returns the
    cases.  Everything is read before the file is written, atomically: a failure leaves no file."""
    import torch

    if len(rows) != len(artifacts):
        raise ValueError(f"write_views({path}): {len(rows)} rows for {len(artifacts)} attack artifacts")
    where = {}
    for r, p in zip(rows, artifacts):
        where[_case_key(r["attack"], r["metric"], r["ratio"]) + (int(r["restart"]),)] = p
    cases, tensors = [], {}
    for i, row in enumerate(kept_rows(list(rows), settings)):
        key = _case_key(row["attack"], row["metric"], row["ratio"])
        src = where[key + (int(row["restart"]),)]
        x, _ = io.load_tensors(src)
        tensors[f"{i}.recon"] = torch.from_numpy(np.ascontiguousarray(recon_image(row["dataset"], x["x"])))
        trace = numeric_trace(io.load_trace(src))
        for j, values in enumerate(trace.values()):
            tensors[f"{i}.trace.{j}"] = torch.from_numpy(np.array(values, dtype=np.float64))
        cases.append({"attack": key[0], "metric": key[1], "ratio": key[2], "restart": int(row["restart"]),
                      "artifact": str(src), "trace": list(trace)})
    rec = {**dict(record), "params": dict(settings), VIEWS_KEY: cases}
    io.save_tensors(path, tensors, rec)
    return cases


@dataclass(frozen=True)
class View:
    """One case's view: the kept restart, its reconstruction (HWC in [0, 1]) and its trace."""
    attack: str
    metric: str
    ratio: float
    restart: int
    recon: np.ndarray
    trace: dict[str, np.ndarray]


def read_views(path: str | Path) -> dict[tuple[str, str, float], View]:
    """(attack, row metric, ratio) -> :class:`View` of a views file (:func:`write_views`)."""
    tensors, rec = io.load_tensors(path)
    cases = rec.get(VIEWS_KEY)
    if not isinstance(cases, list):
        raise io.ArtifactError(f"{path}: not a views file (its record has no {VIEWS_KEY!r} list)")
    out = {}
    for i, c in enumerate(cases):
        try:
            recon = tensors[f"{i}.recon"].numpy()
            trace = {name: tensors[f"{i}.trace.{j}"].numpy() for j, name in enumerate(c["trace"])}
        except KeyError as e:
            raise io.ArtifactError(f"{path}: case {i} ({c.get('attack')}/{c.get('metric')}/{c.get('ratio')}) "
                                   f"lacks tensor {e}") from None
        key = _case_key(c["attack"], c["metric"], c["ratio"])
        out[key] = View(key[0], key[1], key[2], int(c["restart"]), recon, trace)
    return out


class SlotViews:
    """The views files of some slots, read once each, looked up by a kept row (its own metric
    name: ``any`` at ratios 0/1)."""

    def __init__(self, paths: Iterable[str | Path]):
        self._paths = [Path(p) for p in paths]
        self._read: dict[Path, dict] = {}

    def _file(self, row: Mapping[str, Any]) -> Path:
        name = f"{row['slot']}.views.safetensors"
        hits = [p for p in self._paths if p.name == name and p.parent.name == row["model"]
                and p.parent.parent.name == row["dataset"]]
        if not hits:
            raise io.ArtifactError(f"no views file of {row['dataset']}/{row['model']}/{row['slot']} among the "
                                   f"{len(self._paths)} given ({', '.join(str(p) for p in self._paths[:3])}"
                                   f"{', ...' if len(self._paths) > 3 else ''})")
        return hits[0]

    def view(self, row: Mapping[str, Any]) -> View:
        """The view of ``row``'s case; an error naming the file when it holds none, or one of
        another restart (views made under other selection settings than the rows were chosen with)."""
        p = self._file(row)
        if p not in self._read:
            self._read[p] = read_views(p)
        key = _case_key(row["attack"], row["metric"], row["ratio"])
        v = self._read[p].get(key)
        if v is None:
            raise io.ArtifactError(f"{p}: holds no view of case {key[0]}/{key[1]}/r{key[2]:.3f} (a text slot, or "
                                   f"views written before this case was run: re-run its evaluate job)")
        if v.restart != int(row["restart"]):
            raise io.ArtifactError(f"{p}: keeps restart {v.restart} of case {key[0]}/{key[1]}/r{key[2]:.3f}, the "
                                   f"rows keep restart {int(row['restart'])}: the views were chosen under other "
                                   f"evaluation settings (best_of_restarts, protection); re-run its evaluate job")
        return v

    def recon(self, row: Mapping[str, Any]) -> np.ndarray:
        return self.view(row).recon

    def trace(self, row: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return self.view(row).trace


def views_recon_provider(paths: Iterable[str | Path]) -> Callable[[Mapping[str, Any]], np.ndarray]:
    """row -> the kept restart's reconstruction from the slots' views files (the grid's
    ``recon_provider``; same array as :func:`.figures.file_recon_provider` gives)."""
    return SlotViews(paths).recon
