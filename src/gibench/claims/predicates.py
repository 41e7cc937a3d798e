"""The predicate language of :mod:`gibench.claims` on the tables' tidy CSVs: reading a table,
numbers and comparisons, selecting cells, and the :class:`Evaluator` of the kinds ``compare``,
``order``, ``extreme`` and ``only`` (with the verdict values and the cell statuses that mean "not
computed")."""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping


from .load import Claim


HOLDS, FAILS, NOT_CHECKABLE = "holds", "fails", "not checkable here"
#: cell status values that mean "no value was computed" (all studies' tables)
NOT_RUN_STATUS = {"missing", "not_run", "not run", "not computed", "no run"}
UNAVAILABLE_STATUS = {"unavailable"}
#: columns that name what a cell is about (scale contexts)
CONTEXT_COLUMNS = ("attack", "model", "dataset", "defense")

# ====================================================================== reading tables

@dataclass
class CsvTable:
    name: str
    path: Path
    columns: list[str]
    cells: list[dict]          # each with "_line": its line number in the CSV (header = 1)


class NotCheckable(Exception):
    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def read_csv_table(path: Path, name: str) -> CsvTable:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cells, last = [], 1
        for row in reader:
            row = dict(row)
            row["_line"] = last + 1            # where the record starts (a quoted field may span lines)
            last = reader.line_num
            cells.append(row)
        return CsvTable(name=name, path=path, columns=list(reader.fieldnames or []), cells=cells)


# ====================================================================== values and comparisons

def as_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        try:
            return float(s)
        except ValueError:
            return None
    return None


def _equal(cell: Any, want: Any, tol: float = 0.0) -> bool:
    if want is None:
        return cell in (None, "")
    if isinstance(want, bool):
        return str(cell).strip().lower() == ("true" if want else "false")
    a, b = as_number(cell), as_number(want)
    if a is not None and b is not None:
        if math.isinf(a) or math.isinf(b):
            return a == b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=max(tol, 1e-12))
    return str(cell).strip() == str(want).strip()


