"""Target lists, rule-input and rule-params functions of ``rules/concealed_samples.smk`` (read at
DAG build: no torch here).  The study's own targets (its tables and figure) come from the table registry
(:func:`gibench.pipeline.targets.registered_outputs`, the study's registration in
:mod:`gibench.studies`); the cases they need from
:func:`gibench.tables.concealed_samples.needed_blocks`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

from ...datasets import DATASETS
from ...pipeline.inputs import BUNDLED_FILES, dataset_inputs
from ...pipeline.outputs import lpips_backbone_path, registered_outputs
from ...wildcards import fmt_slot
from . import STUDY
from . import paths as P
from .layouts import needed_blocks
from .needs import NEEDS
from .spec import attack_type, defense_steps, n_victims, proxy_dataset, spec


def attack_needs(config: Mapping[str, Any], attack: str) -> tuple[str, ...]:
    """The needs the registry entry of a configured attack declares."""
    from ...attacks import ATTACKS   # deferred: the attack modules import torch

    return ATTACKS.entry(attack_type(config, attack)).needs


def server_of(config: Mapping[str, Any], attack: str) -> str:
    """The server model an attack runs against: the one a need of it implies, else the honest one."""
    servers = [NEEDS[n].server for n in attack_needs(config, attack) if n in NEEDS and NEEDS[n].server]
    return servers[0] if servers else "honest"


# ====================================================================== targets

def targets(config: Mapping[str, Any]) -> list[str]:
    """What `rule all` asks of the study: the tables and figure the table registry makes for its
    ``tables:`` list (their inputs pull in the attacks, metrics and FedAvg runs)."""
    return registered_outputs(dict(config), STUDY)


def cases(config: Mapping[str, Any]) -> Iterator[tuple[str, str, str, str, str]]:
    """(dataset, model, attack, cohort, defense) the requested tables need (config order)."""
    yield from needed_blocks(config)


def attack_files(config: Mapping[str, Any], dataset: str, model: str, attack: str, cohort: str, defense: str,
                 pattern: str = P.CS_ATTACK) -> list[str]:
    server = server_of(config, attack)
    return [pattern.format(dataset=dataset, model=model, server=server, cohort=cohort, defense=defense,
                           slot=fmt_slot(s), attack=attack, rep=r)
            for s in range(n_victims(config, dataset)) for r in range(int(spec(config).restarts))]


def secrets_files(config: Mapping[str, Any], dataset: str, model: str, attack: str, cohort: str,
                  defense: str) -> list[str]:
    server = server_of(config, attack)
    return [P.CS_SECRETS.format(dataset=dataset, model=model, server=server, cohort=cohort, defense=defense,
                                slot=fmt_slot(s)) for s in range(n_victims(config, dataset))]


def metric_files(config: Mapping[str, Any]) -> list[str]:
    """The per-case metric tables rule cs_evaluate writes (cs_gather's inputs)."""
    out = []
    for d, m, a, coh, dfn in cases(config):
        out.append(P.CS_METRICS.format(dataset=d, model=m, server=server_of(config, a), cohort=coh, defense=dfn,
                                       attack=a))
    return sorted(dict.fromkeys(out))


def utility_on(config: Mapping[str, Any]) -> bool:
    return spec(config).utility_on


def fl_runs(config: Mapping[str, Any]) -> list[tuple[str, str, str, str, int]]:
    """(dataset, model, cohort, defense, seed) of the FedAvg runs the tables' accuracy columns need."""
    s = spec(config)
    if not s.utility_on:
        return []
    ds = set(s.utility_datasets())
    seen = []
    for d, m, _a, coh, dfn in cases(config):
        if d in ds:
            for seed in s.utility.seeds:
                key = (d, m, coh, dfn, int(seed))
                if key not in seen:
                    seen.append(key)
    return seen


def fl_files(config: Mapping[str, Any]) -> list[str]:
    return [P.CS_FL_ACC.format(dataset=d, model=m, cohort=coh, defense=dfn, seed=s)
            for d, m, coh, dfn, s in fl_runs(config)]


def table_inputs(config: Mapping[str, Any], table: str) -> dict:
    out = {"metrics": P.CS_ALL}
    if utility_on(config):
        out["accuracy"] = P.CS_FL_ALL
    return out


def figure_inputs(config: Mapping[str, Any], figure: str) -> dict:
    from ...tables.concealed_samples import grid_cells

    recons, secrets = [], []
    for d, m, a, coh, dfn in grid_cells(config):
        server = server_of(config, a)
        wc = dict(dataset=d, model=m, server=server, cohort=coh, defense=dfn, slot=fmt_slot(0), attack=a)
        recons.append(P.CS_ATTACK.format(rep=0, **wc))
        secrets.append(P.CS_SECRETS.format(**wc))
    return {"recons": recons, "secrets": sorted(dict.fromkeys(secrets)), "metrics": P.CS_ALL}


# ====================================================================== rule input functions

def victim_spec(config: Mapping[str, Any], dataset: str) -> dict:
    """The victims' source/split (datasets.<name>), or the bundled slice when not configured."""
    vs = config["datasets"].get(dataset)
    if vs is not None:
        return dict(vs)
    ds = DATASETS.get(dataset)
    return {"source": "bundled" if ds.bundled_splits else "hub",
            "split": ds.bundled_splits[0] if ds.bundled_splits else "train"}


def public_settings(config: Mapping[str, Any], dataset: str) -> dict:
    """Where the public pool of ``dataset`` comes from: source, split (default: the victims') and size."""
    vspec = victim_spec(config, dataset)
    pub = spec(config).public_for(dataset)
    return {"source": pub.source if pub.source is not None else vspec.get("source", "bundled"),
            "split": pub.split if pub.split is not None else vspec.get("split", "test"), "size": pub.size}


def public_inputs(config: Mapping[str, Any], wc) -> dict:
    """The victim pool (to exclude it) and the data files the public pool is read from."""
    pspec = public_settings(config, wc.dataset)
    out: dict = {}
    if wc.dataset in config["datasets"]:
        out["victims"] = P.VICTIMS.format(dataset=wc.dataset)
    if pspec["source"] == "hub":
        out["data"] = [f"{config['hub_dir']}/{wc.dataset}/{pspec['split']}/dataset_info.json"]
    else:
        root = Path(config["resources_dir"]) / "data" / wc.dataset
        out["data"] = [str(root / f) for f in BUNDLED_FILES.get(wc.dataset, [])]
    return out


def fl_inputs(config: Mapping[str, Any], wc) -> list[str]:
    """Data files of a FedAvg run: the bundled files, or the hub's train and test splits."""
    dspec = config["datasets"][wc.dataset]
    if dspec.get("source", "bundled") == "hub":
        ds = DATASETS.get(wc.dataset)
        test_split = "test" if "test" in ds.hub_splits else "val"
        return [f"{config['hub_dir']}/{wc.dataset}/{sp}/dataset_info.json" for sp in ("train", test_split)]
    return dataset_inputs(config, wc.dataset)


def _weights(wc) -> str:
    if wc.server == "honest":
        return P.CS_INIT.format(dataset=wc.dataset, model=wc.model)
    return P.CS_SERVER.format(dataset=wc.dataset, model=wc.model, server=wc.server)


def gradient_inputs(config: Mapping[str, Any], wc) -> dict:
    out = {"victims": P.VICTIMS.format(dataset=wc.dataset), "weights": _weights(wc)}
    pd = proxy_dataset(config, wc.defense, wc.dataset)
    if pd is not None:
        out["public"] = P.CS_PUBLIC.format(dataset=pd)
    return out


def attack_inputs(config: Mapping[str, Any], wc) -> dict:
    base = dict(dataset=wc.dataset, model=wc.model, server=wc.server, cohort=wc.cohort, defense=wc.defense,
                slot=wc.slot)
    out = {"gradient": P.CS_GRAD.format(**base), "knowledge": P.CS_KNOW.format(**base), "weights": _weights(wc)}
    for name in attack_needs(config, wc.attack):       # what the attack declares it needs
        need = NEEDS[name]
        out[need.input] = need.path(wc)
    return out


def evaluate_inputs(config: Mapping[str, Any], wc) -> dict:
    out = {"recons": attack_files(config, wc.dataset, wc.model, wc.attack, wc.cohort, wc.defense),
           "secrets": secrets_files(config, wc.dataset, wc.model, wc.attack, wc.cohort, wc.defense)}
    lp = spec(config).evaluation.lpips
    if wc.dataset in lp.datasets:
        path = lpips_backbone_path(config, lp.backbone)
        if path is not None:
            out["backbone"] = path
    return out


def decades(config: Mapping[str, Any]) -> str:
    """The ``decade`` constraint of the decade rules (``group_slots``: one job per ten victim
    slots, :mod:`gibench.pipeline.slot_groups`): the decades full in every dataset's slots."""
    from ...pipeline.slot_groups import decade_pattern

    block = (config.get("studies") or {}).get("concealed_samples")
    if not block:
        return decade_pattern(None)
    s = spec(config)
    counts = [s.n_victims(d) for d in s.cases]
    return decade_pattern(min(counts) if counts else None, s.recorded("group_slots") is not False)


def part(config: Mapping[str, Any]):
    """The partial-decade twins' :class:`gibench.pipeline.slot_groups.Part` (rules
    ``cs_gradient_decade_part``, ``cs_attack_decade_part``): the first n slots of the decade after
    the full ones, n what every dataset has there (64 victims: ``s060``..``s063``; a dataset with
    more makes the rest of that decade slot by slot)."""
    from ...pipeline.slot_groups import Part, last_part

    block = (config.get("studies") or {}).get("concealed_samples")
    if not block:
        return Part.none()
    s = spec(config)
    counts = [s.n_victims(d) for d in s.cases]
    decade, n = last_part(min(counts) if counts else None, s.recorded("group_slots") is not False)
    return Part({"decade": decade}, n) if n else Part.none()


# ====================================================================== rule params

def attack_rule_params(config: Mapping[str, Any], wc) -> dict:
    return {"type": attack_type(config, wc.attack), "params": spec(config).attacks[wc.attack].params_for(wc.dataset)}


def gradient_rule_params(config: Mapping[str, Any], wc) -> dict:
    s = spec(config)
    steps = defense_steps(config, wc.defense, wc.dataset)
    return {"defense": [{"name": st.name, **st.params()} for st in steps], "model_mode": s.recorded("model_mode"),
            "victims": s.n_victims(wc.dataset), "non_iid": s.recorded("non_iid"),
            "inputs": (s.recorded("inputs") or {}).get(wc.dataset)}


def fl_params(config: Mapping[str, Any], dataset: str, model: str, cohort: str, defense: str) -> dict:
    """The params of rule cs_fl (and its record): what a FedAvg run depends on."""
    from .spec import fl_settings

    s = spec(config)
    u = s.utility
    steps = defense_steps(config, defense, dataset, u.defense_overrides)
    return {"fedavg": fl_settings(config, dataset, cohort), "defense": [{"name": st.name, **st.params()} for st in steps],
            "holdout_fraction": u.holdout_fraction, "max_test": u.max_test,
            "data": config["datasets"].get(dataset), "model_options": s.model_options(model), "report": u.report}


def table_rule_params(config: Mapping[str, Any]) -> dict:
    """The settings a table depends on (verbatim blocks) and the paper values' digest."""
    from .spec import paper_values_digest

    s = spec(config)
    return {**{k: s.recorded(k) for k in ("cases", "unavailable", "restarts", "utility", "evaluation", "privacy")},
            "paper_values": paper_values_digest()}


def block_param(config: Mapping[str, Any], key: str, dataset: str | None = None) -> Any:
    """A rule param that records the study block's ``key`` verbatim (``[dataset]`` of it if given)."""
    v = spec(config).recorded(key)
    return v if dataset is None else (v or {}).get(dataset)
