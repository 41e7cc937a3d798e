"""The selective-encryption study's text path, as the DAG build, the config check, the jobs and
the tables read it (no torch): the text families, the keys of a model entry that configure the
pipeline, the Sens estimator of a text model, the builder options of a text model, and the
local language models (``lm_pretrain``): their paths, settings, architecture and the caption
that names them.

The jobs that use these live in :mod:`gibench.pipeline.jobs_text` (victims, gradient, attack,
evaluate) and :mod:`gibench.pipeline.jobs_lm` (training, table), which re-export the names; the
tables (:mod:`gibench.tables.selective_encryption.text`) and the study's spec read them here,
so neither imports the job modules.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ... import io, model_ids
from ...pipeline import paths as P

FAMILIES = ("gpt2", "bert")
TEXT_METRIC_NAMES = ("rouge1", "rouge2", "rougeL", "embed_dist", "token_accuracy")
#: keys of ``studies.<study>.models.<name>`` that configure the pipeline, not the model builder
PIPELINE_MODEL_KEYS = ("tokenizer", "sens_estimator", "cost_metrics")
#: text models compute "sens" with the paper's discrete approximation unless configured otherwise
#: (paper, Table 6: exact Sens is infeasible at BERT/GPT-2 size, Sens (Discrete) is what it reports;
#: ``sens_probe``, the Gaussian-probe estimator with a stated error, is the cheaper option)
DEFAULT_TEXT_SENS_ESTIMATOR = "sens_discrete"

def family_of(model: str) -> str:
    """Registry model name -> text family (the registry names are the families)."""
    if model not in FAMILIES:
        raise ValueError(f"model {model!r} is not a text model (text models: {', '.join(FAMILIES)})")
    return model


def ids_column(family: str) -> str:
    return f"input_ids_{family}"


def text_builder_options(config: dict, opts: dict, have_weights: bool, family: str | None = None) -> dict:
    """Builder options of a text model from its study entry: the hub directory for
    ``pretrained`` checkpoints, and no weight download when a weights artifact follows.
    ``weights: pretrained_local``: the architecture of ``lm_pretrain.<family>`` (the model
    job then copies the local language model's trunk in; :func:`gibench.pipeline.jobs_data.model_job`)."""
    out = {k: v for k, v in opts.items() if k not in PIPELINE_MODEL_KEYS}
    if out.pop("weights", "random") == "pretrained_local":
        out.update(architecture_options(config, family))
    out.setdefault("hub_dir", config["hub_dir"])
    if have_weights and out.get("pretrained"):
        out["load_weights"] = False
    return out


def sens_estimator(study_cfg: dict, model: str) -> str:
    """Which estimator computes the metric ``sens`` for ``model``: ``models.<m>.sens_estimator``,
    by default exact ``sens`` for image models and ``sens_discrete`` (the paper's Sens (Discrete))
    for text models."""
    model = model_ids.base(model)             # lenet@dlg_uniform: LeNet's options
    opts = (study_cfg.get("models") or {}).get(model, {})
    default = DEFAULT_TEXT_SENS_ESTIMATOR if model in FAMILIES else "sens"
    return opts.get("sens_estimator", default)



# ------------------------------------------------------------------ the local language models (lm_pretrain)

LOCAL = "pretrained_local"
LM_TABLE = "lm_pretrain"


def lm_settings(config: dict, family: str) -> dict:
    """``lm_pretrain.<family>`` over the defaults."""
    from ...models.pretrain import settings   # deferred: gibench.models imports torch

    return settings((config.get("lm_pretrain") or {}).get(family))


def lm_path(family: str) -> str:
    return P.fmt(P.LM_WEIGHTS, family=family)


def uses_local_weights(study_cfg: dict, model: str) -> bool:
    return ((study_cfg.get("models") or {}).get(model) or {}).get("weights") == LOCAL


def architecture_options(config: dict, family: str) -> dict:
    """Builder options (``size``, ``config_overrides``) of a classifier on the local LM's trunk."""
    s = lm_settings(config, family)
    return {"size": s["size"], "config_overrides": dict(s["config_overrides"] or {})}


def _shape(c: dict) -> tuple[Any, Any]:
    """(blocks, width) of a GPT-2 or BERT config dict."""
    return c.get("n_layer", c.get("num_hidden_layers")), c.get("n_embd", c.get("hidden_size"))


def lm_description(family: str) -> str:
    """A caption fragment naming the local language model of ``family`` and its perplexity,
    read from the artifact's record (the tables that print it take the artifact as input)."""
    path = Path(lm_path(family))
    if path.exists():
        try:
            rec = io.read_record(path)
        except Exception:  # an unreadable artifact: the caption says it was not found
            rec = {}
        lm = rec.get("lm")
        if lm:
            p = lm["perplexity"]["heldout"]
            c = lm["config"]
            layers, width = _shape(c)
            kind = "masked-token " if lm.get("objective") == "mlm" else ""
            return (f"the local {family} language model (rule lm_pretrain: {layers} blocks of width "
                    f"{width}, {lm['settings']['steps']:,} steps on the bundled training text, victims "
                    f"held out; held-out {kind}perplexity {p['trained']['perplexity']:,.1f}, random initialisation "
                    f"{p['random']['perplexity']:,.0f})")
    return f"the local {family} language model (rule lm_pretrain; its artifact {path} was not found)"
