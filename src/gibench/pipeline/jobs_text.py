"""The text half of the pipeline's jobs (BERT / GPT-2 on CoLA, SST-2, Rotten Tomatoes).

The generic jobs (:mod:`.jobs_data`, :mod:`.jobs_significance`, :mod:`.jobs_attack`)
dispatch here with a one-line branch when the dataset's ``modality`` is ``text``; the rules,
paths and artifacts are the same as for images:

* **victims** (``data`` rule): text, label, source index and the token ids under *both*
  bundled tokenizers (``input_ids_gpt2``: GPT-2 BPE, no special tokens; ``input_ids_bert``:
  bert-base-uncased with ``[CLS] ... [SEP]``), so one victims table serves every model.
  Optional token-length bounds (``datasets.<name>.min_tokens / max_tokens``) must hold under
  both tokenizers (a documented demo deviation: LAMP/DAGER sample all lengths).
* **client gradient** (``gradient`` rule): the sequence-classification model of the case
  on the slot's sentences, right-padded with the family's pad token (BERT ``[PAD]`` = 0,
  GPT-2 pad = eos 50256) with the attention mask, mean cross-entropy, in
  ``gradient.model_mode`` (eval, as LAMP and DAGER).  The knowledge file tells the attacker
  the labels and the sequence lengths when the threat model grants them (LAMP's setting).
* **significance inputs**: the model wrapped as :class:`~gibench.models.text.BoundTextModel`
  (``model(x)`` with the batch's attention mask bound, identical parameter names) and the
  token ids as ``x``; Sens is then taken w.r.t. the word-embedding vectors of the tokens
  (:class:`gibench.significance.sens.GradientJacobian`).
* **attacks** (``attack`` rule): the entries of :data:`gibench.attacks.ATTACKS` with
  ``modality="text"`` (``lamp``, ``dager``: adapters in :mod:`gibench.attacks.text` around
  :mod:`gibench.attacks.lamp` / :mod:`gibench.attacks.dager`; token ids out, tokenizer in,
  one :class:`~gibench.attacks.text.TextAttackContext` as argument).  Like every attack job
  they read only the weights, the shared update (encrypted entries zeroed), the mask and
  the knowledge file.  A DAGER run that cannot proceed (needed layers encrypted, span too
  loose, time limit) is recorded with status ``no_recovery`` and its reason: an attack
  that recovered nothing, i.e. a protected case, not a crashed job.
* **evaluation** (``evaluate`` rule): ROUGE-1/2/L, embedding distance and token accuracy of
  :func:`gibench.metrics.text.text_metrics` against the victims' token ids (the only place
  ground truth is read), one row per restart in the same Parquet layout as the image rows.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from .. import io
from ..attacks import ATTACKS
from ..attacks.text import TextAttackContext
from ..masks import visible_from_mask
from ..provenance import make_record
from ..seeds import derive_seed
from ..studies.selective_encryption.text_settings import (  # noqa: F401  (re-exported: their old home)
    DEFAULT_TEXT_SENS_ESTIMATOR, FAMILIES, PIPELINE_MODEL_KEYS, TEXT_METRIC_NAMES, family_of, ids_column,
    sens_estimator, text_builder_options)
from ..victims import slot_rows
from ..wildcards import SIGNIFICANCE, seed_wildcards
from .attack_cases import attack_settings, case_of, restart_of
from .model_build import model_for
from .runner import say

# ------------------------------------------------------------------ small helpers

def bundled_tokenizers(resources_dir: str | Path) -> dict[str, Any]:
    from ..datasets.text import load_tokenizer

    return {f: load_tokenizer(f, "bundled", resources_dir) for f in FAMILIES}


def tokenizer_for(config: dict, study_cfg: dict, model: str):
    """The tokenizer of a case's model: bundled files (default) or the hub (``models.<m>.tokenizer: hub``,
    by the ``pretrained`` name when set)."""
    from ..datasets.text import load_tokenizer

    opts = (study_cfg.get("models") or {}).get(model, {})
    source = opts.get("tokenizer", "bundled")
    name = opts.get("pretrained") if isinstance(opts.get("pretrained"), str) else None
    if source == "hub" and name is not None:
        from ..models.text import hub_model_dir

        local = hub_model_dir(config["hub_dir"], name)
        name = str(local) if local.is_dir() else name
    return load_tokenizer(family_of(model), source, config["resources_dir"], name=name)


# ------------------------------------------------------------------ victims

def make_text_victims(config: dict, dataset: str) -> tuple[pa.Table, dict]:
    """The victim pool of a text dataset (see the module docstring for the columns)."""
    from ..datasets import DATASETS
    from ..datasets.text import choose_text_victims

    spec = config["datasets"][dataset]
    ds = DATASETS.get(dataset)
    split = ds.load(spec["source"], spec["split"], config["resources_dir"], config["hub_dir"])
    seed = derive_seed(config["seed"], "victims", dataset=dataset)
    toks = bundled_tokenizers(config["resources_dir"])
    convention = spec.get("sampler", "gibench")
    pos = choose_text_victims(split, spec["victims"], seed if convention == "gibench" else None,
                              convention=convention, tokenizer=[toks[f] for f in FAMILIES],
                              min_tokens=spec.get("min_tokens"), max_tokens=spec.get("max_tokens"))
    texts = [split.texts[int(i)] for i in pos]
    cols: dict[str, Any] = {
        "victim": pa.array(np.arange(len(pos)), pa.int32()),
        "source_index": pa.array(split.indices[pos], pa.int64()),
        "label": pa.array(split.labels[pos], pa.int64()),
        "class_name": pa.array([split.class_names[int(c)] for c in split.labels[pos]]),
        "text": pa.array(texts, pa.string()),
    }
    for f in FAMILIES:
        enc = [toks[f](t, truncation=True, max_length=toks[f].model_max_length)["input_ids"] for t in texts]
        cols[ids_column(f)] = pa.array(enc, pa.list_(pa.int64()))
        cols[f"n_tokens_{f}"] = pa.array([len(e) for e in enc], pa.int32())
    info = {"source": split.source, "split": spec["split"], "pool": spec["victims"], "split_size": len(split),
            "sampler": convention, "token_bounds": [spec.get("min_tokens"), spec.get("max_tokens")],
            "tokenizers": {f: f"bundled {f} ({type(toks[f]).__name__})" for f in FAMILIES}}
    return pa.table(cols), {"seed": seed if convention == "gibench" else None, **info}


@dataclass
class TextVictims:
    texts: list[str]
    ids: list[list[int]]
    labels: np.ndarray
    source_indices: np.ndarray


def read_text_victims(path: str | Path, rows: list[int] | None, family: str) -> TextVictims:
    table, _ = io.load_table(path)
    d = table.to_pydict()
    col = ids_column(family)
    if col not in d:
        raise io.ArtifactError(f"{path}: no column {col!r}; is it a text victims table? (columns {list(d)[:8]})")
    idx = list(range(table.num_rows)) if rows is None else list(rows)
    for i in idx:
        if i >= table.num_rows:
            raise IndexError(f"{path}: victim {i} requested but the pool has {table.num_rows}; "
                             f"raise datasets.<name>.victims")
    return TextVictims([d["text"][i] for i in idx], [list(d[col][i]) for i in idx],
                       np.asarray([d["label"][i] for i in idx], np.int64),
                       np.asarray([d["source_index"][i] for i in idx], np.int64))


# ------------------------------------------------------------------ the client's batch

def client_batch(victims: TextVictims, family: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, labels) of a slot, right-padded with the family's pad id."""
    from ..models.text import PAD_ID, pad_batch

    ids, mask = pad_batch(victims.ids, PAD_ID[family])
    return ids.to(device), mask.to(device), torch.as_tensor(victims.labels, device=device)


