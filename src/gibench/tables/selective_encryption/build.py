"""The builders of the selective-encryption tables (one per output: read the rows file, write the
table), their registration in :data:`gibench.tables.registry.TABLES`, and the terminal summary
of the written tables."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


from ..registry import TABLES, register_table
from ..select import as_records

from .common import STUDY, is_selector, load_metric_rows
from .cost import table6
from .protection import table2, table4, table5
from .text import table3


# ------------------------------------------------------------------ builders (one per output)

def _metric_rows(metrics_path: Any) -> list[dict]:
    if isinstance(metrics_path, (str, Path)):
        return load_metric_rows(metrics_path)
    return as_records(metrics_path)


def build_table2(*, metrics_path: Any, config: Mapping[str, Any], out_dir: str | Path,
                 formats: Sequence[str] = ("csv", "md"), **_: Any) -> list[Path]:
    return table2(_metric_rows(metrics_path), config).write(out_dir, formats)


def build_table4(*, metrics_path: Any, config: Mapping[str, Any], out_dir: str | Path,
                 formats: Sequence[str] = ("csv", "md"), **_: Any) -> list[Path]:
    return table4(_metric_rows(metrics_path), config).write(out_dir, formats)


def build_table5(*, metrics_path: Any, config: Mapping[str, Any], out_dir: str | Path,
                 formats: Sequence[str] = ("csv", "md"), **_: Any) -> list[Path]:
    return table5(_metric_rows(metrics_path), config).write(out_dir, formats)


def build_table3(*, metrics_path: Any, config: Mapping[str, Any], out_dir: str | Path,
                 formats: Sequence[str] = ("csv", "md"), **_: Any) -> list[Path]:
    """Table 3 exists only for studies that ran layer selectors (the pipeline asks for it then)."""
    rows = _metric_rows(metrics_path)
    if not any(is_selector(r.get("metric")) for r in rows):
        return []
    return table3(rows, config).write(out_dir, formats)


def build_table6(*, cost_path: Any, config: Mapping[str, Any], out_dir: str | Path,
                 formats: Sequence[str] = ("csv", "md"), **_: Any) -> list[Path]:
    return table6(_metric_rows(cost_path), config).write(out_dir, formats)


# the study's tables (gibench.tables.registry): the pipeline's targets come from these entries,
# in this order (the order they are built and printed)
register_table(STUDY, "table2", build_table2, inputs=("metrics",), when="attacks", caption="Table 2")
register_table(STUDY, "table3", build_table3, inputs=("metrics",), when="selectors", caption="Table 3")
register_table(STUDY, "table4", build_table4, inputs=("metrics",), when="attacks", caption="Table 4")
register_table(STUDY, "table5", build_table5, inputs=("metrics",), when="attacks", caption="Table 5")
register_table(STUDY, "table6", build_table6, inputs=("cost",), when="always", caption="Table 6")
TABLE_ORDER = tuple(e.name for e in TABLES.of_study(STUDY))


def print_summary(tables_dir: str | Path, out: Callable[[str], Any] = print) -> list[Path]:
    """Print the Markdown tables found in ``tables_dir`` (Tables 2, 4, 5, 6 first)."""
    tables_dir = Path(tables_dir)
    found = sorted(tables_dir.glob("*.md"))
    ordered = [tables_dir / f"{n}.md" for n in TABLE_ORDER if (tables_dir / f"{n}.md") in found]
    ordered += [p for p in found if p not in ordered]
    if not ordered:
        out(f"(no tables in {tables_dir})")
    for p in ordered:
        out(p.read_text(encoding="utf-8"))
    return ordered
