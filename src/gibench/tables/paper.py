"""The paper's values beside ours, for the selective-encryption and stochastic-defenses tables.

Each table function builds its :class:`~gibench.tables.render.TableDoc` as before and hands it
to one ``join_*`` function here, which adds, from the study's paper-values file
(:mod:`gibench.paper_values`, ``config/paper_values/<study>.yaml``):

* **Markdown**: a ``paper`` column right after every measured column that the paper's table
  has, holding the paper's cell as printed (``0.95 (± 0.06)``, ``0.3``, ``NA``, ``★★``);
  ``–`` where the paper has no such row, ``unreadable`` where its text is garbled (the reason
  is in the notes);
* **CSV** (tidy, separate columns): ``paper`` / ``paper_std`` / ``paper_printed`` for one-value
  records (``paper_<column>``... for records with several values), ``paper_source`` (table and
  row), and ``comparable`` / ``comparability``;
* **notes**: where the values come from, the data file's notes on that table, and whether the
  run is comparable with the paper: the reasons it is not (fewer victims, fewer restarts, fewer
  iterations, random or reduced text models, another protection criterion ...) are derived from
  the config and the rows and compared with the file's ``scale`` (the paper's own settings, each
  with its source), never hard-coded.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from .. import model_ids
from ..paper_values import PaperValues, Row, canonical_defense, load
from ..studies.stochastic_defenses.spec import spec as sd_spec
from .render import TableDoc, display, fmt_ratio

#: paper B's model names (Tables 1-5, its figures): the study's tables, the joined paper columns
#: and the FedAvg curves name the models so
MODEL_NAMES = {"sd_cnn": "CNN", "sd_vit": "ViT", "resnet18_gn": "ResNet-18"}


def model_name(m: str) -> str:
    return MODEL_NAMES.get(m, display(m))


NO_VALUE = "–"
UNREADABLE = "unreadable"
HEADER = "paper"


# ---------------------------------------------------------------------- generic pieces

def cell_text(row: Row | None, column: str) -> str:
    """The paper's cell as printed; ``–`` without one, ``unreadable`` for a garbled row."""
    if row is None:
        return NO_VALUE
    if row.unreadable:
        return UNREADABLE
    c = row.cells.get(column)
    return c.printed if c is not None else NO_VALUE


def insert_paper_columns(doc: TableDoc, rows: Sequence[Row | None], columns: Mapping[int, str]) -> None:
    """Insert a ``paper`` column after each display column index of ``columns`` (index -> the
    paper's column name); ``rows[i]`` is the paper row of ``doc.body[i]``."""
    if len(rows) != len(doc.body):
        raise ValueError(f"{doc.name}: {len(rows)} paper rows for {len(doc.body)} table rows")
    for idx in sorted(columns, reverse=True):
        if idx >= len(doc.header):
            raise ValueError(f"{doc.name}: no display column {idx} (header: {doc.header})")
        doc.header.insert(idx + 1, HEADER)
        for line, row in zip(doc.body, rows):
            line.insert(idx + 1, cell_text(row, columns[idx]))


def tidy_values(rec: dict, row: Row | None, columns: Mapping[str, str], std: bool = True) -> None:
    """Add ``<prefix>``, ``<prefix>_std`` (if ``std``), ``<prefix>_printed`` for each prefix ->
    paper column, and ``paper_source``."""
    for prefix, col in columns.items():
        c = row.cells.get(col) if row is not None and not row.unreadable else None
        rec[prefix] = c.value if c is not None else None
        if std:
            rec[f"{prefix}_std"] = c.std if c is not None else None
        rec[f"{prefix}_printed"] = (c.printed if c is not None
                                    else UNREADABLE if row is not None and row.unreadable else "")
    rec["paper_source"] = row.source() if row is not None else ""


def tidy_columns_for(prefixes: Iterable[str], std: bool = True) -> list[str]:
    out = []
    for p in prefixes:
        out += [p, f"{p}_std", f"{p}_printed"] if std else [p, f"{p}_printed"]
    return out + ["paper_source", "comparable", "comparability"]


def set_comparability(rec: dict, reasons: Sequence[str]) -> None:
    rec["comparable"] = not reasons
    rec["comparability"] = "; ".join(reasons) if reasons else "at the paper's scale and settings (as checked)"


