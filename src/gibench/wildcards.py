"""Wildcard values in artifact paths: formatting and parsing (a leaf module: it imports nothing
from gibench, so every layer -- config, pipeline, tables -- may use it without an import cycle).

A ratio is written with three decimals (``r0.300``) and a victim slot with three digits
(``s003``) so file names are stable; :func:`fmt` fills a path pattern, formatting numeric
``ratio``/``slot`` values that way.
"""
from __future__ import annotations


def fmt_ratio(r: float) -> str:
    return f"r{r:.3f}"


def parse_ratio(s: str) -> float:
    if not s.startswith("r"):
        raise ValueError(f"ratio wildcard {s!r} must look like r0.300")
    return round(float(s[1:]), 3)


def fmt_slot(i: int) -> str:
    return f"s{i:03d}"


def parse_slot(s: str) -> int:
    return int(s[1:])


def fmt(path: str, **wc) -> str:
    """``path`` with its ``{wildcards}`` filled; a numeric ``ratio`` or ``slot`` is formatted
    (:func:`fmt_ratio`, :func:`fmt_slot`), a string one is used as given."""
    if "ratio" in wc and not isinstance(wc["ratio"], str):
        wc["ratio"] = fmt_ratio(wc["ratio"])
    if "slot" in wc and not isinstance(wc["slot"], str):
        wc["slot"] = fmt_slot(wc["slot"])
    return path.format(**wc)
