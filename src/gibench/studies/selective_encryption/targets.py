"""The selective-encryption study at DAG build: the cases, the target list of `rule all`, and
the study's functions behind the input lambdas of the shared stage rules (``rules/gradient.smk``,
``significance.smk``, ``attack.smk``, ``tables.smk``) and of ``rules/overhead.smk``
(:mod:`.jobs_overhead`).  Config values come from the study's spec (:func:`.spec.spec`);
imports nothing heavy (torch waits for the check or job that needs it).

What all studies use (dataset inputs, the table and figure registries' targets, table
inputs and settings, model and attack inputs, the rule params) stays in
:mod:`gibench.pipeline.targets` (the registries' outputs: :mod:`gibench.pipeline.outputs`).
The cases each attack runs on are :mod:`.cases` (re-exported here); the functions taking a
study block (``se``) rather than the config -- ``attack_runs_on``, ``attack_metrics``,
``attack_victims`` (:mod:`.spec`, re-exported here), :func:`model_cost_metrics` -- serve
callers that hold the block only (the table builders' figure specs, the local language
models' jobs); each is the spec's method of the same name.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

from ...pipeline import paths as P
from ...pipeline.jobs_lm import lm_table_targets
from ...pipeline.outputs import attack_choice, lpips_backbone_file, registered_outputs
from ...tables import figure_specs
from ...wildcards import fmt_ratio, fmt_slot
from . import STUDY
from . import jobs_overhead as OV
from .cases import SlotCase, attack_cases, cases, has_selector_cases  # noqa: F401  (re-exported)
from .spec import (  # noqa: F401  (attack_*: re-exported, their old home)
    attack_metrics, attack_runs_on, attack_victims, case_modality, is_selector, of_block, spec)



def gradient_targets(config: dict) -> list[str]:
    out = []
    for study, dataset, model, slot in cases(config):
        wc = dict(study=study, dataset=dataset, model=model, slot=slot)
        out += [P.fmt(P.GRADIENT, **wc), P.fmt(P.KNOWLEDGE, **wc)]
    return out


def interior_ratios(config: dict) -> list[str]:
    """Formatted ratios strictly between 0 and 1 (their masks depend on the metric): the
    significance grid and every attack's own grid (``attacks.<a>.ratios``)."""
    s = spec(config)
    return s.interior_ratios() if s is not None else []


def selector_ratio(config: dict) -> str | None:
    """The ratio label under which selector masks are attacked (:meth:`.spec.Spec.selector_ratio`)."""
    s = spec(config)
    return s.selector_ratio() if s is not None else None


# ------------------------------------------------------------------ which attack runs where

def restart_groups(config: dict) -> dict[int, list[str]]:
    """The selective-encryption attacks by restart count (rules/attack.smk): attacks with
    one restart run in rule ``attack`` (one job per restart, wildcard ``rep``); those with
    k > 1 in one ``attack_restarts`` job per case that writes all k restarts."""
    s = spec(config)
    out: dict[int, list[str]] = {}
    for name, entry in sorted((s.attacks if s is not None else {}).items()):
        out.setdefault(int(entry.restarts), []).append(name)
    return dict(sorted(out.items()))


def attack_decades(config: dict, attacks: list[str]) -> tuple[list[str], str]:
    """(attacks, ``decade`` constraint) of a decade twin of an attack rule (``group_slots``: one
    job per ten victim slots, :mod:`gibench.pipeline.slot_groups`): the ``attacks`` run on at
    least one full decade, and the decades full for all of them (:meth:`.spec.Spec.attack_victims`);
    an attack on fewer slots (LAMP: 5) is left to the partial-decade twin (:func:`attack_part`) or
    goes slot by slot."""
    from ...pipeline.slot_groups import decade_pattern, full_decades

    s = spec(config)
    if s is None or s.block.get("group_slots") is False:
        return [], decade_pattern(None)
    grouped = [a for a in attacks if full_decades(s.attack_victims(a))]
    return grouped, decade_pattern(min((s.attack_victims(a) for a in grouped), default=None))


