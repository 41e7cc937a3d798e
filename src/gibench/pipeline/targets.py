"""Which artifacts a config asks for: the target list of `rule all`, study by study."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import model_ids
from ..wildcards import fmt_ratio, fmt_slot
from ..datasets import DATASETS
from . import paths as P

BUNDLED_FILES = {
    "cifar100": ["test_first916", "meta", "PROVENANCE.jsonl"],
    "cifar10": ["test_batch_first1017", "batches.meta", "PROVENANCE.jsonl"],
    "mnist": ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "PROVENANCE.jsonl"],
    "tiny_imagenet": ["val_sample_labels.tsv", "wnids.txt", "words_200.txt", "PROVENANCE.jsonl"],
}


# text datasets live under resources/text/<name> (gibench.datasets.text)
BUNDLED_TEXT_FILES = {
    "cola": ["in_domain_dev.tsv", "in_domain_train.tsv.xz", "PROVENANCE.jsonl"],
    "sst2": ["dev.tsv", "train.tsv.xz", "PROVENANCE.jsonl"],
    "rotten_tomatoes": ["rt-polarity.pos.first500", "rt-polarity.neg.first500", "rt-polarity.pos.xz",
                        "rt-polarity.neg.xz", "PROVENANCE.jsonl"],
}


def dataset_inputs(config: dict, dataset: str) -> list[str]:
    spec = config["datasets"][dataset]
    if spec["source"] == "hub":
        return [f"{config['hub_dir']}/{dataset}/{spec['split']}/dataset_info.json"]
    if dataset in BUNDLED_TEXT_FILES:
        root = Path(config["resources_dir"]) / "text" / dataset
        return [str(root / f) for f in BUNDLED_TEXT_FILES[dataset]]
    root = Path(config["resources_dir"]) / "data" / dataset
    return [str(root / f) for f in BUNDLED_FILES.get(dataset, [])]


def se_cases(config: dict):
    """(study, dataset, model id, slot) for the selective-encryption study: one model id per
    init of a case (:func:`gibench.pipeline.jobs_data.case_list`)."""
    from .cases import case_list

    se = config["studies"].get("selective_encryption")
    if not se:
        return
    for dataset, model in case_list(se):
        for s in range(se["victims"]):
            yield "selective_encryption", dataset, model, fmt_slot(s)


def se_gradient_targets(config: dict) -> list[str]:
    out = []
    for study, dataset, model, slot in se_cases(config):
        wc = dict(study=study, dataset=dataset, model=model, slot=slot)
        out += [P.fmt(P.GRADIENT, **wc), P.fmt(P.KNOWLEDGE, **wc)]
    return out


def _se(config: dict) -> dict | None:
    return config["studies"].get("selective_encryption")


def interior_ratios(config: dict) -> list[str]:
    """Formatted ratios strictly between 0 and 1 (their masks depend on the metric): the
    significance grid and every attack's own grid (``attacks.<a>.ratios``)."""
    se = _se(config)
    if not se:
        return []
    rs = set(se["significance"]["ratios"])
    for entry in (se.get("attacks") or {}).values():
        rs |= set(entry.get("ratios") or [])
    return [fmt_ratio(r) for r in sorted({round(float(r), 3) for r in rs}) if 0.0 < r < 1.0]


# ------------------------------------------------------------------ which attack runs where

def case_modality(dataset: str) -> str:
    """``image`` or ``text``: the modality of a case is its dataset's."""
    return getattr(DATASETS.get(dataset), "modality", "image")


def attack_kind(se: dict, attack: str) -> str:
    return se["attacks"][attack].get("type", attack)


