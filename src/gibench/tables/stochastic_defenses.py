"""Tables 1-5 and the reconstruction grid (Fig. 2) of the stochastic-defenses study (paper B).

Definitions (also in the captions):

* one row per victim slot and case (dataset, model, defense combination, attack): the restart
  kept by ``evaluation.best_of_restarts`` (:func:`gibench.studies.stochastic_defenses.jobs.select_restart`);
* **SSIM**: the CVB reference code's SSIM (each image min-max scaled to [0, 1] first; ``evaluation.ssim``
  picks torchmetrics 0.11.4's centre-of-map mean, the default, or the full-map mean;
  :mod:`gibench.metrics.scaled`), mean ± std over the victims (population std, ddof = 0);
* **ASR [%]**: 100 x the share of victims whose SSIM exceeds ``evaluation.asr_threshold`` (0.5);
* **Accuracy [%]** (ablation tables): the FedAvg test accuracy of the global model, mean ± std
  over seeds, from the study's ``fl`` runs (``results/fl/stochastic_defenses/accuracy.parquet``);
  without them the column says "not computed".

Table kinds: ``attacks`` (Tables 1-3: an undefended baseline row, then every attack on every
listed combination) and ``ablation`` (Tables 4-5: one attack over combinations, with the
DO/DP/GP/PM check marks).  CSV: tidy, one line per cell (``ssim_mean, ssim_std, asr, n,
status``, accuracy columns); Markdown: the paper's layout.
"""
from __future__ import annotations

import functools

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import io
from ..victims import read_victims, slot_rows
from ..wildcards import fmt_slot
from ..fl_plan import defense_chain, defense_defaults, defense_specs, fl_block, load_accuracy_rows
from ..studies.stochastic_defenses.paths import RECON
from ..studies.stochastic_defenses.spec import spec as sd_spec
from . import budgets, figures, paper
from .paper import MODEL_NAMES, model_name  # noqa: F401  (MODEL_NAMES: re-exported, its old home)
from .registry import TABLES, register_figure, register_table
from .render import TableDoc, display, fmt_mean_std

STUDY = "stochastic_defenses"
#: the study's attacks as the paper names them: the registry entries' display names (IG for
#: ``ig_defended``, WIIG, ...), and IG for an entry named ``ig`` (the configs' name of ``ig_defended``)
@functools.cache
def attack_names() -> dict[str, str]:
    # deferred: the attack modules import torch, and the tables are imported at DAG build
    from ..attacks import ATTACKS

    return {**{n: ATTACKS.display(n) for n in ATTACKS.names(study=STUDY)}, "ig": ATTACKS.display("ig")}


NOT_COMPUTED = "not computed (no FedAvg run)"
NOT_COMPUTED_NOTE = ("not computed: the study has no FedAvg runs; add a studies.stochastic_defenses.fl block "
                     "(gibench.fl, rules/fl.smk) listing these combinations to fill the column")
DISPLAY_ORDER = ("dropout", "dp", "prune", "precode", "cvb")


def _study(config: Mapping[str, Any]) -> dict:
    return dict(config["studies"][STUDY]) if "studies" in config else dict(config)


def attack_name(config: Mapping[str, Any], attack: str) -> str:
    entry = (_study(config).get("attacks") or {}).get(attack, {})
    kind = entry.get("type", attack)
    names = attack_names()
    return names.get(attack, names.get(kind, attack.upper()))


def attack_label(config: Mapping[str, Any], attack: str, model: str, chain) -> str:
    """The attack as a table row names it: the paper's name, with the variant where the variant
    changes the attack against this client (WIIG under DP: ``WIIG (add)`` / ``WIIG (subtract)``;
    DPIA in absolute noise units: ``DPIA (absolute)``); any other entry named otherwise than its
    attack carries the entry's name (``IG (ig_tv001)``)."""
    st = _study(config)
    full = config if "studies" in config else {"studies": {STUDY: st}}
    name = attack_name(st, attack)
    kind, params, _, _ = sd_spec(full).attack_settings(attack, model)
    if kind == "wiig" and chain.uses("dp"):
        return f"{name} ({params.get('secret_noise', 'add')})"
    if kind == "dpia" and chain.uses("dp") and params.get("noise_units", "sigma_tau") != "sigma_tau":
        return f"{name} ({params['noise_units']})"
    if attack != kind and attack not in attack_names():
        return f"{name} ({attack})"
    return name