def attack_part(config: dict, attacks: list[str]):
    """The partial-decade twin of the attack rule for ``attacks`` (rules/attack.smk:
    ``attack_decade_part``, ``attack_restarts_decade_part``; :class:`gibench.pipeline.slot_groups.Part`):
    the attacks whose slots end in a partial decade of at least ``MIN_PART`` slots (LAMP: 5 of the
    study's 10 -> ``s000``..``s004``), at the lowest such decade, and the first n slots of it, n the
    fewest any of them has there -- so every slot it runs exists for every case of every attack it
    serves (the study's cases all have its ``victims`` slots, :meth:`.spec.Spec.attack_victims`).
    Those decades are never the full twin's (:func:`attack_decades`: only decades full for every
    attack it serves).  Only a study with a full decade (``victims`` >= 10) groups partial decades."""
    from ...pipeline.slot_groups import Part, last_part

    s = spec(config)
    tails = {}
    if s is not None and s.block.get("group_slots") is not False:
        for a in attacks:
            decade, n = last_part(s.attack_victims(a), least=s.victims)
            if n:
                tails[a] = (decade, n)
    if not tails:
        return Part.none(study=STUDY, attack=attack_choice([]))
    decade = min(d for d, _ in tails.values())
    served = [a for a in attacks if a in tails and tails[a][0] == decade]
    return Part({"study": STUDY, "attack": attack_choice(served), "decade": decade},
                min(tails[a][1] for a in served))


def attack_twin(config: dict, attacks: list[str]) -> dict[str, str]:
    """The wildcard constraints of the decade twin of the attack rule for ``attacks`` (rules/attack.smk:
    ``attack_decade``, ``attack_restarts_decade``): this study, the grouped attacks and their full
    decades (:func:`attack_decades`).  The per-slot rule gets their complement
    (:func:`gibench.pipeline.slot_groups.per_slot_constraint`)."""
    grouped, decades = attack_decades(config, attacks)
    return {"study": STUDY, "attack": attack_choice(grouped), "decade": decades}


# ------------------------------------------------------------------ decade twins of the client-side rules

#: the client-side per-slot rules with a decade twin (rules/gradient.smk, significance.smk)
STAGE_RULES = ("gradient", "significance", "masks", "masks_any")


def stage_needs(config: dict, rule: str) -> set[tuple[str, str, str, str]]:
    """(dataset, model, key, slot) of the files of per-slot ``rule`` (one of :data:`STAGE_RULES`)
    that the study's targets ask for, ``key`` being what a job's files have beside the case and
    slot: the significance metric (``significance``, ``masks``), ``any/<ratio>`` (``masks_any``),
    nothing (``gradient``).  From the study's own target lists: every case slot's gradient
    (:func:`gradient_targets`), the masks and scores of every attack case (:func:`attack_cases`),
    the scores of every cost metric (:func:`cost_files`).  The overhead jobs' masks of one slot
    (``overhead.mask_slot``) are left out: one slot never fills a decade, and a twin that leaves a
    file out only leaves it to the per-slot rule."""
    s = spec(config)
    if s is None:
        return set()
    if rule == "gradient":
        return {(d, m, "", slot) for _, d, m, slot in cases(config)}
    if rule not in STAGE_RULES:
        raise ValueError(f"stage_needs: {rule!r} is none of {STAGE_RULES}")
    out = set()
    for _, d, m, slot, metric, ratio in attack_cases(config) or ():
        if metric == P.ANY_METRIC:
            if rule == "masks_any":
                out.add((d, m, f"{P.ANY_METRIC}/{ratio}", slot))
        elif rule in ("masks", "significance"):
            out.add((d, m, metric, slot))
    if rule == "significance":
        for _, d, m, slot in cases(config):
            out.update((d, m, metric, slot) for metric in s.model_cost_metrics(m, d))
    return out


