"""The papers' findings as executable checks.

A claims file (``config/claims/<study>.yaml``, schema ``config/schema/claims.schema.yaml``)
lists one paper's findings: each claim has an ``id``, ``where`` the paper states it, its
``words``, the ``paper``'s number(s), a ``check`` (a small declarative predicate over the
study's table CSVs) and the ``scale`` (victims, iterations, restarts, ratio grid, model size,
pretrained weights, FedAvg rounds ...) at which the predicate means something.

Predicates read the tables' tidy CSVs, ``results/tables/<study>/<table>.csv`` (one line per
table cell, numbers as numbers, a ``status`` column): they are derived deterministically from
the gathered rows and are what the paper's numbers align with.  Each verdict links the CSV
lines it used.  Kinds:

* ``compare``: a column of the selected cells, reduced (one, mean, min, max, range, count)
  or cell by cell (all, any), against a value (``==``, ``<=``, ``between``, ``in`` ...);
* ``order``: a chain ``a > b > c`` of items (each a selection reduced to one number),
  optionally with a factor (``a > 10 b``: "≫") and per group (``group_by``);
* ``extreme``: the expected candidate(s) of a ``by`` column attain the min/max (per group);
* ``only``: the cells meeting a condition are exactly (or only) those matching a filter
  ("only DP together with PRECODE or CVB brings the ASR to 0 %");
* ``none``: a finding no table holds (listed and counted, reported as not encoded).

Verdicts: ``holds``, ``fails``, or ``not checkable here`` with the reason: ``not run`` (table,
column or cells absent, a cell not computed), ``unavailable`` (e.g. LPIPS without its
backbone weights), ``scale`` (the run is below the claim's scale: the value measured and what
the predicate gives at this scale are still shown), ``not encoded``.  Nothing here runs
arbitrary code from the file.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from .schema import REPO_ROOT
from .registry import Registry

CLAIMS_DIR = REPO_ROOT / "config" / "claims"
SCHEMA_PATH = REPO_ROOT / "config" / "schema" / "claims.schema.yaml"
STUDIES = ("selective_encryption", "stochastic_defenses", "concealed_samples")

HOLDS, FAILS, NOT_CHECKABLE = "holds", "fails", "not checkable here"
#: cell status values that mean "no value was computed" (all studies' tables)
NOT_RUN_STATUS = {"missing", "not_run", "not run", "not computed", "no run"}
UNAVAILABLE_STATUS = {"unavailable"}
#: columns that name what a cell is about (scale contexts)
CONTEXT_COLUMNS = ("attack", "model", "dataset", "defense")


class ClaimsError(ValueError):
    """A claims file that cannot be used; the message names the file, the claim and the key."""


# ====================================================================== loading + validation

@dataclass(frozen=True)
class Claim:
    id: str
    where: str
    words: str
    paper: Any
    scale: Mapping[str, Any]
    check: Mapping[str, Any]
    variants: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""
    index: int = 0


@dataclass(frozen=True)
class ClaimsFile:
    study: str
    paper: str
    path: Path
    tables: Mapping[str, tuple[str, ...]]
    claims: tuple[Claim, ...]
    conventions: tuple[str, ...] = ()

    def tables_read(self) -> list[str]:
        """The tables the claims read, in first-use order."""
        return list(dict.fromkeys(c.check["table"] for c in self.claims if c.check.get("kind") != "none"))


def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _where(path: Sequence[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _schema_message(err: Any) -> str:
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in err.schema.get("properties", {})]
        return (f"unknown key(s) {', '.join(map(repr, extra))}"
                + (f"; allowed keys: {', '.join(allowed)}" if allowed else ""))
    if err.validator == "enum":
        return f"{err.instance!r} is not one of {', '.join(map(repr, err.validator_value))}"
    return err.message


def _claim_label(raw: Any, index: int) -> str:
    cid = raw.get("id") if isinstance(raw, dict) else None
    return f"claim {cid!r} (claims[{index}])" if cid else f"claims[{index}]"


def _fail(path: Path, msg: str) -> ClaimsError:
    return ClaimsError(f"claims file {path}: {msg}")


def validate_claims(data: Any, path: Path) -> list[str]:
    """Error messages (empty: valid); each names the claim and the key."""
    import jsonschema

    schema = _schema()
    cls = jsonschema.Draft202012Validator
    errors: list[str] = []
    if not isinstance(data, dict):
        return [f"claims file {path}: expected a mapping with study, paper, tables, claims"]
    for err in sorted(cls(schema).iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        p = list(err.absolute_path)
        if len(p) >= 2 and p[0] == "claims" and isinstance(p[1], int):
            raw = data["claims"][p[1]]
            at = _where(p[2:]) if p[2:] else "its top level"
            errors.append(f"claims file {path}: {_claim_label(raw, p[1])} at {at}: {_schema_message(err)}")
        else:
            errors.append(f"claims file {path}: at {_where(p)}: {_schema_message(err)}")
    if errors:
        return errors
    tables = {t: list(cols) for t, cols in data["tables"].items()}
    seen: dict[str, int] = {}
    for i, raw in enumerate(data["claims"]):
        label = _claim_label(raw, i)
        if raw["id"] in seen:
            errors.append(f"claims file {path}: {label} at id: {raw['id']!r} is also the id of "
                          f"claims[{seen[raw['id']]}]")
        seen.setdefault(raw["id"], i)
        check = raw["check"]
        kind = check["kind"]
        sub = dict(schema["$defs"][f"check_{kind}"])
        sub["$defs"] = schema["$defs"]
        n_before = len(errors)
        for err in sorted(cls(sub).iter_errors(check), key=lambda e: list(map(str, e.absolute_path))):
            at = "check" + ("." + _where(err.absolute_path) if err.absolute_path else "")
            errors.append(f"claims file {path}: {label} at {at}: {_schema_message(err)}")
        if kind == "none" or len(errors) > n_before:     # the check's shape is wrong: nothing more to say
            continue
        table = check["table"]
        if table not in tables:
            errors.append(f"claims file {path}: {label} at check.table: {table!r} is not declared under `tables` "
                          f"(declared: {', '.join(tables)})")
            continue
        cols = tables[table]
        for key, col in _columns_named(check, raw.get("variants") or {}):
            if col not in cols:
                errors.append(f"claims file {path}: {label} at {key}: {col!r} is not a column of {table} "
                              f"(declared: {', '.join(cols)})")
        if kind == "compare" and check.get("op") == "between" and not (
                isinstance(check["value"], list) and len(check["value"]) == 2):
            errors.append(f"claims file {path}: {label} at check.value: between needs [low, high]")
        if kind == "compare" and check.get("op") in ("in", "not_in") and not isinstance(check["value"], list):
            errors.append(f"claims file {path}: {label} at check.value: {check['op']} needs a list")
        for j, (k, cond) in enumerate(_filters(check)):
            for col, spec in cond.items():
                if isinstance(spec, dict) and "regex" in spec:
                    try:
                        re.compile(spec["regex"])
                    except re.error as e:
                        errors.append(f"claims file {path}: {label} at {k}.{col}.regex: {e}")
    return errors


def _filters(check: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    out = [("check.select", check.get("select") or {})]
    for i, it in enumerate(check.get("items") or []):
        out.append((f"check.items[{i}].select", it.get("select") or {}))
    if check.get("only"):
        out.append(("check.only", check["only"]))
    return out


def _columns_named(check: Mapping[str, Any], variants: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, column) of every column a check names."""
    out = []
    for key, f in _filters(check):
        out += [(f"{key}.{c}", c) for c in f]
    for k in ("column", "by", "status_column", "show"):
        if check.get(k):
            out.append((f"check.{k}", check[k]))
    for i, c in enumerate(check.get("group_by") or []):
        out.append((f"check.group_by[{i}]", c))
    if check.get("condition"):
        out.append(("check.condition.column", check["condition"]["column"]))
    out += [(f"variants.{c}", c) for c in variants]
    return out