#: where a TV weight comes from (caption): the CVB repository's per-model attack configs
#: (configs/models/{CNN,ResNet18,ViT}.yaml, ``attack.regularization``; with or without CVB)
#: and paper B's text (section 5.2, = the CVB repository's configs/attacks/IG.yaml default)
CVB_TV = {"sd_cnn": (0.1, "CNN.yaml"), "resnet18_gn": (0.1, "ResNet18.yaml"), "sd_vit": (1e-4, "ViT.yaml")}
PAPER_TV = 0.01


def tv_source(model: str, tv: float) -> str:
    cvb = CVB_TV.get(model)
    if cvb is not None and float(tv) == cvb[0]:
        return f"CVB repository configs/models/{cvb[1]}"
    if float(tv) == PAPER_TV:
        return "paper B, section 5.2 (= the CVB repository's configs/attacks/IG.yaml default)"
    return "set in the config (neither paper B's 0.01 nor the CVB repository's per-model value)"


def tv_note(config: Mapping[str, Any], cases: Sequence[tuple[str, str, str, str]]) -> str:
    """The TV weights the table's attacks ran with, per model, with their source."""
    st = _study(config)
    full = config if "studies" in config else {"studies": {STUDY: st}}
    per_model: dict[str, dict[float, list[str]]] = {}
    for _, m, _, a in cases:
        tv = float(sd_spec(full).attack_settings(a, m)[1].get("tv", 0.0))
        names = per_model.setdefault(m, {}).setdefault(tv, [])
        if attack_name(st, a) not in names:
            names.append(attack_name(st, a))
    parts = []
    for m, by_tv in per_model.items():
        many = len(by_tv) > 1
        parts += [f"{model_name(m)} {_g(tv)}" + (f" ({', '.join(names)})" if many else "") + f" [{tv_source(m, tv)}]"
                  for tv, names in by_tv.items()]
    return ("TV weight λ_TV: " + "; ".join(parts) + ". Paper B's text gives 0.01 for every model; the CVB "
            "repository's model configs override it (CNN, ResNet-18 0.1; ViT 1e-4).")


def _g(x: float) -> str:
    return f"{x:g}"


def defense_text(spec: list[dict]) -> str:
    """A combination as the paper writes it: ``DP (20, 10^-3)``, ``GP 0.90``, ``DO+DP+C``; '-' for none."""
    if not spec:
        return "-"
    parts = []
    rank = {n: i for i, n in enumerate(DISPLAY_ORDER)}
    for d in sorted(spec, key=lambda d: rank.get(d["name"], len(rank))):
        n = d["name"]
        if n == "dp":
            parts.append(f"DP ({_g(float(d['clip']))}, {_g(float(d['sigma']))})")
        elif n == "prune":
            parts.append(f"GP {float(d['rate']):.2f}")
        elif n == "dropout":
            parts.append(f"DO {float(d['rate']):g}")
        else:
            parts.append({"precode": "PRECODE", "cvb": "CVB"}[n])
    return " + ".join(parts)


def load_rows(metrics_path: Any) -> list[dict]:
    """Rows from a Parquet file, a list of Parquet files, or rows as they are."""
    if isinstance(metrics_path, (str, Path)):
        table, _ = io.load_table(metrics_path)
        return table.to_pylist()
    items = list(metrics_path)
    if items and all(isinstance(p, (str, Path)) for p in items):
        return [r for p in items for r in load_rows(p)]
    return items


