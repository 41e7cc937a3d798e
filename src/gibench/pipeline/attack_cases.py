"""What an attack job and an evaluation read from the config and from attack records, without
torch: an attack entry's settings on a model, and which restart and case an attack artifact holds.
Shared by the image jobs (:mod:`.jobs_attack`), the text jobs (:mod:`.jobs_text`), the local-LM
jobs and the DAG build (:mod:`.targets`), so none of them imports another's job module."""
from __future__ import annotations

from .. import model_ids
from ..wildcards import SIGNIFICANCE, significance_of


def attack_settings(study_cfg: dict, attack: str, model: str | None = None) -> tuple[str, dict, int]:
    """(registry name, hyperparameters, restarts) of a configured attack entry; ``model``'s
    entries under ``model_params`` override ``params`` key by key: the registry model's
    (``lenet``: every init), then the model id's own (``lenet@dlg_uniform``)."""
    entry = study_cfg["attacks"][attack]
    params = dict(entry.get("params", {}))
    if model is not None:
        per_model = entry.get("model_params", {})
        base = model_ids.base(model)
        params.update(per_model.get(base, {}))
        if model != base:
            params.update(per_model.get(model, {}))
    return entry.get("type", attack), params, int(entry.get("restarts", 1))


def restart_of(rec: dict) -> int:
    """The restart an attack artifact holds: its record's ``attack.restart`` (restarts run
    together, one record per job) or its ``rep`` wildcard (one job per restart)."""
    info = rec.get("attack") or {}
    return int(info["restart"] if "restart" in info else rec["wildcards"]["rep"])


def case_of(rec: dict) -> dict:
    """An attack artifact's (significance, ratio, attack): the wildcards of the job that made it
    (a record written before the wildcard's rename names the significance metric ``metric``)."""
    wc = dict(rec.get("wildcards") or {})
    if significance_of(wc) is not None:
        wc[SIGNIFICANCE] = significance_of(wc)
    missing = [k for k in (SIGNIFICANCE, "ratio", "attack") if k not in wc]
    if missing:
        raise ValueError(f"attack artifact record lacks wildcards {missing} (rule {rec.get('rule')!r})")
    return {k: wc[k] for k in (SIGNIFICANCE, "ratio", "attack")}
