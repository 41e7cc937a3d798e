"""The stochastic-defenses study in the pipeline: artifact paths, the cases its tables and
figures need, the config check run at DAG build, and the target list of `rule all`.

Data flow (one rule per arrow, rules in ``rules/stochastic_defenses.smk``, jobs in
:mod:`gibench.pipeline.jobs_sd`)::

    victims ─┐
             ├─ sd_gradient ─▶ update + knowledge (server side)   + secrets (client side, separate file)
    sd_model ┘                     │                                   │ (only for attacks marked oracle)
                                   └──────────── sd_attack ◀───────────┘      (a GPU job on clusters)
                                                     │
                              sd_metrics (+ victims) ─▶ sd_gather ─▶ sd_table / sd_figure

A *case* is (dataset, model, defense combination, attack); each has ``victims`` slots and
``restarts`` attack jobs per slot.  Combination names are keys of ``defenses`` or names joined
by '+' (``dropout+dp+prune+cvb``, parameters from ``defense_defaults``), the same names the
FedAvg runs (``fl.runs[].defenses``) use, so the accuracy columns can be looked up by them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator

from ..wildcards import fmt_slot

STUDY = "stochastic_defenses"
R = "results"
NO_DEFENSE = "none"
DEFENSE_PATTERN = "[a-z0-9_+.-]+"
PM_CHOICES = ("none", "precode", "cvb")

WEIGHTS = R + "/models/" + STUDY + "/{dataset}/{model}/pm_{pm}.safetensors"
_CASE = R + "/gradients/" + STUDY + "/{dataset}/{model}/{defense}/{slot}"
UPDATE = _CASE + ".safetensors"
SECRETS = _CASE + ".secrets.safetensors"
KNOWLEDGE = _CASE + ".knowledge.json"
_ATTACK = R + "/attacks/" + STUDY + "/{dataset}/{model}/{defense}/{slot}/{attack}/rep{rep}"
RECON = _ATTACK + ".safetensors"
TRACE = _ATTACK + ".trace.parquet"
METRICS = R + "/metrics/" + STUDY + "/{dataset}/{model}/{defense}/{attack}.parquet"
ALL_METRICS = R + "/metrics/" + STUDY + "/rows.parquet"
TABLE = R + "/tables/" + STUDY + "/{table}.{ext}"
FIGURE = R + "/figures/" + STUDY + "/{figure}.{ext}"


def sd(config: dict) -> dict | None:
    return (config.get("studies") or {}).get(STUDY)


# ---------------------------------------------------------------- names

def defense_specs(config: dict, name: str) -> list:
    """The DefenseChain list of a combination name (see the module docstring)."""
    st = sd(config) or {}
    table = st.get("defenses") or {}
    if name in table:
        return list(table[name])
    if name == NO_DEFENSE:
        return []
    from ..defenses import CHAIN, DEFENSES

    DEFENSES = DEFENSES.of(CHAIN)       # paper B's family of the one defense namespace
    parts = name.split("+")
    if all(p in DEFENSES for p in parts):
        return parts
    raise KeyError(f"defense combination {name!r} is neither an entry of studies.{STUDY}.defenses "
                   f"({', '.join(sorted(table)) or 'none defined'}), 'none', nor defense names joined by '+' "
                   f"(known defenses: {', '.join(DEFENSES.names())})")


def chain_for(config: dict, name: str):
    from ..defenses import DefenseChain

    st = sd(config) or {}
    return DefenseChain(defense_specs(config, name), st.get("defense_defaults") or {})


def pm_of(config: dict, defense: str) -> str:
    return chain_for(config, defense).privacy_module or "none"


def attack_settings(config: dict, attack: str, model: str | None = None) -> tuple[str, dict, int, bool]:
    """(registry name, hyperparameters, restarts, oracle) of an attack entry: ``attack_params``,
    then ``attack_model_params`` for ``model`` (every attack on that model, e.g. the TV weight),
    then the entry's ``params``, then its ``model_params`` for ``model``."""
    st = sd(config)
    entry = st["attacks"][attack]
    params = dict(st.get("attack_params") or {})
    if model is not None:
        params.update((st.get("attack_model_params") or {}).get(model) or {})
    params.update(entry.get("params") or {})
    if model is not None:
        params.update((entry.get("model_params") or {}).get(model, {}))
    return entry.get("type", attack), params, int(entry.get("restarts", 1)), bool(entry.get("oracle", False))


def dataset_view(config: dict, dataset: str):
    """The dataset as the study's models see it (``inputs.<dataset>.shape``, e.g. MNIST at
    3x32x32: ``ImageDataset.normalize`` resizes bilinearly and repeats the grey channel)."""
    from ..datasets import DATASETS

    ds = DATASETS.get(dataset)
    shape = ((sd(config) or {}).get("inputs") or {}).get(dataset, {}).get("shape")
    return dataclasses.replace(ds, shape=tuple(int(v) for v in shape)) if shape else ds


