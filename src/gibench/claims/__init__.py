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

The package, by seam: :mod:`~gibench.claims.load` (the claims file: schema, validation, where it
lives), :mod:`~gibench.claims.predicates` (reading the CSVs, comparisons, the predicate kinds),
:mod:`~gibench.claims.scale` (the scale a claim needs, each study's scale probe) and
:mod:`~gibench.claims.report` (verdicts, the report and its summary).  This ``__init__`` is its
public face: import from ``gibench.claims``, not from the submodules.
"""
from __future__ import annotations

from .load import (
    CLAIMS_DIR, SCHEMA_PATH, STUDIES, Claim, ClaimsError, ClaimsFile, check_config_claims, claims_dir, claims_file,
    load_claims, validate_claims)
from .predicates import (
    CONTEXT_COLUMNS, FAILS, HOLDS, NOT_CHECKABLE, NOT_RUN_STATUS, UNAVAILABLE_STATUS, CsvTable, Evaluator,
    NotCheckable, Outcome, as_number, compare, fmt_value, matches, read_csv_table, select)
from .report import (
    Verdict, counts, evaluate, evaluate_claim, paper_text, report_doc, summary_lines, tables_made, write_report)
from .scale import HUB_TRAIN_SIZE, SCALE_PROBES, SCALE_TEXT, check_scale, ran_at, scale_for

__all__ = [
    # the claims file
    "CLAIMS_DIR", "SCHEMA_PATH", "STUDIES", "Claim", "ClaimsError", "ClaimsFile", "check_config_claims",
    "claims_dir", "claims_file", "load_claims", "validate_claims",
    # predicates
    "CONTEXT_COLUMNS", "FAILS", "HOLDS", "NOT_CHECKABLE", "NOT_RUN_STATUS", "UNAVAILABLE_STATUS", "CsvTable",
    "Evaluator", "NotCheckable", "Outcome", "as_number", "compare", "fmt_value", "matches", "read_csv_table",
    "select",
    # scale
    "HUB_TRAIN_SIZE", "SCALE_PROBES", "SCALE_TEXT", "check_scale", "ran_at", "scale_for",
    # verdicts and the report
    "Verdict", "counts", "evaluate", "evaluate_claim", "paper_text", "report_doc", "summary_lines", "tables_made",
    "write_report",
]
