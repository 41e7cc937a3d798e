"""Model ids: a model of a study case together with its initialisation regime.

The selective-encryption study can run one image model under several initialisations
(``cases: [{dataset: cifar100, model: lenet, inits: [torch_default, dlg_uniform]}]``).  Each
(model, init) pair is one *model id*, the value of the ``{model}`` wildcard in every artifact
path and the ``model`` column of every row:

* the init the model is configured with (``models.<m>.init``, else the builder's default) keeps
  the bare model name -- ``lenet`` -- so a config that names one init has the paths it always had;
* any other init is spelled ``<model>@<init>`` -- ``lenet@dlg_uniform``.

The ``init`` column of the metric rows carries the resolved init of every id, bare or not,
and the tables label rows with it ("LeNet (DLG init)").  This module is a leaf (no torch, no
pipeline): tables, paths and the pipeline all use it.
"""
from __future__ import annotations

from typing import Iterable

SEP = "@"

#: what each init regime is called in tables and captions, and where it comes from
INIT_LABELS = {"torch_default": "PyTorch init", "dlg_uniform": "DLG init"}
INIT_SOURCES = {
    "torch_default": "PyTorch's layer defaults, every weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as in "
                     "the IG/GS code (Soteria GS_attack, inversefed) that builds this LeNet",
    "dlg_uniform": "every weight and bias drawn from U(-0.5, 0.5) (DLG's weights_init, mit-han-lab/dlg "
                   "models/vision.py; also iDLG and Soteria's DLG notebook; presumably FedML-HE's DLG experiments)",
}


def split(model_id: str) -> tuple[str, str | None]:
    """``'lenet@dlg_uniform'`` -> ``('lenet', 'dlg_uniform')``; ``'lenet'`` -> ``('lenet', None)``
    (the model's configured init)."""
    base, sep, init = str(model_id).partition(SEP)
    return base, (init if sep else None)


def base(model_id: str) -> str:
    return split(model_id)[0]


def join(model: str, init: str | None, default_init: str | None) -> str:
    """The id of ``model`` under ``init``: the bare name for the configured init (or no init)."""
    if init is None or init == default_init:
        return model
    return f"{model}{SEP}{init}"


def matches(entry: str, model: str, init: str | None) -> bool:
    """Does a ``models`` list entry (an attack's or the overhead's) name this model under this
    init?  ``lenet`` names every init of LeNet; ``lenet@dlg_uniform`` only that one."""
    b, i = split(entry)
    return b == model and (i is None or i == init)


def matches_any(entries: Iterable[str], model: str, init: str | None) -> bool:
    return any(matches(e, model, init) for e in entries)


def label(display_name: str, init: str | None) -> str:
    """``LeNet`` + ``dlg_uniform`` -> ``LeNet (DLG init)``; no init -> the name unchanged."""
    if not init:
        return display_name
    return f"{display_name} ({INIT_LABELS.get(init, init)})"