# ---------------------------------------------------------------- cases

def table_cases(spec: dict) -> Iterator[tuple[str, str, str, str]]:
    """(dataset, model, defense, attack) a table needs, in display order."""
    for d in spec["datasets"]:
        for m in spec["models"]:
            if spec["kind"] == "attacks":
                if spec.get("baseline"):
                    yield d, m, spec["baseline"]["defense"], spec["baseline"]["attack"]
                for dfn in spec["defenses"]:
                    for a in spec.get("attacks") or []:
                        yield d, m, dfn, a
            else:
                for dfn in spec["defenses"]:
                    yield d, m, dfn, spec["attack"]


def figure_cases(spec: dict) -> Iterator[tuple[str, str, str, str]]:
    for d in spec["datasets"]:
        for dfn in spec["defenses"]:
            yield d, spec["model"], dfn, spec["attack"]


def cases(config: dict) -> list[tuple[str, str, str, str]]:
    """Every (dataset, model, defense, attack) the tables and figures need (first-seen order)."""
    st = sd(config)
    if not st:
        return []
    out: dict[tuple, None] = {}
    for spec in (st.get("tables") or {}).values():
        out.update(dict.fromkeys(table_cases(spec)))
    for spec in (st.get("figures") or {}).values():
        out.update(dict.fromkeys(figure_cases(spec)))
    return list(out)


def slots(config: dict) -> list[str]:
    return [fmt_slot(s) for s in range(int(sd(config)["victims"]))]


def restart_files(config: dict, wc: Any, pattern: str = RECON) -> list[str]:
    _, _, restarts, _ = attack_settings(config, wc.attack, wc.model)
    return [pattern.format(dataset=wc.dataset, model=wc.model, defense=wc.defense, slot=s, attack=wc.attack, rep=r)
            for s in slots(config) for r in range(restarts)]


def metric_files(config: dict) -> list[str]:
    return [METRICS.format(dataset=d, model=m, defense=dfn, attack=a) for d, m, dfn, a in cases(config)]


# ---------------------------------------------------------------- rule inputs

def model_inputs(config: dict, wc: Any) -> dict:
    return {"weights": WEIGHTS.format(dataset=wc.dataset, model=wc.model, pm=pm_of(config, wc.defense))}


def attack_inputs(config: dict, wc: Any) -> dict:
    """The server's view (weights, update, knowledge) and, for an attack the config marks
    ``oracle: true``, the client's secrets file."""
    case = dict(dataset=wc.dataset, model=wc.model, defense=wc.defense, slot=wc.slot)
    out = {**model_inputs(config, wc), "shared": UPDATE.format(**case), "knowledge": KNOWLEDGE.format(**case)}
    if attack_settings(config, wc.attack, wc.model)[3]:
        out["secrets"] = SECRETS.format(**case)
    return out


def accuracy_input(config: dict) -> str | None:
    """The gathered FedAvg accuracies (rule fl_gather) when the study has an ``fl`` block."""
    if not (sd(config) or {}).get("fl"):
        return None
    from .jobs_fl import accuracy_file

    return accuracy_file(config, STUDY)


def _metric_files_of(cases_: Any) -> list[str]:
    return list(dict.fromkeys(METRICS.format(dataset=d, model=m, defense=dfn, attack=a) for d, m, dfn, a in cases_))


def table_inputs(config: dict, wc: Any) -> dict:
    """The metric rows of exactly the cases the table shows (one table re-runs only what it needs)."""
    spec = sd(config)["tables"][wc.table]
    out: dict = {"metrics": _metric_files_of(table_cases(spec))}
    acc = accuracy_input(config)
    if acc is not None and spec["kind"] == "ablation" and spec.get("accuracy", True):
        out["accuracy"] = acc
    return out


def figure_inputs(config: dict, wc: Any) -> dict:
    spec = sd(config)["figures"][wc.figure]
    n = min(int(spec.get("victims", 4)), int(sd(config)["victims"]))
    st_slots = [fmt_slot(s) for s in range(n)]
    recons = []
    for d, m, dfn, a in figure_cases(spec):
        restarts = attack_settings(config, a, m)[2]
        recons += [RECON.format(dataset=d, model=m, defense=dfn, slot=s, attack=a, rep=r)
                   for s in st_slots for r in range(restarts)]
    from . import paths as P

    return {"metrics": _metric_files_of(figure_cases(spec)), "recons": recons,
            "victims": [P.fmt(P.VICTIMS, dataset=d) for d in spec["datasets"]]}


