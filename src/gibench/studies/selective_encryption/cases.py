"""The selective-encryption study's attack cases from its config: the (study, dataset, model id,
slot) cases, the (..., significance metric, ratio) cases each attack runs on, and whether some
attack runs a layer selector (Table 3 is then made).  Read by the study's target lists
(:mod:`.targets`, which re-exports them) and by the table registry's outputs
(:mod:`gibench.pipeline.outputs`: ``when="selectors"``); imports no target list.
"""
from __future__ import annotations

from typing import Iterator

from ...pipeline import paths as P
from ...wildcards import fmt_ratio, fmt_slot
from . import STUDY
from .spec import case_modality, is_selector, spec

#: (study, dataset, model id, slot)
SlotCase = tuple[str, str, str, str]


def cases(config: dict) -> Iterator[SlotCase]:
    """(study, dataset, model id, slot) for the selective-encryption study: one model id per
    init of a case (:meth:`.spec.Spec.case_list`)."""
    s = spec(config)
    if s is None:
        return
    for dataset, model in s.case_list():
        for slot in range(s.victims):
            yield STUDY, dataset, model, fmt_slot(slot)


def attack_cases(config: dict, attack: str | None = None):
    """(study, dataset, model, slot, significance metric, ratio) with ratios 0/1 shared under
    significance 'any'.

    With ``attack``: the cases that attack runs on (its models, metrics, ratios and victim
    slots: ``attacks.<a>.*`` overrides); selectors once each at the spec's selector ratio.
    Without: the union over the configured attacks."""
    s = spec(config)
    if s is None or not s.attacks:
        return
    attacks = [attack] if attack is not None else list(s.attacks)
    sel_ratio = s.selector_ratio()
    slot_cases = list(cases(config))
    seen = set()
    for a in attacks:
        n_slots = s.attack_victims(a)
        metrics = s.attack_metrics(a)
        ratios = s.attack_ratios(a)
        for study, dataset, model, slot in slot_cases:
            if int(slot[1:]) >= n_slots or not s.attack_runs_on(a, dataset, model):
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


def has_selector_cases(config: dict) -> bool:
    """Table 3 (layer selectors against the text attacks) is made when some attack runs a selector."""
    return any(is_selector(c[4]) for c in attack_cases(config) or ())
