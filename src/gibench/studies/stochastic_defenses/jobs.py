"""Job functions of the stochastic-defenses study (the scripts ``workflow/scripts/sd_*.py``
call these through :func:`gibench.pipeline.runner.run_job`).  Config values come from the
study's spec (:mod:`.spec`); paths and cases from :mod:`.paths` and :mod:`.targets`.

Attacker boundary: ``sd_attack_job`` reads the model weights, the released update and the
knowledge file (batch size, input shape, labels if the threat model grants them, and the
client's defense protocol -- architecture, dropout rate, DP parameters -- which the server
coordinating training knows).  The client's random draws (dropout masks Psi, bottleneck eps,
DP noise Xi) are in a separate secrets file that only attacks marked ``oracle: true`` (WIIG)
receive.  Ground truth (the victims) reaches only the evaluate job.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ... import io
from ...models import build_model, count_parameters
from ...pipeline.jobs_data import read_victims, slot_rows
from ...pipeline.runner import say
from ...pipeline.stages import AttackerView, attack_stage, evaluate_stage, labels_tensor, table_stage
from ...pipeline.targets import table_entry
from ...provenance import make_record
from ...seeds import derive_seed, torch_generator
from . import STUDY
from .spec import plain, spec


def _wc(smk: Any) -> dict:
    return dict(smk.wildcards)


def _seed(config: dict, purpose: str, **wc) -> int:
    return derive_seed(config.get("seed", 0), purpose, study=STUDY, **wc)


def build_sd_model(config: dict, dataset: str, model: str, chain, weights: str | Path | None = None,
                   device: torch.device | str = "cpu") -> torch.nn.Module:
    """The study's model with the chain's model-side defenses; ``weights`` loaded when given.
    The init seed depends on (dataset, model) only, so every combination shares the base weights."""
    ds = spec(config).dataset_view(dataset)
    net = build_model(model, ds.num_classes, ds.shape, _seed(config, "model", dataset=dataset, model=model),
                      **chain.model_options())
    if weights is not None:
        state, _ = io.load_tensors(weights)
        want = dict(net.state_dict())
        missing = sorted(set(want) - set(state))
        if missing:
            raise io.ArtifactError(f"{weights}: lacks tensors {missing[:4]} of {model!r} with {chain.label}")
        net.load_state_dict({k: state[k] for k in want})
    return net.to(device)


# ---------------------------------------------------------------- model weights

def sd_model_job(smk: Any, device: torch.device) -> dict:
    from ...defenses import DefenseChain

    wc = _wc(smk)
    chain = DefenseChain([] if wc["pm"] == "none" else [wc["pm"]], plain(spec(smk.config).defense_defaults))
    net = build_sd_model(smk.config, wc["dataset"], wc["model"], chain)
    seed = _seed(smk.config, "model", dataset=wc["dataset"], model=wc["model"])
    rec = make_record(rule="sd_model", wildcards=wc, params={"model_options": chain.model_options()},
                      config=smk.config, seed=seed, device="cpu", outputs=smk.output,
                      extra={"model": {"name": wc["model"], "parameters": count_parameters(net),
                                       "tensors": [n for n, _ in net.named_parameters()]}})
    io.save_tensors(smk.output[0], dict(net.state_dict()), rec)
    say(f"sd model {wc['model']} ({wc['pm']}) for {wc['dataset']}: {count_parameters(net):,} parameters")
    return {"parameters": count_parameters(net)}


# ---------------------------------------------------------------- the client's defended gradient

def sd_gradient_job(smk: Any, device: torch.device) -> dict:
    wc = _wc(smk)
    cfg = smk.config
    s = spec(cfg)
    gcfg = {"batch_size": s.gradient.batch_size, "loss": s.gradient.loss}
    chain = s.chain(wc["defense"])
    ds = s.dataset_view(wc["dataset"])
    rows = slot_rows(wc["slot"], int(gcfg["batch_size"]))
    imgs, labels, src_idx = read_victims(smk.input.victims, rows)
    net = build_sd_model(cfg, wc["dataset"], wc["model"], chain, smk.input.weights, device)
    x = ds.normalize(imgs).to(device)
    y = torch.as_tensor(labels, device=device)
    seed = _seed(cfg, "client", **wc)
    grads, secrets = chain.client_gradient(net, x, y, generator=torch_generator(seed), loss=gcfg["loss"])
    params = {"gradient": gcfg, "defenses": chain.spec()}
    rec = make_record(rule="sd_gradient", wildcards=wc, params=params, config=cfg, inputs=smk.input,
                      outputs=smk.output, seed=seed, device=device,
                      extra={"victims": rows, "source_indices": src_idx.tolist(), "tensor_order": list(grads),
                             "defense_label": chain.label, "secrets_file": "separate (client side)"})
    io.save_tensors(smk.output.shared, grads, rec)
    srec = make_record(rule="sd_gradient", wildcards=wc, params=params, config=cfg, inputs=smk.input,
                       outputs=smk.output, seed=seed, device=device,
                       extra={"secrets": sorted(secrets), "note": "client-side random draws: read only by "
                              "attacks marked oracle: true"})
    io.save_tensors(smk.output.secrets, secrets, srec)          # empty when the defenses draw nothing
    knows = {"labels_known": s.threat_model.labels_known}
    knowledge = {
        "provenance": make_record(rule="sd_gradient", wildcards=wc, params=knows, config=cfg, device=device),
        "batch_size": int(gcfg["batch_size"]),
        "input_shape": list(ds.shape),
        "dataset": wc["dataset"],
        "labels": labels.tolist() if knows["labels_known"] else None,
        "defenses": chain.spec(),
        "loss": gcfg["loss"],
    }
    io.write_json(smk.output.knowledge, knowledge)
    say(f"sd gradient {wc['dataset']}/{wc['model']}/{wc['defense']}/{wc['slot']}: {chain.label}, "
        f"{len(secrets)} secret tensors")
    return {"victims": rows, "defenses": chain.label}


# ---------------------------------------------------------------- the server's attack

def sd_attack_view(smk: Any, device: torch.device) -> AttackerView:
    """The server's view of one case: the model with the client's protocol (from the knowledge
    file), the released update (every entry visible), the knowledge file's batch size, input
    shape and labels; the defense chain and, for an ``oracle`` attack only, the client's
    secrets go to the attack as keywords."""
    from ...defenses import DefenseChain

    wc = _wc(smk)
    cfg = smk.config
    s = spec(cfg)
    kind, params, _, oracle = s.attack_settings(wc["attack"], wc["model"])
    knowledge = json.loads(Path(smk.input.knowledge).read_text())
    chain = DefenseChain(knowledge["defenses"])              # the client's protocol, as the server knows it
    ds = s.dataset_view(wc["dataset"])
    net = build_sd_model(cfg, wc["dataset"], wc["model"], chain, smk.input.weights, device)
    shared, _ = io.load_tensors(smk.input.shared, device=device)
    secrets = io.load_tensors(smk.input.secrets, device=device)[0] if oracle else None
    return AttackerView(kind=kind, params=params, net=net, shared=shared, visible=None,
                        input_shape=(int(knowledge["batch_size"]), *knowledge["input_shape"]), mean=ds.mean, std=ds.std,
                        labels=labels_tensor(knowledge, device), extras={"defenses": chain, "secrets": secrets},
                        record_params={"type": kind, "oracle": oracle, **params}, info={"read_secrets": bool(oracle)},
                        config=cfg, inputs=smk.input)


def sd_attack_job(smk: Any, device: torch.device) -> dict:
    """Rule ``sd_attack``: one restart of one case (:func:`gibench.pipeline.stages.attack_stage`)."""
    wc = _wc(smk)
    return attack_stage(smk, device, sd_attack_view(smk, device), rule="sd_attack", seed=_seed(smk.config, "attack", **wc),
                        label="/".join(wc[k] for k in ("dataset", "model", "defense", "slot")) + f"/rep{wc['rep']}")


# ---------------------------------------------------------------- evaluation against ground truth

def evaluate_restarts(recons: list[tuple[dict, torch.Tensor, dict]], gt_model: torch.Tensor, ds,
                      threshold: float, ssim: str = "ssim_center") -> list[dict]:
    """Metric rows of one slot's restarts: paper B's SSIM (per-image min-max scaled, CVB code)
    on the model-space tensors, MSE/PSNR on the de-normalised images clamped to [0, 1].

    ``ssim`` names the registered SSIM (``gibench.metrics.SSIM_METRICS``) that fills the
    ``ssim`` column and decides success: ``ssim_center`` (torchmetrics 0.11.4, the CVB code's
    value) or ``ssim`` (the full-map mean of torchmetrics >= 1.0).  Both are kept, as
    ``ssim_center`` and ``ssim_full``; ``ssim_definition`` says which one ``ssim`` is."""
    from ...metrics import SSIM_METRICS
    from ...metrics.image import mse_per_image, psnr_per_image
    from ...metrics.scaled import scaled_ssim

    if ssim not in SSIM_METRICS:
        raise ValueError(f"evaluation.ssim: {ssim!r} is not one of {', '.join(SSIM_METRICS)}")
    gt_pix = ds.denormalize(gt_model).clamp(0, 1)
    rows = []
    for wc, x, info in recons:
        x = x.to(gt_model)
        by_def = {"center": scaled_ssim(x, gt_model, "center"), "full": scaled_ssim(x, gt_model, "full")}
        chosen = by_def[SSIM_METRICS[ssim]]
        pix = ds.denormalize(x).clamp(0, 1)
        mse, psnr = mse_per_image(pix, gt_pix), psnr_per_image(pix, gt_pix)
        b = len(chosen)
        rows.append({"study": STUDY, "dataset": wc["dataset"], "model": wc["model"], "defense": wc["defense"],
                     "attack": wc["attack"], "slot": wc["slot"], "restart": int(wc["rep"]),
                     "status": info.get("status", "unknown"), "attacker_loss": float(info.get("final_loss", float("nan"))),
                     "iterations": int(info.get("iterations", 0)), "stop_reason": str(info.get("stop_reason") or ""),
                     "ssim": sum(chosen) / b, "ssim_definition": ssim,
                     "ssim_center": sum(by_def["center"]) / b, "ssim_full": sum(by_def["full"]) / b,
                     "mse": sum(mse) / b, "psnr": sum(psnr) / b,
                     "success": sum(v > threshold for v in chosen) / b})
    return rows


def select_restart(rows: list[dict], how: str) -> list[dict]:
    """One row per slot: the restart with the lowest attacker loss (what an attacker can do;
    the reference keeps the trial with the lowest reconstruction loss) or, ``oracle``, the
    highest SSIM.  A failed restart is never preferred over a finished one."""
    by_slot: dict[str, list[dict]] = {}
    for r in rows:
        by_slot.setdefault(r["slot"], []).append(r)
    out = []
    for slot in sorted(by_slot):
        cand = by_slot[slot]

        def key(r: dict):
            failed = r["status"] != "ok"
            loss = r["attacker_loss"] if r["attacker_loss"] == r["attacker_loss"] else float("inf")
            return (failed, -r["ssim"] if how == "oracle" else loss, r["restart"])

        out.append({**min(cand, key=key), "restarts": len(cand)})
    return out


def sd_evaluate_job(smk: Any, device: torch.device) -> dict:
    """Reconstruction metrics of one (dataset, model, defense, attack) against the victims: one
    row per slot, the restart kept by ``evaluation.best_of_restarts``."""
    wc = _wc(smk)
    cfg = smk.config
    s = spec(cfg)
    e = s.evaluation
    ev = {"asr_threshold": e.asr_threshold, "best_of_restarts": e.best_of_restarts, "ssim": e.ssim}
    ds = s.dataset_view(wc["dataset"])
    batch = int(s.gradient.batch_size)
    chain = s.chain(wc["defense"])

    def row(tensors: dict, rec: dict) -> dict:
        rwc = rec["wildcards"]
        imgs, _, _ = read_victims(smk.input.victims, slot_rows(rwc["slot"], batch))
        return evaluate_restarts([(rwc, tensors["x"], rec.get("attack", {}))], ds.normalize(imgs), ds,
                                 float(ev["asr_threshold"]), ev["ssim"])[0]

    def finish(rows: list[dict]) -> list[dict]:
        return [{**r, "defense_label": chain.label} for r in select_restart(rows, ev["best_of_restarts"])]

    def summary(kept: list[dict]) -> str:
        ssim = [r["ssim"] for r in kept]
        return (f"sd evaluate {wc['dataset']}/{wc['model']}/{wc['defense']}/{wc['attack']}: {len(kept)} victims, "
                f"mean SSIM {sum(ssim) / max(1, len(ssim)):.3f}")

    return evaluate_stage(smk, device, rule="sd_evaluate", params=ev, row=row, finish=finish, summary=summary,
                          load_device="cpu", record_device="cpu")


# ---------------------------------------------------------------- tables and figures

def sd_table_job(smk: Any, device: torch.device) -> dict:
    """Rule ``sd_table``: the table's registry entry (its ``kind``) builds it (:func:`gibench.pipeline.stages.table_stage`)."""
    return table_stage(smk, device, entry=table_entry(smk.config, STUDY, smk.wildcards.table), config=smk.config)


def sd_figure_job(smk: Any, device: torch.device) -> dict:
    from ...tables.stochastic_defenses import build_grid

    wc = _wc(smk)
    written = build_grid(wc["figure"], metrics_path=list(smk.input.metrics), recon_paths=list(smk.input.recons),
                         victims_paths=list(smk.input.victims), config=smk.config,
                         out_dir=Path(smk.output.png).parent)
    say(f"figure {STUDY}/{wc['figure']}: {len(written)} files")
    return {"written": [str(p) for p in written]}