def table_settings(config: dict, name: str) -> dict:
    from ..paper_values import digest

    st = sd(config)
    return {"table": st["tables"][name], "evaluation": st.get("evaluation", {}), "victims": st["victims"],
            "defenses": {dfn: chain_for(config, dfn).spec() for dfn in st["tables"][name]["defenses"]},
            "paper_values": digest(STUDY),     # the 'paper' columns (config/paper_values/stochastic_defenses.yaml)
            "privacy": st.get("privacy")}      # the ε columns' δ and relation (gibench.tables.budgets)


# ---------------------------------------------------------------- targets and check

def targets(config: dict) -> list[str]:
    st = sd(config)
    if not st:
        return []
    out = [ALL_METRICS] if cases(config) else []          # every metric row in one file
    from .targets import registered_outputs

    return out + registered_outputs(config, STUDY)      # tables and figures: gibench.tables.TABLES / FIGURES


def check(config: dict, st: dict) -> list[str]:
    """Config errors of the study, each naming its key (run at DAG build)."""
    from ..attacks import ATTACKS
    from ..attacks.stochastic import ORACLE_ATTACKS, SD_ATTACKS
    from ..params import attack_param_errors
    from ..datasets import DATASETS
    from ..defenses import CHAIN, DEFENSES, DefenseChain, DefenseSpecError
    from ..models import MODELS

    pre = f"studies.{STUDY}"
    errs: list[str] = []
    DEFENSES = DEFENSES.of(CHAIN)       # paper B's family of the one defense namespace
    batch = int((st.get("gradient") or {}).get("batch_size", 1))
    for name, opts in (st.get("defense_defaults") or {}).items():
        if name not in DEFENSES:
            errs.append(f"config error at {pre}.defense_defaults.{name}: unknown defense {name!r}; known: "
                        f"{', '.join(DEFENSES.names())}")
            continue
        try:                 # the defaults on their own, at their own key
            DEFENSES.get(name).build(opts)
        except (DefenseSpecError, TypeError, ValueError) as e:
            errs.append(f"config error at {pre}.defense_defaults.{name}: {e}")
    if errs:                 # every combination built from them would repeat the same complaint
        return list(dict.fromkeys(errs))
    for d in st.get("inputs") or {}:
        if d not in DATASETS:
            errs.append(f"config error at {pre}.inputs.{d}: unknown dataset {d!r}; known: {', '.join(DATASETS.names())}")
    chains: dict[str, Any] = {}

    def chain(name: str, where: str):
        if name in chains:
            return chains[name]
        try:
            c = DefenseChain(defense_specs(config, name), st.get("defense_defaults") or {})
        except KeyError as e:
            errs.append(f"config error at {where}: {e.args[0]}")
            c = None
        except DefenseSpecError as e:
            errs.append(f"config error at {where} (defense combination {name!r}): {e}")
            c = None
        chains[name] = c
        return c

    for name in st.get("defenses") or {}:
        chain(name, f"{pre}.defenses.{name}")
    attacks = st.get("attacks") or {}
    image_attacks = ATTACKS.names(modality="image")       # an image study: text attacks are unknown here
    for name, entry in attacks.items():
        kind = entry.get("type", name)
        where = f"{pre}.attacks.{name}"
        if kind not in image_attacks:
            errs.append(f"config error at {where}: unknown attack {kind!r}; known: {', '.join(image_attacks)}")
            continue
        if kind not in SD_ATTACKS:
            hint = " (use type: ig_defended for IG against a defended client)" if kind == "ig" else ""
            errs.append(f"config error at {where}: attack {kind!r} is not one of this study's attacks "
                        f"({', '.join(SD_ATTACKS)}){hint}")
            continue
        oracle = bool(entry.get("oracle", False))
        if kind in ORACLE_ATTACKS and not oracle:
            errs.append(f"config error at {where}: {kind} reads the client's secrets; mark it oracle: true")
        if oracle and kind not in ORACLE_ATTACKS:
            errs.append(f"config error at {where}: oracle: true gives {kind} the client's secrets, but it is not an "
                        f"oracle attack (oracle attacks: {', '.join(ORACLE_ATTACKS)})")
        base = [(f"{pre}.attack_params", st.get("attack_params") or {}), (f"{where}.params", entry.get("params") or {})]
        errs += attack_param_errors(kind, base)
        for model, over in (entry.get("model_params") or {}).items():   # what the job on that model receives
            errs += attack_param_errors(kind, base + [(f"{where}.model_params.{model}", over)])
    n_victims = int(st["victims"])
    errs += attack_model_param_errors(config, st)

    def check_case(d: str, m: str, dfn: str, a: str | None, where: str) -> None:
        if d not in DATASETS:
            errs.append(f"config error at {where}: unknown dataset {d!r}; known: {', '.join(DATASETS.names())}")
        elif d not in config.get("datasets", {}):
            errs.append(f"config error at {where}: dataset {d!r} has no entry under datasets: (add datasets.{d}.victims)")
        elif config["datasets"][d]["victims"] < n_victims * batch:
            errs.append(f"config error at {pre}.victims: {n_victims} slots x batch {batch} need more victims than "
                        f"datasets.{d}.victims = {config['datasets'][d]['victims']}")
        if m not in MODELS:
            errs.append(f"config error at {where}: unknown model {m!r}; known: {', '.join(MODELS.names())}")
        elif not getattr(MODELS.get(m), "supports_defenses", False):
            errs.append(f"config error at {where}: model {m!r} has no defense options; this study's models: "
                        f"{', '.join(n for n in MODELS.names() if getattr(MODELS.get(n), 'supports_defenses', False))}")
        c = chain(dfn, where)
        if a is not None and a not in attacks:
            errs.append(f"config error at {where}: attack {a!r} has no entry under {pre}.attacks "
                        f"({', '.join(attacks) or 'none'})")
        if c is not None and m in MODELS and getattr(MODELS.get(m), "supports_defenses", False) and d in DATASETS:
            err = _builds(config, d, m, c)
            if err:
                errs.append(f"config error at {where}: model {m!r} with defenses {dfn!r} on {d!r}: {err}")

    for t, spec in (st.get("tables") or {}).items():
        where = f"{pre}.tables.{t}"
        if spec["kind"] == "attacks" and not spec.get("attacks"):
            errs.append(f"config error at {where}.attacks: a table of kind 'attacks' lists the attacks to run")
        if spec["kind"] == "ablation" and not spec.get("attack"):
            errs.append(f"config error at {where}.attack: a table of kind 'ablation' names its attack (paper B: cdia)")
        seen = set()
        for d, m, dfn, a in table_cases(spec):
            if (d, m, dfn, a) not in seen:
                seen.add((d, m, dfn, a))
                check_case(d, m, dfn, a, where)
    for f, spec in (st.get("figures") or {}).items():
        where = f"{pre}.figures.{f}"
        for d, m, dfn, a in figure_cases(spec):
            check_case(d, m, dfn, a, where)
    if st.get("fl"):
        from .jobs_fl import check_fl

        errs += check_fl(config, STUDY)
    return list(dict.fromkeys(errs))