def summarise(rows: list[dict], threshold: float) -> dict:
    """SSIM mean/std (ddof 0), ASR in %, n; status ok | missing | partial (some restarts failed)."""
    if not rows:
        return {"ssim_mean": None, "ssim_std": None, "asr": None, "n": 0, "status": "missing"}
    s = np.asarray([float(r["ssim"]) for r in rows], dtype=float)
    failed = sum(1 for r in rows if r.get("status") != "ok")
    return {"ssim_mean": float(s.mean()), "ssim_std": float(s.std()), "asr": float(100.0 * np.mean(s > threshold)),
            "n": int(len(s)), "status": "ok" if not failed else f"{failed} failed"}


def _cells(summary: dict) -> tuple[str, str]:
    if summary["n"] == 0:
        return "missing", "missing"
    return fmt_mean_std(summary["ssim_mean"], summary["ssim_std"], min_decimals=2, max_decimals=2), f"{summary['asr']:.2f}"


def _accuracy(acc_rows: list[dict] | None, dataset: str, model: str, defense: str,
              report: str = "best_val") -> tuple[str, dict]:
    if acc_rows is None:
        return NOT_COMPUTED, {"accuracy_mean": None, "accuracy_std": None, "accuracy_status": "not computed"}
    from ..fl import accuracy_rows      # deferred: gibench.fl imports torch (its training code)

    cells = accuracy_rows(acc_rows, dataset=dataset, model=model, defense=defense, report=report)
    if not cells:
        return ("not computed (no FedAvg run of this combination)",
                {"accuracy_mean": None, "accuracy_std": None, "accuracy_status": "no run"})
    c = cells[0]
    return (fmt_mean_std(c["test_acc_mean"], c["test_acc_std"], min_decimals=2, max_decimals=2),
            {"accuracy_mean": c["test_acc_mean"], "accuracy_std": c["test_acc_std"], "accuracy_status": "ok",
             "accuracy_seeds": c.get("seeds")})


