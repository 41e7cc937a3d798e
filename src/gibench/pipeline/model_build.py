"""The study's model of a case as the jobs build it (:func:`model_for`): the registry builder with
the case's options (:func:`model_options`: the model id's init, no pipeline-only keys; a text
model's hub and local-LM options), seeded per (study, dataset, model), weights loaded when
given.  The data, gradient, attack and text jobs all build their model here.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import io, model_ids
from ..datasets import DATASETS
from ..models import build_model
from ..seeds import derive_seed
from ..studies.selective_encryption.text_settings import (  # tokenizer, sens_estimator, cost_metrics: not builder options
    PIPELINE_MODEL_KEYS, text_builder_options)


def model_options(study_cfg: dict, model: str) -> dict:
    """Builder options of a model id (:mod:`gibench.model_ids`): ``models.<base>`` without the
    pipeline's own keys, with the id's init (``lenet@dlg_uniform``) in place of the configured one."""
    base, init = model_ids.split(model)
    opts = {k: v for k, v in (study_cfg.get("models") or {}).get(base, {}).items() if k not in PIPELINE_MODEL_KEYS}
    if init is not None:
        opts["init"] = init
    return opts


def model_for(config: dict, study: str, dataset: str, model: str, weights: str | Path | None = None,
              device: torch.device | str = "cpu") -> torch.nn.Module:
    """Build the study's model; load ``weights`` if given (the artifact of the model rule)."""
    ds = DATASETS.get(dataset)
    study_cfg = config["studies"][study]
    seed = derive_seed(config["seed"], "model", study=study, dataset=dataset, model=model)
    opts = model_options(study_cfg, model)
    if getattr(ds, "modality", "image") == "text":  # hub dir, no second download when weights follow
        opts = text_builder_options(config, opts, have_weights=weights is not None, family=model_ids.base(model))
    net = build_model(model_ids.base(model), ds.num_classes, ds.shape, seed, **opts)
    if weights is not None:
        state, _ = io.load_tensors(weights)
        missing = set(dict(net.named_parameters())) - set(state)
        if missing:
            raise io.ArtifactError(f"{weights}: lacks parameters {sorted(missing)[:5]} of model {model!r}")
        net.load_state_dict(state, strict=False)
    return net.to(device)
