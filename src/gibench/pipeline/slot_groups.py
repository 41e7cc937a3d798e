"""Decade jobs (issue 23): one job runs the ten victim slots of a *decade* with the unchanged
per-slot job function, so a paper-scale study has ~10x fewer jobs: one process start, import of
torch and DAG/scheduler entry per ten victims instead of per victim.  Each slot's job function
still builds its own model and reads its own inputs (that is what keeps the bytes X's).

A slot is ``s000``..``s999`` (:mod:`gibench.wildcards`); a decade is the ten slots sharing the
first two digits (``s01`` = ``s010``..``s019``).  A per-slot rule ``X`` gets a twin ``X_decade``
(rules/*.smk) whose ``{decade}`` wildcard is constrained to the decades whose ten slots all exist
in the config (:func:`decade_pattern`; a last partial decade, e.g. ``s120``..``s127`` of 128
victims, is made by a second twin, see *Partial decades* below); X gets the exact complement of the twin's constraints
(:func:`per_slot_constraint`), so each file has one producer rule and the DAG build makes no job it
throws away; ``ruleorder: X_decade > X`` stays as a safety net (consulted only if both ever
matched one file; tests/pipeline/test_slot_groups_complement.py checks they never do).  The twin's inputs,
outputs and params are X's, slot by slot, named ``<name>__<digit>`` (an input that is the same
file for every slot, e.g. the weights, once under X's own name)
(:func:`slot_inputs`, :func:`slot_outputs`, :func:`slot_params`); its own log files are X's
with ``{decade}x`` where X has ``{slot}``, and each slot's job writes X's log files
(:func:`slot_logs`: not declared to Snakemake, like any file a job writes beside its log).  X's params
of every slot are the twin's params, so a change re-runs exactly the decades whose slots it
touches (Snakemake compares the set of a job's param values with the one recorded for each
output: slot-independent params give X's set, so switching layouts alone changes no params;
tests/pipeline/test_slot_groups_studies.py).  Switching layouts does re-run the jobs it moves,
though: Snakemake records each output's job's input list (a decade job's: its ten slots'), so
after a run with decade jobs ``group_slots: false`` re-makes every grouped slot ("Set of input
files has changed since last execution"; checked by hand on a ten-victim concealed-samples run:
all 10 cs_gradient and 20 cs_attack jobs; and back, on a ten-victim selective-encryption run
made slot by slot: both decade jobs) -- the bytes made are the same, only the time is spent.  Pick the layout before a paper-scale run.

At run time :func:`gibench.pipeline.runner.run_job` sees the ``decade`` wildcard and calls
:func:`run_decade`: the job function runs once per slot with :func:`slot_view` -- a ``snakemake``
object exactly as rule X's job for that slot would have it (rule name, wildcards with ``slot``,
that slot's inputs, outputs, params and log files) -- so seeds (derived from the per-slot
wildcards) and the provenance records embedded in the artifacts, hence the artifact bytes, are
those of X's job (tests/pipeline/test_slot_groups.py compares them).  Each slot writes X's run record and
text log; the first failure stops the job (Snakemake then removes the decade's outputs; writes
are atomic, so no file is half-written).

*Partial decades*: the first n slots (2 <= n < 10) of a decade -- the last one of a study's slots
(``s120``..``s127`` of 128 victims) or of an attack run on fewer slots (LAMP: ``s000``..``s004`` of
ten) -- run as one job of a second twin ``X_decade_part`` (:data:`PART_SUFFIX`), the same mechanism
with outputs, inputs and params of digits ``0``..``n-1`` only (``slots=n`` of :func:`slot_outputs`,
:func:`slot_inputs`, :func:`slot_params`); one such twin per rule X, its constraints and n given by
a :class:`Part` (:func:`last_part`), and X's constraint excludes its files too (``part=`` of
:func:`per_slot_constraint`).  Only studies with at least one full decade group partial decades
(:func:`last_part`'s ``least``): the demo and config/reproduce.yaml, sized for a few local cores,
keep one job per slot.  At run time a job's slots are the digits of its outputs (:func:`job_digits`),
so :func:`run_decade` and :func:`slot_view` serve both twins; the part twin's log files use
``{decade}x`` too: a part job never has the wildcards of a full twin's job (both would make that
decade's digit-0 files: tests/pipeline/test_slot_groups_complement.py checks that each file has one
producer rule).

Import-light: the DAG build imports this module (no torch).
"""
from __future__ import annotations

import os
import re
from types import SimpleNamespace
from typing import Any, Callable, Mapping, NamedTuple

from .replay import Files, Params, Wildcards