def attack_runs_on(se: dict, attack: str, dataset: str, model: str) -> bool:
    """Not on datasets outside ``attacks.<a>.datasets`` (when given); on ``attacks.<a>.models``
    when given (``lenet``: every init of LeNet, ``lenet@dlg_uniform``: that init only); else by
    modality: the text attacks (``modality="text"`` in :data:`gibench.attacks.ATTACKS`: ``lamp``, ``dager``)
    on the text models they support, every other (image) attack on image cases."""
    from .cases import model_init

    entry = se["attacks"][attack]
    if entry.get("datasets") is not None and dataset not in entry["datasets"]:
        return False
    base = model_ids.base(model)
    if entry.get("models") is not None:
        return model_ids.matches_any(entry["models"], base, model_init(se, model))
    from ..attacks import ATTACKS

    kind = attack_kind(se, attack)
    if kind in ATTACKS and ATTACKS.entry(kind).modality == "text":
        return case_modality(dataset) == "text" and base in ATTACKS.entry(kind).families
    return case_modality(dataset) == "image"


def is_selector(metric: str) -> bool:
    """Layer selectors (``attn``, ``onefifth_i``): a fixed set of tensors, whatever the ratio."""
    from ..significance.selectors import SELECTORS

    return metric in SELECTORS


def attack_metrics(se: dict, attack: str) -> list[str]:
    return list(se["attacks"][attack].get("metrics") or se["significance"]["metrics"])


def attack_ratios(se: dict, attack: str) -> list[float]:
    return sorted({round(float(r), 3) for r in (se["attacks"][attack].get("ratios") or se["significance"]["ratios"])})


def attack_victims(se: dict, attack: str) -> int:
    return min(int(se["attacks"][attack].get("victims") or se["victims"]), int(se["victims"]))


def selector_ratio(config: dict) -> str | None:
    """The ratio label under which selector masks are attacked: selector masks do not depend on
    the ratio (the masks rule writes the same mask for every interior ratio), so each selector
    is attacked once, filed under the smallest interior ratio; tables report the mask's
    encrypted fraction instead."""
    rs = interior_ratios(config)
    return rs[0] if rs else None


def attack_params(config: dict, study: str, attack: str, model: str) -> dict:
    """What an attack job depends on in the config (its entry, with the model's overrides
    applied): a change re-runs only the affected jobs."""
    from .jobs_attack import attack_settings

    kind, params, restarts = attack_settings(config["studies"][study], attack, model)
    # the study seed: every attack seed derives from it
    out = {"type": kind, "params": params, "restarts": restarts, "seed": config.get("seed")}
    if restarts > 1:      # how the restarts of one job run (one-restart jobs keep their params)
        from .jobs_attack import vectorise_restarts

        out["vectorise_restarts"] = vectorise_restarts(config["studies"][study], attack)
    return out


def job_settings(config: dict, rule: str, wc) -> dict:
    """What an upstream job (rules data, model, gradient, significance, masks, masks_any) depends
    on in the config -- the rule's params, so that changing it re-runs these jobs and what
    depends on them, and nothing else.  The study seed is part of every seeded job's settings."""
    from .jobs_data import model_options

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
        from .jobs_text import sens_estimator

        name = sens_estimator(st, wc.model) if wc.significance == "sens" else wc.significance
        return {"seed": seed, "model": model, "gradient": st.get("gradient"), "estimator": name,
                "params": (sig.get("params") or {}).get(name, {})}
    if rule in ("masks", "masks_any"):
        return {"selection": sig.get("selection")}
    raise ValueError(f"job_settings: no settings for rule {rule!r}")


def se_attack_cases(config: dict, attack: str | None = None):
    """(study, dataset, model, slot, significance metric, ratio) with ratios 0/1 shared under
    significance 'any'.

    With ``attack``: the cases that attack runs on (its models, metrics, ratios and victim
    slots: ``attacks.<a>.*`` overrides); selectors once each at :func:`selector_ratio`.
    Without: the union over the configured attacks."""
    se = _se(config)
    if not se or not se.get("attacks"):
        return
    attacks = [attack] if attack is not None else list(se["attacks"])
    sel_ratio = selector_ratio(config)
    seen = set()
    for a in attacks:
        n_slots = attack_victims(se, a)
        metrics = attack_metrics(se, a)
        ratios = attack_ratios(se, a)
        for study, dataset, model, slot in se_cases(config):
            if int(slot[1:]) >= n_slots or not attack_runs_on(se, a, dataset, model):
                continue
            for metric in metrics:
                if is_selector(metric):
                    keys = [(metric, sel_ratio)] if sel_ratio and case_modality(dataset) == "text" else []
                else:
                    keys = [(P.metric_for_ratio(metric, r), fmt_ratio(r)) for r in ratios]
                for key in keys:
                    full = (dataset, model, slot) + key
                    if full not in seen:
                        seen.add(full)
                        yield study, dataset, model, slot, key[0], key[1]