def table_doc(name: str, rows: list[dict], config: Mapping[str, Any], acc_rows: list[dict] | None = None) -> TableDoc:
    st = _study(config)
    full = config if "studies" in config else {"studies": {STUDY: st}}
    study = sd_spec(full)
    keys = list(study.tables[name].cases())
    spec = st["tables"][name]
    ev = {"asr_threshold": 0.5, "best_of_restarts": "attacker_loss", **(st.get("evaluation") or {})}
    thr = float(ev["asr_threshold"])
    index: dict[tuple, list[dict]] = {}
    for r in rows:
        index.setdefault((r["dataset"], r["model"], r["defense"], r["attack"]), []).append(r)
    # baseline first, then the table's defenses in config order (a set's order would follow
    # the interpreter's string hashing and change the table's footnote between runs)
    listed = ([spec["baseline"]["defense"]] if spec.get("baseline") else []) + list(spec["defenses"])
    chains = {d: study.chain(d) for d in dict.fromkeys(listed)}
    body, tidy = [], []
    if spec["kind"] == "attacks":
        header = ["Dataset", "Model", "Defense", "Attack", "SSIM ↓", "ASR [%] ↓", "n"]
        for d, m, dfn, a in keys:
            s = summarise(index.get((d, m, dfn, a), []), thr)
            ssim, asr = _cells(s)
            label = defense_text(chains[dfn].spec())
            a_label = attack_label(full, a, m, chains[dfn])
            body.append([display(d), model_name(m), label, a_label, ssim, asr, str(s["n"])])
            tidy.append({"dataset": d, "model": m, "defense": dfn, "defense_label": chains[dfn].label,
                         "attack": a, "attack_label": a_label, **s})
        cols = ["dataset", "model", "defense", "defense_label", "attack", "attack_label", "ssim_mean", "ssim_std",
                "asr", "n", "status"]
        group = 3
    else:
        with_acc = bool(spec.get("accuracy", True))
        header = ["Dataset", "Model", "DO", "DP", "GP", "PM", "SSIM ↓", "ASR [%] ↓", "n"]
        if with_acc:
            header.append("Accuracy [%] ↑")
        for d, m, dfn, a in keys:
            c = chains[dfn]
            s = summarise(index.get((d, m, dfn, a), []), thr)
            ssim, asr = _cells(s)
            mark = lambda on: "✓" if on else "✗"  # noqa: E731
            pm = {"precode": "P", "cvb": "C"}.get(c.privacy_module or "", "✗")
            line = [display(d), model_name(m), mark(c.uses("dropout")), mark(c.uses("dp")), mark(c.uses("prune")), pm,
                    ssim, asr, str(s["n"])]
            rec = {"dataset": d, "model": m, "defense": dfn, "defense_label": c.label, "attack": a, **s}
            if with_acc:
                text, acc = _accuracy(acc_rows, d, m, dfn, (st.get("fl") or {}).get("report", "best_val"))
                line.append(text)
                rec.update(acc)
            body.append(line)
            tidy.append(rec)
        cols = ["dataset", "model", "defense", "defense_label", "attack", "ssim_mean", "ssim_std", "asr", "n", "status"]
        if with_acc:
            cols += ["accuracy_mean", "accuracy_std", "accuracy_status"]
        group = 2
    # the default caption is the registry entry's of the table's kind
    default_title = TABLES.entry(STUDY, spec["kind"]).caption.format(attack=attack_name(st, spec.get("attack", "")))
    title = f"{name.replace('table', 'Table ')}: {spec.get('title') or default_title}"
    dp_text = {d: defense_text(c.spec()) for d, c in chains.items()}
    notes = [f"SSIM: the CVB reference code's SSIM (each image min-max scaled to [0, 1] first; Gaussian window 11, "
             f"σ 1.5; {_ssim_definition_text(ev)}), mean ± std (population) over n victims; "
             f"ASR: share of victims with SSIM > {thr:g}. "
             f"Arrows: direction of improvement for the defending client. Restart per victim: "
             f"{ev['best_of_restarts']}.",
             "Combinations: " + "; ".join(f"{d} = {t}" for d, t in dp_text.items()) + "."]
    notes.append(tv_note(full, keys))
    notes += variant_notes(full, keys, chains)
    if spec["kind"] == "ablation":
        notes.append("DO: Dropout, DP: differential privacy (clip + noise), GP: gradient pruning, PM: privacy module "
                     "(P = PRECODE, C = CVB); ✓/✗: used or not.")
        if spec.get("accuracy", True):
            notes.append("Accuracy: FedAvg test accuracy of the global model, mean ± std over seeds"
                         + (" (gibench.fl runs of this study)." if acc_rows is not None else f"; {NOT_COMPUTED_NOTE}."))
    doc = TableDoc(name=name, title=title, header=header, body=body, tidy_columns=cols, tidy=tidy, notes=notes,
                   group_columns=group)
    doc = paper.join_sd(name, doc, full, keys, lambda a: attack_name(st, a))
    return with_epsilon(doc, full, keys, chains,
                        acc_rows if spec["kind"] == "ablation" and spec.get("accuracy", True) else None,
                        fedavg=spec["kind"] == "ablation" and bool(spec.get("accuracy", True)))