def load_claims(path: str | Path) -> ClaimsFile:
    """Parse and validate a claims file; :class:`ClaimsError` names the claim and the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise _fail(path, f"cannot be read ({e})") from None
    except yaml.YAMLError as e:
        raise _fail(path, f"is not valid YAML ({e})") from None
    errors = validate_claims(data, path)
    if errors:
        raise ClaimsError("\n".join(errors[:8]) + (f"\n... and {len(errors) - 8} more" if len(errors) > 8 else ""))
    claims = tuple(Claim(id=c["id"], where=c["where"], words=c["words"], paper=c["paper"],
                         scale=dict(c["scale"]), check=dict(c["check"]), variants=dict(c.get("variants") or {}),
                         note=c.get("note", ""), index=i) for i, c in enumerate(data["claims"]))
    return ClaimsFile(study=data["study"], paper=data["paper"], path=path,
                      tables={t: tuple(c) for t, c in data["tables"].items()}, claims=claims,
                      conventions=tuple(data.get("conventions") or ()))


def claims_dir(config: Mapping[str, Any] | None = None, basedir: str | Path | None = None) -> Path:
    """``claims.dir`` of the config (relative to the working directory), else the repository's
    ``config/claims`` (``basedir``: the workflow's directory)."""
    d = ((config or {}).get("claims") or {}).get("dir")
    if d:
        return Path(d)
    return Path(basedir) / "config" / "claims" if basedir is not None else CLAIMS_DIR


def claims_file(study: str, config: Mapping[str, Any] | None = None, basedir: str | Path | None = None) -> Path:
    return claims_dir(config, basedir) / f"{study}.yaml"


def check_config_claims(config: Mapping[str, Any], basedir: str | Path | None = None) -> dict[str, ClaimsFile]:
    """Load and validate the claims file of every configured study that has one (DAG build);
    a file whose ``study`` differs from its name is an error."""
    out = {}
    for study in (config.get("studies") or {}):
        p = claims_file(study, config, basedir)
        if not p.exists():
            continue
        cf = load_claims(p)
        if cf.study != study:
            raise _fail(p, f"at study: {cf.study!r}, but the file is named for {study!r}")
        out[study] = cf
    return out


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
    from .pipeline.jobs_fl import fl_targets
    from .studies import STUDIES as REG

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
    from .tables.render import TableDoc

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

    from .gpu_slice import report_notes

    verdicts = evaluate(cf, config, tables_dir, made)
    link = os.path.relpath(Path(tables_dir), Path(out_dir)).replace(os.sep, "/") + "/"
    gpu_dir = Path(tables_dir).parent.parent / "gpu"
    doc = report_doc(cf, verdicts, config, link_base=link, gpu_notes=report_notes(gpu_dir, cf.study))
    return doc.write(out_dir, formats), verdicts


# ====================================================================== scale probes (one per study)

def _se_probe(config: Mapping[str, Any], ctx: Mapping[str, str]) -> dict:
    from .pipeline.jobs_attack import attack_settings

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
    from .studies.stochastic_defenses.spec import spec as sd_spec

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
    from .studies.concealed_samples import spec as J

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
        from .defenses.concealed import DCS2

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
