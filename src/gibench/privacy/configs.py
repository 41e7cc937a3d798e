"""The privacy budgets of a validated config (:func:`study_budgets`): one row per DP configuration
the studies run (attacked gradients and FedAvg runs), with the names, pool sizes and client
shards resolved by the pipeline's own functions, and their summary for the docs
(:func:`summary_rows`)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from .. import fl_plan
from ..datasets import DATASETS
from ..studies.concealed_samples import spec as cs_spec
from ..studies.stochastic_defenses.spec import spec as sd_spec
from .accounting import attack_budget, fedavg_budget


# ===================================================================== the shipped configs

def client_train_sizes(pool_size: int, fl_settings: Mapping[str, Any]) -> list[int] | None:
    """The clients' training-sample counts for a pool of ``pool_size`` samples, as
    :func:`gibench.fl.make_clients` cuts it (IID only: the sizes do not depend on the seed or
    labels; None for a label-dependent partition)."""
    import numpy as np

    from .. import fl       # deferred: gibench.fl imports torch (its training code)

    s = fl.settings_from(fl_settings)
    if s["partition"]["type"] != "iid":
        return None
    shards = fl.make_clients(np.zeros(int(pool_size), dtype=np.int64), s, seed=0)
    return [int(len(c.train)) for c in shards]


def fl_pool_size(config: Mapping[str, Any], dataset: str, holdout_fraction: float,
                 train_split: str = "train") -> int | None:
    """Training pool of a FedAvg run (as the FedAvg jobs build it): the hub's train split, or
    the bundled split less the held-out test share."""
    spec = dict((config.get("datasets") or {}).get(dataset) or {})
    ds = DATASETS.get(dataset)
    if spec.get("source", "bundled") == "hub":
        return ds.pool_size("hub", train_split)
    n = ds.pool_size("bundled", spec.get("split") or ds.bundled_splits[0])
    return None if n is None else n - int(round(float(holdout_fraction) * n))


def study_budgets(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per DP configuration of a validated config: every attacked gradient and every
    FedAvg run whose defense adds noise (paper B's ``dp``; the concealed-samples
    ``dp_gaussian``).  Row: study, setting (attack | fedavg), defense, dataset, model, and the
    record of :func:`budget` under ``record``.

    Names are resolved by the pipeline's own functions (gibench.studies.stochastic_defenses.spec,
    gibench.fl_plan; gibench.studies.concealed_samples.spec), so the budgets are those of what the jobs run."""
    rows: list[dict[str, Any]] = []
    studies = config.get("studies") or {}
    if "stochastic_defenses" in studies:
        rows += _sd_rows(config)
    if "concealed_samples" in studies:
        rows += _cs_rows(config)
    return rows


def _sd_rows(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    study = "stochastic_defenses"
    sd = sd_spec(config)
    if sd is None:          # an empty study block: nothing attacked, nothing trained
        return []
    priv = sd.written("privacy")
    rows, seen = [], set()
    for d, m, dfn, _a in sd.cases():
        rec = attack_budget(sd.chain(dfn), sd.written("gradient"), priv)
        if rec is not None and (dfn, d) not in seen:
            seen.add((dfn, d))
            rows.append({"study": study, "setting": "attack", "defense": dfn, "dataset": d, "model": m, "record": rec})
    block = fl_plan.fl_block(config, study)
    if block:
        f = dict(block)
        hold = float((f.get("data") or {}).get("holdout_fraction", 0.2))
        split = (f.get("data") or {}).get("train_split", "train")
        seen = set()
        for d, m, dfn, _seed in fl_plan.fl_runs(config, study):
            if (d, m, dfn) in seen:
                continue
            seen.add((d, m, dfn))
            chain = fl_plan.defense_chain(fl_plan.defense_specs(config, study, dfn), fl_plan.defense_defaults(config, study))
            if chain is None:
                continue
            pool = fl_pool_size(config, d, hold, split)
            sizes = client_train_sizes(pool, f) if pool else None
            rec = fedavg_budget(chain, f, n_train=min(sizes) if sizes else None, privacy=priv)
            if rec is not None:
                rows.append({"study": study, "setting": "fedavg", "defense": dfn, "dataset": d, "model": m,
                             "record": rec})
    return rows


def _cs_rows(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    study = "concealed_samples"
    cs = config["studies"][study]
    priv = cs.get("privacy")
    cases = cs.get("cases") or {}
    rows = []
    for dfn in cs.get("defenses") or {}:
        for d, m in cases.items():
            rec = attack_budget(cs_spec.defense_steps(config, dfn, d), None, priv)
            if rec is not None:
                rows.append({"study": study, "setting": "attack", "defense": dfn, "dataset": d, "model": m,
                             "record": rec})
    u = cs.get("utility") or {}
    if u.get("enabled", True):
        for d in u.get("datasets") or list(cases):
            settings = cs_spec.fl_settings(config, d, "iid")
            for dfn in cs.get("defenses") or {}:
                steps = cs_spec.defense_steps(config, dfn, d, u.get("defense_overrides", {}))
                pool = fl_pool_size(config, d, float(u.get("holdout_fraction", 0.2)))
                sizes = client_train_sizes(pool, settings) if pool else None
                rec = fedavg_budget(steps, settings, n_train=min(sizes) if sizes else None, privacy=priv)
                if rec is not None:
                    rows.append({"study": study, "setting": "fedavg", "defense": dfn, "dataset": d,
                                 "model": cases.get(d), "record": rec})
    return rows


def summary_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows for a table / the docs: per step, per round and over the run (main relation),
    the run under the other relation and the Poisson-assumed number (None where not computed)."""
    out = []
    for r in rows:
        rec = r["record"]
        row = {k: r[k] for k in ("study", "setting", "defense", "dataset", "model")}
        row.update(mechanism=rec["mechanism"], clip=rec.get("clip"), sigma=rec.get("sigma"), std=rec.get("std"),
                   relation=rec["relation"], delta=rec["delta"], guarantee=rec["guarantee"])
        other = next((v for v in rec.get("variants", []) if v.get("guarantee") == "formal"), None)
        poisson = next((v for v in rec.get("variants", []) if v.get("relation") == "add_remove"), None)
        if r["setting"] == "fedavg":
            row.update(n_train=rec.get("n_train"), rounds=rec["rounds"], local_epochs=rec["local_epochs"],
                       batch_size=rec["batch_size"], steps=rec["steps"],
                       eps_step=rec["per_step"]["epsilon"], eps_round=rec["per_round"]["epsilon"])
        else:
            row.update(eps_step=rec["epsilon"])
        row.update(eps_total=rec["epsilon"], eps_total_rdp=rec["epsilon_by_accountant"].get("rdp"),
                   eps_total_other_relation=other["epsilon"] if other else None,
                   eps_poisson_assumed=poisson["epsilon"] if poisson else None)
        out.append(row)
    return out
