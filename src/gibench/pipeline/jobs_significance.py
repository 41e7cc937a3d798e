"""Jobs of the significance stage: per-entry scores (with their cost) and encryption masks."""
from __future__ import annotations

from typing import Any

import torch

from .. import io
from ..wildcards import parse_ratio, seed_wildcards
from ..datasets import DATASETS
from ..provenance import make_record
from ..seeds import derive_seed
from . import paths as P
from .jobs_data import model_for, read_victims, slot_rows
from .runner import say


def significance_job(smk: Any, device: torch.device) -> dict:
    from ..significance import compute_scores
    from ..significance.cost import measure, warm_up

    wc = dict(smk.wildcards)
    cfg = smk.config
    study_cfg = cfg["studies"][wc["study"]]
    gcfg = study_cfg["gradient"]
    sig = study_cfg["significance"]
    params = dict(sig["params"].get(wc["significance"], {}))
    ds = DATASETS.get(wc["dataset"])
    grads, _ = io.load_tensors(smk.input.gradient, device=device)
    from .jobs_text import sens_estimator, significance_inputs

    # `sens` is computed by the model's estimator (models.<m>.sens_estimator; text models: sens_discrete)
    name = sens_estimator(study_cfg, wc["model"]) if wc["significance"] == "sens" else wc["significance"]
    params = dict(sig["params"].get(name, {}))
    if getattr(ds, "modality", "image") == "text":  # model(x) with x = token ids (jobs_text)
        net, x, y = significance_inputs(cfg, wc, smk.input.victims, smk.input.weights, device)
    else:
        imgs, labels, _ = read_victims(smk.input.victims, slot_rows(wc["slot"], gcfg["batch_size"]))
        net = model_for(cfg, wc["study"], wc["dataset"], wc["model"], smk.input.weights, device)
        x = ds.normalize(imgs).to(device)
        y = torch.as_tensor(labels, device=device)
    seed = derive_seed(cfg["seed"], "significance", **seed_wildcards(wc))
    warm_up(device)   # one-time library set-up of the process, not part of the metric's cost (untimed)
    result, seconds, peak = measure(lambda: compute_scores(
        name, net, x, y, grads, seed=seed, params=params, loss=gcfg["loss"], mode=gcfg["model_mode"]))
    if name != wc["significance"]:
        result.info["estimator"] = name
    cost = {"seconds": seconds, "peak_bytes": int(peak), "num_tensors": len(grads),
            "num_parameters": int(sum(g.numel() for g in grads.values())),
            "estimator": name, "threads": torch.get_num_threads()}
    rec = make_record(rule="significance", wildcards=wc, params=params, config=cfg, inputs=smk.input, outputs=smk.output,
                      seed=seed, device=device, extra={"significance": result.info})
    # the cost is a measurement of this run: it goes to the log and the cost row, not the scores file
    io.save_tensors(smk.output.scores, result.scores, rec)
    io.save_table(smk.output.cost, [{
        "study": wc["study"], "dataset": wc["dataset"], "model": wc["model"], "slot": wc["slot"],
        "metric": wc["significance"], "device": rec["device"], **cost}],
        make_record(rule="significance", wildcards=wc, config=cfg, device=device))
    say(f"significance {wc['significance']} {wc['model']}/{wc['slot']}: {seconds:.2f} s, peak {peak / 2**20:.0f} MiB")
    return cost


def masks_job(smk: Any, device: torch.device) -> dict:
    """One mask per output ratio (``masks``: ratios strictly between 0 and 1 of one significance
    metric; ``masks_any``: ratio 0 or 1, which every significance metric shares).

    Ties are broken by the model's ``named_parameters()`` order (:mod:`gibench.masks`): the
    order is read from the scores' record (``significance.names``) or, for ``any``, from the
    gradient's record (``tensor_order``), never from the file's key order (safetensors sorts
    keys).  A selector's scores (``info.selector``) give the same mask at every ratio."""
    from ..masks import mask_for, save_mask

    wc = dict(smk.wildcards)
    wc.setdefault("significance", P.ANY_METRIC)   # masks_any spells the metric out in its output path
    cfg = smk.config
    sig = cfg["studies"][wc["study"]]["significance"]
    if wc["significance"] == P.ANY_METRIC:
        # ratio 0 / 1: the mask does not depend on a metric; constant scores give exact k
        grads, grad_rec = io.load_tensors(smk.input.gradient)
        scores = {n: torch.zeros_like(g) for n, g in grads.items()}
        info = {"names": grad_rec.get("tensor_order") or list(grads)}
    else:
        scores, score_rec = io.load_tensors(smk.input.scores)
        info = dict(score_rec.get("significance") or {})
        if not info.get("names"):
            raise io.ArtifactError(f"{smk.input.scores}: its record has no significance.names "
                                   "(the parameter order ties are broken by); re-run the significance rule")
    n = 0
    for out in smk.output:
        ratio = parse_ratio(out.rsplit("/", 1)[1].removesuffix(".safetensors"))
        mask = mask_for(scores, ratio, sig["selection"], info)
        rec = make_record(rule=smk.rule, wildcards=wc, params={"selection": sig["selection"]},
                          config=cfg, inputs=smk.input, outputs=smk.output, device="cpu",
                          extra={"mask_ratio": ratio})
        save_mask(out, mask, rec)
        n += 1
    say(f"masks {wc['significance']} {wc['model']}/{wc['slot']}: {n} ratios")
    return {"masks": n}