def compare(a: Any, op: str, b: Any, tol: float = 0.0) -> bool:
    """``a op b``; numbers compare as numbers, anything else as text (==, !=, in, not_in, regex, contains)."""
    if op == "==":
        return _equal(a, b, tol)
    if op == "!=":
        return not _equal(a, b, tol)
    if op == "in":
        return any(_equal(a, x) for x in b)
    if op == "not_in":
        return not any(_equal(a, x) for x in b)
    if op == "regex":
        return a is not None and re.fullmatch(str(b), str(a)) is not None
    if op == "contains":
        return a is not None and str(b) in str(a)
    x = as_number(a)
    if x is None:
        return False
    if op == "between":
        return as_number(b[0]) <= x <= as_number(b[1])
    y = as_number(b)
    if y is None:
        return False
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def matches(cell: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
    for col, spec in flt.items():
        v = cell.get(col)
        if isinstance(spec, list):
            if not any(_equal(v, x) for x in spec):
                return False
        elif isinstance(spec, dict):
            if not all(compare(v, op, w) for op, w in spec.items()):
                return False
        elif not _equal(v, spec):
            return False
    return True


def _spec_text(spec: Any) -> str:
    if isinstance(spec, list):
        return "in [" + ", ".join(map(str, spec)) + "]"
    if isinstance(spec, dict):
        return " and ".join(f"{op} {w}" for op, w in spec.items())
    return f"= {spec}"


def select(table: CsvTable, flt: Mapping[str, Any], cells: list[dict] | None = None) -> list[dict]:
    """Cells matching every condition; when none do, NotCheckable says which condition emptied
    the selection and which values the table has."""
    cur = table.cells if cells is None else cells
    for col, spec in flt.items():
        nxt = [c for c in cur if matches(c, {col: spec})]
        if not nxt:
            present = sorted({str(c.get(col)) for c in cur})
            shown = ", ".join(present[:12]) + (" ..." if len(present) > 12 else "")
            raise NotCheckable("not run", f"no cell of {table.name}.csv with {col} {_spec_text(spec)}"
                                          + (f" (present: {shown})" if cur else ""))
        cur = nxt
    return cur


def fmt_value(x: Any) -> str:
    if isinstance(x, float):
        if math.isinf(x) or math.isnan(x):
            return str(x)
        if x == int(x) and abs(x) < 1e15:
            return str(int(x))
        if abs(x) >= 1000:
            return f"{x:.6g}"
        if abs(x) < 1e-3:
            return f"{x:.3g}"
        return f"{x:.4g}"
    return str(x)


# ====================================================================== evaluation

@dataclass
class Outcome:
    ok: bool
    ours: str
    cells: list[dict]


class Evaluator:
    """Evaluates one claim's check on one table (one variant)."""

    def __init__(self, claim: Claim, table: CsvTable):
        self.claim, self.table, self.check = claim, table, claim.check
        self.status_col = self.check.get("status_column", "status")
        #: (line, column) -> the status of an empty cell counted as ``empty_as`` (shown instead of the number)
        self.substituted: dict[tuple[int, str], str] = {}
        self.show = self.check.get("show") or next(
            (c for c in (self.check.get("by"), "defense_label", "defense", "significance_metric", "cost_metric",
                         "attack") if c and c in table.columns), None)

    # -- values
    def value(self, cell: dict, column: str) -> Any:
        status = str(cell.get(self.status_col) or "")
        if status in UNAVAILABLE_STATUS:
            raise NotCheckable("unavailable", self._cell_reason(cell, status))
        if status in NOT_RUN_STATUS:
            raise NotCheckable("not run", self._cell_reason(cell, status))
        raw = cell.get(column)
        if raw in (None, ""):
            ea = self.check.get("empty_as")
            if ea is not None:
                self.substituted[(cell["_line"], column)] = status or "empty"
                return float(ea)
            raise NotCheckable("not run", f"{self.table.name}.csv line {cell['_line']}: {column} is empty"
                                          + (f" (status {status})" if status else ""))
        n = as_number(raw)
        return n if n is not None else str(raw)

    def _cell_reason(self, cell: dict, status: str) -> str:
        why = next((str(cell[k]) for k in ("reason", "note", "accuracy_status") if cell.get(k)), "")
        what = "/".join(str(cell[k]) for k in ("dataset", "model", self.show, "attack", "column")
                        if k and cell.get(k) not in (None, ""))
        return (f"{self.table.name}.csv line {cell['_line']}" + (f" ({what})" if what else "") + f": {status}"
                + (f" ({why})" if why and why != status else ""))

    def shown(self, v: Any, cells: list[dict], column: str) -> str:
        """A value as the report shows it: an empty cell counted as ``empty_as`` shows its status (NA)."""
        if len(cells) == 1 and (cells[0]["_line"], column) in self.substituted:
            return f"{self.substituted[(cells[0]['_line'], column)]} (as {fmt_value(v)})"
        return fmt_value(v)

    def name(self, cell: dict, among: list[dict] | None = None) -> str:
        """What tells ``cell`` apart from the other cells ``among``: the columns whose values differ
        there (dataset, model, attack, defense, metric ...), else the ``show`` column."""
        cols = [c for c in ("dataset", "model", "attack", self.show, "significance_metric", "cost_metric", "column",
                            "init") if c and c in self.table.columns]
        if among and len(among) > 1:
            differ = [c for c in dict.fromkeys(cols) if len({str(x.get(c)) for x in among}) > 1]
            if differ:
                return "/".join(str(cell.get(c)) for c in differ)
        return str(cell.get(self.show)) if self.show else f"line {cell['_line']}"

    def reduce(self, cells: list[dict], column: str, how: str) -> float:
        if how == "count":
            return float(len(cells))
        vals = [self.value(c, column) for c in cells]
        nums = [v for v in vals if isinstance(v, float)]
        if how == "one":
            if len(cells) != 1:
                raise NotCheckable("not run", f"{len(cells)} cells of {self.table.name}.csv match where the claim "
                                              f"expects one (lines {_lines(cells)}); the table has more variants "
                                              f"than the claim names")
            return vals[0]
        if len(nums) != len(vals):
            raise NotCheckable("not run", f"{column} is not numeric in {self.table.name}.csv lines {_lines(cells)}")
        if how == "mean":
            return sum(nums) / len(nums)
        if how == "min":
            return min(nums)
        if how == "max":
            return max(nums)
        if how == "range":
            return max(nums) - min(nums)
        raise ValueError(how)

    # -- kinds
    def run(self, cells: list[dict]) -> Outcome:
        mc = self.check.get("min_cells")
        if mc and len(cells) < mc:
            raise NotCheckable("not run", f"{len(cells)} of the {mc} cells the claim is about are in "
                                          f"{self.table.name}.csv (lines {_lines(cells)})")
        return getattr(self, "_" + self.check["kind"])(cells)

    def _compare(self, cells: list[dict]) -> Outcome:
        ch = self.check
        how, op, want, tol = ch.get("reduce", "one"), ch["op"], ch["value"], float(ch.get("tol", 0.0))
        col = ch["column"]
        if how in ("all", "any"):
            vals = [(c, self.value(c, col)) for c in cells]
            res = [compare(v, op, want, tol) for _, v in vals]
            ok = all(res) if how == "all" else any(res)
            shown = "; ".join(f"{self.name(c, cells)}: {self.shown(v, [c], col)}" + ("" if r else " ✗")
                              for (c, v), r in zip(vals, res))
            return Outcome(ok, f"{col} {shown}", cells)
        v = self.reduce(cells, col, how)
        label = col if how == "one" else f"{how} {col} over {len(cells)} cells"
        return Outcome(compare(v, op, want, tol), f"{label} = {self.shown(v, cells, col)}", cells)

    def _groups(self, cells: list[dict]) -> list[tuple[str, list[dict]]]:
        gb = self.check.get("group_by")
        if not gb:
            return [("", cells)]
        groups: dict[tuple, list[dict]] = {}
        for c in cells:
            groups.setdefault(tuple(str(c.get(k)) for k in gb), []).append(c)
        return [("/".join(k), v) for k, v in groups.items()]

    def _order(self, cells: list[dict]) -> Outcome:
        ch = self.check
        rel, f, how, col = ch["relation"], float(ch.get("factor", 1.0)), ch.get("reduce", "one"), ch["column"]
        texts, used, ok = [], [], True
        for gname, gcells in self._groups(cells):
            vals = []
            for i, it in enumerate(ch["items"]):
                label = it.get("label") or ", ".join(f"{v}" for v in it["select"].values())
                try:
                    mine = select(self.table, it["select"], gcells)
                except NotCheckable as e:
                    raise NotCheckable("not run", f"item {label!r}" + (f" in group {gname}" if gname else "")
                                                  + f": {e.reason}") from None
                vals.append((label, self.reduce(mine, col, how), mine))
                used += mine
            g_ok = all(_related(a, rel, b, f) for (_, a, _), (_, b, _) in zip(vals, vals[1:]))
            ok &= g_ok
            sym = f" {rel} " if f == 1 else f" {rel} {fmt_value(f)}× "
            chain = sym.join(f"{l} {self.shown(v, m, col)}" for l, v, m in vals)
            texts.append((f"{gname}: " if gname else "") + chain + ("" if g_ok else " ✗"))
        return Outcome(ok, f"{col}: " + "; ".join(texts), used)

    def _extreme(self, cells: list[dict]) -> Outcome:
        ch = self.check
        by, col, how, want_min = ch["by"], ch["column"], ch.get("reduce", "one"), ch["is"] == "min"
        expect = ch["expect"] if isinstance(ch["expect"], list) else [ch["expect"]]
        texts, ok = [], True
        for gname, gcells in self._groups(cells):
            cands: dict[str, list[dict]] = {}
            for c in gcells:
                cands.setdefault(str(c.get(by)), []).append(c)
            vals = {k: self.reduce(v, col, how) for k, v in cands.items()}
            bad = [k for k, v in vals.items() if not isinstance(v, float)]
            if bad:
                raise NotCheckable("not run", f"{col} is not numeric for {', '.join(bad)}")
            best = min(vals.values()) if want_min else max(vals.values())
            tops = [k for k, v in vals.items() if _same(v, best)]
            hit = [k for k in tops if any(_equal(k, e) for e in expect)]
            g_ok = bool(hit) and (not ch.get("strict") or len(hit) == len(tops))
            ok &= g_ok
            ordered = sorted(vals.items(), key=lambda kv: kv[1], reverse=not want_min)
            texts.append((f"{gname}: " if gname else "") + f"{ch['is']} {col} at {', '.join(tops)} ("
                         + ", ".join(f"{k} {self.shown(v, cands[k], col)}" for k, v in ordered) + ")"
                         + ("" if g_ok else " ✗"))
        return Outcome(ok, "; ".join(texts), cells)

    def _only(self, cells: list[dict]) -> Outcome:
        ch = self.check
        cond = ch["condition"]
        meet = [c for c in cells if compare(self.value(c, cond["column"]), cond["op"], cond["value"],
                                            float(cond.get("tol", 0.0)))]
        stray = [c for c in meet if not matches(c, ch["only"])]
        ok = bool(meet) and not stray
        text = (f"{cond['column']} {cond['op']} {fmt_value(cond['value'])} for: "
                + (", ".join(self.name(c, cells) for c in meet) or "none"))
        if stray:
            text += f" (not allowed: {', '.join(self.name(c, cells) for c in stray)})"
        if ch.get("exactly"):
            missed = [c for c in cells if matches(c, ch["only"]) and c not in meet]
            if missed:
                ok = False
                text += "; not for: " + ", ".join(f"{self.name(c, cells)} ({fmt_value(self.value(c, cond['column']))})"
                                                  for c in missed)
        return Outcome(ok, text, cells)


def _same(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _related(a: Any, rel: str, b: Any, f: float) -> bool:
    if not isinstance(a, float) or not isinstance(b, float):
        return False
    if rel in (">", ">="):
        return a > f * b if rel == ">" else a >= f * b
    return f * a < b if rel == "<" else f * a <= b


def _lines(cells: Iterable[dict]) -> str:
    ls = sorted({int(c["_line"]) for c in cells})
    out, i = [], 0
    while i < len(ls):
        j = i
        while j + 1 < len(ls) and ls[j + 1] == ls[j] + 1:
            j += 1
        out.append(str(ls[i]) if i == j else f"{ls[i]}-{ls[j]}")
        i = j + 1
    return ",".join(out)
