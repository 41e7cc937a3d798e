"""The scale a claim needs against the scale a run has: the claim's ``scale`` keys, the study's
*scale probe* (:data:`SCALE_PROBES`, one per study: what the config ran a table cell at -- victims,
iterations, restarts, ratio grid, model size, pretrained weights, FedAvg rounds ...), the
shortfalls (:func:`check_scale`) and the "ran at" text of a verdict (:func:`ran_at`)."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping


from ..registry import Registry
from ..studies.concealed_samples import spec as J
from ..studies.stochastic_defenses.spec import spec as sd_spec

from .predicates import CONTEXT_COLUMNS, _equal, fmt_value


# ====================================================================== scale

#: study -> (whole config, context {attack, model, dataset, defense}) -> {scale key: value}
SCALE_PROBES: Registry[Callable[[Mapping[str, Any], Mapping[str, str]], dict]] = Registry("scale probe")

SCALE_TEXT = {"victims": "victims", "iterations": "attack iterations", "restarts": "restarts", "ratios": "ratio grid",
              "pretrained": "pretrained weights", "model_size": "model size", "prior": "LM prior",
              "synthesis_iterations": "DCS² synthesis iterations", "fl_rounds": "FedAvg rounds",
              "fl_seeds": "FedAvg seeds", "fl_samples": "FedAvg samples per client"}


def _get(d: Mapping[str, Any] | None, dotted: str) -> Any:
    cur: Any = d
    for k in dotted.split("."):
        if not isinstance(cur, Mapping) or k not in cur:
            return None
        cur = cur[k]
    return cur


def _scale_needed_text(scale: Mapping[str, Any]) -> str:
    parts = []
    for k, v in scale.items():
        if k == "per_attack":
            parts += [f"{a}: {_scale_needed_text(sub)}" for a, sub in v.items()]
        elif k == "settings":
            parts += [f"{p} = {w}" for p, w in v.items()]
        elif k == "ratios":
            parts.append("ratio grid ⊇ {" + ", ".join(fmt_value(float(r)) for r in v) + "}")
        elif isinstance(v, bool):
            parts.append(f"{SCALE_TEXT[k]}: {'yes' if v else 'no'}")
        elif k == "model_size":
            parts.append(f"model size {v}")
        else:
            parts.append(f"{SCALE_TEXT[k]} ≥ {v}")
    return "; ".join(parts)


def _scale_key(k: str, need: Any, got: Any) -> tuple[str | None, str]:
    """(shortfall or None, what the run has) for one scale key."""
    if got is None:
        return f"{SCALE_TEXT[k]} unknown", f"{SCALE_TEXT[k]} ?"
    if k == "ratios":
        grid = {round(float(r), 3) for r in got}
        lack = sorted({round(float(r), 3) for r in need} - grid)
        have = "ratio grid {" + ", ".join(fmt_value(r) for r in sorted(grid)) + "}"
        return ("ratio grid lacks " + ", ".join(fmt_value(r) for r in lack) if lack else None), have
    if isinstance(need, bool):
        return (None if bool(got) == need else f"{SCALE_TEXT[k]}: {'yes' if got else 'no'}"), \
            f"{SCALE_TEXT[k]}: {'yes' if got else 'no'}"
    if k == "model_size":
        return (None if str(got) == str(need) else f"model size {got}, not {need}"), f"model size {got}"
    g = int(got) if float(got) == int(got) else float(got)
    return (None if float(got) >= float(need) else f"{SCALE_TEXT[k]} {g} < {need}"), f"{SCALE_TEXT[k]} {g}"


def scale_for(scale: Mapping[str, Any], attack: str | None) -> dict:
    """The scale keys that apply to an attack's cells: the claim's, then its ``per_attack`` entry
    (which may nest ``per_attack`` itself)."""
    need = {k: v for k, v in scale.items() if k != "per_attack"}
    sub = (scale.get("per_attack") or {}).get(attack) if attack else None
    if sub:
        need.update(scale_for(sub, attack))
    return need


def check_scale(scale: Mapping[str, Any], config: Mapping[str, Any], study: str,
                contexts: list[dict]) -> tuple[list[str], str]:
    """(shortfalls, what the run has) for the claim's scale, over the contexts (attack, model,
    dataset, defense) of the cells it used; ``per_attack`` entries apply to that attack's cells."""
    probe = SCALE_PROBES.get(study) if study in SCALE_PROBES else None
    st = (config.get("studies") or {}).get(study) or {}
    ctxs = contexts or [{}]
    short: dict[str, None] = {}
    have: dict[str, None] = {}
    for ctx in ctxs:
        need = scale_for(scale, ctx.get("attack"))
        got = probe(config, ctx) if probe else {}
        tag = f" ({'/'.join(ctx[k] for k in ('attack', 'model') if k in ctx)})" if len(ctxs) > 1 and ctx else ""
        for k, w in need.items():
            if k == "settings":
                for p, want in w.items():
                    v = _get(st, p)
                    same = (v == want) if isinstance(want, (list, dict)) else _equal(v, want)
                    have[f"{p} = {v}"] = None
                    if not same:
                        short[f"{p} is {v}, not {want}"] = None
                continue
            if k in got and got[k] is None:      # not applicable to these cells (e.g. DAGER's iterations)
                continue
            s, h = _scale_key(k, w, got.get(k))
            have[h + tag] = None
            if s:
                short[s + tag] = None
    return list(short), "; ".join(have)