def stage_twin(config: dict, rule: str) -> dict[str, str]:
    """The wildcard constraints of ``<rule>_decade``, the decade twin of a client-side per-slot
    rule (``group_slots``, :mod:`gibench.pipeline.slot_groups`): the decades of which the study
    asks for all ten slots' files of the same case and key (:func:`stage_needs`).  Unlike the
    attacks', these files are not a product of per-wildcard choices -- LAMP's 5 slots need masks
    (cola/bert, grad) on s000..s004 only, where DLG's need (cifar100/lenet, grad) on all ten -- so
    the set is said by a lookahead in the constraint of ``study`` (the first wildcard of every
    output pattern) over the rest of the path: ``<dataset>/<model>/<decade><digit>`` then ``/<key>``,
    then ``.`` or ``/``.  So the twin makes only files the study asks for (no slot of a decade
    beyond LAMP's five); the rest goes slot by slot.  ``decade`` is the union of the decades the
    lookahead names.  The per-slot rule gets the complement
    (:func:`gibench.pipeline.slot_groups.per_slot_constraint`: it takes the lookahead into its own)."""
    from ...pipeline.slot_groups import NO_DECADE, slots_of

    s = spec(config)
    if s is None or s.block.get("group_slots") is False:
        return {"study": STUDY, "decade": NO_DECADE}
    needs = stage_needs(config, rule)
    full: dict[tuple[str, str, str], list[str]] = {}
    for d, m, key, slot in sorted(needs):
        decade = slot[:3]
        if decade not in full.get((d, m, key), []) and all((d, m, key, x) in needs for x in slots_of(decade)):
            full.setdefault((d, m, key), []).append(decade)
    if not full:
        return {"study": STUDY, "decade": NO_DECADE}
    keys: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for (d, m, key), decades in sorted(full.items()):
        keys.setdefault((d, m, tuple(decades)), []).append(key)
    alts = []
    for (d, m, decades), ks in keys.items():
        alt = f"{re.escape(d)}/{re.escape(m)}/(?:{'|'.join(decades)})[0-9]"
        if ks != [""]:
            alt += "/(?:" + "|".join(re.escape(k) for k in ks) + ")"
        alts.append(alt)
    decades = sorted({x for ds in full.values() for x in ds})
    return {"study": f"{STUDY}(?=/(?:{'|'.join(alts)})[./])", "decade": "|".join(decades)}


def _attack_outputs(config: dict):
    """(attack, study, dataset, model, slot, metric, ratio) of every selective-encryption
    attack job, attack by attack in config order: the order of the gathered metric rows."""
    for attack in spec(config).attacks:
        for st, dataset, model, slot, metric, ratio in attack_cases(config, attack):
            yield attack, st, dataset, model, slot, metric, ratio


def metric_files(config: dict, study: str) -> list[str]:
    """One metric-row file per victim slot (rule evaluate), in the order the slots first appear."""
    if study != STUDY:
        return []
    out: dict[str, None] = {}
    for _, st, dataset, model, slot, _, _ in _attack_outputs(config):
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
    s = spec(config)
    out: dict[tuple, list[str]] = {}
    for attack, st, dataset, model, slot, metric, ratio in _attack_outputs(config):
        out.setdefault((st, dataset, model, slot), []).extend(
            P.fmt(P.ATTACK, study=st, dataset=dataset, model=model, slot=slot, significance=metric, ratio=ratio,
                  attack=attack, rep=rep) for rep in range(s.attacks[attack].restarts))
    return out


def slot_attack_paths(config: dict, wc) -> list[str]:
    """Every attack artifact of one victim slot (the evaluate job's inputs): attack by attack,
    case by case, restart by restart."""
    if wc.study != STUDY:
        return []
    return list(memo(config, "slot_attack_paths", _slot_attack_paths).get((wc.study, wc.dataset, wc.model, wc.slot), []))


