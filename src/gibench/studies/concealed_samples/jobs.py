"""The job functions of the concealed-samples study's attack path (``workflow/scripts/cs_*.py``
call them): the public pool and the attackers' priors, the malicious server's model, the
client's defended update, the attack, the reconstruction metrics (``cs_evaluate``), their
gather, the tables and the figure.  The FedAvg accuracy jobs are in :mod:`.jobs_fl`.
The data flow is drawn in the package docstring (:mod:`gibench.studies.concealed_samples`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.nn import functional as F

from ... import io
from ...datasets import DATASETS
from ...models import count_parameters
from ...pipeline.runner import say
from ...pipeline.stages import (AttackerView, attack_extras, attack_stage, evaluate_stage, gather_stage,
                                labels_tensor, table_stage)
from ...pipeline.targets import table_entry
from ...provenance import make_record
from ...seeds import derive_seed
from ...wildcards import parse_slot
from . import STUDY
from .needs import NEEDS
from .prep import build_cs_model, load_server_model, prep_for
from .spec import attack_type, defense_steps, n_victims, proxy_dataset, spec
from .targets import public_settings, victim_spec


# ====================================================================== data and priors

def victim_rows(config: dict, dataset: str, cohort: str, victims_path: str) -> list[int]:
    """Rows of the victim pool that are this cohort's sensitive images, slot order."""
    n = n_victims(config, dataset)
    if cohort == "iid":
        return list(range(n))
    if cohort != "noniid":
        raise ValueError(f"unknown cohort {cohort!r} (iid | noniid)")
    from ...fl import partition_dirichlet

    table, _ = io.load_table(victims_path)
    labels = np.asarray(table.column("label").to_pylist())
    nid = spec(config).non_iid
    rng = np.random.default_rng(derive_seed(config["seed"], "cs_noniid", dataset=dataset))
    parts = partition_dirichlet(labels, int(nid.clients), float(nid.alpha), rng, min_samples=1)
    rows = [int(i) for i in parts[int(nid.protected_client)]]
    if len(rows) < n:
        raise ValueError(f"non-IID cohort of {dataset}: client {nid.protected_client} holds {len(rows)} of the "
                         f"{len(labels)} pooled victims, fewer than the {n} asked for; raise datasets.{dataset}.victims")
    return rows[:n]