def with_epsilon(doc: TableDoc, full: Mapping[str, Any], keys: Sequence[tuple[str, str, str, str]], chains: Mapping,
                 acc_rows: list[dict] | None, fedavg: bool) -> TableDoc:
    """Append ε columns (gibench.tables.budgets) when a row's combination adds DP noise: per
    step (the attacked gradient) and, in tables with FedAvg accuracies, over the run (its
    rounds trained, the maximum over seeds)."""
    st = _study(full)
    priv = st.get("privacy")
    if not any(c.uses("dp") for c in chains.values()):
        return doc
    doc.header.append(budgets.step_header(priv))
    if fedavg:
        doc.header.append(budgets.fedavg_header(priv))
    block = fl_block(dict(full), STUDY)
    for (d, m, dfn, _a), line, rec in zip(keys, doc.body, doc.tidy):
        text, fields = budgets.step_cell(chains[dfn], st.get("gradient"), priv)
        line.append(text)
        rec.update(fields)
        if fedavg:
            runs = [r for r in acc_rows or [] if (r.get("dataset"), r.get("model"), r.get("defense")) == (d, m, dfn)]
            if block and runs:
                chain = defense_chain(defense_specs(dict(full), STUDY, dfn),
                                      defense_defaults(dict(full), STUDY))
                rounds = max(int(r["last_round"]) for r in runs)
                text, f = budgets.fedavg_cell(chain, block, priv, rounds=rounds)
            else:
                text, f = budgets.fedavg_cell(None, None, priv)
            line.append(text)
            rec.update(f)
    doc.tidy_columns += [c for c in ("epsilon_step", "epsilon_delta", "privacy_guarantee") if c not in doc.tidy_columns]
    if fedavg:
        doc.tidy_columns += [c for c in ("epsilon_fedavg", "epsilon_fedavg_rounds") if c not in doc.tidy_columns]
    doc.notes.append(budgets.note(priv, fedavg=fedavg, oracle=True))
    return doc


def variant_notes(config: Mapping[str, Any], cases: Sequence[tuple[str, str, str, str]], chains: Mapping) -> list[str]:
    """What the attack variants in the table do (WIIG's handling of the client's DP noise,
    DPIA's noise parametrisation), once each."""
    notes: dict[str, None] = {}
    for _, m, dfn, a in cases:
        kind, params, _, _ = sd_spec(config).attack_settings(a, m)
        if not chains[dfn].uses("dp"):
            continue
        if kind == "wiig":
            mode = params.get("secret_noise", "add")
            notes[("WIIG (add): the client's noise Ξ_C is added to the attacker's clipped dummy gradient, "
                   "GDF(DP_ΞC(G), DP_ΞC(G')) as paper B's text (section 4.1) describes WIIG."
                   if mode == "add" else
                   "WIIG (subtract): Ξ_C/B is subtracted from the update and the remainder (the client's clean "
                   "clipped gradient) is matched against the attacker's clipped dummy gradient; the same "
                   "information as WIIG (add), not the paper's wording (a different cosine objective).")] = None
        elif kind in ("dpia",):
            units = params.get("noise_units", "sigma_tau")
            reg = params.get("noise_reg", 1.0)
            lr = params.get("noise_lr")
            notes[(f"DPIA: the dummy noise Ξ_A is optimised jointly with the image "
                   + ("as z = Ξ_A/(στ) (init N(0, I), regulariser "
                      f"{_g(float(reg))}·Σ_l(|mean z_l| + |std z_l − 1|))" if units == "sigma_tau" else
                      f"in absolute units (init N(0, σ²τ²), regulariser {_g(float(reg))}·Σ_l(|mean Ξ_l| + "
                      "|std Ξ_l − στ|))")
                   + f", learning rate {'the image’s' if lr is None else _g(float(lr))}; the paper asks for mean 0 "
                   "and std στ without a formula or weight (our choice).")] = None
    return list(notes)


def _ssim_definition_text(ev: Mapping[str, Any]) -> str:
    if ev.get("ssim", "ssim_center") == "ssim_center":
        return ("as torchmetrics 0.11.4, the CVB code's pin, computes it: the mean over the centre of the SSIM map, "
                "cropped by the window's 5-pixel pad per side; evaluation.ssim: ssim_center")
    return ("the mean over the full SSIM map as torchmetrics >= 1.0 computes it, not the CVB code's "
            "torchmetrics 0.11.4 value; evaluation.ssim: ssim")


def build_table(name: str, *, metrics_path: Any, config: Mapping[str, Any], out_dir: str | Path,
                accuracy_path: Any = None, formats: Sequence[str] = ("csv", "md")) -> list[Path]:
    rows = load_rows(metrics_path)
    acc = None
    if accuracy_path is not None:
        acc = load_accuracy_rows(accuracy_path) if isinstance(accuracy_path, (str, Path)) else list(accuracy_path)
    return table_doc(name, rows, config, acc).write(out_dir, formats)


