"""The stochastic-defenses study at DAG build: the cases, the target list of `rule all`, and
the functions behind the input and params lambdas of ``rules/stochastic_defenses.smk``.  Every
config value comes from the study's spec (:func:`.spec.spec`); imports nothing heavy (torch
waits for the check or job that needs it)."""
from __future__ import annotations

from typing import Any, Iterable

from ...fl_plan import accuracy_file
from ...pipeline import paths as P
from ...pipeline.outputs import registered_outputs
from . import STUDY
from .paths import ALL_METRICS, KNOWLEDGE, METRICS, RECON, SECRETS, UPDATE, WEIGHTS
from .spec import Case, spec


def cases(config: dict) -> list[Case]:
    """Every (dataset, model, defense, attack) the tables and figures need (first-seen order)."""
    s = spec(config)
    return s.cases() if s is not None else []


def restart_files(config: dict, wc: Any, pattern: str = RECON) -> list[str]:
    """Every slot's restarts of one (dataset, model, defense, attack): the evaluate rule's input."""
    s = spec(config)
    restarts = s.attacks[wc.attack].restarts
    return [pattern.format(dataset=wc.dataset, model=wc.model, defense=wc.defense, slot=slot, attack=wc.attack, rep=r)
            for slot in s.slots() for r in range(restarts)]


def _metric_files_of(cases_: Iterable[Case]) -> list[str]:
    return list(dict.fromkeys(METRICS.format(dataset=d, model=m, defense=dfn, attack=a) for d, m, dfn, a in cases_))


def metric_files(config: dict) -> list[str]:
    return [METRICS.format(dataset=d, model=m, defense=dfn, attack=a) for d, m, dfn, a in cases(config)]


def decades(config: dict) -> str:
    """The ``decade`` constraint of the decade rules (``group_slots``: one job per ten victim
    slots, :mod:`gibench.pipeline.slot_groups`): every full decade of the study's slots."""
    from ...pipeline.slot_groups import decade_pattern

    s = spec(config)
    if s is None:
        return decade_pattern(None)
    return decade_pattern(s.victims, s.written("group_slots") is not False)


def part(config: dict):
    """The partial-decade twins' :class:`gibench.pipeline.slot_groups.Part` (rules
    ``sd_gradient_decade_part``, ``sd_attack_decade_part``): the last decade of the study's slots when
    it holds at least ``MIN_PART`` of them (128 victims: ``s120``..``s127``)."""
    from ...pipeline.slot_groups import Part, last_part

    s = spec(config)
    decade, n = last_part(s.victims, s.written("group_slots") is not False) if s is not None else ("", 0)
    return Part({"decade": decade}, n) if n else Part.none()


# ---------------------------------------------------------------- rule inputs

def model_inputs(config: dict, wc: Any) -> dict:
    return {"weights": WEIGHTS.format(dataset=wc.dataset, model=wc.model, pm=spec(config).privacy_module(wc.defense))}


def attack_inputs(config: dict, wc: Any) -> dict:
    """The server's view (weights, update, knowledge) and, for an attack the config marks
    ``oracle: true``, the client's secrets file."""
    case = dict(dataset=wc.dataset, model=wc.model, defense=wc.defense, slot=wc.slot)
    out = {**model_inputs(config, wc), "shared": UPDATE.format(**case), "knowledge": KNOWLEDGE.format(**case)}
    if spec(config).attacks[wc.attack].oracle:
        out["secrets"] = SECRETS.format(**case)
    return out


def accuracy_input(config: dict) -> str | None:
    """The gathered FedAvg accuracies (rule fl_gather) when the study has an ``fl`` block."""
    if not spec(config).fl:
        return None
    return accuracy_file(config, STUDY)


def table_inputs(config: dict, wc: Any) -> dict:
    """The metric rows of exactly the cases the table shows (one table re-runs only what it needs)."""
    table = spec(config).tables[wc.table]
    out: dict = {"metrics": _metric_files_of(table.cases())}
    acc = accuracy_input(config)
    if acc is not None and table.kind == "ablation" and table.accuracy:
        out["accuracy"] = acc
    return out


def figure_inputs(config: dict, wc: Any) -> dict:
    s = spec(config)
    figure = s.figures[wc.figure]
    n = min(int(figure.victims), int(s.victims))
    slots = s.slots()[:n]
    recons = []
    for d, m, dfn, a in figure.cases():
        recons += [RECON.format(dataset=d, model=m, defense=dfn, slot=slot, attack=a, rep=r)
                   for slot in slots for r in range(s.attacks[a].restarts)]
    return {"metrics": _metric_files_of(figure.cases()), "recons": recons,
            "victims": [P.fmt(P.VICTIMS, dataset=d) for d in figure.datasets]}


# ---------------------------------------------------------------- rule params (what a re-run compares)

def gradient_params(config: dict) -> dict:
    return spec(config).written("gradient")


def defense_params(config: dict, defense: str) -> list:
    return spec(config).chain(defense).spec()


def attack_params(config: dict, wc: Any) -> tuple[str, dict, int, bool]:
    return spec(config).attack_settings(wc.attack, wc.model)


def evaluation_params(config: dict) -> dict:
    return spec(config).written("evaluation")


def table_settings(config: dict, name: str) -> dict:
    from ...paper_values import digest

    s = spec(config)
    return {"table": s.written("tables", name), "evaluation": s.written("evaluation"), "victims": s.victims,
            "defenses": {dfn: s.chain(dfn).spec() for dfn in s.tables[name].defenses},
            "paper_values": digest(STUDY),     # the 'paper' columns (config/paper_values/stochastic_defenses.yaml)
            "privacy": s.written("privacy")}   # the ε columns' δ and relation (gibench.tables.budgets)


def figure_settings(config: dict, name: str) -> dict:
    return spec(config).written("figures", name)


# ---------------------------------------------------------------- targets

def targets(config: dict) -> list[str]:
    s = spec(config)
    if s is None:
        return []
    out = [ALL_METRICS] if s.cases() else []          # every metric row in one file
    return out + registered_outputs(config, STUDY)      # tables and figures: gibench.tables.TABLES / FIGURES
