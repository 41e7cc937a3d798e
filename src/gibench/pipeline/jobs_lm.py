"""Jobs of the local language models (rule ``lm_pretrain``, table ``lm_pretrain``; issue 25).

``lm_pretrain.<family>`` (top-level config) says how the pipeline trains a small language
model of a text family (:mod:`gibench.models.pretrain`).  A study uses it in two ways:

* ``studies.<s>.models.<family>.weights: pretrained_local`` - the attacked classifier is the
  language model's trunk with a fresh, seeded classification head (the model rule copies the
  trunk; the architecture is ``lm_pretrain.<family>``'s);
* ``attacks.<lamp attack>.params.prior: pretrained_local`` - LAMP's discrete steps are
  scored by this language model (the GPT-2 port of LAMP scores with GPT-2 itself); causal
  models only (GPT-2), BERT's is a masked LM.

The artifact ``results/lm/<family>/lm.safetensors`` holds the trunk (BERT: and its MLM head); its record holds the
architecture, the training text (per corpus: sentences, kept, dropped as overlapping a
held-out sentence), the settings, the training trace and the perplexities of the random
initialisation and of the trained model on the held-out sample and on the victims.  Timings
(volatile) go to the job log only.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import io
from ..datasets.text import is_text_dataset
from ..provenance import make_record
from ..seeds import derive_seed
from ..studies.selective_encryption.spec import attack_runs_on, check_lm_config  # noqa: F401  (check_lm_config: re-exported)
from ..studies.selective_encryption.text_settings import (  # noqa: F401  (re-exported: their old home)
    FAMILIES, LM_TABLE, LOCAL, _shape, architecture_options, lm_description, lm_path, lm_settings, uses_local_weights)
from ..tables.render import table_formats
from . import paths as P
from .attack_cases import attack_settings
from .inputs import BUNDLED_TEXT_FILES, dataset_inputs
from .runner import say

if TYPE_CHECKING:  # torch only in annotations: the DAG build imports this module without it
    import torch

# ------------------------------------------------------------------ config access

def text_datasets(config: dict) -> list[str]:
    """The configured datasets that are text datasets (their victims are held out)."""
    return [d for d in config["datasets"] if is_text_dataset(d)]


def lm_inputs(config: dict, family: str) -> dict:
    """The data files the language model reads: its corpora and held-out splits, and the
    sources of every configured text dataset's victims (held out).  The job draws the victim
    pools itself with the data rule's function (:func:`gibench.pipeline.jobs_text.make_text_victims`),
    so it does not wait for the data jobs (which share a cluster group with the model rule
    that waits for it)."""
    s = lm_settings(config, family)
    files = [f for d in text_datasets(config) for f in dataset_inputs(config, d)]
    for spec in list(s["corpora"]) + list(s["heldout"]):
        d = spec["dataset"]
        if spec.get("source", "bundled") == "hub":
            files.append(f"{config['hub_dir']}/{d}/{spec['split']}/dataset_info.json")
        else:
            files += [str(Path(config["resources_dir"]) / "text" / d / f) for f in BUNDLED_TEXT_FILES.get(d, [])]
    return {"data": sorted(dict.fromkeys(files))}


def lm_job_settings(config: dict, family: str) -> dict:
    """What the language model depends on in the config (the rule's params): the seed, its
    settings, and the victim pools of the text datasets (held out)."""
    return {"seed": config["seed"], "lm": lm_settings(config, family),
            "victim_pools": {d: config["datasets"][d] for d in text_datasets(config)}}


def victim_texts(config: dict) -> tuple[list[str], dict]:
    """The victim pools of every configured text dataset, drawn as the data rule draws them."""
    from .jobs_text import make_text_victims

    texts, info = [], {}
    for d in text_datasets(config):
        table, meta = make_text_victims(config, d)
        t = [str(x) for x in table.column("text").to_pylist()]
        texts += t
        info[d] = {"victims": len(t), "split": meta.get("split"), "source": meta.get("source")}
    return texts, info


def local_prior_models(study_cfg: dict) -> set[str]:
    """Models some LAMP attack of the study scores with ``prior: pretrained_local``."""

    out = set()
    for name, entry in (study_cfg.get("attacks") or {}).items():
        if (entry or {}).get("type", name) != "lamp":
            continue
        for case in study_cfg.get("cases") or []:
            if not attack_runs_on(study_cfg, name, case["dataset"], case["model"]):
                continue
            _, params, _ = attack_settings(study_cfg, name, case["model"])
            if params.get("prior") == LOCAL:
                out.add(case["model"])
    return out


def lm_families(config: dict, study: str) -> list[str]:
    """The text families whose local language model the study uses (weights or prior)."""
    st = config["studies"][study]
    models = {c["model"] for c in st.get("cases") or [] if c["model"] in FAMILIES}
    used = {m for m in models if uses_local_weights(st, m)} | (local_prior_models(st) & models)
    return sorted(used)


def lm_table_targets(config: dict, study: str) -> list[str]:
    if not lm_families(config, study):
        return []
    return [P.fmt(P.TABLE, study=study, table=LM_TABLE, ext=e) for e in ("csv", "md")]


def lm_table_inputs(config: dict, study: str) -> dict:
    return {"lm": [lm_path(f) for f in lm_families(config, study)]}


# ------------------------------------------------------------------ config check (DAG build)

# ------------------------------------------------------------------ the job

def pretrain(family: str, s: dict, seed: int, resources_dir: str | Path, hub_dir: str | Path | None,
             victims: list[str], device: torch.device | str = "cpu", progress=None) -> tuple[torch.nn.Module, dict, dict]:
    """Train the local language model of ``family`` with settings ``s`` (see
    :func:`gibench.models.pretrain.settings`), holding out ``victims`` and the held-out
    splits.  Returns (model, facts for the artifact record, volatile timings)."""
    from ..datasets.text import load_tokenizer
    from ..models import count_parameters
    from ..models.pretrain import (OBJECTIVES, build_lm, encode, heldout_sample, lm_config, perplexity, read_corpus,
                                   text_key, train_lm)
    from ..models.text import PAD_ID, SIZES

    sample, held_info, held_all = heldout_sample(s["heldout"], resources_dir, hub_dir, int(s["heldout_sentences"]),
                                                 seed)
    corpus = read_corpus(s["corpora"], resources_dir, hub_dir, held_all + list(victims))
    tok = load_tokenizer(family, "bundled", resources_dir)
    L = int(s["max_length"])
    least = 2 if OBJECTIVES[family] == "causal" else 3          # something to predict
    seqs = encode(tok, corpus.texts, L, least)
    held_seqs = encode(tok, sample, L, least)
    vic_seqs = encode(tok, victims, L, least)
    cfg = lm_config(family, s["size"], s["config_overrides"])
    model = build_lm(cfg, seed).to(device)
    pad = PAD_ID[family]
    # BERT: the same seeded masking for the random and the trained model
    ppl = {"heldout": {"random": perplexity(model, held_seqs, pad, device=device, seed=seed)},
           "victims": {"random": perplexity(model, vic_seqs, pad, device=device, seed=seed)}}
    t0, c0 = time.time(), time.process_time()
    trace = train_lm(model, seqs, steps=int(s["steps"]), batch_size=int(s["batch_size"]), lr=float(s["lr"]),
                            warmup=int(s["warmup"]), min_lr_ratio=float(s["min_lr_ratio"]),
                            weight_decay=float(s["weight_decay"]), seed=seed, pad=pad, device=device,
                            log_every=int(s["log_every"]), progress=progress)
    seconds, cpu = time.time() - t0, time.process_time() - c0
    ppl["heldout"]["trained"] = perplexity(model, held_seqs, pad, device=device, seed=seed)
    ppl["victims"]["trained"] = perplexity(model, vic_seqs, pad, device=device, seed=seed)
    arch_keys = list(SIZES[family]["base"]) + list(s["config_overrides"] or {})
    arch = {k: getattr(cfg, k) for k in dict.fromkeys(arch_keys)}
    held_keys = sorted({text_key(t) for t in held_all + list(victims)})
    tokens = sum(len(q) for q in seqs)
    facts = {
        "family": family, "objective": OBJECTIVES[family], "size": s["size"], "config": arch,
        "parameters": count_parameters(model), "settings": s,
        "corpus": {"parts": corpus.parts, "texts": len(corpus.texts), "sequences": len(seqs),
                   "tokens": tokens},
        "heldout": {"splits": held_info, "sentences_excluded_from_training": len(held_all),
                    "victims": len(victims), "key_digest": hashlib.sha256("\n".join(held_keys).encode()).hexdigest(),
                    "rule": "a training text is dropped when its letters-and-digits key contains, or is "
                            "contained in, the key of a held-out sentence (victims and held-out splits)"},
        "tokens_seen": int(s["steps"]) * int(s["batch_size"]),
        "epochs": int(s["steps"]) * int(s["batch_size"]) / max(1, len(seqs)),
        "perplexity": ppl, "trace": trace,
    }
    # volatile (job log only): wall clock, and CPU time of this process (what a shared machine does not inflate)
    timing = {"train_seconds": round(seconds, 3), "train_cpu_seconds": round(cpu, 3),
              "steps_per_second": round(int(s["steps"]) / max(seconds, 1e-9), 4),
              "steps_per_cpu_second": round(int(s["steps"]) / max(cpu, 1e-9), 4),
              "predicted_tokens_per_second": round(sum(r.get("tokens", 0) for r in trace) / max(seconds, 1e-9), 1)}
    return model, facts, timing


def lm_pretrain_job(smk: Any, device: torch.device) -> dict:
    from ..models.pretrain import lm_state

    family = smk.wildcards.family
    cfg = smk.config
    s = lm_settings(cfg, family)
    seed = derive_seed(cfg["seed"], "lm_pretrain", family=family)
    victims, pools = victim_texts(cfg)
    t0 = time.time()

    def progress(step: int, loss: float) -> None:
        say(f"lm_pretrain {family}: step {step}/{s['steps']}, train loss {loss:.3f} "
            f"(ppl {min(float('inf'), 2.718281828 ** loss):.0f}), {time.time() - t0:.0f} s")

    model, facts, timing = pretrain(family, s, seed, cfg["resources_dir"], cfg["hub_dir"], victims, device, progress)
    facts["heldout"]["victim_pools"] = pools
    rec = make_record(rule="lm_pretrain", wildcards={"family": family}, params=lm_job_settings(cfg, family),
                      config=cfg, seed=seed, device=device, extra={"lm": io.plain(facts, nan="keep")})
    io.save_tensors(smk.output[0], lm_state(model), rec)
    p = facts["perplexity"]
    say(f"lm_pretrain {family}: held-out perplexity {p['heldout']['random']['perplexity']:.0f} (random) -> "
        f"{p['heldout']['trained']['perplexity']:.1f} (trained, {s['steps']} steps); "
        f"victims {p['victims']['random']['perplexity']:.0f} -> {p['victims']['trained']['perplexity']:.1f}; "
        f"{timing['steps_per_second']} steps/s")
    return {**timing, "heldout_perplexity": p["heldout"]["trained"]["perplexity"]}


# ------------------------------------------------------------------ the table

def lm_table(records: list[dict]):
    """The table of the local language models (one row per family) from their records."""
    from ..tables.render import TableDoc, display

    body, tidy = [], []
    for rec in records:
        lm = rec["lm"]
        c, p = lm["config"], lm["perplexity"]
        layers, width = _shape(c)
        arch = f"{layers} blocks × {width}, vocab {c.get('vocab_size'):,}"
        row = {
            "family": lm["family"], "objective": lm["objective"], "architecture": arch, "parameters": lm["parameters"],
            "training_texts": lm["corpus"]["texts"], "corpus_tokens": lm["corpus"]["tokens"],
            "dropped_overlap": sum(x["dropped_overlap"] for x in lm["corpus"]["parts"]),
            "steps": lm["settings"]["steps"], "batch_size": lm["settings"]["batch_size"],
            "epochs": lm["epochs"],
            "heldout_sentences": p["heldout"]["trained"]["sentences"],
            "heldout_tokens": p["heldout"]["trained"]["tokens"],
            "ppl_heldout_random": p["heldout"]["random"]["perplexity"],
            "ppl_heldout_trained": p["heldout"]["trained"]["perplexity"],
            "victims": p["victims"]["trained"]["sentences"],
            "ppl_victims_random": p["victims"]["random"]["perplexity"],
            "ppl_victims_trained": p["victims"]["trained"]["perplexity"],
        }
        tidy.append(row)
        body.append([display(lm["family"]), lm["objective"], arch, f"{lm['parameters']:,}",
                     f"{row['training_texts']:,} ({row['dropped_overlap']:,} held out)",
                     f"{row['steps']:,} × {row['batch_size']} ({row['epochs']:.2f} epochs)",
                     f"{row['ppl_heldout_random']:,.0f}", f"{row['ppl_heldout_trained']:,.1f}",
                     f"{row['ppl_victims_random']:,.0f}", f"{row['ppl_victims_trained']:,.1f}"])
    parts = []
    for rec in records:
        for x in rec["lm"]["corpus"]["parts"]:
            parts.append(f"{x['dataset']} {x['split']} ({x['kept']:,} of {x['sentences']:,})")
    held = []
    for rec in records:
        for x in rec["lm"]["heldout"]["splits"]:
            held.append(f"{x['dataset']} {x['split']} ({x['sampled']} of {x['sentences']})")
    notes = [
        "Language models trained by the pipeline (rule lm_pretrain) on the bundled corpora's training text, "
        "because pretrained checkpoints cannot be downloaded here; not the pretrained GPT-2/BERT of the paper.",
        "Training text: " + "; ".join(parts) + ". Held out: every victim sentence of the configured text datasets "
        "and every sentence of the held-out splits, together with every training text that overlaps one of them "
        "(letters-and-digits key contains or is contained in a held-out key).",
        "Perplexity: exp of the mean next-token cross-entropy over the predicted tokens (each sentence from "
        "position 0, no BOS token: the convention of LAMP's prior), of the random initialisation and of the "
        "trained model; for a masked LM (BERT) the masked-token perplexity under one fixed seeded choice of "
        "15 % of the tokens; held-out sample: " + "; ".join(held) + ".",
    ]
    cols = list(tidy[0]) if tidy else ["family"]
    return TableDoc(name=LM_TABLE, title="Local language models: held-out perplexity before and after pretraining",
                    header=["Model", "Objective", "Architecture", "Parameters", "Training texts", "Steps × batch",
                            "Held-out ppl (random)", "Held-out ppl (trained)", "Victims ppl (random)",
                            "Victims ppl (trained)"],
                    body=body, tidy_columns=cols, tidy=tidy, notes=notes)


def lm_table_job(smk: Any, device: torch.device) -> dict:
    records = [io.load_tensors(p)[1] for p in smk.input.lm]
    doc = lm_table(records)
    written = doc.write(Path(smk.output.csv).parent, table_formats(smk.output))
    say(f"table {smk.wildcards.study}/{LM_TABLE}: {', '.join(str(p) for p in written)}")
    return {"written": [str(p) for p in written]}


# ------------------------------------------------------------------ captions

__all__ = ["LOCAL", "LM_TABLE", "lm_settings", "lm_inputs", "lm_path", "uses_local_weights", "local_prior_models",
           "lm_families", "lm_table_targets", "lm_table_inputs", "architecture_options", "pretrain", "lm_pretrain_job",
           "lm_table", "lm_table_job", "lm_description", "text_datasets", "victim_texts",
           "lm_job_settings", "check_lm_config"]