def source_notes(pv: PaperValues, table: str, rows: Iterable[Row | None]) -> list[str]:
    t = pv.table(table)
    if t is None:
        return [f"paper: {pv.short} has no {table.replace('table', 'Table ')} in {pv.path.name}; no paper values."]
    notes = [f"paper: {pv.short}, {table.replace('table', 'Table ')}, cells as printed (mean ± std where given); "
             f"{NO_VALUE}: the paper has no such row or column."]
    if any(r is not None and r.unreadable for r in rows):
        notes[0] = notes[0][:-1] + f"; {UNREADABLE}: the paper's text is garbled there (see below)."
    notes += [f"{pv.short}, {table.replace('table', 'Table ')}: {n}" for n in t.notes]
    return notes


def comparability_notes(pv: PaperValues, reasons: Mapping[str, Sequence[str]], what: str = "") -> list[str]:
    """One line per group of cases with the same reasons (cases keep the table's order)."""
    groups: dict[tuple, list[str]] = {}
    for label, rs in reasons.items():
        groups.setdefault(tuple(rs), []).append(label)
    prefix = f"{what}: " if what else ""
    out = []
    for rs, labels in groups.items():
        who = "every row" if len(groups) == 1 and len(labels) > 1 else ", ".join(labels)
        if rs:
            out.append(f"{prefix}NOT comparable with {pv.short} ({who}): " + "; ".join(rs) + ".")
        else:
            out.append(f"{prefix}comparable with {pv.short} ({who}): the run matches the paper's scale and the "
                       f"settings checked here.")
    return out


