"""The papers' own numbers, one data file per study (``config/paper_values/<study>.yaml``).

Each file lists the cells of the paper's tables that gibench reproduces, as printed (with the
± part where the paper gives one), with the table, row and column they come from, and the
paper's experimental scale (``scale``: victims, restarts, iterations ... each with its source),
which the tables use to say whether a run's values are comparable with the paper's.  The
format is ``config/schema/paper_values.schema.yaml``; :func:`load` checks a file against it
and then checks what the schema cannot say, raising :class:`PaperValuesError` with the file
and the entry::

    pv = load("stochastic_defenses")
    row = pv.table("table4").get(dataset="mnist", model="sd_cnn", defense="dp+cvb", attack="CDIA")
    row.cells["asr"].value, row.cells["asr"].printed, row.source("asr")
    # 0.0, '0', "Scheliga et al., Table 4, row 'MNIST ✗ ✓ ✗ C', column 'ASR [%] ↓'"

A printed cell is parsed into ``value`` (the mean, or the rating word for ★ cells) and ``std``:
``0.95 (± 0.06)``, ``0.95 (±0.06)``, ``80.70 ± 1.54``, ``59.20±2.71``, ``0.3``, ``100``; ``NA``
(the paper's "not reached"), ``-`` (not reported), ``×``/``★``/``★★``/``★★★`` (paper A's ratings).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DIRECTORY = REPO_ROOT / "config" / "paper_values"
SCHEMA = REPO_ROOT / "config" / "schema" / "paper_values.schema.yaml"

RATINGS = {"×": "poor", "★": "moderate", "★★": "good", "★★★": "excellent"}
_NUM = r"[-+]?\d+(?:\.\d+)?"
_MEAN_STD = re.compile(rf"^({_NUM})\s*(?:\(\s*±\s*({_NUM})\s*\)|±\s*({_NUM}))?$")


class PaperValuesError(ValueError):
    """A paper-values file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Cell:
    """One printed cell: ``kind`` is number | na | not_reported | rating."""

    printed: str
    kind: str
    value: float | str | None = None       # the mean; the rating word for kind "rating"
    std: float | None = None
    note: str = ""

    @property
    def is_number(self) -> bool:
        return self.kind == "number"


@dataclass(frozen=True)
class Row:
    table: str
    fields: Mapping[str, str]               # the key fields (dataset, model, ...)
    where: str                              # the row as the paper labels it
    cells: Mapping[str, Cell]
    unreadable: str = ""
    note: str = ""
    short: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    def source(self, column: str | None = None) -> str:
        """``Gu et al., Table 4, row 'IG LeNet CIFAR100', column 'Grad'``."""
        s = f"{self.short}, {self.table.replace('table', 'Table ')}, row '{self.where}'"
        if column is not None:
            s += f", column '{self.headers.get(column, column)}'"
        return s


@dataclass(frozen=True)
class Table:
    name: str
    caption: str
    key: tuple[str, ...]
    columns: Mapping[str, str]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()

    def get(self, **fields: Any) -> Row | None:
        """The row whose key fields equal ``fields`` (every key field must be given)."""
        missing = [k for k in self.key if k not in fields]
        if missing:
            raise KeyError(f"{self.name}: lookup needs the key field(s) {missing} (key: {list(self.key)})")
        want = tuple(str(fields[k]) for k in self.key)
        return next((r for r in self.rows if tuple(r.fields[k] for k in self.key) == want), None)

    def find(self, predicate) -> Row | None:
        return next((r for r in self.rows if predicate(r)), None)


@dataclass(frozen=True)
class PaperValues:
    path: Path
    paper: str
    short: str
    source_text: str
    tables: Mapping[str, Table]
    scale: Mapping[str, Any] = field(default_factory=dict)
    scale_sources: Mapping[str, str] = field(default_factory=dict)
    defense_defaults: Mapping[str, Any] = field(default_factory=dict)
    defenses: Mapping[str, list] = field(default_factory=dict)

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def scale_value(self, name: str) -> Any:
        if name not in self.scale:
            raise PaperValuesError(f"{self.path}: scale.{name} is missing (the tables' comparability notes need it)")
        return self.scale[name]

    def defense_chain(self, name: str):
        """The :class:`~gibench.defenses.DefenseChain` of a row's defense: a key of ``defenses``,
        ``none``, or defense names joined by '+' with ``defense_defaults``."""
        from .defenses import DefenseChain

        if name in self.defenses:
            specs: list = list(self.defenses[name])
        elif name == "none":
            specs = []
        else:
            specs = name.split("+")
        return DefenseChain(specs, dict(self.defense_defaults))


# ---------------------------------------------------------------------- parsing

def parse_cell(raw: Any, where: str = "cell") -> Cell:
    """A printed cell (string, or ``{printed, rating, note}``) -> :class:`Cell`."""
    rating = note = None
    if isinstance(raw, Mapping):
        printed, rating, note = str(raw["printed"]), raw.get("rating"), raw.get("note")
    else:
        printed = str(raw)
    s = printed.strip()
    if rating is not None:
        return Cell(printed=s, kind="rating", value=str(rating), note=note or "")
    if s == "NA":
        return Cell(printed=s, kind="na", note=note or "")
    if s == "-":
        return Cell(printed=s, kind="not_reported", note=note or "")
    if s in RATINGS:
        return Cell(printed=s, kind="rating", value=RATINGS[s], note=note or "")
    m = _MEAN_STD.match(s)
    if not m:
        raise PaperValuesError(f"{where}: {printed!r} is not a printed number ('0.95 (± 0.06)', '80.70 ± 1.54', "
                               f"'0.3'), NA, '-', or a rating ({', '.join(RATINGS)}); give "
                               f"{{printed: ..., rating: ...}} for other rating marks")
    std = m.group(2) or m.group(3)
    return Cell(printed=s, kind="number", value=float(m.group(1)), std=None if std is None else float(std),
                note=note or "")