def attack_model_param_errors(config: dict, st: dict) -> list[str]:
    """``attack_model_params``: known models, and every attack's settings on each of them (what
    the job on that model receives: attack_params < attack_model_params < params < model_params)."""
    from ..attacks.stochastic import SD_ATTACKS, split_cfg
    from ..models import MODELS

    pre = f"studies.{STUDY}.attack_model_params"
    errs: list[str] = []
    for model in st.get("attack_model_params") or {}:
        if model not in MODELS:
            errs.append(f"config error at {pre}.{model}: unknown model {model!r}; known: {', '.join(MODELS.names())}")
            continue
        for name, entry in (st.get("attacks") or {}).items():
            kind = entry.get("type", name)
            if kind not in SD_ATTACKS:
                continue                       # reported with the attack entry
            try:
                split_cfg(kind, attack_settings(config, name, model)[1])
            except ValueError as e:
                errs.append(f"config error at {pre}.{model} (attack {name}): {e}")
    return errs


def _builds(config: dict, dataset: str, model: str, chain) -> str | None:
    """An error message if the model cannot be built with the chain's options for the
    dataset's input shape (built and run on the meta device: no memory, no compute)."""
    import torch

    from ..models import MODELS

    ds = dataset_view(config, dataset)
    try:
        with torch.device("meta"):
            net = MODELS.get(model)(num_classes=ds.num_classes, in_shape=ds.shape, **chain.model_options())
            net.eval()
            net(torch.zeros(1, *ds.shape))
    except (ValueError, RuntimeError, TypeError) as e:
        return str(e).splitlines()[0][:200]
    except Exception:  # an op without meta support: the job will say
        return None
    return None


def _register() -> None:
    from .studies import STUDIES, Study

    if STUDY not in STUDIES:
        STUDIES.add(STUDY, Study(STUDY, check, targets))


_register()


__all__ = ["STUDY", "WEIGHTS", "UPDATE", "SECRETS", "KNOWLEDGE", "RECON", "TRACE", "METRICS", "ALL_METRICS",
           "TABLE", "FIGURE", "cases", "check", "targets", "defense_specs", "chain_for", "attack_settings",
           "dataset_view", "restart_files", "metric_files", "attack_inputs", "table_inputs", "figure_inputs"]