def metric_row_order(config: dict) -> dict[tuple, int]:
    """(attack, dataset, model, slot, metric, ratio) -> position: the gathered rows come in
    this order (attack by attack, then case by case), whatever the evaluation jobs' grouping."""
    return {(a, d, m, s, me, r): i for i, (a, _, d, m, s, me, r) in enumerate(_attack_outputs(config))}


def model_cost_metrics(se: dict, model: str, dataset: str | None = None) -> list[str]:
    """:meth:`.spec.Spec.model_cost_metrics` of a study block."""
    return of_block(se).model_cost_metrics(model, dataset)


def cost_files(config: dict, study: str) -> list[str]:
    s = spec(config)
    if study != STUDY or s is None:
        return []
    out = []
    for st, dataset, model, slot in cases(config):
        for metric in s.model_cost_metrics(model, dataset):
            out.append(P.fmt(P.SCORE_COST, study=st, dataset=dataset, model=model, slot=slot, significance=metric))
    return out


# ------------------------------------------------------------------ evaluate and figure inputs

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


def views_settings(config: dict, wc) -> dict:
    """The evaluate job's ``views`` params: what the slot's views depend on
    (:func:`gibench.tables.selective_encryption.views.views_settings`)."""
    from ...tables.selective_encryption.views import views_settings as settings

    return settings(config["studies"][wc.study], wc.dataset, wc.model)


def _views_files(config: dict, model: str, dataset: str, attack: str, slot: str | None = None) -> list[str]:
    """The views files (one per victim slot, rule evaluate) of the slots ``attack`` runs on for
    (``dataset``, ``model``), or of ``slot`` alone."""
    out: dict[str, None] = {}
    for st, d, m, s, _, _ in attack_cases(config, attack):
        if (d, m) == (dataset, model) and (slot is None or s == slot):
            out.setdefault(P.fmt(P.VIEWS, study=st, dataset=d, model=m, slot=s))
    return list(out)


def _by_name(figs: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for f in figs:
        out.setdefault(f["name"], f)   # the first of a name, as a search in order finds
    return out


def figure_inputs(config: dict, study: str, figure: str) -> dict:
    # the figure specs once per config (memo), not once per figure job: the DAG build asks for
    # each of the ~70 paper-scale figures' inputs, and figure_specs makes them all
    fig = memo(config, f"figure_specs:{study}", lambda c: _by_name(figure_specs(c["studies"][study]))).get(figure)
    if fig is None:
        raise ValueError(f"unknown figure {figure!r} for study {study!r}")
    inputs: dict = {"metrics": P.fmt(P.ALL_METRICS, study=study)}
    # the kept restarts' traces and reconstructions come from the slots' views files (written by
    # their evaluate jobs), not from every restart's artifact: one file per slot instead of
    # metrics x ratios x restarts (issue 23)
    if fig["kind"] == "traces":
        inputs["views"] = _views_files(config, fig["model"], fig["dataset"], fig["attack"], fig["slot"])
    elif fig["kind"] == "grid":
        inputs["views"] = _views_files(config, fig["model"], fig["dataset"], fig["attack"])
        inputs["victims"] = P.fmt(P.VICTIMS, dataset=fig["dataset"])
    return inputs


# ------------------------------------------------------------------ rule all

def table_targets(config: dict) -> list[str]:
    return [t for t in registered_outputs(config, STUDY) if t.startswith(P.R + "/tables/")]


def figure_targets(config: dict) -> list[str]:
    return [t for t in registered_outputs(config, STUDY) if t.startswith(P.R + "/figures/")]


def targets(config: dict) -> list[str]:
    """What `rule all` asks of the study: the client gradients, the registered tables and
    figures, the HE overhead table and figure, and the local language models' table."""
    return (gradient_targets(config) + table_targets(config) + figure_targets(config)
            + OV.overhead_targets(config) + lm_table_targets(config, STUDY))