def read_rows(path: str, rows: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ...pipeline.jobs_data import read_victims

    return read_victims(path, rows)


def public_job(smk: Any, device: torch.device) -> dict:
    dataset = smk.wildcards.dataset
    cfg = smk.config
    ds = DATASETS.get(dataset)
    vspec = victim_spec(cfg, dataset)
    pspec = public_settings(cfg, dataset)
    split = ds.load(pspec["source"], pspec["split"], cfg["resources_dir"], cfg["hub_dir"])
    exclude: set[int] = set()
    victims = getattr(smk.input, "victims", None)
    if victims and pspec["source"] == vspec.get("source") and pspec["split"] == vspec.get("split"):
        t, _ = io.load_table(victims)
        exclude = set(int(i) for i in t.column("source_index").to_pylist())
    avail = np.asarray([i for i in range(len(split.labels)) if int(split.indices[i]) not in exclude])
    if len(avail) < pspec["size"]:
        raise ValueError(f"public pool of {dataset}: {len(avail)} images of {split.source} are left after removing "
                         f"the {len(exclude)} victims, fewer than studies.{STUDY}.public.{dataset}.size = {pspec['size']}")
    seed = derive_seed(cfg["seed"], "cs_public", dataset=dataset)
    pos = np.random.default_rng(seed).permutation(avail)[: pspec["size"]]
    imgs = split.images[pos]
    table = pa.table({
        "index": pa.array(np.arange(len(pos)), pa.int32()),
        "source_index": pa.array(split.indices[pos], pa.int64()),
        "label": pa.array(split.labels[pos], pa.int64()),
        "height": pa.array([imgs.shape[1]] * len(pos), pa.int32()),
        "width": pa.array([imgs.shape[2]] * len(pos), pa.int32()),
        "channels": pa.array([imgs.shape[3]] * len(pos), pa.int32()),
        "image": pa.array([im.tobytes() for im in imgs], pa.binary()),
    })
    rec = make_record(rule="cs_public", wildcards={"dataset": dataset}, params=pspec, config=cfg, inputs=smk.input,
                      outputs=smk.output, seed=seed, extra={"data": {"source": split.source, "excluded": len(exclude)}})
    io.save_table(smk.output[0], table, rec)
    say(f"public pool of {dataset}: {len(pos)} images from {split.source} ({len(exclude)} victims excluded)")
    return {"images": int(len(pos))}


def read_public(path: str) -> tuple[np.ndarray, np.ndarray]:
    t, _ = io.load_table(path)
    d = t.to_pydict()
    imgs = [np.frombuffer(b, np.uint8).reshape(h, w, c) for b, h, w, c in
            zip(d["image"], d["height"], d["width"], d["channels"])]
    return np.stack(imgs), np.asarray(d["label"], np.int64)


def class_means_job(smk: Any, device: torch.device) -> dict:
    dataset = smk.wildcards.dataset
    prep = prep_for(smk.config, dataset)
    imgs, labels = read_public(smk.input.public)
    x = torch.cat([prep.normalize(imgs[i:i + 256]) for i in range(0, len(imgs), 256)])
    means = torch.zeros((prep.num_classes, *prep.shape))
    counts = []
    overall = x.mean(0)
    for k in range(prep.num_classes):
        sel = torch.as_tensor(labels == k)
        counts.append(int(sel.sum()))
        means[k] = x[sel].mean(0) if counts[-1] else overall
    rec = make_record(rule="cs_class_means", wildcards={"dataset": dataset}, params={}, config=smk.config,
                      inputs=smk.input, outputs=smk.output,
                      extra={"class_counts": counts, "empty_classes_use_overall_mean": [k for k, c in enumerate(counts) if not c]})
    io.save_tensors(smk.output[0], {"class_means": means, "counts": torch.tensor(counts)}, rec)
    return {"classes_without_images": sum(1 for c in counts if not c)}


def generator_job(smk: Any, device: torch.device) -> dict:
    from dataclasses import asdict

    from ...attacks.ggl import train_wgan_gp

    dataset = smk.wildcards.dataset
    g = asdict(spec(smk.config).generator)
    prep = prep_for(smk.config, dataset)
    imgs, _ = read_public(smk.input.public)
    x = torch.cat([prep.to_pixels01(imgs[i:i + 512]) for i in range(0, len(imgs), 512)]) * 2 - 1
    seed = derive_seed(smk.config["seed"], "cs_generator", dataset=dataset)
    every = max(1, g["generator_steps"] // 20)

    def progress(step: int, row: dict) -> None:
        if step % every == 0:
            say(f"wgan-gp {dataset}: step {step}, critic {row['critic_loss']:.3f}, W {row['wasserstein']:.3f}")

    net, log = train_wgan_gp(x, generator_steps=g["generator_steps"], seed=seed, dim=g["dim"],
                             batch_size=g["batch_size"], n_critic=g["n_critic"], lambda_gp=g["lambda_gp"], lr=g["lr"],
                             device=device, progress=progress)
    rec = make_record(rule="cs_generator", wildcards={"dataset": dataset}, params=g, config=smk.config,
                      inputs=smk.input, outputs=smk.output, seed=seed, device=device,
                      extra={"generator": {"channels": prep.shape[0], "dim": g["dim"], "public_images": len(imgs)}})
    io.save_tensors(smk.output.generator, dict(net.state_dict()), rec)
    io.save_table(smk.output.log, log, rec)
    return {"steps": len(log)}


def server_model_job(smk: Any, device: torch.device) -> dict:
    from ...attacks.imprint import DEFAULTS as IMP, ImprintedModel, ImprintSecrets

    wc = dict(smk.wildcards)
    cfg = smk.config
    if wc["server"] != "imprint":
        raise ValueError(f"unknown server modification {wc['server']!r} (imprint)")
    attack = next((a for a in spec(cfg).attacks.values() if a.type == "imprint"), None)
    p = {**IMP, **(attack.params_for(wc["dataset"]) if attack else {})}
    base = build_cs_model(cfg, wc["dataset"], wc["model"], smk.input.weights, "cpu")
    seed = derive_seed(cfg["seed"], "cs_server", **wc)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ImprintedModel(base, prep_for(cfg, wc["dataset"]).shape, bins=int(p["bins"]), gain=float(p["gain"]),
                             mode=int(p["mode"]))
    sec = ImprintSecrets(bins=int(p["bins"]))
    server = {"kind": "imprint", "bins": int(p["bins"]), "gain": float(p["gain"]), "mode": int(p["mode"])}
    rec = make_record(rule="cs_server_model", wildcards=wc, params=server, config=cfg, inputs=smk.input,
                      outputs=smk.output, seed=seed, extra={"server": server,
                                                            "model": {"parameters": count_parameters(net)}})
    io.save_tensors(smk.output.weights, dict(net.state_dict()), rec)
    io.write_json(smk.output.info, {"provenance": rec, "secrets": sec.to_dict(), **server})
    return {"parameters": count_parameters(net)}


# ====================================================================== client and server

def _fmt_wc(wc: dict) -> str:
    return "/".join(str(wc[k]) for k in ("dataset", "model", "server", "cohort", "defense", "slot") if k in wc)


def gradient_job(smk: Any, device: torch.device) -> dict:
    from ...defenses.concealed import defend

    wc = dict(smk.wildcards)
    cfg = smk.config
    mode = spec(cfg).model_mode
    prep = prep_for(cfg, wc["dataset"])
    steps = defense_steps(cfg, wc["defense"], wc["dataset"])
    rows = victim_rows(cfg, wc["dataset"], wc["cohort"], smk.input.victims)
    slot = parse_slot(wc["slot"])
    imgs, labels, src = read_rows(smk.input.victims, [rows[slot]])
    x = prep.normalize(imgs).to(device)
    y = torch.as_tensor(labels, device=device)
    net = load_server_model(cfg, wc["dataset"], wc["model"], wc["server"], smk.input.weights, device)
    seed = derive_seed(cfg["seed"], "cs_gradient", **wc)
    gen = torch.Generator().manual_seed(seed)
    proxy = None
    public = getattr(smk.input, "public", None)
    if public:
        pimgs, plabels = read_public(public)
        pprep = prep_for(cfg, proxy_dataset(cfg, wc["defense"], wc["dataset"]) or wc["dataset"])
        need = max((getattr(s, "per_sensitive", 1) for s in steps), default=1) * x.shape[0]
        pick = np.random.default_rng(derive_seed(cfg["seed"], "cs_proxy", **wc)).choice(len(plabels), size=need,
                                                                                      replace=False)
        px01 = pprep.to_pixels01(pimgs[pick])
        if px01.shape[1:] != (prep.shape[0], *prep.shape[1:]):    # another dataset's images (Table 6)
            if px01.shape[1] != prep.shape[0]:
                px01 = px01.mean(1, keepdim=True).expand(-1, prep.shape[0], -1, -1) if prep.shape[0] in (1, 3) else px01
            px01 = F.interpolate(px01, size=prep.shape[1:], mode="bilinear", align_corners=False, antialias=True)
        proxy = (prep.from_pixels(px01).to(device), torch.as_tensor(plabels[pick], device=device))
    every = 50

    def progress(it: int, loss: float) -> None:
        if it % every == 0:
            say(f"dcs2 {_fmt_wc(wc)}: iteration {it}, objective {loss:.4g}")

    upd = defend(net, x, y, steps, num_classes=prep.num_classes, generator=gen, proxy=proxy,
                 to_pixels=prep.denormalize, from_pixels=prep.from_pixels, mode=mode, progress=progress)
    steps_spec = [{"name": s.name, **s.params()} for s in steps]
    rec = make_record(rule="cs_gradient", wildcards=wc, params={"defense": steps_spec, "model_mode": mode},
                      config=cfg, inputs=smk.input, outputs=smk.output, seed=seed, device=device,
                      extra={"victim_rows": [rows[slot]], "source_indices": src.tolist(), "defense_info": upd.info})
    io.save_tensors(smk.output.gradient, upd.shared, rec)
    secrets = {"sensitive_x": x.cpu().clone(), "sensitive_y": y.cpu().clone(),
               "trained_on": upd.trained_on.cpu().clone(), **{k: v.cpu().clone() for k, v in upd.secrets.items()}}
    io.save_tensors(smk.output.secrets, secrets, rec)
    knowledge = {
        "provenance": make_record(rule="cs_gradient", wildcards=wc, params={}, config=cfg, device=device),
        "batch_size": int(x.shape[0]), "input_shape": list(prep.shape), "dataset": wc["dataset"],
        "labels": labels.tolist(), "server": wc["server"],
    }
    io.write_json(smk.output.knowledge, knowledge)
    say(f"gradient {_fmt_wc(wc)}: defense {[s.name for s in steps] or 'none'}")
    return {"defense_info": {k: v for k, v in upd.info.items() if k != "ats_subpolicies"}}


def attack_view(smk: Any, device: torch.device) -> AttackerView:
    """The malicious server's view of one case: its model, the client's update (every entry
    visible), the knowledge file's batch size, input shape and labels, and what the attack
    declares it needs (:data:`.needs.NEEDS`: class means, the generator, the imprint block's
    secrets), resolved from the job's inputs."""
    wc = dict(smk.wildcards)
    cfg = smk.config
    kind = attack_type(cfg, wc["attack"])
    knowledge = json.loads(Path(smk.input.knowledge).read_text())
    prep = prep_for(cfg, wc["dataset"])
    net = load_server_model(cfg, wc["dataset"], wc["model"], wc["server"], smk.input.weights, device)
    shared, _ = io.load_tensors(smk.input.gradient, device=device)
    # GGL's best latent vector: bulky and not a result, kept out of the record
    return AttackerView(kind=kind, params=spec(cfg).attacks[wc["attack"]].params_for(wc["dataset"]), net=net,
                        shared=shared, visible=None, input_shape=(knowledge["batch_size"], *knowledge["input_shape"]),
                        mean=prep.mean, std=prep.std, labels=labels_tensor(knowledge, device),
                        extras=attack_extras(kind, NEEDS, smk.input, device), drop_info=("latent",), config=cfg,
                        inputs=smk.input)


def attack_job(smk: Any, device: torch.device) -> dict:
    """Rule ``cs_attack``: one restart of one case (:func:`gibench.pipeline.stages.attack_stage`)."""
    wc = dict(smk.wildcards)
    return attack_stage(smk, device, attack_view(smk, device), rule="cs_attack",
                        seed=derive_seed(smk.config["seed"], "cs_attack", **wc), label=f"{_fmt_wc(wc)}/rep{wc['rep']}")


# ====================================================================== evaluation

#: evaluation.ssim -> the registered SSIM (gibench.metrics.METRICS) that fills the rows' ssim column
CS_SSIM = {"dcs2": "ssim_dcs2", "torchmetrics": "ssim"}


def _batch_value(name: str, vals: list) -> float:
    """A registered metric's value for the batch: its one batch value, or the mean over the images."""
    from ...metrics import METRICS

    return float(vals[0]) if METRICS.get(name).reduce == "batch" else float(np.mean(vals))


def cs_evaluate_job(smk: Any, device: torch.device) -> dict:
    """Rule cs_evaluate: the reconstruction metrics of every victim and restart of one case,
    against the client's secrets (the transformed or the original image, ``evaluation.ats_ground_truth``)."""
    from ...metrics import METRICS
    from ...metrics.image import image_metrics
    from ...pipeline.jobs_attack import lpips_for

    wc = dict(smk.wildcards)
    cfg = smk.config
    ev = spec(cfg).evaluation
    lp = ev.lpips
    prep = prep_for(cfg, wc["dataset"])
    lp_model, lp_status = None, "not computed for this dataset (DCS-2 reports LPIPS for TinyImageNet only)"
    if wc["dataset"] in lp.datasets:
        backbone = getattr(smk.input, "backbone", None)
        lp_model, lp_status = lpips_for(cfg, {"evaluation": {"lpips": {
            "backbone": lp.backbone, "version": lp.version, "input": lp.input, "datasets": list(lp.datasets)}}},
            backbone, device)
    secrets = {}
    for p in smk.input.secrets:
        t, rec = io.load_tensors(p)
        secrets[rec["wildcards"]["slot"]] = t
    gt_key = "trained_on" if ev.ats_ground_truth == "transformed" else "sensitive_x"
    chosen = CS_SSIM[ev.ssim]

    def row(tensors: dict, rec: dict) -> dict:
        rwc = rec["wildcards"]
        sec = secrets[rwc["slot"]]
        gt = prep.denormalize(sec[gt_key].to(device)).clamp(0, 1)
        x = prep.denormalize(tensors["x"].to(device)).clamp(0, 1)
        m = image_metrics(x, gt, lpips_model=lp_model, lpips_status=lp_status,
                          names=("mse", "psnr", "ssim") + (("lpips",) if lp_model is not None else ()))
        info = rec.get("attack", {})
        dcs = {"ssim_dcs2": _batch_value("ssim_dcs2", METRICS.get("ssim_dcs2").fn(x, gt))}
        tm = {n: _batch_value(n, m[n]) for n in ("mse", "psnr", "ssim")}
        return {"study": STUDY, "dataset": wc["dataset"], "model": wc["model"], "server": wc["server"],
                "cohort": wc["cohort"], "defense": wc["defense"], "attack": wc["attack"], "slot": rwc["slot"],
                "restart": int(rwc["rep"]), "label": int(sec["sensitive_y"][0]), "status": info.get("status", "unknown"),
                "attacker_loss": float(info.get("final_loss", float("nan"))),
                "iterations": int(info.get("iterations", 0) or 0),
                "mse": tm["mse"], "psnr": tm["psnr"], "ssim": {**tm, **dcs}[chosen],
                "ssim_torchmetrics": tm["ssim"], "ssim_dcs2": dcs["ssim_dcs2"],
                "lpips": (None if lp_model is None or any(v is None for v in m.get("lpips", [None]))
                          else float(np.mean(m["lpips"]))),
                "lpips_status": m.get("lpips_status", lp_status) if lp_model is not None else lp_status}

    # the record keeps the evaluation block as configured (what the rule's params compare)
    return evaluate_stage(smk, device, rule="cs_evaluate", params=_evaluation_record(cfg), row=row, load_device=device)


def _evaluation_record(cfg: dict) -> dict:
    """``evaluation`` as the record has always shown it: ssim, lpips, ats_ground_truth, as configured."""
    ev = spec(cfg).recorded("evaluation")
    return {k: ev[k] for k in ("ssim", "lpips", "ats_ground_truth")}


def gather_job(smk: Any, device: torch.device) -> dict:
    """Rule ``cs_gather``: every case's metric rows in one Parquet file (:func:`gibench.pipeline.stages.gather_stage`)."""
    return gather_stage(smk, device, empty={"dataset": []})


# ====================================================================== tables and figure

def table_job(smk: Any, device: torch.device) -> dict:
    """Rule ``cs_table``: the table's registry entry builds it (:func:`gibench.pipeline.stages.table_stage`)."""
    return table_stage(smk, device, entry=table_entry(smk.config, STUDY, smk.wildcards.table), config=smk.config)


def figure_job(smk: Any, device: torch.device) -> dict:
    from ...tables.concealed_samples import build_grid

    build_grid(smk.wildcards.figure, smk.input.recons, smk.input.secrets, smk.config, Path(smk.output.png).parent,
               metrics_path=smk.input.get("metrics"))
    return {}


def download_weights_job(smk: Any, device: torch.device) -> dict:
    from ...models.concealed import RESNET18_FILE, RESNET18_URL

    out = Path(smk.output[0])
    if out.name != RESNET18_FILE:
        raise ValueError(f"{out.name}: the only downloadable weights are torchvision's {RESNET18_FILE}")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(RESNET18_URL, str(out), hash_prefix=RESNET18_FILE.split("-")[1].split(".")[0])
    except Exception as e:  # noqa: BLE001 - network errors come in many types
        raise RuntimeError(f"could not download {RESNET18_URL} to {out}: {type(e).__name__}: {e}; run this rule on "
                           "a machine with internet") from e
    return {"file": str(out)}
