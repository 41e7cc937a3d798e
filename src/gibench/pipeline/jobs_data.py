"""Jobs of the first half of the data flow: victims, model weights, client gradients."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch

from .. import io, model_ids
from ..datasets import DATASETS, choose_victims
from ..gradient import client_gradient
from ..models import count_parameters
from ..provenance import make_record
from ..seeds import derive_seed
from ..studies.selective_encryption.text_settings import lm_path, uses_local_weights
from .model_build import model_for, model_options  # noqa: F401  (re-exported: their old home)
from .runner import say
from ..victims import read_victims, slot_rows  # noqa: F401  (re-exported: their old place)
# the cases of a study config and their model ids (re-exported here under their old names)
from .cases import (builder_default_init, case_list, case_model_ids, default_init, model_init,  # noqa: F401
                    takes_init)


# ----------------------------------------------------------------- victims

def make_victims(config: dict, dataset: str) -> tuple[pa.Table, dict]:
    spec = config["datasets"][dataset]
    ds = DATASETS.get(dataset)
    if getattr(ds, "modality", "image") == "text":  # text, label, token ids (jobs_text)
        from .jobs_text import make_text_victims
        return make_text_victims(config, dataset)
    split = ds.load(spec["source"], spec["split"], config["resources_dir"], config["hub_dir"])
    seed = derive_seed(config["seed"], "victims", dataset=dataset)
    pos = choose_victims(split, spec["victims"], seed)
    imgs = split.images[pos]
    table = pa.table({
        "victim": pa.array(np.arange(len(pos)), pa.int32()),
        "source_index": pa.array(split.indices[pos], pa.int64()),
        "label": pa.array(split.labels[pos], pa.int64()),
        "class_name": pa.array([split.class_names[int(c)] for c in split.labels[pos]]),
        "height": pa.array([imgs.shape[1]] * len(pos), pa.int32()),
        "width": pa.array([imgs.shape[2]] * len(pos), pa.int32()),
        "channels": pa.array([imgs.shape[3]] * len(pos), pa.int32()),
        "image": pa.array([im.tobytes() for im in imgs], pa.binary()),
    })
    info = {"source": split.source, "split": spec["split"], "pool": spec["victims"], "split_size": len(split.labels)}
    return table, {"seed": seed, **info}


def victims_job(smk: Any, device: torch.device) -> dict:
    dataset = smk.wildcards.dataset
    table, info = make_victims(smk.config, dataset)
    rec = make_record(rule="data", wildcards={"dataset": dataset}, params=dict(smk.config["datasets"][dataset]),
                      config=smk.config, inputs=smk.input, outputs=smk.output, seed=info["seed"], device="cpu",
                      extra={"data": info})
    io.save_table(smk.output[0], table, rec)
    say(f"victims for {dataset}: {table.num_rows} from {info['source']}")
    return {"victims": table.num_rows}


# ----------------------------------------------------------------- model weights

def model_job(smk: Any, device: torch.device) -> dict:
    wc = dict(smk.wildcards)
    net = model_for(smk.config, wc["study"], wc["dataset"], wc["model"])
    seed = derive_seed(smk.config["seed"], "model", **wc)
    info = {"name": wc["model"], "registry_name": model_ids.base(wc["model"]),
            "init": model_init(smk.config["studies"][wc["study"]], wc["model"]),
            "parameters": count_parameters(net), "tensors": [n for n, _ in net.named_parameters()]}
    if uses_local_weights(smk.config["studies"][wc["study"]], wc["model"]):
        # the local language model's trunk; the classification head keeps its seeded initialisation
        from ..models.pretrain import load_trunk

        info["weights"] = {"source": "pretrained_local", **load_trunk(net, lm_path(wc["model"]))}
    rec = make_record(rule="model", wildcards=wc, params=model_options(smk.config["studies"][wc["study"]], wc["model"]),
                      config=smk.config, seed=seed, device="cpu", outputs=smk.output, extra={"model": info})
    io.save_tensors(smk.output[0], dict(net.state_dict()), rec)
    say(f"model {wc['model']} for {wc['dataset']}: {count_parameters(net):,} parameters")
    return {"parameters": count_parameters(net)}


# ----------------------------------------------------------------- client gradient

def gradient_job(smk: Any, device: torch.device) -> dict:
    wc = dict(smk.wildcards)
    cfg = smk.config
    study_cfg = cfg["studies"][wc["study"]]
    gcfg = study_cfg["gradient"]
    ds = DATASETS.get(wc["dataset"])
    if getattr(ds, "modality", "image") == "text":  # token ids, attention mask (jobs_text)
        from .jobs_text import text_gradient_job
        return text_gradient_job(smk, device)
    rows = slot_rows(wc["slot"], gcfg["batch_size"])
    imgs, labels, src_idx = read_victims(smk.input.victims, rows)
    net = model_for(cfg, wc["study"], wc["dataset"], wc["model"], smk.input.weights, device)
    x = ds.normalize(imgs).to(device)
    y = torch.as_tensor(labels, device=device)
    grads = client_gradient(net, x, y, loss=gcfg["loss"], mode=gcfg["model_mode"])
    rec = make_record(rule="gradient", wildcards=wc, params=gcfg, config=cfg, inputs=smk.input, outputs=smk.output,
                      seed=None, device=device,
                      extra={"victims": rows, "source_indices": src_idx.tolist(),
                             "tensor_order": list(grads)})
    io.save_tensors(smk.output.gradient, grads, rec)
    knows = study_cfg.get("threat_model", {})
    knowledge = {
        "provenance": make_record(rule="gradient", wildcards=wc, params=knows, config=cfg, device=device),
        "batch_size": gcfg["batch_size"],
        "input_shape": list(ds.shape),
        "dataset": wc["dataset"],
        "labels": labels.tolist() if knows.get("labels_known", True) else None,
    }
    io.write_json(smk.output.knowledge, knowledge)
    say(f"gradient {wc['study']}/{wc['dataset']}/{wc['model']}/{wc['slot']}: victims {rows}")
    return {"victims": rows}
