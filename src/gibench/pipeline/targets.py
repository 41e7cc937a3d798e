"""Which artifacts a config asks for: the target list of `rule all` (each study's own list from its
registration, :mod:`gibench.studies`), and the input and params functions every study's
rules share: dataset inputs, the rule params of the shared stages, the targets of the table and
figure registries, table inputs and settings, model and attack inputs.  A study's own cases,
targets and input functions live in its package (``gibench.studies.<study>.targets``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import model_ids
from ..fl_plan import fl_targets
from ..studies import STUDIES
from ..studies.selective_encryption.text_settings import lm_path, sens_estimator, uses_local_weights
from ..tables import TABLES
from . import paths as P
from .attack_cases import attack_settings
from .jobs_claims import claims_targets
from .jobs_lm import lm_table_inputs
from .jobs_report import report_targets
from .inputs import BUNDLED_FILES, BUNDLED_TEXT_FILES, dataset_inputs  # noqa: F401  (re-exported)
from .outputs import (  # noqa: F401  (re-exported: the rule files and the studies' targets read them here)
    attack_choice, lpips_backbone_file, lpips_backbone_path, registered_figures, registered_outputs, registered_tables,
    table_choice, table_entry)

# ------------------------------------------------------------------ rule params of the shared stages


def attack_params(config: dict, study: str, attack: str, model: str) -> dict:
    """What an attack job depends on in the config (its entry, with the model's overrides
    applied): a change re-runs only the affected jobs."""

    kind, params, restarts = attack_settings(config["studies"][study], attack, model)
    # the study seed: every attack seed derives from it
    out = {"type": kind, "params": params, "restarts": restarts, "seed": config.get("seed")}
    if restarts > 1:      # how the restarts of one job run (one-restart jobs keep their params)
        from .jobs_attack import vectorise_restarts  # deferred: as above

        out["vectorise_restarts"] = vectorise_restarts(config["studies"][study], attack)
    return out


def job_settings(config: dict, rule: str, wc) -> dict:
    """What an upstream job (rules data, model, gradient, significance, masks, masks_any) depends
    on in the config -- the rule's params, so that changing it re-runs these jobs and what
    depends on them, and nothing else.  The study seed is part of every seeded job's settings."""
    from .model_build import model_options  # deferred: model_build imports torch (it builds the models)

    seed = config.get("seed")
    if rule == "data":
        return {"seed": seed, "dataset": config["datasets"][wc.dataset]}
    st = config["studies"][wc.study]
    model = model_options(st, wc.model)
    if rule == "model":
        return {"seed": seed, "model": model}
    if rule == "gradient":
        return {"model": model, "gradient": st.get("gradient"), "threat_model": st.get("threat_model")}
    sig = st.get("significance") or {}
    if rule == "significance":
        name = sens_estimator(st, wc.model) if wc.significance == "sens" else wc.significance
        return {"seed": seed, "model": model, "gradient": st.get("gradient"), "estimator": name,
                "params": (sig.get("params") or {}).get(name, {})}
    if rule in ("masks", "masks_any"):
        return {"selection": sig.get("selection")}
    raise ValueError(f"job_settings: no settings for rule {rule!r}")


def table_inputs(config: dict, study: str, table: str) -> dict:
    # the local language models the text rows ran with: their captions state the perplexity
    lm = lm_table_inputs(config, study)
    gathered = {"metrics": P.fmt(P.ALL_METRICS, study=study), "cost": P.fmt(P.COST, study=study)}
    return {k: gathered[k] for k in table_entry(config, study, table).inputs if k in gathered} | lm


# evaluation keys only some tables read: changing one re-runs only those tables (not the other
# tables, the figures or the evaluate jobs) -- a table's "formatting" in the partial re-run sense
TABLE_ONLY_EVALUATION = {"table5_ratio": ("table5",), "table5_metric": ("table5",),
                         "table4_max_ratio": ("table2", "table4")}
# evaluation keys that select and present rows (tables, figures) but never change a metric value
PRESENTATION_EVALUATION = ("protection", "best_of_restarts")


def evaluation_for(config: dict, study: str, table: str) -> dict:
    """``evaluation`` as table ``table`` (or ``"figures"``) sees it: without the keys of other tables."""
    ev = config["studies"][study].get("evaluation", {})
    return {k: v for k, v in ev.items() if table in TABLE_ONLY_EVALUATION.get(k, (table,))}


