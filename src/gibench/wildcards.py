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


# The significance-metric wildcard (``{significance}`` in the artifact paths: grad, prodsig,
# sens, ..., or ``any``) was called ``metric`` until issue 21 renamed it.  A job's seed hashes
# its wildcards by name (:func:`gibench.seeds.derive_seed`), so seeds keep hashing it under
# that old name: the rename changed no seed and so no artifact.  Records of artifacts made
# before the rename name it ``metric`` as well (:func:`significance_of` reads either).
SIGNIFICANCE = "significance"
_SEED_NAMES = {SIGNIFICANCE: "metric"}


def seed_wildcards(wc) -> dict:
    """A job's wildcards as its seed hashes them (``significance`` spelled ``metric``)."""
    return {_SEED_NAMES.get(k, k): v for k, v in dict(wc).items()}


def significance_of(wc) -> str | None:
    """The significance metric of a job's wildcards or of an artifact record's ``wildcards``
    (written ``metric`` by jobs that ran before the rename); None if it has none."""
    wc = dict(wc)
    return wc.get(SIGNIFICANCE, wc.get("metric"))