#: the wildcard of a decade job (``s01``: slots s010..s019)
DECADE = "decade"
#: the suffix of a decade rule's name: ``X_decade`` runs rule X's job function slot by slot
SUFFIX = "_decade"
#: the suffix of the twin for a partial decade (its first n slots): ``X_decade_part``
PART_SUFFIX = "_decade_part"
#: the fewest slots a partial-decade job runs (one slot is X's own job)
MIN_PART = 2
#: a constraint that admits no decade (no study block, grouping off, fewer than ten slots)
NO_DECADE = "(?!)x"
DIGITS = tuple(str(d) for d in range(10))
#: ``GIBENCH_PER_SLOT_RULES=all``: per-slot rules match the decade twins' files too (:func:`per_slot_constraint`)
ALL_SLOTS_ENV = "GIBENCH_PER_SLOT_RULES"
_SEP = "__"
_SUFFIXED = re.compile(r"__[0-9]$")
_WILDCARD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:,[^{}]*)?\}")


def slots_of(decade: str, digits: Any = DIGITS) -> list[str]:
    """The slots of a decade (``s01`` -> ``s010``..``s019``; ``digits``: only those)."""
    return [decade + d for d in digits]


def _digits(slots: int) -> tuple[str, ...]:
    """The slot digits of a twin that runs the first ``slots`` slots of a decade."""
    if not 1 <= int(slots) <= 10:
        raise ValueError(f"slots={slots!r}: a decade job runs 1 to 10 slots")
    return DIGITS[: int(slots)]