def evaluate_settings(config: dict, study: str) -> dict:
    """What an evaluate job depends on in ``evaluation`` (the rule's params): not the table-level keys."""
    ev = config["studies"][study].get("evaluation", {})
    return {k: v for k, v in ev.items() if k not in TABLE_ONLY_EVALUATION and k not in PRESENTATION_EVALUATION}


def _reads_cost(study: str, table: str) -> bool:
    """Whether a registered table reads the gathered cost rows (``he_overhead`` and the figures,
    made by their own rules, are not registry entries: they read none)."""
    return TABLES.has(study, table) and "cost" in TABLES.entry(study, table).inputs


def table_settings(config: dict, study: str, table: str) -> dict:
    """The part of the config a table (or the figures) depends on."""
    st = config["studies"][study]
    out = {"evaluation": evaluation_for(config, study, table), "cases": st.get("cases")}
    if _reads_cost(study, table):
        out["cost_metrics"] = st["significance"]["cost_metrics"]
        out["model_cost_metrics"] = {m: o.get("cost_metrics") for m, o in (st.get("models") or {}).items()}
    else:
        out["metrics"] = st["significance"]["metrics"]
        out["ratios"] = st["significance"]["ratios"]
        # per-attack grids (text path) and the attack settings a caption states (e.g. LAMP's prior)
        out["attacks"] = {a: {k: e.get(k) for k in ("type", "models", "metrics", "ratios", "victims", "restarts",
                                                      "params", "model_params")}
                          for a, e in (st.get("attacks") or {}).items()}
        out["models"] = st.get("models")
    if table.startswith("table"):
        from ..paper_values import digest

        out["paper_values"] = digest(study)     # the 'paper' columns (config/paper_values/<study>.yaml)
    return out


# ------------------------------------------------------------------ extra inputs of the text path

def _hub_checkpoint(config: dict, name: Any) -> str | None:
    """``<hub_dir>/models/<name>/config.json`` for a hub name (None for a local directory)."""
    if not isinstance(name, str) or name in ("none", "") or Path(name).is_dir() or name.endswith((".pth", ".pt")):
        return None
    from ..models.text import hub_model_dir  # deferred: gibench.models imports torch

    return str(hub_model_dir(config["hub_dir"], name) / "config.json")


def model_inputs(config: dict, study: str, model: str) -> list[str]:
    """The downloaded checkpoint a ``pretrained`` model is built from (download rule), or the
    local language model whose trunk a ``weights: pretrained_local`` model starts from."""
    model = model_ids.base(model)
    opts = (config["studies"][study].get("models") or {}).get(model, {})
    if uses_local_weights(config["studies"][study], model):
        return [lm_path(model)]
    pre = opts.get("pretrained")
    if pre is True:
        from ..models.text import HUB_NAMES  # deferred: gibench.models imports torch

        pre = HUB_NAMES.get(model)
    path = _hub_checkpoint(config, pre)
    return [path] if path else []


def attack_inputs(config: dict, wc) -> dict:
    """LAMP's language-model prior when it is a hub checkpoint or LAMP's ``.pth`` (download rules)."""
    se = config["studies"][wc.study]

    _, params, _ = attack_settings(se, wc.attack, wc.model)
    prior = params.get("prior")
    if not prior or prior == "none":
        return {}
    if prior == "pretrained_local":        # the local language model of the model's family
        return {"prior": lm_path(wc.model)}
    if str(prior).endswith((".pth", ".pt")):
        return {"prior": str(prior)}
    path = _hub_checkpoint(config, prior)
    return {"prior": path} if path else {}


def all_targets(config: dict) -> list[str]:
    """Victims of every configured dataset, then each study's own targets (its registry entry)."""
    targets = [P.fmt(P.VICTIMS, dataset=d) for d in config["datasets"]]
    for study in config["studies"]:
        targets += STUDIES.get(study).targets(config)
    targets += fl_targets(config)          # studies with an fl block: FedAvg accuracy table + curves
    targets += claims_targets(config)      # with a claims block: the papers' findings checked
    targets += report_targets(config)      # the config as an item of `snakemake --report`
    # the report's HTML view of every table and claims report (their rules declare an `html`
    # output next to csv/md); asked for by name so that a run made before it existed makes it too
    targets += [t[:-len(".md")] + ".html" for t in targets
                if t.endswith(".md") and t.startswith((P.R + "/tables/", P.R + "/claims/"))]
    return sorted(dict.fromkeys(targets))
