"""Verdicts and the claims report: each claim (per variant) evaluated on the tables and checked
for scale (:func:`evaluate`), the tables a config makes (:func:`tables_made`), the report written
as csv/md/html (:func:`write_report`) and its terminal summary (:func:`summary_lines`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence


from ..fl_plan import fl_targets
from ..studies import STUDIES as REG
from .load import Claim, ClaimsFile, _columns_named
from .predicates import (
    FAILS, HOLDS, NOT_CHECKABLE, CsvTable, Evaluator, NotCheckable, fmt_value, _lines, read_csv_table,
    select)
from .scale import check_scale, _contexts, ran_at, _scale_needed_text


# ====================================================================== verdicts

@dataclass
class Verdict:
    study: str
    claim: Claim
    variant: dict
    verdict: str
    reason_kind: str = ""
    reason: str = ""
    ours: str = ""
    at_scale: str = ""
    scale_needed: str = ""
    scale_run: str = ""
    ran_at: str = ""
    table: str = ""
    lines: str = ""

    @property
    def label(self) -> str:
        v = ",".join(f"{k}={x}" for k, x in self.variant.items())
        return f"{self.claim.id}[{v}]" if v else self.claim.id


def _variant_values(claim: Claim, table: CsvTable, cells: list[dict]) -> tuple[list[dict], list[str]]:
    """The variants to evaluate (column -> value) and notes on dropped dimensions."""
    combos: list[dict] = [{}]
    notes = []
    for col, spec in claim.variants.items():
        if col not in table.columns:
            if spec == "auto":
                notes.append(f"{table.name}.csv has no {col} column: one variant")
                continue
            raise NotCheckable("not run", f"{table.name}.csv has no {col} column (variants {spec})")
        values = (list(dict.fromkeys(str(c.get(col)) for c in cells)) if spec == "auto" else list(spec))
        if spec == "auto" and all(v in ("", "None") for v in values):   # the column is there but says nothing
            notes.append(f"{table.name}.csv has an empty {col} column: one variant")
            continue
        combos = [{**c, col: v} for c in combos for v in values]
    return combos, notes


def evaluate_claim(claim: Claim, study: str, config: Mapping[str, Any], tables_dir: Path,
                   made: set[str] | None, cache: dict[str, CsvTable]) -> list[Verdict]:
    ch = claim.check
    needed = _scale_needed_text(claim.scale)
    base = dict(study=study, claim=claim, scale_needed=needed)
    if ch["kind"] == "none":
        return [Verdict(**base, variant={}, verdict=NOT_CHECKABLE, reason_kind="not encoded", reason=ch["reason"])]
    name = ch["table"]
    path = tables_dir / f"{name}.csv"
    if made is not None and name not in made:
        return [Verdict(**base, variant={}, verdict=NOT_CHECKABLE, reason_kind="not run", table=name,
                        reason=f"this config does not make {name}")]
    if name not in cache:
        if not path.exists():
            return [Verdict(**base, variant={}, verdict=NOT_CHECKABLE, reason_kind="not run", table=name,
                            reason=f"{path} does not exist (run the pipeline first)")]
        cache[name] = read_csv_table(path, name)
    table = cache[name]
    try:
        missing = [c for _, c in _columns_named(ch, {}) if c not in table.columns]
        if missing:
            raise NotCheckable("not run", f"{name}.csv has no column(s) {', '.join(dict.fromkeys(missing))} "
                                          f"(a gibench without them made it, or the run lacks that variant)")
        cells = select(table, ch.get("select") or {})
        combos, notes = _variant_values(claim, table, cells)
    except NotCheckable as e:
        return [Verdict(**base, variant={}, verdict=NOT_CHECKABLE, reason_kind=e.kind, reason=e.reason, table=name)]
    out = []
    for combo in combos:
        v = Verdict(**base, variant=combo, verdict=NOT_CHECKABLE, table=name)
        try:
            mine = select(table, combo, cells) if combo else cells
            res = Evaluator(claim, table).run(mine)
        except NotCheckable as e:
            v.reason_kind, v.reason = e.kind, e.reason
            out.append(v)
            continue
        v.ours, v.lines = res.ours, _lines(res.cells)
        v.at_scale = HOLDS if res.ok else FAILS
        short, have = check_scale(claim.scale, config, study, _contexts(res.cells))
        v.scale_run = have
        v.ran_at = ran_at(config, study, _contexts(res.cells))
        if short:
            v.reason_kind, v.reason = "scale", "; ".join(short)
        else:
            v.verdict = v.at_scale
        if notes:
            v.reason = "; ".join([v.reason] + notes if v.reason else notes)
        out.append(v)
    return out


def tables_made(config: Mapping[str, Any], study: str) -> set[str]:
    """The tables (names) this config makes for ``study``: its targets under results/tables/<study>/."""
    if study not in (config.get("studies") or {}):
        return set()
    prefix = f"results/tables/{study}/"
    targets = list(REG.get(study).targets(dict(config))) + fl_targets(dict(config))
    return {t[len(prefix):-4] for t in targets if t.startswith(prefix) and t.endswith(".csv")}


def evaluate(cf: ClaimsFile, config: Mapping[str, Any], tables_dir: str | Path,
             made: set[str] | None = None) -> list[Verdict]:
    """Every claim of the file against the tables under ``tables_dir`` (``made``: the tables the
    config makes; None: whatever is on disk)."""
    cache: dict[str, CsvTable] = {}
    out: list[Verdict] = []
    for claim in cf.claims:
        out += evaluate_claim(claim, cf.study, config, Path(tables_dir), made, cache)
    return out


# ====================================================================== the report

def paper_text(p: Any) -> str:
    if isinstance(p, Mapping):
        return ", ".join(f"{k}: {paper_text(v)}" for k, v in p.items())
    if isinstance(p, list):
        return ", ".join(paper_text(v) for v in p)
    return fmt_value(float(p)) if isinstance(p, float) else str(p)


def counts(verdicts: Iterable[Verdict]) -> dict[str, int]:
    c = {HOLDS: 0, FAILS: 0, NOT_CHECKABLE: 0}
    for v in verdicts:
        c[v.verdict] += 1
    return c


def report_doc(cf: ClaimsFile, verdicts: list[Verdict], config: Mapping[str, Any], link_base: str = "",
               gpu_notes: Sequence[str] = ()):
    """A :class:`~gibench.tables.render.TableDoc`: one line per claim (per variant); ``gpu_notes``:
    the GPU slice's lines (:func:`gibench.gpu_slice.report_notes`), shown first."""
    from ..tables.render import TableDoc

    c = counts(verdicts)
    why: dict[str, int] = {}
    for v in verdicts:
        if v.verdict == NOT_CHECKABLE:
            why[v.reason_kind] = why.get(v.reason_kind, 0) + 1
    n_claims = len(cf.claims)
    title = (f"Claims of {cf.paper}: {n_claims} findings, {len(verdicts)} checks — {c[HOLDS]} hold, {c[FAILS]} fail, "
             f"{c[NOT_CHECKABLE]} not checkable here"
             + (" (" + ", ".join(f"{k}: {n}" for k, n in sorted(why.items())) + ")" if why else ""))
    header = ["Claim", "Where", "Finding", "Paper", "Ours", "Verdict", "Why / scale", "Ran at", "Cells"]
    body, tidy = [], []
    for v in verdicts:
        verdict = v.verdict if v.verdict != NOT_CHECKABLE else f"not checkable ({v.reason_kind})"
        why_text = v.reason
        if v.reason_kind == "scale":
            why_text = f"{v.reason}; at this scale the predicate {v.at_scale}"
        cells = ""
        if v.lines:
            cells = (f"[{v.table}.csv:{v.lines}]({link_base}{v.table}.csv#L{v.lines.split(',')[0].split('-')[0]})"
                     if link_base is not None else f"{v.table}.csv:{v.lines}")
        body.append([v.label, v.claim.where, v.claim.words, paper_text(v.claim.paper), v.ours or "–", verdict,
                     why_text or "", v.ran_at or "–", cells])
        tidy.append({"study": v.study, "claim": v.claim.id,
                     "variant": ";".join(f"{k}={x}" for k, x in v.variant.items()),
                     "where": v.claim.where, "words": v.claim.words, "paper": paper_text(v.claim.paper),
                     "ours": v.ours, "verdict": v.verdict, "reason_kind": v.reason_kind, "reason": v.reason,
                     "at_this_scale": v.at_scale, "scale_needed": v.scale_needed, "scale_run": v.scale_run,
                     "ran_at": v.ran_at, "table": v.table, "lines": v.lines, "note": v.claim.note})
    notes = list(gpu_notes) + [f"Claims file: {cf.path.name} ({n_claims} findings; a claim with variants is checked once per variant). "
             "Predicates read the tables' CSVs (results/tables/<study>/<table>.csv); 'Cells' names the CSV lines "
             "used (header = line 1); 'Ran at' names what those cells ran at (victims, iterations, restarts, "
             "grid, model size, weights).",
             "Verdicts: holds / fails at a scale the claim needs; not checkable here: not run (table, column or "
             "cells absent, or not computed), unavailable (e.g. missing weights), scale (the run is smaller than "
             "the claim needs; the value measured and what the predicate gives at this scale are shown), "
             "not encoded (a finding no table holds)."]
    notes += [f"Convention: {t}" for t in cf.conventions]
    notes += [f"{c.id}: {c.note}" for c in cf.claims if c.note]
    cols = ["study", "claim", "variant", "where", "words", "paper", "ours", "verdict", "reason_kind", "reason",
            "at_this_scale", "scale_needed", "scale_run", "ran_at", "table", "lines", "note"]
    return TableDoc(name=cf.study, title=title, header=header, body=body, tidy_columns=cols, tidy=tidy, notes=notes)