def _probe_text(got: Mapping[str, Any]) -> str:
    parts = []
    for k, v in got.items():
        if v is None or k not in SCALE_TEXT:
            continue
        if k == "ratios":
            parts.append("ratio grid {" + ", ".join(fmt_value(float(r)) for r in v) + "}")
        elif isinstance(v, bool):
            parts.append(f"{SCALE_TEXT[k]}: {'yes' if v else 'no'}")
        elif k == "model_size":
            parts.append(f"model size {v}")
        else:
            parts.append(f"{SCALE_TEXT[k]} {v}")
    return ", ".join(parts)


def ran_at(config: Mapping[str, Any], study: str, contexts: list[dict]) -> str:
    """What the cells a check used ran at, whatever the claim needs: per attack/model/dataset of
    those cells, every scale fact the study's probe knows (victims, iterations, restarts, ratio
    grid, model size, pretrained weights, FedAvg rounds ...); contexts with the same facts share
    one entry."""
    probe = SCALE_PROBES.get(study) if study in SCALE_PROBES else None
    if probe is None:
        return ""
    rows = []
    for ctx in contexts or [{}]:
        try:
            text = _probe_text(probe(config, ctx))
        except Exception as e:          # a context the config does not know (e.g. tables of another run)
            text = f"unknown ({type(e).__name__})"
        rows.append(("/".join(ctx[k] for k in ("attack", "model", "dataset") if ctx.get(k)), ctx.get("defense"), text))
    texts: dict[str, set[str]] = {}
    for label, _, text in rows:
        texts.setdefault(label, set()).add(text)
    groups: dict[str, list[str]] = {}
    for label, defense, text in rows:
        if label and defense and len(texts[label]) > 1:     # the defense is what differs (e.g. DCS² synthesis)
            label = f"{label}/{defense}"
        labels = groups.setdefault(text, [])
        if label and label not in labels:
            labels.append(label)
    out = []
    for text, labels in groups.items():
        if not text:
            continue
        shown = ", ".join(labels[:6]) + (f" (+{len(labels) - 6})" if len(labels) > 6 else "")
        out.append(f"{shown}: {text}" if shown else text)
    return "; ".join(out)


def _contexts(cells: Iterable[dict]) -> list[dict]:
    out: dict[tuple, dict] = {}
    for c in cells:
        ctx = {k: str(c[k]) for k in CONTEXT_COLUMNS if c.get(k) not in (None, "")}
        out.setdefault(tuple(sorted(ctx.items())), ctx)
    return list(out.values())


# ====================================================================== scale probes (one per study)

