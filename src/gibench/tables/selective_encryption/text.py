"""Table 3 of the selective-encryption study (the text attacks per significance selector) and the
captions' notes on what a text row depends on: the text model and its size, LAMP's prior, the
DAGER variant, the ROUGE convention and the Sens estimator."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from ...studies.selective_encryption.text_settings import lm_description, sens_estimator
from .. import paper
from ..render import TableDoc, display, fmt_mean_std
from ..select import as_records, best_of_restarts, is_missing, modality_of

from .common import (
    attack_label, caption, case_order, evaluation, is_selector, restart_rule, _restarts_text, _rows_for,
    study_config)


# ------------------------------------------------------------------ Table 3 (text)

def table3_cells(rows: Any, config: Mapping[str, Any]) -> list[dict]:
    """Layer selectors (Attn, OneFifth-i) against each attack they were run with: the mask's
    encrypted fraction and EmbedDist / ROUGE-1 / ROUGE-2 (mean ± population std over samples)."""
    from ...significance.selectors import SELECTORS

    cfg = study_config(config)
    ev = evaluation(cfg)
    raw = [r for r in as_records(rows) if is_selector(r.get("metric"))]
    best = best_of_restarts(raw, criterion=ev["best_of_restarts"], protection=ev["protection"])
    cells = []
    for attack, model, dataset in case_order(cfg, best, selectors=True):
        rs = _rows_for(best, attack, model, dataset)
        for sel in [m for m in SELECTORS if any(r["metric"] == m for r in rs)]:
            mine = [r for r in rs if r["metric"] == sel]
            cell = {"attack": attack, "model": model, "dataset": dataset, "defense": sel, "n": len(mine),
                    "statuses": ";".join(sorted({str(r.get("status")) for r in mine})),
                    "best_of_restarts": ev["best_of_restarts"]}
            for col, key in (("encrypted_fraction", "enc_ratio"), ("embed_dist", "embed_dist"),
                             ("rouge1", "rouge1"), ("rouge2", "rouge2")):
                vals = np.asarray([float(r[col]) for r in mine if not is_missing(r.get(col))], dtype=float)
                cell[f"{key}_mean"] = float(vals.mean()) if vals.size else None
                cell[f"{key}_std"] = float(vals.std()) if vals.size else None
            cell["status"] = "ok" if cell["rouge1_mean"] is not None else "unavailable"
            cells.append(cell)
    return cells


def table3(rows: Any, config: Mapping[str, Any]) -> TableDoc:
    cfg = study_config(config)
    ev = evaluation(cfg)
    raw = as_records(rows)
    cells = table3_cells(raw, cfg)
    ns = sorted({c["n"] for c in cells})
    n_text = (f"{ns[0]} samples" if len(ns) == 1 else f"{ns[0]}–{ns[-1]} samples") if ns else "no samples"
    sel_raw = [r for r in raw if is_selector(r.get("metric"))]
    title = (f"{caption('table3')}: Layer-selective encryption (Attn: every attention-layer entry; OneFifth-i: every entry of "
             "the i-th chunk of 32 consecutive parameter tensors in the model's named_parameters() order, the word "
             "embedding excluded: the paper's partition, which gives its GPT-2 ratios; OneFifth-i (blocks): the i-th "
             "fifth of the transformer blocks, an alternative) against the text attacks. "
             "Enc. Ratio: encrypted entries over all gradient entries; EmbedDist, ROUGE-1, ROUGE-2: mean ± std over "
             f"{n_text} (population std, ddof = 0). Per sample the best of {_restarts_text(sel_raw)} restarts is "
             f"kept: {restart_rule(ev, 'text')}.")

    def ms(c: dict, key: str, sig: int = 4) -> str:
        m, sd = c[f"{key}_mean"], c[f"{key}_std"]
        return "-" if m is None else fmt_mean_std(m, sd, sig=sig, min_decimals=4)

    kinds = {a: (e or {}).get("type", a) for a, e in (cfg.get("attacks") or {}).items()}
    body = [[display(kinds.get(c["attack"], c["attack"])), display(c["model"]), display(c["dataset"]), display(c["defense"]),
             "-" if c["enc_ratio_mean"] is None else f"{c['enc_ratio_mean']:.4f}",
             ms(c, "embed_dist"), ms(c, "rouge1"), ms(c, "rouge2")] for c in cells]
    notes = text_notes(cfg, {c["model"] for c in cells})
    empty = [c for c in cells if c["enc_ratio_mean"] == 0.0 and c["defense"] != "attn"]
    for model in sorted({c["model"] for c in empty}):
        which = ", ".join(dict.fromkeys(display(c["defense"]) for c in empty if c["model"] == model))
        notes.append(f"{which} select nothing on this {display(model)} (too few parameter tensors for that chunk or "
                     f"fifth): Enc. Ratio 0, the attack ran on the unencrypted gradient.")
    if any("no_recovery" in c["statuses"] for c in cells):
        notes.append("no_recovery: the attack recovered nothing (e.g. DAGER with its attention gradients "
                     "encrypted); its metrics are those of the empty reconstruction.")
    cols = ["attack", "model", "dataset", "defense", "status", "enc_ratio_mean", "embed_dist_mean", "embed_dist_std",
            "rouge1_mean", "rouge1_std", "rouge2_mean", "rouge2_std", "n", "statuses", "best_of_restarts"]
    doc = TableDoc(name="table3", title=title,
                   header=["Attack", "Model", "Dataset", "Defense", "Enc. Ratio", "EmbedDist", "ROUGE-1", "ROUGE-2"],
                   body=body, tidy_columns=cols, tidy=cells, notes=notes, group_columns=3)
    return paper.join_se_table3(doc, cells, cfg, raw)


# ------------------------------------------------------------------ what a text row depends on

def _text_model_description(cfg: Mapping[str, Any], model: str) -> str:
    from ...models.text import SIZES

    opts = (cfg.get("models") or {}).get(model) or {}
    name = display(model)
    pre = opts.get("pretrained")
    if pre:
        return f"{name}: pretrained weights {pre if isinstance(pre, str) else 'from the hub'} (classification head random)"
    if opts.get("weights") == "pretrained_local":
        return (f"{name}: the trunk of {lm_description(model)}, with a fresh seeded two-class head (as the paper "
                f"attacks not-fine-tuned checkpoints); a small model trained here, not the pretrained checkpoint "
                f"the paper attacks")
    size = opts.get("size", "base")
    arch = dict(SIZES[model][size], **(opts.get("config_overrides") or {}))
    layers = arch.get("n_layer", arch.get("num_hidden_layers"))
    width = arch.get("n_embd", arch.get("hidden_size"))
    kind = "full size" if size == "base" and not opts.get("config_overrides") else "reduced size"
    return (f"{name}: RANDOM weights, {kind} ({layers} blocks of width {width}, the real vocabulary and tokenizer), "
            f"not the pretrained checkpoint the paper attacks; the numbers are not comparable with the paper's")


def text_model_short(cfg: Mapping[str, Any], model: str) -> str:
    """A figure-title fragment: which weights a text model had."""
    if modality_of(model) != "text":
        return ""
    opts = (cfg.get("models") or {}).get(model) or {}
    if opts.get("pretrained"):
        return f"pretrained {opts['pretrained'] if isinstance(opts['pretrained'], str) else display(model)}"
    if opts.get("weights") == "pretrained_local":
        return "pretrained here (rule lm_pretrain), reduced size (not the paper's checkpoint)"
    size = opts.get("size", "base")
    return ("random weights, " + ("full size" if size == "base" and not opts.get("config_overrides")
                                  else "reduced size") + " (not the paper's pretrained model)")


def _lamp_priors(cfg: Mapping[str, Any], models: Iterable[str]) -> list[str]:
    out = []
    for name, entry in (cfg.get("attacks") or {}).items():
        if (entry or {}).get("type", name) != "lamp":
            continue
        for m in sorted(models):
            params = dict((entry or {}).get("params") or {})
            params.update(((entry or {}).get("model_params") or {}).get(m) or {})
            prior = params.get("prior", "none")
            if prior in (None, "none"):
                what = "none: the discrete reordering steps are scored by the gradient distance alone"
            elif prior == "pretrained_local":
                what = lm_description(m)
            else:
                what = f"{prior}"
            out.append(f"{display(name)} prior on {display(m)}: {what}")
    return out


DAGER_VARIANT_TEXT = {
    "visible_rows": "each span is built from the rows of the c_attn gradient whose entries are all visible (exact "
                    "while the visible rows still reach the rank; ours, stronger than any published attacker)",
    "zero_fill": "encrypted entries are replaced by 0 and the whole gradient is used (the naive attacker: every "
                 "touched row leaves the span)",
}


def dager_variant_notes(cfg: Mapping[str, Any]) -> list[str]:
    """What each configured DAGER entry's attacker under encryption does (paper A does not say
    how its DAGER treats encrypted entries; both are run and labelled)."""
    from ...attacks.dager import DEFAULTS as DAGER_DEFAULTS

    seen = {}
    for name, entry in (cfg.get("attacks") or {}).items():
        if (entry or {}).get("type", name) == "dager":
            v = ((entry or {}).get("params") or {}).get("variant", DAGER_DEFAULTS["variant"])
            seen.setdefault(v, f"{attack_label(cfg, name)}: {DAGER_VARIANT_TEXT.get(v, v)}.")
    if not seen:
        return []
    return list(seen.values()) + ["Paper A does not say how its DAGER treats encrypted entries; "
                                  "docs/regimes_variants.md compares the two."]


def text_notes(cfg: Mapping[str, Any], models: Iterable[str]) -> list[str]:
    """Caption notes for tables/figures with text rows: the models' weights, LAMP's prior, the
    Sens estimator and the conventions of ROUGE and EmbedDist."""
    from ...metrics.text import ROUGE_CAPTION, ROUGE_CAPTION_LAMP

    text_models = sorted({m for m in models if modality_of(m) == "text"})
    if not text_models:
        return []
    ev = cfg.get("evaluation") or {}
    t = dict(ev.get("text") or {})
    p, red = int(t.get("embed_p", 1)), t.get("embed_reduction", "sum")
    notes = [_text_model_description(cfg, m) for m in text_models]
    notes += _lamp_priors(cfg, text_models)
    notes += dager_variant_notes(cfg)
    from ...attacks import ATTACKS

    text_attacks = ATTACKS.names(modality="text")
    sig = list((cfg.get("significance") or {}).get("metrics") or [])
    sens_used = any("sens" in ((e or {}).get("metrics") or sig) for a, e in (cfg.get("attacks") or {}).items()
                    if (e or {}).get("type", a) in text_attacks)
    for m in text_models:
        est = sens_estimator(cfg, m)   # the function the significance job uses: the same estimator
        if sens_used and est != "sens":
            why = ("the paper's estimator for BERT/GPT-2, Table 6" if est == "sens_discrete" else
                   "not the paper's Sens (Discrete)")
            notes.append(f"Sens on {display(m)}: every Sens mask was made by {display(est)} ({why}; exact Sens is "
                         f"infeasible at this model size).")
    # evaluation.text.strip_special: the convention of every ROUGE value of the table (the metric
    # rows carry it too, as rouge_convention, and both conventions as rouge1_stripped / rouge1_lamp)
    notes.append(ROUGE_CAPTION if t.get("strip_special", True) else ROUGE_CAPTION_LAMP)
    notes.append(f"EmbedDist: Wasserstein-{p} distance between the input word-embedding vectors of the reconstructed "
                 f"and of the true tokens (the model's own embedding table; special tokens removed), Euclidean cost, "
                 + ("total transport cost with unit mass per true token (W × number of true tokens)"
                    if red == "sum" else "uniform weights (W of the two empirical distributions)")
                 + ", computed exactly.")
    return notes