def _schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))


def _where(path: Iterable[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def canonical_defense(spec: list[dict]) -> str:
    """A defense chain's spec as a string that compares equal across int/float spellings (20 / 20.0)."""
    def norm(v: Any) -> Any:
        return v if isinstance(v, bool) or not isinstance(v, (int, float)) else float(v)

    return json.dumps([{k: norm(v) for k, v in d.items()} for d in spec], sort_keys=True)


def parse(data: Any, path: str | Path = "<paper values>") -> PaperValues:
    """Validate ``data`` (a loaded YAML document) and build :class:`PaperValues`."""
    path = Path(path)
    if not isinstance(data, dict):
        raise PaperValuesError(f"{path}: expected a mapping with paper, short, source_text and tables")
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = _where(e.absolute_path)
        entry = _entry_label(data, list(e.absolute_path))
        raise PaperValuesError(f"{path}: {where}{entry}: {e.message}")
    defaults = dict(data.get("defense_defaults") or {})
    defenses = {k: list(v) for k, v in (data.get("defenses") or {}).items()}
    tables: dict[str, Table] = {}
    for tname, t in data["tables"].items():
        key = tuple(t["key"])
        columns = dict(t["columns"])
        rows: list[Row] = []
        seen: dict[tuple, int] = {}
        for i, r in enumerate(t["rows"]):
            where = f"{path}: tables.{tname}.rows[{i}] ({r['row']})"
            fields = {k: v for k, v in r.items() if k not in ("row", "cells", "unreadable", "note")}
            missing = [k for k in key if k not in fields]
            extra = [k for k in fields if k not in key]
            if missing or extra:
                raise PaperValuesError(f"{where}: the key fields are {list(key)}; "
                                       + (f"missing {missing}" if missing else f"unknown field(s) {extra}"))
            k = tuple(fields[f] for f in key)
            if k in seen:
                raise PaperValuesError(f"{where}: the same key {dict(zip(key, k))} as rows[{seen[k]}]")
            seen[k] = i
            cells = {}
            for col, raw in (r.get("cells") or {}).items():
                if col not in columns:
                    raise PaperValuesError(f"{where}: cell {col!r} is not a column of the table "
                                           f"(columns: {', '.join(columns)})")
                cells[col] = parse_cell(raw, f"{where}: cell {col!r}")
            if defenses or defaults:
                if "defense" in fields:
                    _check_defense(fields["defense"], defenses, defaults, where)
            rows.append(Row(table=tname, fields=fields, where=r["row"], cells=cells,
                            unreadable=r.get("unreadable", ""), note=r.get("note", ""), short=data["short"],
                            headers=columns))
        tables[tname] = Table(name=tname, caption=t["caption"], key=key, columns=columns, rows=tuple(rows),
                              notes=tuple(t.get("notes") or ()))
    scale = {k: v["value"] for k, v in (data.get("scale") or {}).items()}
    sources = {k: v["source"] for k, v in (data.get("scale") or {}).items()}
    return PaperValues(path=path, paper=data["paper"], short=data["short"], source_text=data["source_text"],
                       tables=tables, scale=scale, scale_sources=sources, defense_defaults=defaults,
                       defenses=defenses)


def _entry_label(data: Any, path: list) -> str:
    """' (row label)' when a schema error sits inside a table row."""
    if len(path) >= 4 and path[0] == "tables" and path[2] == "rows" and isinstance(path[3], int):
        try:
            return f" ({data['tables'][path[1]]['rows'][path[3]].get('row', '?')})"
        except (KeyError, IndexError, TypeError, AttributeError):
            return ""
    return ""


def _check_defense(name: str, defenses: Mapping[str, list], defaults: Mapping[str, Any], where: str) -> None:
    from .defenses import DefenseChain
    from .defenses.specs import DefenseSpecError

    specs = defenses[name] if name in defenses else ([] if name == "none" else name.split("+"))
    try:
        DefenseChain(specs, dict(defaults))
    except DefenseSpecError as e:
        raise PaperValuesError(f"{where}: defense {name!r} is neither a key of defenses, 'none', nor defense "
                               f"names joined by '+': {e}") from None


# ---------------------------------------------------------------------- loading

_CACHE: dict[tuple, PaperValues] = {}


def path_for(study: str) -> Path:
    return DIRECTORY / f"{study}.yaml"


def load(study: str | None = None, path: str | Path | None = None) -> PaperValues:
    """The paper values of ``study`` (``config/paper_values/<study>.yaml``) or of the file ``path``;
    parsed once per file version."""
    if path is None:
        if study is None:
            raise ValueError("give a study or a path")
        path = path_for(study)
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise PaperValuesError(f"{path}: no such paper-values file"
                               + (f" for study {study!r}" if study else "")) from None
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise PaperValuesError(f"{path}: not valid YAML: {e}") from None
        _CACHE[key] = parse(data, path)
    return _CACHE[key]


def digest(study: str) -> str | None:
    """A short content hash of the study's paper-values file (None without one): part of the
    table rules' params, so that a corrected paper value re-runs the tables that show it."""
    import hashlib

    p = path_for(study)
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.exists() else None


def studies() -> list[str]:
    """The studies with a paper-values file."""
    return sorted(p.stem for p in DIRECTORY.glob("*.yaml"))