def restart_groups(config: dict) -> dict[int, list[str]]:
    """The selective-encryption attacks by restart count (rules/attack.smk): attacks with
    one restart run in rule ``attack`` (one job per restart, wildcard ``rep``); those with
    k > 1 in one ``attack_restarts`` job per case that writes all k restarts."""
    se = _se(config)
    out: dict[int, list[str]] = {}
    for name, entry in sorted(((se or {}).get("attacks") or {}).items()):
        out.setdefault(int(entry.get("restarts", 1)), []).append(name)
    return dict(sorted(out.items()))


def attack_choice(names: list[str]) -> str:
    """A wildcard constraint matching exactly these attack names (none: matches nothing)."""
    import re

    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def restart_paths(config: dict, wc) -> list[str]:
    entry = config["studies"][wc.study]["attacks"][wc.attack]
    return [P.fmt(P.ATTACK, study=wc.study, dataset=wc.dataset, model=wc.model, slot=wc.slot,
                  significance=wc.significance, ratio=wc.ratio, attack=wc.attack, rep=rep)
            for rep in range(int(entry.get("restarts", 1)))]


def lpips_backbone_file(config: dict, study: str) -> str | None:
    """The backbone file LPIPS will read, if one is on disk: the bundled AlexNet, or what the
    download rule (``download_lpips_backbone``) left under ``hub_dir``.  ``None`` otherwise
    (LPIPS is then reported as unavailable, with the reason and the command that fetches it)."""
    ev = config["studies"][study].get("evaluation", {})
    if "lpips" not in ev.get("image_metrics", []):
        return None
    return lpips_backbone_path(config, (ev.get("lpips") or {}).get("backbone", "alex"))


def lpips_backbone_path(config: dict, backbone: str) -> str | None:
    """:func:`gibench.metrics.lpips.find_backbone` with the config's hub and resources dirs."""
    from ..metrics.lpips import find_backbone

    path = find_backbone(backbone, config["hub_dir"], config.get("resources_dir", "resources"))
    return None if path is None else str(path)


def _se_attack_outputs(config: dict):
    """(attack, study, dataset, model, slot, metric, ratio) of every selective-encryption
    attack job, attack by attack in config order: the order of the gathered metric rows."""
    for attack in _se(config).get("attacks") or {}:
        for st, dataset, model, slot, metric, ratio in se_attack_cases(config, attack):
            yield attack, st, dataset, model, slot, metric, ratio


def metric_files(config: dict, study: str) -> list[str]:
    """One metric-row file per victim slot (rule evaluate), in the order the slots first appear."""
    if study != "selective_encryption":
        return []
    out: dict[str, None] = {}
    for _, st, dataset, model, slot, _, _ in _se_attack_outputs(config):
        out.setdefault(P.fmt(P.METRICS, study=st, dataset=dataset, model=model, slot=slot))
    return list(out)


_MEMO: dict[tuple[int, str], tuple[dict, Any]] = {}


def memo(config: dict, name: str, build):
    """``build(config)`` once per config object (the DAG build asks for the same derived
    structure once per job); the entry holds the config, so its id is not reused."""
    key = (id(config), name)
    hit = _MEMO.get(key)
    if hit is None or hit[0] is not config:
        hit = _MEMO[key] = (config, build(config))
    return hit[1]