def bound_model(net: torch.nn.Module, attention_mask: torch.Tensor | None):
    from ..models.text import BoundTextModel

    return BoundTextModel(net, attention_mask)


def text_gradient_job(smk: Any, device: torch.device) -> dict:
    from ..gradient import client_gradient

    wc = dict(smk.wildcards)
    cfg = smk.config
    study_cfg = cfg["studies"][wc["study"]]
    gcfg = study_cfg["gradient"]
    family = family_of(wc["model"])
    rows = slot_rows(wc["slot"], gcfg["batch_size"])
    vic = read_text_victims(smk.input.victims, rows, family)
    net = model_for(cfg, wc["study"], wc["dataset"], wc["model"], smk.input.weights, device)
    limit = _position_limit(net)
    if limit is not None and max(map(len, vic.ids)) > limit:
        raise ValueError(f"slot {wc['slot']}: a sentence has {max(map(len, vic.ids))} tokens but model "
                         f"{wc['model']!r} has {limit} positions; set datasets.{wc['dataset']}.max_tokens")
    ids, mask, y = client_batch(vic, family, device)
    grads = client_gradient(bound_model(net, mask), ids, y, loss=gcfg["loss"], mode=gcfg["model_mode"])
    rec = make_record(rule="gradient", wildcards=wc, params=gcfg, config=cfg, inputs=smk.input, outputs=smk.output,
                      seed=None, device=device,
                      extra={"victims": rows, "source_indices": vic.source_indices.tolist(),
                             "tensor_order": list(grads), "modality": "text"})
    io.save_tensors(smk.output.gradient, grads, rec)
    knows = study_cfg.get("threat_model", {})
    lengths = [len(s) for s in vic.ids]
    knowledge = {
        "provenance": make_record(rule="gradient", wildcards=wc, params=knows, config=cfg, device=device),
        "modality": "text",
        "family": family,
        "batch_size": gcfg["batch_size"],
        "dataset": wc["dataset"],
        "padding": "right, pad id of the family, attention mask",
        "labels": vic.labels.tolist() if knows.get("labels_known", True) else None,
        # token counts with special tokens: LAMP's threat model (it knows the padded length and the pad positions)
        "lengths": lengths if knows.get("sequence_lengths_known", True) else None,
    }
    io.write_json(smk.output.knowledge, knowledge)
    say(f"gradient {wc['study']}/{wc['dataset']}/{wc['model']}/{wc['slot']}: victims {rows}, tokens {lengths}")
    return {"victims": rows, "tokens": lengths}


