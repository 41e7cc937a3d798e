"""Attack and evaluation jobs.

The attack job sees only what the threat model gives the server: the model spec and
weights, the shared update, which entries are encrypted, and the study's attacker
knowledge file.  Ground truth (the victims table) reaches only the evaluate job (rule
``evaluate``: the reconstruction metrics of every attack output of one victim slot)."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import torch

from .. import io
from ..datasets import DATASETS
from ..masks import visible_from_mask  # noqa: F401  (re-exported: the attacker's view of a mask)
from ..provenance import make_record
from ..seeds import derive_seed
from ..victims import read_victims, slot_rows
from ..wildcards import SIGNIFICANCE, seed_wildcards
from .attack_cases import attack_settings, case_of, restart_of  # noqa: F401  (re-exported)
from .cases import model_init
from .model_build import model_for
from .runner import say
from .stages import AttackerView, attack_stage, evaluate_stage, labels_tensor, save_attack


def vectorise_restarts(study_cfg: dict, attack: str) -> bool:
    """The attack entry's ``vectorise_restarts`` (default true): run the restarts of one job
    together where the attack allows it (its registry entry's ``many``)."""
    return bool(study_cfg["attacks"][attack].get("vectorise_restarts", True))


def one_restart(smk: Any, rep: int) -> SimpleNamespace:
    """The ``snakemake`` object of one restart of a job that runs them all (rule
    ``attack_restarts``): the job's inputs, config and params, the restart's ``rep``
    wildcard and its output -- what a one-restart job (rule ``attack``) receives."""
    from .replay import Files, Wildcards

    return SimpleNamespace(input=smk.input, config=smk.config, params=smk.params,
                           wildcards=Wildcards({**dict(smk.wildcards), "rep": str(rep)}),
                           output=Files({"recon": list(smk.output.recon)[rep]}),
                           log=getattr(smk, "log", []), rule=getattr(smk, "rule", None),
                           threads=getattr(smk, "threads", 1))


def attack_job(smk: Any, device: torch.device) -> dict:
    """One restart (wildcard ``rep``, rule ``attack``), or every restart of the case (rule
    ``attack_restarts``: output ``recon`` lists one file per restart, each carrying its trace).  Restarts
    of an attack with a vectorised variant (``ATTACKS.entry(kind).many``) run together unless the
    entry says ``vectorise_restarts: false``; the others run one after another, each exactly
    as its own one-restart job would (same seed, same record)."""
    wc = dict(smk.wildcards)
    if "rep" in wc:
        return _attack_one(smk, device)
    from ..attacks import ATTACKS

    study_cfg = smk.config["studies"][wc["study"]]
    kind, _, _ = attack_settings(study_cfg, wc["attack"], wc["model"])
    reps = len(list(smk.output.recon))
    image = getattr(DATASETS.get(wc["dataset"]), "modality", "image") != "text"
    many = ATTACKS.entry(kind).many
    if image and many is not None and reps > 1 and vectorise_restarts(study_cfg, wc["attack"]):
        return _attack_many(smk, device, many)
    runs = [attack_job(one_restart(smk, rep), device) for rep in range(reps)]
    return {"restarts": runs, "vectorised": False}


def _attack_case(smk: Any, device: torch.device) -> AttackerView:
    """The attacker's view of the case, shared by every restart of an image attack job: the
    model, the plaintext part of the update (encrypted entries zeroed), which entries are
    visible, and the knowledge file's batch size, input shape and labels."""
    from ..masks import load_mask

    wc = dict(smk.wildcards)
    cfg = smk.config
    study_cfg = cfg["studies"][wc["study"]]
    kind, params, _ = attack_settings(study_cfg, wc["attack"], wc["model"])
    knowledge = json.loads(open(smk.input.knowledge).read())
    ds = DATASETS.get(wc["dataset"])
    net = model_for(cfg, wc["study"], wc["dataset"], wc["model"], smk.input.weights, device)
    shared, _ = io.load_tensors(smk.input.gradient, device=device)
    mask, _ = load_mask(smk.input.mask)
    visible = {n: v.to(device) for n, v in visible_from_mask(mask, shared).items()}
    # the server sees the plaintext part only: encrypted entries are not available to it
    shared = {n: torch.where(visible[n], g, torch.zeros_like(g)) for n, g in shared.items()}
    return AttackerView(kind=kind, params=params, net=net, shared=shared, visible=visible,
                        input_shape=(knowledge["batch_size"], *knowledge["input_shape"]), mean=ds.mean, std=ds.std,
                        labels=labels_tensor(knowledge, device),
                        info={"encrypted_fraction": float(mask.encrypted_fraction())}, config=cfg, inputs=smk.input)


def _label(wc: dict) -> str:
    return f"{wc['model']}/{wc['slot']}/{wc[SIGNIFICANCE]}/{wc['ratio']}"


def _attack_one(smk: Any, device: torch.device) -> dict:
    if getattr(DATASETS.get(smk.wildcards.dataset), "modality", "image") == "text":  # lamp, dager (jobs_text)
        from .jobs_text import text_attack_job
        return text_attack_job(smk, device)
    wc = dict(smk.wildcards)
    view = _attack_case(smk, device)
    seed = derive_seed(smk.config["seed"], "attack", **seed_wildcards(wc))
    return attack_stage(smk, device, view, rule="attack", seed=seed, label=f"{_label(wc)}/rep{wc['rep']}")


def _attack_many(smk: Any, device: torch.device, many) -> dict:
    """Every restart of the case in one vectorised call; restart ``rep`` keeps the seed of
    its one-restart job.  The records name the job (its wildcards, all its outputs), so a
    replay re-runs all restarts together, and carry the restart number (``attack.restart``)."""
    view = _attack_case(smk, device)
    wc = dict(smk.wildcards)
    recons = list(smk.output.recon)
    seeds = [derive_seed(smk.config["seed"], "attack", **seed_wildcards(wc), rep=str(rep)) for rep in range(len(recons))]
    t0 = time.time()
    every = max(1, int(view.params.get("iterations", 1000)) // 10)

    def progress(i: int, it: int, loss: float) -> None:
        if i == 0 and it % every == 0:
            say(f"attack {wc['attack']} {_label(wc)} ({len(seeds)} restarts together): iteration {it}, "
                f"loss of rep0 {loss:.4g}, {time.time() - t0:.0f} s")

    results = many(view.net, view.shared, view.visible, seeds=seeds, device=device, progress=progress,
                   **view.call_kwargs())
    runs = [save_attack(view, r, rule="attack", wildcards=wc, outputs=smk.output, recon=recons[rep], seed=seed,
                        device=device, t0=t0, extra_info={"restart": rep, "vectorised_restarts": len(seeds)})
            for rep, (r, seed) in enumerate(zip(results, seeds))]
    say(f"attack {wc['attack']} done: {len(runs)} restarts together, losses "
        + ", ".join(f"{r['final_loss']:.4g}" for r in runs))
    return {"restarts": runs, "vectorised": True}


# ------------------------------------------------------------------ evaluation

def lpips_for(cfg: dict, study_cfg: dict, backbone_path: str | None, device: torch.device):
    """(LPIPS model or None, status string).  ``evaluation.lpips`` gives backbone, version and
    input convention (``pm1`` unless set); ``backbone_path`` is the job's backbone input (the
    bundled AlexNet or a downloaded file), else the usual places are searched."""
    from ..metrics.lpips import LPIPSUnavailable, load_lpips

    lp = {"backbone": "alex", "version": "0.1", "input": "pm1", **study_cfg["evaluation"]["lpips"]}
    heads = f"{cfg['resources_dir']}/lpips/weights/v{lp['version']}"
    try:
        model = load_lpips(backbone=lp["backbone"], version=lp["version"], heads_dir=heads,
                           backbone_path=backbone_path, hub_dir=cfg["hub_dir"],
                           resources_dir=cfg["resources_dir"], input=lp["input"])
        return model.to(device), model.status
    except LPIPSUnavailable as e:
        return None, f"unavailable: {e}"


def download_backbone_job(smk: Any, device: torch.device) -> dict:
    """``download_lpips_backbone``: the output's file name picks the backbone."""
    from pathlib import Path

    from ..metrics.lpips import FEATURES_FILES, fetch_backbone

    out = Path(smk.output[0])
    backbone = {v: k for k, v in FEATURES_FILES.items()}.get(out.name)
    if backbone is None:
        raise ValueError(f"{out.name}: not an LPIPS backbone file ({', '.join(FEATURES_FILES.values())})")
    attempts: list[str] = []
    rec = make_record(rule="download_lpips_backbone", wildcards=dict(smk.wildcards), outputs=smk.output)
    fetch_backbone(backbone, out, record=rec, attempts=attempts)
    for a in attempts:
        say(f"download_lpips_backbone: {a}")
    return {"file": str(out), "failed_sources": attempts}


def evaluate_job(smk: Any, device: torch.device) -> dict:
    """Rule ``evaluate``: the reconstruction metrics (``evaluation.image_metrics``; text cases:
    :func:`gibench.pipeline.jobs_text.text_evaluate_job`) of every attack output of one victim
    slot against its ground truth, one row per attack output; the row's ``metric`` column is
    the significance metric of the case."""
    from ..metrics import METRICS, row_columns
    from ..metrics.image import image_metrics
    from ..tables.selective_encryption.views import views_settings, write_views

    if getattr(DATASETS.get(smk.wildcards.dataset), "modality", "image") == "text":  # ROUGE, EmbedDist (jobs_text)
        from .jobs_text import text_evaluate_job
        return text_evaluate_job(smk, device)
    wc = dict(smk.wildcards)
    cfg = smk.config
    study_cfg = cfg["studies"][wc["study"]]
    ev = study_cfg["evaluation"]
    ds = DATASETS.get(wc["dataset"])
    imgs, labels, _ = read_victims(smk.input.victims, slot_rows(wc["slot"], study_cfg["gradient"]["batch_size"]))
    gt = ds.denormalize(ds.normalize(imgs)).clamp(0, 1).to(device)
    backbone = smk.input.get("backbone") if hasattr(smk.input, "get") else None
    lp_model, lp_status = (None, "not requested")
    if any(METRICS.get(n).needs_model for n in ev["image_metrics"]):      # LPIPS
        lp_model, lp_status = lpips_for(cfg, study_cfg, backbone, device)
    init = model_init(study_cfg, wc["model"])
    # the requested metrics (evaluation.image_metrics; default in the schema), looked up in gibench.metrics.METRICS
    columns = row_columns(ev["image_metrics"])

    def row(tensors: dict, rec: dict) -> dict:
        info = rec.get("attack", {})
        x = ds.denormalize(tensors["x"].to(device)).clamp(0, 1)
        m = image_metrics(x, gt, lpips_model=lp_model, lpips_status=lp_status, names=tuple(ev["image_metrics"]))
        case = case_of(rec)
        out = {"study": wc["study"], "dataset": wc["dataset"], "model": wc["model"], "init": init,
               "slot": wc["slot"], "metric": case[SIGNIFICANCE], "ratio": float(case["ratio"][1:]), "attack": case["attack"],
               # the precision the attack ran in (its resolved settings; float32 unless dtype says otherwise)
               "dtype": str((info.get("settings") or {}).get("dtype", "float32")),
               "restart": restart_of(rec), "status": info.get("status", "unknown"),
               "attacker_loss": float(info.get("final_loss", float("nan"))),
               "encrypted_fraction": float(info.get("encrypted_fraction", float("nan"))),
               "iterations": int(info.get("iterations", 0))}
        for name in columns:
            vals = m.get(name)
            # batch mean; None when not computed (e.g. LPIPS without backbone weights)
            out[name] = None if not vals or any(v is None for v in vals) else float(sum(vals) / len(vals))
        out["lpips_status"] = m.get("lpips_status", lp_status)
        return out

    def views(rows: list[dict], paths: list[str], rec: dict) -> None:
        # what the slot's grid and traces figures show: the kept restarts' reconstructions and
        # traces (the figures read this file, not every restart's artifact: issue 23)
        write_views(smk.output.views, rows, paths, views_settings(study_cfg, wc["dataset"], wc["model"]), rec)

    return evaluate_stage(smk, device, rule="evaluate", params=ev, row=row, load_device=device, then=views)