def write_report(cf: ClaimsFile, config: Mapping[str, Any], tables_dir: str | Path, out_dir: str | Path,
                 made: set[str] | None = None,
                 formats: tuple[str, ...] = ("csv", "md")) -> tuple[list[Path], list[Verdict]]:
    """Evaluate and write ``<out_dir>/<study>.<format>`` (atomic; csv, md, html); returns the
    paths and verdicts.  The GPU slice is read from ``<results>/gpu`` (``tables_dir`` =
    ``<results>/tables/<study>``)."""
    import os

    from ..gpu_slice import report_notes

    verdicts = evaluate(cf, config, tables_dir, made)
    link = os.path.relpath(Path(tables_dir), Path(out_dir)).replace(os.sep, "/") + "/"
    gpu_dir = Path(tables_dir).parent.parent / "gpu"
    doc = report_doc(cf, verdicts, config, link_base=link, gpu_notes=report_notes(gpu_dir, cf.study))
    return doc.write(out_dir, formats), verdicts


def summary_lines(csv_path: str | Path, show: int = 12) -> list[str]:
    """The terminal's view of one claims report (``<results>/claims/<study>.csv``): the counts of
    each verdict, then every claim that holds or fails with our value beside the paper's, and how
    the not-checkable ones read at this run's scale (``at_this_scale``).  ``make demo`` prints it
    after the tables (``gibench where --print-tables``)."""
    import csv
    from collections import Counter

    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    study = rows[0]["study"] if rows else Path(csv_path).stem
    n = Counter(r.get("verdict", "") for r in rows)
    head = (f"{study}: {len(rows)} checks: {n[HOLDS]} hold, {n[FAILS]} fail, {n[NOT_CHECKABLE]} not checkable "
            f"here")
    unsure = [r for r in rows if r.get("verdict") == NOT_CHECKABLE]
    if unsure:
        at = Counter(r.get("at_this_scale", "") or "not computed" for r in unsure)
        reasons = Counter(r.get("reason_kind", "") or "?" for r in unsure)
        head += (" (why: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + "; read at this run's "
                 "scale anyway: " + ", ".join(f"{k} {v}" for k, v in sorted(at.items())) + ")")
    out = [head]
    decided = [r for r in rows if r.get("verdict") in (HOLDS, FAILS)]
    for r in decided[:show]:
        variant = f" [{r['variant']}]" if r.get("variant") else ""
        out.append(f"  {r['verdict']:>5}  {r['claim']}{variant} ({r.get('where', '')}): ours {r.get('ours', '')}; "
                   f"paper {r.get('paper', '')}")
    if len(decided) > show:
        out.append(f"  … and {len(decided) - show} more in {csv_path}")
    return out