# ---------------------------------------------------------------- Fig. 2: reconstruction grid

def build_grid(name: str, *, metrics_path: Any, recon_paths: Sequence[str], victims_paths: Sequence[str],
               config: Mapping[str, Any], out_dir: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Per dataset: the victims (first row), then the kept reconstruction of each defense
    combination (one row each, SSIM under every image); columns are victim slots."""
    st = _study(config)
    full = config if "studies" in config else {"studies": {STUDY: st}}
    spec = st["figures"][name]
    n = min(int(spec.get("victims", 4)), int(st["victims"]))
    slots = [fmt_slot(s) for s in range(n)]
    batch = int((st.get("gradient") or {}).get("batch_size", 1))
    rows = load_rows(metrics_path)
    kept = {(r["dataset"], r["model"], r["defense"], r["attack"], r["slot"]): r for r in rows}
    by_name = {Path(p).name: p for p in recon_paths}
    victims = {Path(p).parent.name: p for p in victims_paths}
    panels: list[tuple[str, list[np.ndarray | None], list[str]]] = []
    for d in spec["datasets"]:
        ds = sd_spec(full).dataset_view(d)
        truth = []
        for s in slots:
            imgs, _, _ = read_victims(victims[d], slot_rows(s, batch))
            truth.append(ds.denormalize(ds.normalize(imgs)).clamp(0, 1)[0].permute(1, 2, 0).numpy())
        panels.append((f"{display(d)}: victims", truth, [""] * n))
        for dfn in spec["defenses"]:
            imgs_row, notes = [], []
            for s in slots:
                r = kept.get((d, spec["model"], dfn, spec["attack"], s))
                if r is None:
                    imgs_row.append(None)
                    notes.append("missing")
                    continue
                path = RECON.format(dataset=d, model=spec["model"], defense=dfn, slot=s, attack=spec["attack"],
                                      rep=int(r["restart"]))
                tensors, _ = io.load_tensors(path if Path(path).exists() else by_name.get(Path(path).name, path))
                imgs_row.append(ds.denormalize(tensors["x"].float()).clamp(0, 1)[0].permute(1, 2, 0).numpy())
                notes.append(f"{float(r['ssim']):.2f}")
            panels.append((sd_spec(full).chain(dfn).label, imgs_row, notes))
    title = (f"{attack_name(st, spec['attack'])} on {model_name(spec['model'])}: reconstruction per defense "
             f"combination (rows) and victim (columns); under each: its SSIM")
    fig = figures.draw_montage([row for _, row, _ in panels], [p[0] for p in panels], slots, title=title,
                       notes=[[f"SSIM {t}" if t and t != "missing" else "" for t in notes] for _, _, notes in panels],
                       cell_in=0.9, left_in=1.5)
    return figures.save_figure(fig, out_dir, name, formats)


# ---------------------------------------------------------------- registration

def _build_grid(name: str, *, metrics_path: Any, recon_paths: Sequence[str], victims_paths: Sequence[str],
                config: Mapping[str, Any], out_dir: str | Path, **_: Any) -> list[Path]:
    return build_grid(name, metrics_path=metrics_path, recon_paths=recon_paths, victims_paths=victims_paths,
                      config=config, out_dir=out_dir)


# a table per `tables.<name>` of the study config, its `kind` naming the entry; a figure per `figures.<name>`
# (caption: the default title, `tables.<name>.title` replaces it; {attack}: the ablation's attack)
register_table(STUDY, "attacks", build_table, inputs=("metrics",), when="kind",
               caption="Privacy metrics of the attacks on defended training gradients")
register_table(STUDY, "ablation", build_table, inputs=("metrics", "accuracy"), when="kind",
               caption="Privacy metrics of {attack} over defense combinations")
register_figure(STUDY, "grid", _build_grid, inputs=("metrics",), when="kind",
                caption="reconstruction grid per defense combination and victim")
