"""The cases of a selective-encryption-style study config -- (dataset, model id) pairs, one per
entry of a case's ``inits`` -- and the init each model id resolves to (:mod:`gibench.model_ids`).
Config access only: the DAG build (targets, the config check, the overhead study) reads it
without the job code of :mod:`.jobs_data`."""
from __future__ import annotations

import inspect

from .. import model_ids


def default_init(study_cfg: dict, model: str) -> str | None:
    """The init a registry model is built with when its id names none: ``models.<m>.init``,
    else the builder's default (None for models without an ``init`` option)."""
    configured = ((study_cfg.get("models") or {}).get(model) or {}).get("init")
    return configured if configured is not None else builder_default_init(model)


def builder_default_init(model: str) -> str | None:
    from ..models import MODELS  # deferred: the registry imports torch (the model builders)

    if model not in MODELS:
        return None
    param = inspect.signature(MODELS.get(model)).parameters.get("init")
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def takes_init(model: str) -> bool:
    """Whether the registry model has an ``init`` option (an init axis applies to it)."""
    from ..models import MODELS  # deferred: the registry imports torch (the model builders)

    return model in MODELS and "init" in inspect.signature(MODELS.get(model)).parameters


def model_init(study_cfg: dict, model: str) -> str | None:
    """The resolved init of a model id (``lenet`` -> its configured init; ``lenet@x`` -> ``x``)."""
    base, init = model_ids.split(model)
    return init if init is not None else default_init(study_cfg, base)


def case_model_ids(study_cfg: dict, case: dict) -> list[str]:
    """The model ids of one case: one per entry of ``inits`` (the configured init keeps the
    bare name), or the bare model when the case lists none."""
    inits = case.get("inits")
    if not inits:
        return [case["model"]]
    d = default_init(study_cfg, case["model"])
    return list(dict.fromkeys(model_ids.join(case["model"], i, d) for i in inits))


def case_list(study_cfg: dict) -> list[tuple[str, str]]:
    """(dataset, model id) of every case, in config order, each init its own entry."""
    out = []
    for case in study_cfg.get("cases") or []:
        for m in case_model_ids(study_cfg, case):
            if (case["dataset"], m) not in out:
                out.append((case["dataset"], m))
    return out