def _slot_attack_paths(config: dict) -> dict[tuple, list[str]]:
    se = _se(config)
    out: dict[tuple, list[str]] = {}
    for attack, st, dataset, model, slot, metric, ratio in _se_attack_outputs(config):
        out.setdefault((st, dataset, model, slot), []).extend(
            P.fmt(P.ATTACK, study=st, dataset=dataset, model=model, slot=slot, significance=metric, ratio=ratio,
                  attack=attack, rep=rep) for rep in range(int(se["attacks"][attack].get("restarts", 1))))
    return out


def slot_attack_paths(config: dict, wc) -> list[str]:
    """Every attack artifact of one victim slot (the evaluate job's inputs): attack by attack,
    case by case, restart by restart."""
    if wc.study != "selective_encryption":
        return []
    return list(memo(config, "slot_attack_paths", _slot_attack_paths).get((wc.study, wc.dataset, wc.model, wc.slot), []))


def metric_row_order(config: dict) -> dict[tuple, int]:
    """(attack, dataset, model, slot, metric, ratio) -> position: the gathered rows come in
    this order (attack by attack, then case by case), whatever the evaluation jobs' grouping."""
    return {(a, d, m, s, me, r): i for i, (a, _, d, m, s, me, r) in enumerate(_se_attack_outputs(config))}


def model_cost_metrics(se: dict, model: str, dataset: str | None = None) -> list[str]:
    """Table 6 metrics of a model: ``models.<m>.cost_metrics``, else ``significance.cost_metrics``.

    Text models by default: without the exact ``sens`` (infeasible at BERT/GPT-2 size, the
    paper's "-"), and the model's Sens estimator (``sens_estimator``, by default
    ``sens_discrete``, which the paper times for BERT/GPT-2) is timed by the ``sens`` job that
    makes the Sens masks - listed as ``sens``, so it is computed once, not twice; Table 6 shows
    that time in the estimator's column.  ``sens_discrete`` is dropped when it is not the
    estimator (its cost at paper scale is the dominant one of the study)."""
    opts = (se.get("models") or {}).get(model_ids.base(model), {})
    if opts.get("cost_metrics") is not None:
        return list(opts["cost_metrics"])
    names = list(se["significance"]["cost_metrics"])
    if dataset is not None and case_modality(dataset) == "text":
        from .jobs_text import sens_estimator

        est = sens_estimator(se, model)
        out = []
        for m in names:
            if m in ("sens", "sens_discrete") and m != est:
                continue
            m = "sens" if m == est else m
            if m not in out:
                out.append(m)
        names = out
    return names


def cost_files(config: dict, study: str) -> list[str]:
    se = _se(config)
    if study != "selective_encryption" or not se:
        return []
    out = []
    for st, dataset, model, slot in se_cases(config):
        for metric in model_cost_metrics(se, model, dataset):
            out.append(P.fmt(P.SCORE_COST, study=st, dataset=dataset, model=model, slot=slot, significance=metric))
    return out


def has_selector_cases(config: dict) -> bool:
    """Table 3 (layer selectors against the text attacks) is made when some attack runs a selector."""
    return any(is_selector(c[4]) for c in se_attack_cases(config) or ())


def _instances(config: dict, study: str, entry, figures: bool) -> list[str]:
    """The target names one registry entry makes under this config (its ``when``:
    :mod:`gibench.tables.registry`)."""
    st = config["studies"][study]
    when = entry.when
    if callable(when):
        return [entry.name] if when(config, st) else []
    if when == "always":
        return [entry.name]
    if when == "attacks":
        return [entry.name] if st.get("attacks") else []
    if when == "selectors":
        return [entry.name] if st.get("attacks") and has_selector_cases(config) else []
    if when == "listed":
        return [entry.name] if entry.name in (st.get("tables") or ()) else []
    if when == "kind":           # figures: every `figures.<name>` is a grid
        if figures:
            return list(st.get("figures") or {}) if entry.name == "grid" else []
        return [n for n, spec in (st.get("tables") or {}).items() if spec.get("kind") == entry.name]
    if when == "specs":
        if not st.get("attacks"):
            return []
        from ..tables import figure_specs

        return [s["name"] for s in figure_specs(st) if s["kind"] == entry.name]
    raise ValueError(f"{entry.key}: when={when!r} is not understood")


