"""Which artifacts a config asks for: the target list of `rule all`, study by study."""
from __future__ import annotations

from pathlib import Path

from ..config import fmt_ratio, fmt_slot
from ..datasets import DATASETS
from . import paths as P

BUNDLED_FILES = {
    "cifar100": ["test_first916", "meta", "PROVENANCE.jsonl"],
    "cifar10": ["test_batch_first1017", "batches.meta", "PROVENANCE.jsonl"],
    "mnist": ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "PROVENANCE.jsonl"],
    "tiny_imagenet": ["val_sample_labels.tsv", "wnids.txt", "words_200.txt", "PROVENANCE.jsonl"],
}


def dataset_inputs(config: dict, dataset: str) -> list[str]:
    spec = config["datasets"][dataset]
    if spec["source"] == "hub":
        return [f"{config['hub_dir']}/{dataset}/{spec['split']}/dataset_info.json"]
    root = Path(config["resources_dir"]) / "data" / dataset
    return [str(root / f) for f in BUNDLED_FILES.get(dataset, [])]


def se_cases(config: dict):
    """(study, dataset, model, slot) for the selective-encryption study."""
    se = config["studies"].get("selective_encryption")
    if not se:
        return
    for case in se["cases"]:
        for s in range(se["victims"]):
            yield "selective_encryption", case["dataset"], case["model"], fmt_slot(s)


def se_gradient_targets(config: dict) -> list[str]:
    out = []
    for study, dataset, model, slot in se_cases(config):
        wc = dict(study=study, dataset=dataset, model=model, slot=slot)
        out += [P.fmt(P.GRADIENT, **wc), P.fmt(P.KNOWLEDGE, **wc)]
    return out


def _se(config: dict) -> dict | None:
    return config["studies"].get("selective_encryption")


def interior_ratios(config: dict) -> list[str]:
    """Formatted ratios strictly between 0 and 1 (their masks depend on the metric)."""
    se = _se(config)
    if not se:
        return []
    return [fmt_ratio(r) for r in sorted(se["significance"]["ratios"]) if 0.0 < r < 1.0]


def attack_params(config: dict, study: str, attack: str, model: str) -> dict:
    """What an attack job depends on in the config (its entry, with the model's overrides
    applied): a change re-runs only the affected jobs."""
    from .jobs_attack import attack_settings

    kind, params, restarts = attack_settings(config["studies"][study], attack, model)
    return {"type": kind, "params": params, "restarts": restarts}


def se_attack_cases(config: dict):
    """(study, dataset, model, slot, metric, ratio) with ratios 0/1 shared under metric 'any'."""
    se = _se(config)
    if not se or not se.get("attacks"):
        return
    sig = se["significance"]
    for study, dataset, model, slot in se_cases(config):
        seen = set()
        for metric in sig["metrics"]:
            for r in sorted(sig["ratios"]):
                key = (P.metric_for_ratio(metric, r), fmt_ratio(r))
                if key not in seen:
                    seen.add(key)
                    yield study, dataset, model, slot, key[0], key[1]


def restart_paths(config: dict, wc) -> list[str]:
    entry = config["studies"][wc.study]["attacks"][wc.attack]
    return [P.fmt(P.ATTACK, study=wc.study, dataset=wc.dataset, model=wc.model, slot=wc.slot,
                  metric=wc.metric, ratio=wc.ratio, attack=wc.attack, rep=rep)
            for rep in range(int(entry.get("restarts", 1)))]


def lpips_backbone_file(config: dict, study: str) -> str | None:
    """The torchvision backbone file LPIPS needs, if it is on disk (LPIPS is reported as
    unavailable otherwise; the download rule fetches it on a machine with internet)."""
    ev = config["studies"][study].get("evaluation", {})
    if "lpips" not in ev.get("image_metrics", []):
        return None
    from ..metrics.lpips import BACKBONE_FILES

    path = P.BACKBONE.format(hub_dir=config["hub_dir"], file=BACKBONE_FILES[ev["lpips"]["backbone"]])
    return path if Path(path).exists() else None


def metric_files(config: dict, study: str) -> list[str]:
    if study != "selective_encryption":
        return []
    out = []
    for st, dataset, model, slot, metric, ratio in se_attack_cases(config):
        for attack in _se(config)["attacks"]:
            out.append(P.fmt(P.METRICS, study=st, dataset=dataset, model=model, slot=slot, metric=metric,
                             ratio=ratio, attack=attack))
    return out


def cost_files(config: dict, study: str) -> list[str]:
    se = _se(config)
    if study != "selective_encryption" or not se:
        return []
    out = []
    for st, dataset, model, slot in se_cases(config):
        for metric in se["significance"]["cost_metrics"]:
            out.append(P.fmt(P.SCORE_COST, study=st, dataset=dataset, model=model, slot=slot, metric=metric))
    return out


SE_TABLES = ("table2", "table4", "table5", "table6")


def se_table_targets(config: dict) -> list[str]:
    se = _se(config)
    if not se:
        return []
    names = ["table6"] if not se.get("attacks") else list(SE_TABLES)
    return [P.fmt(P.TABLE, study="selective_encryption", table=t, ext=ext) for t in names for ext in ("csv", "md")]


def table_inputs(config: dict, study: str, table: str) -> dict:
    if table == "table6":
        return {"cost": P.fmt(P.COST, study=study)}
    return {"metrics": P.fmt(P.ALL_METRICS, study=study)}


def table_settings(config: dict, study: str, table: str) -> dict:
    """The part of the config a table (or the figures) depends on."""
    st = config["studies"][study]
    out = {"evaluation": st.get("evaluation", {}), "cases": st.get("cases")}
    if table in ("table6",):
        out["cost_metrics"] = st["significance"]["cost_metrics"]
    else:
        out["metrics"] = st["significance"]["metrics"]
        out["ratios"] = st["significance"]["ratios"]
    return out


def _attack_files(config: dict, pattern: str, model: str, dataset: str, attack: str, slot: str | None = None) -> list[str]:
    out = []
    for st, d, m, s, metric, ratio in se_attack_cases(config):
        if (d, m) != (dataset, model) or (slot is not None and s != slot):
            continue
        for rep in range(int(_se(config)["attacks"][attack].get("restarts", 1))):
            out.append(P.fmt(pattern, study=st, dataset=d, model=m, slot=s, metric=metric, ratio=ratio,
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
    se = _se(config)
    if not se or not se.get("attacks"):
        return []
    from ..tables import figure_specs

    return [P.fmt(P.FIGURE, study="selective_encryption", figure=s["name"], ext=ext)
            for s in figure_specs(se) for ext in ("png", "pdf")]


def se_overhead_targets(config: dict) -> list[str]:
    """HE-overhead table and cost-vs-protection figure (when ``overhead`` is enabled)."""
    from .jobs_overhead import overhead_targets

    return overhead_targets(config)


def se_targets(config: dict) -> list[str]:
    return (se_gradient_targets(config) + se_table_targets(config) + se_figure_targets(config)
            + se_overhead_targets(config))


def all_targets(config: dict) -> list[str]:
    """Victims of every configured dataset, then each study's own targets (its registry entry)."""
    from .studies import STUDIES

    from .jobs_fl import fl_targets

    targets = [P.fmt(P.VICTIMS, dataset=d) for d in config["datasets"]]
    for study in config["studies"]:
        targets += STUDIES.get(study).targets(config)
    targets += fl_targets(config)          # studies with an fl block: FedAvg accuracy table + curves
    return sorted(dict.fromkeys(targets))