def _se_probe(config: Mapping[str, Any], ctx: Mapping[str, str]) -> dict:
    from ..pipeline.jobs_attack import attack_settings  # deferred: jobs_attack imports torch (its attack jobs)

    st = config["studies"]["selective_encryption"]
    out: dict[str, Any] = {}
    model, attack, dataset = ctx.get("model"), ctx.get("attack"), ctx.get("dataset")
    victims = int(st.get("victims", 1))
    entry = (st.get("attacks") or {}).get(attack) if attack else None
    if entry:
        victims = int(entry.get("victims", victims))
        kind, params, restarts = attack_settings(st, attack, model)
        out["restarts"] = restarts
        it = params.get("iterations", params.get("n_steps"))
        if kind == "dager":
            out["iterations"] = None            # deterministic: no iterations
        elif it is not None:
            out["iterations"] = int(it)
        if kind == "lamp":
            out["prior"] = params.get("prior") not in (None, "", "none")
        grid = entry.get("ratios") or (st.get("significance") or {}).get("ratios")
        if grid:
            out["ratios"] = list(grid)
    elif attack is None:
        grid = (st.get("significance") or {}).get("ratios")
        if grid:
            out["ratios"] = list(grid)
    if dataset and dataset in (config.get("datasets") or {}):
        victims = min(victims, int(config["datasets"][dataset]["victims"]))
    if attack is None or entry:
        out["victims"] = victims
    if model:
        opts = (st.get("models") or {}).get(model) or {}
        out["pretrained"] = bool(opts.get("pretrained"))
        out["model_size"] = opts.get("size", "base")
    return out


#: training-split sizes of the hub datasets (a client's shard = size / clients when not capped)
HUB_TRAIN_SIZE = {"mnist": 60000, "cifar10": 50000, "cifar100": 50000}


def _sd_probe(config: Mapping[str, Any], ctx: Mapping[str, str]) -> dict:
    st = config["studies"]["stochastic_defenses"]
    s = sd_spec(config)
    if s is None:           # an empty study block: nothing to probe
        return {}
    out: dict[str, Any] = {"victims": int(s.victims)}
    attack = ctx.get("attack")
    if attack and attack in s.attacks:
        _, params, restarts, _ = s.attack_settings(attack, ctx.get("model"))
        out["restarts"] = restarts
        if params.get("iterations") is not None:
            out["iterations"] = int(params["iterations"])
    fl = st.get("fl") or {}
    if fl:
        out["fl_rounds"] = int(fl.get("rounds", 300))
        out["fl_seeds"] = len(fl.get("seeds") or [0, 1, 2])
        dataset = ctx.get("dataset", "")
        if fl.get("samples_per_client") is not None:
            out["fl_samples"] = int(fl["samples_per_client"])
        elif ((config.get("datasets") or {}).get(dataset) or {}).get("source") == "hub" and dataset in HUB_TRAIN_SIZE:
            out["fl_samples"] = HUB_TRAIN_SIZE[dataset] // int(fl.get("clients", 10))
    return out


def _cs_probe(config: Mapping[str, Any], ctx: Mapping[str, str]) -> dict:
    st = config["studies"]["concealed_samples"]
    out: dict[str, Any] = {}
    dataset, attack, defense = ctx.get("dataset"), ctx.get("attack"), ctx.get("defense")
    out["victims"] = int((st.get("victims_per_dataset") or {}).get(dataset, st.get("victims", 1)))
    out["restarts"] = int(st.get("restarts", 1))
    if attack and attack in (st.get("attacks") or {}) and dataset:
        it = J.attack_params(dict(config), attack, dataset).get("iterations")
        if J.attack_type(dict(config), attack) == "imprint":
            out["iterations"] = None            # analytic read-out: no iterations
        elif it is not None:
            out["iterations"] = int(it)
    if defense == "none":
        out["synthesis_iterations"] = None
    elif defense and dataset and defense in (st.get("defenses") or {}):
        from ..defenses.concealed import DCS2  # deferred: gibench.defenses imports torch

        try:
            steps = J.defense_steps(dict(config), defense, dataset)
        except Exception:       # a combination this dataset cannot run: nothing to tell
            steps = []
        its = [int(s.iterations) for s in steps if isinstance(s, DCS2)]
        out["synthesis_iterations"] = min(its) if its else None
    model = (st.get("cases") or {}).get(dataset) if dataset else None
    if model:
        out["pretrained"] = bool(((st.get("models") or {}).get(model) or {}).get("pretrained"))
    u = st.get("utility") or {}
    if u and u.get("enabled", True):
        out["fl_rounds"] = int(u.get("rounds", 0))
        out["fl_seeds"] = len(u.get("seeds") or [0])
        spc = u.get("samples_per_client") or {}
        if dataset in spc:
            out["fl_samples"] = int(spc[dataset])
    return out


SCALE_PROBES.add("selective_encryption", _se_probe)
SCALE_PROBES.add("stochastic_defenses", _sd_probe)
SCALE_PROBES.add("concealed_samples", _cs_probe)