def registered_tables(config: dict, study: str) -> list[tuple[str, Any]]:
    """(table name, registry entry) of every table the config makes for ``study``: the entries
    of :data:`gibench.tables.TABLES` for the study, in registration order."""
    from ..tables import TABLES

    if not (config.get("studies") or {}).get(study):
        return []
    return [(n, e) for e in TABLES.of_study(study) for n in _instances(config, study, e, figures=False)]


def registered_figures(config: dict, study: str) -> list[tuple[str, Any]]:
    """(figure name, registry entry) of every figure the config makes for ``study`` (:data:`gibench.tables.FIGURES`)."""
    from ..tables import FIGURES

    if not (config.get("studies") or {}).get(study):
        return []
    return [(n, e) for e in FIGURES.of_study(study) for n in _instances(config, study, e, figures=True)]


def registered_outputs(config: dict, study: str) -> list[str]:
    """The table (csv, md) and figure (png, pdf) files of ``study``, derived from the registries
    (``results/tables/<study>/<table>.<ext>``, ``results/figures/<study>/<figure>.<ext>``)."""
    out = [P.fmt(P.TABLE, study=study, table=t, ext=ext)
           for t, _ in registered_tables(config, study) for ext in ("csv", "md")]
    out += [P.fmt(P.FIGURE, study=study, figure=f, ext=ext)
            for f, _ in registered_figures(config, study) for ext in ("png", "pdf")]
    return out


def table_entry(config: dict, study: str, table: str):
    """The registry entry that makes table ``table`` of ``study``: the entry of that name, else
    (``when="kind"``) the entry that makes it under this config; an unknown name is the registry's error."""
    from ..tables import TABLES

    if TABLES.has(study, table):
        return TABLES.entry(study, table)
    for name, entry in registered_tables(config, study):
        if name == table:
            return entry
    return TABLES.entry(study, table)


def table_choice(study: str) -> str:
    """A wildcard constraint matching the study's registered fixed-name tables."""
    from ..tables import TABLES

    return attack_choice([e.name for e in TABLES.of_study(study)])


def se_table_targets(config: dict) -> list[str]:
    return [t for t in registered_outputs(config, "selective_encryption") if t.startswith(P.R + "/tables/")]


def table_inputs(config: dict, study: str, table: str) -> dict:
    from .jobs_lm import lm_table_inputs

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
    from ..tables import TABLES

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
    from ..models.text import hub_model_dir

    return str(hub_model_dir(config["hub_dir"], name) / "config.json")


def model_inputs(config: dict, study: str, model: str) -> list[str]:
    """The downloaded checkpoint a ``pretrained`` model is built from (download rule), or the
    local language model whose trunk a ``weights: pretrained_local`` model starts from."""
    from .jobs_lm import lm_path, uses_local_weights

    model = model_ids.base(model)
    opts = (config["studies"][study].get("models") or {}).get(model, {})
    if uses_local_weights(config["studies"][study], model):
        return [lm_path(model)]
    pre = opts.get("pretrained")
    if pre is True:
        from ..models.text import HUB_NAMES

        pre = HUB_NAMES.get(model)
    path = _hub_checkpoint(config, pre)
    return [path] if path else []


def attack_inputs(config: dict, wc) -> dict:
    """LAMP's language-model prior when it is a hub checkpoint or LAMP's ``.pth`` (download rules)."""
    se = config["studies"][wc.study]
    from .jobs_attack import attack_settings

    _, params, _ = attack_settings(se, wc.attack, wc.model)
    prior = params.get("prior")
    if not prior or prior == "none":
        return {}
    if prior == "pretrained_local":        # the local language model of the model's family
        from .jobs_lm import lm_path

        return {"prior": lm_path(wc.model)}
    if str(prior).endswith((".pth", ".pt")):
        return {"prior": str(prior)}
    path = _hub_checkpoint(config, prior)
    return {"prior": path} if path else {}