def full_decades(n_slots: int) -> list[str]:
    """The decades whose ten slots all lie in ``s000``..``s{n_slots-1}``."""
    return [f"s{i:02d}" for i in range(int(n_slots) // 10)]


def decade_pattern(n_slots: int | None, enabled: bool = True) -> str:
    """The ``decade`` wildcard constraint: the full decades of ``n_slots`` slots (the smallest
    slot count of any case the rules serve), or one that matches nothing."""
    decades = full_decades(n_slots) if enabled and n_slots else []
    return "|".join(decades) if decades else NO_DECADE


class Part(NamedTuple):
    """The twin ``X_decade_part`` of a per-slot rule X: its wildcard constraints (``decade`` and
    any others, like a full twin's) and how many slots it runs, the first ``slots`` of its decade."""
    constraints: dict
    slots: int

    @classmethod
    def none(cls, **constraints: str) -> "Part":
        """A part twin that matches nothing (its rule is still defined: one output per name)."""
        return cls({**constraints, DECADE: NO_DECADE}, 1)


def last_part(n_slots: int | None, enabled: bool = True, least: int | None = None) -> tuple[str, int]:
    """``(decade, n)``: the last decade of ``n_slots`` slots when only its first ``n`` exist and
    ``n >= MIN_PART`` (128 -> ``("s12", 8)``; 5 -> ``("s00", 5)``), else ``(NO_DECADE, 0)``.
    ``least``: the study's own slot count (default ``n_slots``); below ten -- no full decade: the
    demo, config/reproduce.yaml, sized for a few local cores -- nothing is grouped."""
    least = n_slots if least is None else least
    if not (enabled and n_slots and least and int(least) >= 10):
        return NO_DECADE, 0
    q, n = divmod(int(n_slots), 10)
    return (f"s{q:02d}", n) if n >= MIN_PART else (NO_DECADE, 0)


def per_slot_constraint(outputs: Any, twin: Mapping[str, str], base: Mapping[str, str],
                        part: Part | None = None) -> dict[str, str]:
    """The wildcard constraint that makes per-slot rule X match exactly those files of its
    ``outputs`` (X's output patterns: one, a list, or a dict of them) that its twin ``X_decade``
    (its constraints ``twin``: ``decade`` and any others, e.g. ``study``, ``attack``) does not
    make.  So Snakemake builds no candidate job of X for a file the twin makes (``ruleorder`` would
    throw it away, after building it: 4,870 of the 7,735 jobs a selective-encryption dry run
    built), and X still makes LAMP's slots and those of partial decades.

    The twin's files are a product set (each of its wildcards in its own constraint); the
    complement is not one, so it is said by one negative lookahead on the first wildcard of the
    patterns: the pattern from there to the last of the twin's wildcards, ``{slot}`` as the twin
    has it (``(?:<decade>)[0-9]``), the twin's wildcards as it constrains them, every other
    wildcard as ``[^/]+`` (X's own constraint already holds there; no wildcard value holds a ``/``),
    then the text after it that all ``outputs`` share (its end).  Returns ``{wildcard: constraint}``
    for ``wildcard_constraints: **...``; ``base`` is the workflow's constraints
    (``workflow.wildcard_constraints``), whose constraint of that wildcard follows the lookahead.
    A twin that matches nothing leaves that constraint as it is.  Checked against Snakemake's own
    matching of the files the DAG needs: tests/pipeline/test_slot_groups_complement.py.

    With the environment variable ``GIBENCH_PER_SLOT_RULES=all`` X matches every slot again (the
    decade's too; ``ruleorder`` then picks the twin where both match): with ``--allowed-rules X``
    that re-makes a decade's files slot by slot (the byte-identity tests do; Snakemake tells the
    Snakefile nothing of ``--allowed-rules`` when it reads it, and a config key would change the
    config digest the artifacts record).

    ``part``: X's partial-decade twin ``X_decade_part`` too: its files (slot digits
    ``0``..``slots-1`` of its decades) are excluded by a second lookahead, made the same way."""
    patterns = list(outputs.values()) if isinstance(outputs, Mapping) else (
        [outputs] if isinstance(outputs, str) else list(outputs))
    patterns = [q for p in patterns for q in ([p] if isinstance(p, str) else p)]
    looks = [_lookahead(patterns, twin, 10)]
    if part is not None:
        looks.append(_lookahead(patterns, part.constraints, part.slots))
    firsts = sorted({first for first, _ in looks})
    if len(firsts) != 1:
        raise ValueError(f"outputs {patterns}: the twins' lookaheads start at different wildcards {firsts}")
    first = firsts[0]
    own = base.get(first)
    if not own:
        raise ValueError(f"no constraint of wildcard {first!r} in the workflow's ({sorted(base)})")
    if os.environ.get(ALL_SLOTS_ENV) == "all":
        return {first: own}
    return {first: "".join(look for _, look in looks) + own}


def _lookahead(patterns: list[str], twin: Mapping[str, str], slots: int) -> tuple[str, str]:
    """(first wildcard of the patterns, the negative lookahead that excludes the files of one twin
    running the first ``slots`` slots of its decades; ``""`` for a twin that matches nothing):
    the work of :func:`per_slot_constraint`."""
    if DECADE not in twin:
        raise ValueError(f"twin constraints {sorted(twin)} name no {DECADE!r}")
    digit = f"[0-{_digits(slots)[-1]}]"
    known = {("slot" if k == DECADE else k): (f"(?:{v}){digit}" if k == DECADE else v) for k, v in twin.items()}
    heads, tails = set(), []
    for pattern in patterns:
        matches = list(_WILDCARD.finditer(pattern))
        names = [m.group(1) for m in matches]
        missing = sorted(set(known) - set(names))
        if missing:
            raise ValueError(f"output {pattern!r} has no wildcard {missing} the twin constrains"
                             + (" (no {slot}: not a per-slot rule's output)" if "slot" in missing else ""))
        last = max(i for i, n in enumerate(names) if n in known)
        parts, pos = [], matches[0].start()
        for m in matches[: last + 1]:
            parts.append(re.escape(pattern[pos:m.start()]))
            parts.append(f"(?:{known[m.group(1)]})" if m.group(1) in known else "[^/]+")
            pos = m.end()
        end = matches[last + 1].start() if last + 1 < len(matches) else len(pattern)
        heads.add((names[0], "".join(parts)))
        tails.append(pattern[pos:end] if end > pos else None)
    if len(heads) != 1:
        raise ValueError(f"outputs {patterns} differ before the twin's last wildcard: no one constraint says them")
    (first, head), = heads
    if any(_matches_nothing(v) for v in known.values()):
        return first, ""
    if None in tails:   # the last of the twin's wildcards ends a pattern
        tail = "$" if len(set(tails)) == 1 else None
    else:
        tail = re.escape(os.path.commonprefix(tails)) or None
    if tail is None:
        raise ValueError(f"outputs {patterns} share no text after the twin's last wildcard: its end is unsaid")
    return first, f"(?!{head}{tail})"


def _matches_nothing(constraint: str) -> bool:
    return constraint in (NO_DECADE, "(?!)") or constraint.startswith(f"(?:{NO_DECADE})[0-")


def slot_wildcards(wc: Any, slot: str) -> Wildcards:
    """A decade job's wildcards as rule X's job of ``slot`` has them: ``decade`` replaced in place
    by ``slot`` (attribute and mapping access, like Snakemake's)."""
    return Wildcards({("slot" if k == DECADE else k): (slot if k == DECADE else v) for k, v in dict(wc).items()})


def _slot_of(wc: Any, d: str) -> Wildcards:
    return slot_wildcards(wc, getattr(wc, DECADE) + d)


def fill(pattern: str, wc: Any) -> str:
    """``pattern`` with its ``{wildcards}`` (constraints allowed: ``{x,regex}``) taken from ``wc``."""
    return _WILDCARD.sub(lambda m: str(wc[m.group(1)]), pattern)


def slot_inputs(*functions: Callable[[Any], dict], slots: int = 10,
                **named: str | Callable[[Any], Any]) -> Callable[[Any], dict]:
    """The input function of a decade rule (use with ``unpack``): rule X's inputs of each slot --
    the dicts of X's ``unpack(...)`` functions, then X's named inputs (a pattern or a function of
    the wildcards) -- named ``<name>__<digit>``; ``slots``: the first that many slots only (a
    partial-decade twin).

    An input that is the same for every slot (the model weights, a language-model prior) is
    declared once, under X's own name, where the first slot has it: Snakemake's DAG build costs
    per declared file, and a ten-slot job listed the weights ten times.  The set of input files,
    which Snakemake compares to decide re-runs, is the same either way.  :func:`slot_view` gives
    each slot all of X's inputs (:func:`_pick_inputs`).  When the slots' inputs differ in their
    names or order, nothing is shared."""
    digits = _digits(slots)

    def inputs(wc: Any) -> dict:
        per: list[tuple[str, dict]] = []
        for d in digits:
            swc = _slot_of(wc, d)
            one: dict = {}
            for fn in functions:
                one.update(fn(swc))
            for name, v in named.items():
                one[name] = v(swc) if callable(v) else fill(v, swc)
            per.append((d, one))
        first = per[0][1]
        same_names = all(list(one) == list(first) for _, one in per)
        shared = {n for n in first if same_names and all(one[n] == first[n] for _, one in per)}
        out: dict = {}
        for i, (d, one) in enumerate(per):
            out.update({(k if k in shared else f"{k}{_SEP}{d}"): v for k, v in one.items()
                        if i == 0 or k not in shared})
        return out

    return inputs


def _in_decade(name: str, p: str, d: str) -> str:
    if "{slot}" not in p:
        raise ValueError(f"output {name}={p!r} has no {{slot}} wildcard: not a per-slot rule's output")
    return p.replace("{slot}", "{" + DECADE + "}" + d)


def slot_outputs(*, slots: int = 10, **patterns: str | list[str]) -> dict[str, str | list[str]]:
    """A decade rule's outputs: rule X's named output patterns (a pattern or a list of them) with
    ``{slot}`` replaced by ``{decade}<digit>``, named ``<name>__<digit>`` (use as
    ``output: **slot_outputs(...)``); ``slots``: digits ``0``..``slots-1`` only (a partial-decade
    twin)."""
    out: dict[str, str | list[str]] = {}
    for d in _digits(slots):
        for name, p in patterns.items():
            out[f"{name}{_SEP}{d}"] = (_in_decade(name, p, d) if isinstance(p, str)
                                       else [_in_decade(name, x, d) for x in p])
    return out


def slot_logs(logs: Any, decade: str, slot: str) -> Files:
    """Rule X's log files of ``slot``: the decade job's own (``{decade}x`` where X's have
    ``{slot}``: ``logs/sd_attack/.../s01x/ig/rep0.json``) with that path component set to the slot."""
    named: dict[str, str] = {}
    names = getattr(logs, "_names", None) or {}
    covered = {i for i, _ in names.values()}
    for i, p in enumerate(list(logs or [])):
        if i not in covered:
            named[f"_{i}"] = str(p)
    named.update({n: str(getattr(logs, n)) for n in names})
    out = {}
    for n, p in named.items():
        new = re.sub(rf"(?<=/){re.escape(decade)}x(?=[/.])", slot, p)
        if new == p:
            raise ValueError(f"log {p!r} of a decade job names no {decade}x component (use {{decade}}x where "
                             f"the per-slot rule's log has {{slot}})")
        out[n] = new
    return Files(out)


def slot_params(*, slots: int = 10, **functions: Callable[[Any], Any]) -> dict[str, Callable[[Any], Any]]:
    """A decade rule's params: each of rule X's params (a function of the wildcards) for each
    slot, named ``<name>__<digit>`` (use as ``params: **slot_params(...)``); ``slots``: the first
    that many slots only (a partial-decade twin)."""
    out = {}
    for d in _digits(slots):
        for name, fn in functions.items():
            out[f"{name}{_SEP}{d}"] = (lambda wc, fn=fn, d=d: fn(_slot_of(wc, d)))
    return out


def _names(files: Any) -> list[tuple[str, Any]]:
    """(name, value) of a Snakemake Namedlist / Params / replay.Files, in order."""
    if isinstance(files, dict):
        return list(files.items())
    names = getattr(files, "_names", None) or {}
    return [(n, getattr(files, n)) for n in sorted(names, key=lambda n: names[n][0])]


def _pick(files: Any, d: str) -> dict:
    """The entries of slot digit ``d`` (``<name>__<d>``), suffix dropped, in order."""
    tail = _SEP + d
    return {n[: -len(tail)]: v for n, v in _names(files) if n.endswith(tail)}


def _pick_inputs(files: Any, d: str, first: str) -> dict:
    """Slot ``d``'s inputs (:func:`slot_inputs`): X's names, in the order of the first slot's entries
    (``first``; the shared ones, without ``__<digit>``, stand among them), each with slot ``d``'s
    value or the shared value."""
    entries = _names(files)
    values = dict(entries)
    head = _SEP + first
    out = {}
    for n, _ in entries:
        if n.endswith(head):
            name = n[: -len(head)]
            out[name] = values[f"{name}{_SEP}{d}"]
        elif not _SUFFIXED.search(n):
            out[n] = values[n]
    return out


def per_slot_rule(rule: str) -> str:
    """Rule X of a decade twin's name: ``X_decade`` (ten slots) or ``X_decade_part`` (the first n)."""
    for suffix in (PART_SUFFIX, SUFFIX):
        if rule.endswith(suffix) and len(rule) > len(suffix):
            return rule[: -len(suffix)]
    raise ValueError(f"rule {rule!r} of a decade job must be named <per-slot rule>{SUFFIX} "
                     f"or <per-slot rule>{PART_SUFFIX}")


def job_digits(smk: Any) -> tuple[str, ...]:
    """The slot digits a decade job runs: those of its outputs (``<name>__<digit>``): all ten for
    ``X_decade``, ``0``..``n-1`` (n < 10) for ``X_decade_part``."""
    rule = str(getattr(smk, "rule", "") or "")
    per_slot_rule(rule)
    digits = tuple(sorted({n.rsplit(_SEP, 1)[1] for n, _ in _names(smk.output) if _SEP in n}))
    part = rule.endswith(PART_SUFFIX)
    if digits != DIGITS[: len(digits)] or not digits or (len(digits) < 10) != part:
        raise ValueError(f"the {rule} job's outputs are of slot digits {list(digits)}: "
                         + ("a partial-decade twin makes digits 0..n-1, n < 10" if part
                            else "a decade twin makes all ten"))
    return digits


def slot_view(smk: Any, slot: str) -> Any:
    """The ``snakemake`` object rule X's job of ``slot`` would get (X: :func:`per_slot_rule`)."""
    decade = getattr(smk.wildcards, DECADE)
    if not slot.startswith(decade) or len(slot) != len(decade) + 1:
        raise ValueError(f"slot {slot!r} is not in decade {decade!r}")
    d = slot[-1]
    rule = str(getattr(smk, "rule", "") or "")
    x = per_slot_rule(rule)
    digits = job_digits(smk)
    if d not in digits:
        raise ValueError(f"slot {slot!r} is not one of this {rule} job's slots")
    params = _pick(getattr(smk, "params", None), d)
    return SimpleNamespace(input=Files(_pick_inputs(smk.input, d, digits[0])), output=Files(_pick(smk.output, d)),
                           params=Params(params), wildcards=slot_wildcards(smk.wildcards, slot),
                           log=slot_logs(getattr(smk, "log", None), decade, slot), config=smk.config,
                           threads=getattr(smk, "threads", 1), rule=x,
                           resources=getattr(smk, "resources", SimpleNamespace()))


def is_decade_job(smk: Any) -> bool:
    wc = getattr(smk, "wildcards", None)
    return wc is not None and DECADE in dict(wc)


def run_decade(smk: Any, fn: Callable, run_one: Callable[[Any, Callable], None],
               say: Callable[[str], None] = lambda msg: None) -> dict:
    """Run ``fn`` for each slot of the decade job ``smk`` via ``run_one`` (the runner's per-job
    path: X's run record and text log per slot), announcing each slot with ``say``; stops at the
    first failure.  Returns the decade's own run-record facts."""
    decade = getattr(smk.wildcards, DECADE)
    done = []
    for slot in slots_of(decade, job_digits(smk)):
        say(f"{smk.rule}: slot {slot}")
        run_one(slot_view(smk, slot), fn)
        done.append(slot)
    return {"slots": done}