def _position_limit(net) -> int | None:
    c = getattr(net, "config", None)
    return getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", None)


# ------------------------------------------------------------------ significance

def significance_inputs(cfg: dict, wc: dict, victims_path: str, weights_path: str, device: torch.device):
    """(model as ``model(x)``, x = token ids, y) of a text case's slot for the significance metrics."""

    study_cfg = cfg["studies"][wc["study"]]
    family = family_of(wc["model"])
    vic = read_text_victims(victims_path, slot_rows(wc["slot"], study_cfg["gradient"]["batch_size"]), family)
    net = model_for(cfg, wc["study"], wc["dataset"], wc["model"], weights_path, device)
    ids, mask, y = client_batch(vic, family, device)
    return bound_model(net, mask), ids, y


# ------------------------------------------------------------------ attacks

def text_attack_job(smk: Any, device: torch.device) -> dict:
    """The attack job of a text case (called by :func:`.jobs_attack.attack_job`)."""
    from ..masks import load_mask

    wc = dict(smk.wildcards)
    cfg = smk.config
    study_cfg = cfg["studies"][wc["study"]]
    kind, params, _ = attack_settings(study_cfg, wc["attack"], wc["model"])
    attack = ATTACKS.entry(kind)
    if attack.modality != "text":
        raise ValueError(f"attack {wc['attack']!r} ({kind}) is an {attack.modality} attack, not a text attack")
    family = family_of(wc["model"])
    if family not in attack.families:
        raise ValueError(f"attack {wc['attack']!r} ({kind}) does not run on {wc['model']!r} "
                         f"(supports {', '.join(attack.families)})")
    knowledge = json.loads(Path(smk.input.knowledge).read_text())
    net = model_for(cfg, wc["study"], wc["dataset"], wc["model"], smk.input.weights, device)
    shared, _ = io.load_tensors(smk.input.gradient, device=device)
    mask, _ = load_mask(smk.input.mask)
    visible = {n: v.to(device) for n, v in visible_from_mask(mask, shared).items()}
    # the server sees the plaintext part only: encrypted entries are not available to it
    shared = {n: torch.where(visible[n], g, torch.zeros_like(g)) for n, g in shared.items()}
    tok = tokenizer_for(cfg, study_cfg, wc["model"])
    seed = derive_seed(cfg["seed"], "attack", **seed_wildcards(wc))
    if params.get("prior") == "pretrained_local":   # the local language model (rule lm_pretrain)
        params = {**params, "prior": smk.input.prior}
    t0 = time.time()

    def progress(it: int, loss: float) -> None:
        if it % 100 == 0:
            say(f"attack {wc['attack']} {wc['model']}/{wc['slot']}/{wc['significance']}/{wc['ratio']}/rep{wc['rep']}: "
                f"step {it}, {loss:.4g}, {time.time() - t0:.0f} s")

    ctx = TextAttackContext(net, shared, visible, knowledge, tok, params, seed, device, cfg["hub_dir"], progress)
    out = attack.fn(ctx)
    info = dict(out.info or {})
    seconds = info.pop("seconds", round(time.time() - t0, 3))
    info.update({"status": out.status, "message": out.message, "final_loss": out.final_loss,
                 "encrypted_fraction": float(mask.encrypted_fraction()), "texts": list(out.texts),
                 "iterations": int(info.get("iterations", 0) or 0), "modality": "text"})
    rec = make_record(rule="attack", wildcards=wc, params={"type": kind, **params}, config=cfg,
                      inputs=smk.input, outputs=smk.output, seed=seed, device=device,
                      extra={"attack": io.plain(info, nan="keep")})
    B = len(out.sequences)
    T = max([len(s) for s in out.sequences] + [1])
    ids = torch.full((B, T), -1, dtype=torch.long)
    for b, s in enumerate(out.sequences):
        if s:
            ids[b, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    lens = torch.as_tensor([len(s) for s in out.sequences], dtype=torch.long)
    trace = out.trace or [{"iteration": 0, "loss": float("nan")}]
    io.save_tensors(smk.output.recon, {"token_ids": ids, "lengths": lens}, rec,
                    trace=[io.plain(r, nan="keep") for r in trace])
    say(f"attack {wc['attack']} done: {out.status} ({out.message}); {out.texts[:2]}")
    return {"status": out.status, "final_loss": out.final_loss, "attack_seconds": seconds}


# ------------------------------------------------------------------ evaluation

def text_evaluation(ev: dict) -> dict:
    """The text-metric settings of ``evaluation`` with their defaults."""
    t = dict(ev.get("text") or {})
    t.setdefault("strip_special", True)
    t.setdefault("match", "hungarian")
    t.setdefault("embed_p", 1)
    t.setdefault("embed_reduction", "sum")
    return t


def embedding_table(weights_path: str | Path, family: str) -> torch.Tensor:
    """The model's input word-embedding matrix, read from the weights artifact."""
    from ..models.text import EMBEDDING_PARAM

    name = EMBEDDING_PARAM[family]
    state, _ = io.load_tensors(weights_path)
    if name not in state:
        raise io.ArtifactError(f"{weights_path}: no tensor {name!r} (the {family} word embeddings)")
    return state[name]


def text_evaluate_job(smk: Any, device: torch.device) -> dict:
    """Rule ``evaluate`` on a text case (from :func:`gibench.pipeline.jobs_attack.evaluate_job`)."""
    from ..metrics.text import text_metrics
    from ..tables.selective_encryption.views import views_settings, write_views

    wc = dict(smk.wildcards)
    cfg = smk.config
    study_cfg = cfg["studies"][wc["study"]]
    ev = study_cfg["evaluation"]
    tev = text_evaluation(ev)
    family = family_of(wc["model"])
    vic = read_text_victims(smk.input.victims, slot_rows(wc["slot"], study_cfg["gradient"]["batch_size"]), family)
    tok = tokenizer_for(cfg, study_cfg, wc["model"])
    emb = embedding_table(smk.input.weights, family)
    rows = []
    for path in smk.input.recons:
        tensors, rec = io.load_tensors(path)
        info = rec.get("attack", {})
        ids, lens = tensors["token_ids"], tensors["lengths"].tolist()
        preds = [ids[b, :n].tolist() for b, n in enumerate(lens)]
        m = text_metrics(preds, vic.ids, tok, emb, strip_special=tev["strip_special"], match=tev["match"],
                         wasserstein_p=int(tev["embed_p"]), wasserstein_reduction=tev["embed_reduction"])
        case = case_of(rec)
        row = {"study": wc["study"], "dataset": wc["dataset"], "model": wc["model"], "slot": wc["slot"],
               "metric": case[SIGNIFICANCE], "ratio": float(case["ratio"][1:]), "attack": case["attack"],
               "restart": restart_of(rec), "status": info.get("status", "unknown"),
               "attacker_loss": _float(info.get("final_loss")),
               "encrypted_fraction": _float(info.get("encrypted_fraction")),
               "iterations": int(info.get("iterations", 0) or 0)}
        for name in TEXT_METRIC_NAMES:
            v = m.get(name)
            row[name] = None if v is None or not np.isfinite(v) else float(v)
        # which ROUGE convention rouge1/2/L follow, and both conventions side by side (the paper does
        # not say whether it stripped [CLS]/[SEP]; LAMP's code keeps them)
        row["rouge_convention"] = m["conventions"]["rouge"]
        for conv, vals in m["rouge_by_convention"].items():
            for t in ("rouge1", "rouge2"):
                row[f"{t}_{conv}"] = None if not np.isfinite(vals[t]) else float(vals[t])
        row["embed_dist_status"] = ("ok (" + m["conventions"]["embed"] + ")") if row["embed_dist"] is not None \
            else "empty reconstruction (the attack recovered no token)"
        row["reconstruction"] = " || ".join(m["predictions"])
        row["reference"] = " || ".join(m["references"])
        rows.append(row)
    rec = make_record(rule="evaluate", wildcards=wc, params={**ev, "text": tev}, config=cfg, inputs=smk.input,
                      outputs=smk.output, device=device)
    io.save_table(smk.output[0], rows, rec)
    # text cases have no grid or traces figures: their views file holds no case (rule evaluate
    # writes one per slot whatever the modality)
    write_views(smk.output.views, rows, list(smk.input.recons), views_settings(study_cfg, wc["dataset"], wc["model"]),
                rec)
    return {"rows": len(rows)}


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


__all__ = ["FAMILIES", "TEXT_METRIC_NAMES",
           "PIPELINE_MODEL_KEYS", "make_text_victims", "read_text_victims", "client_batch", "text_gradient_job",
           "significance_inputs", "sens_estimator", "text_attack_job", "text_evaluate_job", "tokenizer_for",
           "text_builder_options", "embedding_table", "text_evaluation"]


# ------------------------------------------------------------------ downloads (localrules)

#: where LAMP's README fetches its BERT-vocabulary prior (GBDA's transformer_wikitext-103.pth)
LAMP_PRIOR_URL = "https://files.sri.inf.ethz.ch/lamp/{file}.pth"


def download_pretrained_job(smk: Any, device: torch.device) -> dict:
    """Save a hub checkpoint under ``<hub_dir>/models/<owner>__<name>`` (``download_pretrained`` rule)."""
    from ..models.text import download_pretrained

    name = smk.wildcards.checkpoint.replace("__", "/")
    out = download_pretrained(name, smk.config["hub_dir"])
    return {"path": str(out)}


def download_lm_prior_job(smk: Any, device: torch.device) -> dict:
    """Fetch LAMP's ``<file>.pth`` prior from the LAMP authors' server (``download_lm_prior`` rule)."""
    import urllib.request

    from ..models.text import ModelUnavailable

    url = LAMP_PRIOR_URL.format(file=smk.wildcards.file)
    out = Path(smk.output[0])
    try:
        with urllib.request.urlopen(url, timeout=60) as r, io.atomic_path(out) as tmp:
            Path(tmp).write_bytes(r.read())
    except OSError as e:
        raise ModelUnavailable(f"could not download LAMP's LM prior from {url} ({type(e).__name__}: {e}); "
                               f"run this rule on a machine with internet, or place the file at {out}") from e
    return {"path": str(out), "url": url}