def text_evaluate_inputs(config: dict, wc) -> dict:
    """Text metrics need the model's word embeddings (EmbedDist): the weights artifact."""
    if case_modality(wc.dataset) != "text":
        return {}
    return {"weights": P.fmt(P.WEIGHTS, study=wc.study, dataset=wc.dataset, model=wc.model)}


def evaluate_inputs(config: dict, wc) -> dict:
    """Inputs of one evaluate job (rule evaluate, one per victim slot): the victims, every attack
    output of the slot, the text weights (text_evaluate_inputs) and the LPIPS backbone file when one is
    configured."""
    inputs = {"victims": P.fmt(P.VICTIMS, dataset=wc.dataset), "recons": slot_attack_paths(config, wc)}
    inputs.update(text_evaluate_inputs(config, wc))
    backbone = lpips_backbone_file(config, wc.study)
    if backbone is not None:
        inputs["backbone"] = backbone
    return inputs


def _attack_files(config: dict, pattern: str, model: str, dataset: str, attack: str, slot: str | None = None) -> list[str]:
    out = []
    for st, d, m, s, metric, ratio in se_attack_cases(config, attack):
        if (d, m) != (dataset, model) or (slot is not None and s != slot):
            continue
        for rep in range(int(_se(config)["attacks"][attack].get("restarts", 1))):
            out.append(P.fmt(pattern, study=st, dataset=d, model=m, slot=s, significance=metric, ratio=ratio,
                             attack=attack, rep=rep))
    return out


def figure_inputs(config: dict, study: str, figure: str) -> dict:
    from ..tables import figure_specs

    spec = next((s for s in figure_specs(config["studies"][study]) if s["name"] == figure), None)
    if spec is None:
        raise ValueError(f"unknown figure {figure!r} for study {study!r}")
    inputs: dict = {"metrics": P.fmt(P.ALL_METRICS, study=study)}
    if spec["kind"] == "traces":
        inputs["traces"] = _attack_files(config, P.TRACE, spec["model"], spec["dataset"], spec["attack"], spec["slot"])
    elif spec["kind"] == "grid":
        inputs["recons"] = _attack_files(config, P.ATTACK, spec["model"], spec["dataset"], spec["attack"])
        inputs["victims"] = P.fmt(P.VICTIMS, dataset=spec["dataset"])
    return inputs


def se_figure_targets(config: dict) -> list[str]:
    return [t for t in registered_outputs(config, "selective_encryption") if t.startswith(P.R + "/figures/")]


def se_overhead_targets(config: dict) -> list[str]:
    """HE-overhead table and cost-vs-protection figure (when ``overhead`` is enabled)."""
    from .jobs_overhead import overhead_targets

    return overhead_targets(config)


def se_targets(config: dict) -> list[str]:
    from .jobs_lm import lm_table_targets

    return (se_gradient_targets(config) + se_table_targets(config) + se_figure_targets(config)
            + se_overhead_targets(config) + lm_table_targets(config, "selective_encryption"))


def all_targets(config: dict) -> list[str]:
    """Victims of every configured dataset, then each study's own targets (its registry entry)."""
    from ..studies import STUDIES

    from .jobs_fl import fl_targets

    targets = [P.fmt(P.VICTIMS, dataset=d) for d in config["datasets"]]
    for study in config["studies"]:
        targets += STUDIES.get(study).targets(config)
    targets += fl_targets(config)          # studies with an fl block: FedAvg accuracy table + curves
    from .jobs_claims import claims_targets

    targets += claims_targets(config)      # with a claims block: the papers' findings checked
    from .jobs_report import report_targets

    targets += report_targets(config)      # the config as an item of `snakemake --report`
    # the report's HTML view of every table and claims report (their rules declare an `html`
    # output next to csv/md); asked for by name so that a run made before it existed makes it too
    targets += [t[:-len(".md")] + ".html" for t in targets
                if t.endswith(".md") and t.startswith((P.R + "/tables/", P.R + "/claims/"))]
    return sorted(dict.fromkeys(targets))