def _num(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


# ---------------------------------------------------------------------- selective encryption

SE = "selective_encryption"


def _se_kind(cfg: Mapping[str, Any], attack: str) -> str:
    return str(((cfg.get("attacks") or {}).get(attack) or {}).get("type", attack))


def _se_params(cfg: Mapping[str, Any], attack: str, model: str) -> dict:
    entry = (cfg.get("attacks") or {}).get(attack) or {}
    over = entry.get("model_params") or {}
    return {**dict(entry.get("params") or {}), **dict(over.get(model_ids.base(model)) or {}),
            **dict(over.get(model) or {})}


def _restarts(rows: Sequence[dict]) -> int:
    per: dict[tuple, set] = {}
    for r in rows:
        per.setdefault((r.get("slot"), r.get("metric"), r.get("ratio")), set()).add(r.get("restart"))
    return min((len(v) for v in per.values()), default=0)


def _crit(c: Mapping[str, Any]) -> str:
    return f"{display(c['metric'])} {'≥' if c['op'] == '>=' else '≤'} {float(c['threshold']):g}"


def se_reasons(pv: PaperValues, cfg: Mapping[str, Any], raw: Sequence[dict], attack: str, model: str,
               dataset: str | None, table: str) -> list[str]:
    """Why our (attack, model, dataset) values are not comparable with the paper's (empty: they are).
    ``dataset`` None: every dataset of the (attack, model) (Table 2)."""
    from .select import modality_of
    from .selective_encryption.common import evaluation

    ev = evaluation(cfg)
    kind = _se_kind(cfg, attack)
    modality = modality_of(model)
    mine = [r for r in raw if r.get("attack") == attack and r.get("model") == model
            and (dataset is None or r.get("dataset") == dataset)]
    out: list[str] = []
    need = (pv.scale_value("samples") or {}).get(kind)
    if need:
        per_ds: dict[str, set] = {}
        for r in mine:
            per_ds.setdefault(r.get("dataset"), set()).add(r.get("slot"))
        n = min((len(s) for s in per_ds.values()), default=0)
        if n < need:
            out.append(f"{n} sample(s) per case (paper: {need})")
    restarts = _restarts(mine)
    need_r = (pv.scale_value("restarts") or {}).get(kind)
    if need_r and restarts < need_r:
        out.append(f"{restarts} restart(s) per sample (paper: at least {need_r})")
    if restarts > 1 and ev["best_of_restarts"] != pv.scale_value("best_of_restarts"):
        out.append(f"restart kept by {ev['best_of_restarts'].replace('_', ' ')} (paper: the best recovery)")
    if modality == "text":
        opts = (cfg.get("models") or {}).get(model_ids.base(model)) or {}
        size = opts.get("size", "base")
        what = ([] if opts.get("pretrained") else
                ["weights of the small language model trained here (rule lm_pretrain)"]
                if opts.get("weights") == "pretrained_local" else ["random weights"])
        if size != "base" or opts.get("config_overrides"):
            what.append(f"reduced size ({size})")
        if what:
            params = (pv.scale_value("parameters") or {}).get(model)
            out.append(f"{display(model)} has {' and '.join(what)} (paper: {pv.scale_value('text_weights')}"
                       + (f", {_num(params)} parameters" if params else "") + ")")
    params = _se_params(cfg, attack, model)
    for key, ref in ((pv.scale_value("attack_steps") or {}).get(kind) or {}).items():
        v = params.get(key)
        if v is not None and float(v) < float(ref):
            out.append(f"{display(kind)} {key} {_num(v)} (reference code: {_num(ref)}; not stated in the paper)")
    if table in ("table2", "table4"):
        ours = ev["protection"][modality]
        theirs = pv.scale_value("protection")[modality]
        if (ours["metric"], ours["op"], float(ours["threshold"])) != (theirs["metric"], theirs["op"],
                                                                       float(theirs["threshold"])):
            out.append(f"criterion {_crit(ours)} (paper: {_crit(theirs)})")
    if table == "table5":
        ref = pv.scale_value("table5")
        from .select import ratio_key
        from .selective_encryption.common import DEFAULT_TABLE5_METRIC

        if ratio_key(ev["table5_ratio"]) != ratio_key(ref["ratio"]):
            out.append(f"ratio {fmt_ratio(ratio_key(ev['table5_ratio']))} (paper: {fmt_ratio(ref['ratio'])})")
        over = ev.get("table5_metric") or {}
        col = over.get(modality, DEFAULT_TABLE5_METRIC[modality]) if isinstance(over, Mapping) else str(over)
        if col != ref["metric"][modality]:
            out.append(f"{display(col)} (paper: {display(ref['metric'][modality])})")
    return out


def _se_grid_reason(pv: PaperValues, cfg: Mapping[str, Any], raw: Sequence[dict], attack: str, model: str,
                    dataset: str | None, max_ratio: float | None) -> list[str]:
    """Tables 2 and 4: the paper's minimal ratios (its Table 4, every dataset if ``dataset`` is None)
    that our ratio grid cannot produce."""
    from .selective_encryption.common import attack_grid

    t4 = pv.table("table4")
    kind = _se_kind(cfg, attack)
    rows = [r for r in (t4.rows if t4 is not None else ()) if not r.unreadable and r.fields.get("attack") == kind
            and r.fields.get("model") == model and (dataset is None or r.fields.get("dataset") == dataset)]
    grid = {round(r, 6) for r in attack_grid(cfg, attack, raw) if max_ratio is None or r <= max_ratio + 1e-9}
    lacking = sorted({round(float(c.value), 6) for r in rows for c in r.cells.values() if c.is_number} - grid)
    return [f"the ratio grid lacks the paper's {', '.join(fmt_ratio(r) for r in lacking)}"] if lacking else []


def _se_dataset_reason(pv: PaperValues, cfg: Mapping[str, Any], cells: Sequence[dict], key: Mapping[str, Any]
                       ) -> list[str]:
    """Table 2: the datasets our average runs over against those of the paper's Table 4 rows."""
    t4 = pv.table("table4")
    kind = _se_kind(cfg, key["attack"])
    theirs = [r.fields["dataset"] for r in (t4.rows if t4 is not None else ())
              if r.fields.get("attack") == kind and r.fields.get("model") == key["model"]]
    ours = list(dict.fromkeys(d for c in cells for d in str(c.get("datasets") or "").split(";") if d))
    if not theirs or sorted(ours) == sorted(theirs):
        return []
    return [f"averaged over {', '.join(display(d) for d in ours) or 'no dataset'} "
            f"(paper: {', '.join(display(d) for d in theirs)})"]


def _label(*parts: Any) -> str:
    return "/".join(display(p) for p in parts)


def _se_label(cfg: Mapping[str, Any], attack: str, *rest: Any) -> str:
    """IG/LeNet/CIFAR-100; an attack entry named other than its type: LAMP (lamp_selectors)/..."""
    from .selective_encryption.common import attack_label  # the tables' own row label (common imports no paper)

    return "/".join([attack_label(cfg, attack)] + [display(p) for p in rest])


def join_se_pivot(table: str, doc: TableDoc, cells: Sequence[dict], cfg: Mapping[str, Any], raw: Sequence[dict],
                  keys: Sequence[str], metrics: Sequence[str], value: str = "paper",
                  max_ratio: float | None = None) -> TableDoc:
    """Tables 2, 4, 5 (one row per ``keys``, one column per significance metric after the keys)."""
    pv = load(SE)
    t = pv.table(table)
    order = list(dict.fromkeys(tuple(c[k] for k in keys) for c in cells))
    if len(order) != len(doc.body) or len(doc.header) != len(keys) + len(metrics):
        raise ValueError(f"{table}: the table's layout changed ({len(doc.body)} rows, header {doc.header}); "
                         f"update gibench.tables.paper.join_se_pivot")

    def paper_row(key: tuple) -> Row | None:
        f = dict(zip(keys, key))
        f["attack"] = _se_kind(cfg, f["attack"])
        if "model" in f:          # every init of a model (lenet@dlg_uniform) is compared with the paper's model
            f["model"] = model_ids.base(f["model"])
        return t.get(**f) if t is not None else None

    rows = [paper_row(k) for k in order]
    in_paper = [m for m in metrics if t is not None and m in t.columns]
    cols = {len(keys) + i: m for i, m in enumerate(metrics) if m in in_paper}
    reasons: dict[tuple, list[str]] = {}
    for key, row in zip(order, rows):
        f = dict(zip(keys, key))
        rs = se_reasons(pv, cfg, raw, f["attack"], f["model"], f.get("dataset"), table)
        if row is None:   # nothing printed to compare with (e.g. DLG, run here for the init regime)
            rs = [f"{pv.short}'s {table.replace('table', 'Table ')} has no such row"] + rs
        if table in ("table2", "table4"):
            rs += _se_grid_reason(pv, cfg, raw, f["attack"], f["model"], f.get("dataset"), max_ratio)
        if table == "table2":
            rs += _se_dataset_reason(pv, cfg, [c for c in cells if tuple(c[k] for k in keys) == key], f)
        reasons[key] = rs
    by_key = dict(zip(order, rows))
    for rec in cells:
        key = tuple(rec[k] for k in keys)
        m = rec["significance_metric"]
        tidy_values(rec, by_key.get(key) if m in in_paper else None, {value: m}, std=table != "table2")
        set_comparability(rec, reasons[key])
    insert_paper_columns(doc, rows, cols)
    doc.tidy_columns += [c for c in tidy_columns_for([value], std=table != "table2") if c not in doc.tidy_columns]
    labels = {_se_label(cfg, *key): rs for key, rs in reasons.items()}
    doc.notes += source_notes(pv, table, rows) + comparability_notes(pv, labels)
    return doc


def join_se_table3(doc: TableDoc, cells: Sequence[dict], cfg: Mapping[str, Any], raw: Sequence[dict]) -> TableDoc:
    """Table 3: one row per (attack, model, dataset, selector); four measured columns."""
    pv = load(SE)
    t = pv.table("table3")
    if len(cells) != len(doc.body):
        raise ValueError("table3: the table's layout changed; update gibench.tables.paper.join_se_table3")
    rows = [t.get(attack=_se_kind(cfg, c["attack"]), model=c["model"], dataset=c["dataset"], defense=c["defense"])
            if t is not None else None for c in cells]
    names = ("enc_ratio", "embed_dist", "rouge1", "rouge2")
    headers = {"enc_ratio": "Enc. Ratio", "embed_dist": "EmbedDist", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2"}
    cols = {doc.header.index(headers[n]): n for n in names if headers[n] in doc.header}
    reasons: dict[str, list[str]] = {}
    for c, row in zip(cells, rows):
        tidy_values(c, row, {f"paper_{n}": n for n in names})
        label = _se_label(cfg, c["attack"], c["model"], c["dataset"])
        if label not in reasons:
            reasons[label] = se_reasons(pv, cfg, raw, c["attack"], c["model"], c["dataset"], "table3")
        set_comparability(c, reasons[label])
    insert_paper_columns(doc, rows, cols)
    doc.tidy_columns += [c for c in tidy_columns_for(f"paper_{n}" for n in names) if c not in doc.tidy_columns]
    doc.notes += source_notes(pv, "table3", rows) + comparability_notes(pv, reasons)
    return doc


def join_se_table6(doc: TableDoc, cells: Sequence[dict], metrics: Sequence[str]) -> TableDoc:
    """Table 6: rows per (model, dataset); Layer Num. and one time column per cost metric."""
    pv = load(SE)
    t = pv.table("table6")
    order = list(dict.fromkeys((c["model"], c["dataset"]) for c in cells))
    if len(order) != len(doc.body):
        raise ValueError("table6: the table's layout changed; update gibench.tables.paper.join_se_table6")
    rows = [t.get(model=m) if t is not None else None for m, _ in order]
    cols: dict[int, str] = {}
    if t is not None:
        if "Layer Num." in doc.header and "num_tensors" in t.columns:
            cols[doc.header.index("Layer Num.")] = "num_tensors"
        for m in metrics:
            h = f"{display(m)} (s)"
            if m in t.columns and h in doc.header:
                cols[doc.header.index(h)] = m
    device = pv.scale_value("timing_device")
    params = pv.scale_value("parameters") or {}
    reasons: dict[str, list[str]] = {}
    by_key = dict(zip(order, rows))
    for key, row in zip(order, rows):
        model, dataset = key
        mine = [c for c in cells if (c["model"], c["dataset"]) == key]
        rs = []
        ours = mine[0]["num_parameters"] if mine else None
        if model in params and ours is not None and ours != params[model]:
            rs.append(f"{display(model)} has {_num(ours) if isinstance(ours, int) else ours} parameters "
                      f"(paper: {_num(params[model])})")
        devices = sorted({d for c in mine for d in str(c.get("devices") or "").split(";") if d})
        rs.append(f"times measured on {', '.join(devices) or 'an unrecorded device'} (paper: {device})")
        reasons[_label(model, dataset)] = rs
    for c in cells:
        row = by_key.get((c["model"], c["dataset"]))
        m = c["cost_metric"]
        tidy_values(c, row if t is not None and m in t.columns else None, {"paper_seconds": m})
        lay = row.cells.get("num_tensors") if row is not None and not row.unreadable else None
        c["paper_num_tensors"] = int(lay.value) if lay is not None and lay.is_number else None
        set_comparability(c, reasons[_label(c["model"], c["dataset"])])
    insert_paper_columns(doc, rows, cols)
    doc.tidy_columns += [c for c in tidy_columns_for(["paper_seconds"]) + ["paper_num_tensors"]
                         if c not in doc.tidy_columns]
    doc.notes += source_notes(pv, "table6", rows) + comparability_notes(pv, reasons)
    return doc


# ---------------------------------------------------------------------- stochastic defenses

SD = "stochastic_defenses"


def sd_reasons(pv: PaperValues, full: Mapping[str, Any], dataset: str, model: str, attack: str,
               n: int) -> list[str]:
    """Why our (dataset, model, ..., attack) values are not comparable with the paper's."""
    st = full["studies"][SD]
    out: list[str] = []
    victims = n or int(st.get("victims") or 0)
    if victims < int(pv.scale_value("victims")):
        out.append(f"{victims} victim(s) per case (paper: {pv.scale_value('victims')})")
    bs = (st.get("gradient") or {}).get("batch_size")
    if bs is not None and int(bs) != int(pv.scale_value("batch_size")):
        out.append(f"batch size {bs} (paper: {pv.scale_value('batch_size')})")
    _, params, _, _ = sd_spec(full).attack_settings(attack, model)
    for key, ref in (pv.scale_value("attack") or {}).items():
        v = params.get(key)
        if v is None:
            continue
        if key == "iterations":
            if float(v) < float(ref):
                out.append(f"at most {_num(v)} attack iterations (paper: {_num(ref)})")
        elif float(v) != float(ref):
            # the paper's code may have run another value than its text (per model): both compare
            code = ((pv.scale_value("attack_code") or {}).get(key) or {}).get(model)
            if code is None or float(v) != float(code):
                also = f"; its code: {_num(code)}" if code is not None else ""
                out.append(f"attack {key} {_num(v)} (paper: {_num(ref)}{also})")
    return out


def sd_accuracy_reasons(pv: PaperValues, st: Mapping[str, Any]) -> list[str]:
    """Why the FedAvg accuracy column is not comparable with the paper's (from the ``fl`` block)."""
    fl = st.get("fl") or {}
    if not fl:
        return ["the study has no FedAvg runs (studies.stochastic_defenses.fl)"]
    ref = pv.scale_value("fl")
    out: list[str] = []
    if fl.get("rounds") is not None and int(fl["rounds"]) < int(ref["rounds"]):
        out.append(f"{fl['rounds']} FedAvg round(s) (paper: up to {ref['rounds']} with early stopping)")
    if fl.get("seeds") is not None and len(fl["seeds"]) < int(ref["seeds"]):
        out.append(f"{len(fl['seeds'])} seed(s) (paper: {ref['seeds']})")
    for key in ("clients", "local_epochs", "batch_size"):
        if fl.get(key) is not None and int(fl[key]) != int(ref[key]):
            out.append(f"{key.replace('_', ' ')} {fl[key]} (paper: {ref[key]})")
    if fl.get("samples_per_client") is not None and fl["samples_per_client"] != ref["samples_per_client"]:
        out.append(f"{fl['samples_per_client']} samples per client (paper: the whole training split)")
    max_test = (fl.get("data") or {}).get("max_test")
    if max_test is not None and max_test != ref["max_test"]:
        out.append(f"at most {max_test} test samples (paper: the whole test split)")
    return out


def join_sd(name: str, doc: TableDoc, full: Mapping[str, Any], keys: Sequence[tuple[str, str, str, str]],
            attack_label: Callable[[str], str]) -> TableDoc:
    """Tables 1-5 of paper B: ``keys[i]`` = (dataset, model, defense, attack) of ``doc.body[i]`` and
    ``doc.tidy[i]``; paper columns after SSIM, ASR and (ablation tables) Accuracy."""
    pv = load(SD)
    t = pv.table(name)
    if len(keys) != len(doc.body) or len(keys) != len(doc.tidy):
        raise ValueError(f"{name}: the table's layout changed; update gibench.tables.paper.join_sd")
    canon: dict[str, list[Row]] = {}
    if t is not None:
        for r in t.rows:
            canon.setdefault(canonical_defense(pv.defense_chain(r.fields["defense"]).spec()), []).append(r)
    st = full["studies"][SD]

    def paper_row(d: str, m: str, dfn: str, a: str) -> Row | None:
        mine = canonical_defense(sd_spec(full).chain(dfn).spec())
        return next((r for r in canon.get(mine, []) if r.fields["dataset"] == d and r.fields["model"] == m
                     and r.fields["attack"] == attack_label(a)), None)

    rows = [paper_row(*k) for k in keys]
    wanted = {"ssim": "SSIM", "asr": "ASR", "accuracy": "Accuracy"}
    cols: dict[int, str] = {}
    for col, head in wanted.items():
        idx = next((i for i, h in enumerate(doc.header) if h.startswith(head)), None)
        if idx is not None and t is not None and col in t.columns:
            cols[idx] = col
    with_acc = "accuracy" in cols.values()
    reasons: dict[str, list[str]] = {}
    for (d, m, dfn, a), row, rec in zip(keys, rows, doc.tidy):
        label = f"{display(d)}/{model_name(m)}/{attack_label(a)}"
        if label not in reasons:
            reasons[label] = sd_reasons(pv, full, d, m, a, int(rec.get("n") or 0))
        tidy_values(rec, row, {f"paper_{c}": c for c in ("ssim", "asr", "accuracy") if c in cols.values()})
        set_comparability(rec, reasons[label])
    insert_paper_columns(doc, rows, cols)
    prefixes = [f"paper_{c}" for c in ("ssim", "asr", "accuracy") if c in cols.values()]
    doc.tidy_columns += [c for c in tidy_columns_for(prefixes) if c not in doc.tidy_columns]
    doc.notes += source_notes(pv, name, rows) + comparability_notes(pv, reasons, "SSIM/ASR")
    if with_acc:
        acc = sd_accuracy_reasons(pv, st)
        for rec in doc.tidy:
            rec["accuracy_comparable"] = not acc
            rec["accuracy_comparability"] = "; ".join(acc) if acc else "at the paper's scale and settings (as checked)"
        doc.tidy_columns += [c for c in ("accuracy_comparable", "accuracy_comparability") if c not in doc.tidy_columns]
        if st.get("fl"):
            doc.notes += comparability_notes(pv, {"FedAvg runs": acc}, "Accuracy")
        else:
            doc.notes.append(f"Accuracy: nothing to compare with {pv.short}'s column: {acc[0]}.")
    return doc
