"""Comparing a replayed output with the archived one: records, tensors, rows, PNGs, CSV/text and
directories, exactly or within a :class:`Tolerance`; measured values (:data:`MEASUREMENT`:
seconds, peak memory) and run facts (:data:`RECORD_INFO_KEYS`) are reported, never compared."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from ..provenance import SIDECAR_SUFFIX, UNSEEDED_KEY


#: measured values (timings, memory): reported, never compared
MEASUREMENT = re.compile(r"(seconds?(_per_[a-z0-9]+)?|per_second|_s|_ms|_time_to_[a-z0-9]+"
                         r"|peak_bytes|peak_rss|rss_bytes|elapsed|wall_time)$")
#: record fields that may differ between the original run and a replay (reported, not compared)
RECORD_INFO_KEYS = ("code", "versions", "device", "format")
DEFAULT_ATOL, DEFAULT_RTOL = 1e-5, 1e-4

# ------------------------------------------------------------------ comparing a replay

@dataclass
class Tolerance:
    atol: float = 0.0
    rtol: float = 0.0

    @property
    def exact(self) -> bool:
        return self.atol == 0 and self.rtol == 0

    def describe(self) -> str:
        return "exact" if self.exact else f"within atol {self.atol:g}, rtol {self.rtol:g}"


def _num_close(u: float, v: float, tol: Tolerance) -> bool:
    import math

    if u == v or (math.isnan(u) and math.isnan(v)):
        return True
    return (not tol.exact) and abs(u - v) <= tol.atol + tol.rtol * abs(v)


def diff_values(a: Any, b: Any, path: str, tol: Tolerance) -> str | None:
    """The first difference between two JSON-like values (measurement keys skipped)."""
    if isinstance(a, dict) and isinstance(b, dict):
        ka = {k for k in a if not MEASUREMENT.search(str(k))}
        kb = {k for k in b if not MEASUREMENT.search(str(k))}
        if ka != kb:
            return f"{path}: keys differ ({sorted(ka ^ kb)[:5]})"
        for k in sorted(ka, key=str):
            d = diff_values(a[k], b[k], f"{path}.{k}" if path else str(k), tol)
            if d:
                return d
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} entries"
        for i, (u, v) in enumerate(zip(a, b)):
            d = diff_values(u, v, f"{path}[{i}]", tol)
            if d:
                return d
        return None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return None if _num_close(float(a), float(b), tol) else f"{path}: {a!r} vs {b!r}"
    if a == b:
        return None
    if isinstance(a, str) and isinstance(b, str) and max(len(a), len(b)) > 60:
        col, cu, cv, _ = _window(a, b, 60)
        return f"{path}: strings differ at character {col + 1}: {cu!r} vs {cv!r}"
    return f"{path}: {str(a)[:60]!r} vs {str(b)[:60]!r}"


def compare_records(old: dict, new: dict, tol: Tolerance) -> tuple[str | None, list[str]]:
    """(difference in what the job computed or was given, notes on what may differ)."""
    a = {k: v for k, v in old.items() if k not in RECORD_INFO_KEYS}
    b = {k: v for k, v in new.items() if k not in RECORD_INFO_KEYS}
    problem = diff_values(a, b, "record", tol)
    notes = []
    for k in RECORD_INFO_KEYS:
        if old.get(k) != new.get(k):
            if isinstance(old.get(k), dict) and isinstance(new.get(k), dict):
                ks = sorted(x for x in set(old[k]) | set(new[k]) if old[k].get(x) != new[k].get(x))
                notes.append(f"{k}." + "/".join(ks))
            else:
                notes.append(k)
    return problem, notes


def _volatile_record_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) & set(new), key=str):
        if MEASUREMENT.search(str(k)) and old[k] != new[k]:
            out.append(prefix + str(k))
        elif isinstance(old[k], dict) and isinstance(new[k], dict):
            out += _volatile_record_keys(old[k], new[k], f"{prefix}{k}.")
    return out


def _compare_tensors(old: Path, new: Path, tol: Tolerance) -> tuple[bool, str, dict, dict]:
    import torch

    from .. import io

    a, ra = io.load_tensors(old, verify=False)       # an altered archived file: check_tensor_digests says so
    b, rb = io.load_tensors(new, verify=False)
    if sorted(a) != sorted(b):
        return False, f"tensor names differ: {sorted(set(a) ^ set(b))[:5]}", ra, rb
    for k in sorted(a):
        x, y = a[k], b[k]
        if x.shape != y.shape or x.dtype != y.dtype:
            return False, f"tensor {k!r}: {tuple(x.shape)} {x.dtype} vs {tuple(y.shape)} {y.dtype}", ra, rb
        if x.is_floating_point() or x.is_complex():
            same = bool(((x == y) | (x.isnan() & y.isnan())).all())
            if not same:
                diff = (x.double() - y.double()).abs().nan_to_num(float("inf")).max().item()
                if tol.exact or not torch.allclose(x.double(), y.double(), atol=tol.atol, rtol=tol.rtol, equal_nan=True):
                    return False, f"tensor {k!r} differs: max abs difference {diff:.3g} ({tol.describe()})", ra, rb
        elif not torch.equal(x, y):
            n = int((x != y).sum())
            return False, f"tensor {k!r} differs in {n} of {x.numel()} entries", ra, rb
    # an attack artifact's loss trace (it rides in the file, beside the record): compared as rows
    ta, tb = io.load_trace(old, optional=True), io.load_trace(new, optional=True)
    if (ta is None) != (tb is None):
        return False, f"only the {'archived' if tb is None else 're-made'} file carries a loss trace", ra, rb
    if ta is not None:
        ok, detail = _compare_tables(ta, tb, ra, rb, tol)
        if not ok:
            return False, f"loss trace: {detail}", ra, rb
        return True, f"{len(a)} tensors equal, loss trace {detail}", ra, rb
    return True, f"{len(a)} tensors equal ({tol.describe()})", ra, rb


def _compare_rows(old: Path, new: Path, tol: Tolerance) -> tuple[bool, str, dict, dict]:
    from .. import io

    ta, ra = io.load_table(old)
    tb, rb = io.load_table(new)
    ok, detail = _compare_tables(ta, tb, ra, rb, tol)
    return ok, detail, ra, rb


def _compare_tables(ta: Any, tb: Any, ra: dict | None, rb: dict | None, tol: Tolerance) -> tuple[bool, str]:
    # columns the producing job declares unseeded (e.g. CKKS's fresh encryption randomness)
    unseeded = set((ra or {}).get(UNSEEDED_KEY) or []) | set((rb or {}).get(UNSEEDED_KEY) or [])
    measured = sorted(c for c in set(ta.column_names) | set(tb.column_names)
                      if MEASUREMENT.search(c) or c in unseeded)
    ca = [c for c in ta.column_names if c not in measured]
    cb = [c for c in tb.column_names if c not in measured]
    if sorted(ca) != sorted(cb):
        return False, f"columns differ: {sorted(set(ca) ^ set(cb))}"
    if ta.num_rows != tb.num_rows:
        return False, f"{ta.num_rows} rows vs {tb.num_rows}"
    for c in ca:
        x, y = ta.column(c).to_pylist(), tb.column(c).to_pylist()
        for i, (u, v) in enumerate(zip(x, y)):
            d = diff_values(u, v, "", tol)
            if d:
                shown = (d.split(": ", 1)[1] if isinstance(u, str) and isinstance(v, str) and d.startswith(": ")
                         else f"{u!r} vs {v!r}")
                return False, f"column {c!r} row {i}: {shown}"
    note = f"; measured or unseeded columns reported, not compared: {measured}" if measured else ""
    return True, f"{ta.num_rows} rows x {len(ca)} columns equal ({tol.describe()}){note}"


def _window(u: str, v: str, width: int = 72) -> tuple[int, str, str, str]:
    """(first differing position, the two strings cut to ``width`` characters around it, a caret
    line under it): the difference itself, never two identically truncated prefixes."""
    col = next((i for i, (x, y) in enumerate(zip(u, v)) if x != y), min(len(u), len(v)))
    start = max(0, col - width // 3)

    def cut(s: str) -> str:
        return ("…" if start else "") + s[start:start + width] + ("…" if len(s) > start + width else "")

    return col, cut(u), cut(v), " " * (col - start + (1 if start else 0)) + "^"


def _first_line_diff(a: bytes, b: bytes) -> str:
    la, lb = a.decode("utf-8", "replace").splitlines(), b.decode("utf-8", "replace").splitlines()
    n_diff = sum(1 for u, v in zip(la, lb) if u != v) + abs(len(la) - len(lb))
    for i, (u, v) in enumerate(zip(la, lb)):
        if u != v:
            col, cu, cv, caret = _window(u, v)
            return (f"line {i + 1}, column {col + 1} (first of {n_diff} differing line(s)):\n"
                    f"        archived: {cu}\n        re-made:  {cv}\n                  {caret}")
    longer, who = (la, "archived") if len(la) > len(lb) else (lb, "re-made")
    extra = longer[min(len(la), len(lb))]
    return f"{len(la)} vs {len(lb)} lines; the {who} file goes on with line {min(len(la), len(lb)) + 1}: {extra[:100]!r}"


def _compare_png(old: Path, new: Path, tol: Tolerance) -> tuple[bool, str]:
    import numpy as np
    from matplotlib import image as mimg

    a, b = mimg.imread(old), mimg.imread(new)
    if a.shape != b.shape:
        return False, f"image size {a.shape} vs {b.shape}"
    diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
    if diff <= max(tol.atol, 0.0):
        return True, f"pixels equal within {tol.atol:g} (max difference {diff:.3g}); bytes differ"
    return False, f"pixels differ: max difference {diff:.3g} (of 1.0){'' if tol.exact else f' > atol {tol.atol:g}'}"


#: the empty marker Snakemake writes into a ``directory()`` output after its job; a job run
#: outside Snakemake (a replay) does not write it, and it holds no result
SNAKEMAKE_DIR_MARKER = ".snakemake_timestamp"


def _dir_files(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and p.name != SNAKEMAKE_DIR_MARKER)


def compare_file(old: Path, new: Path, tol: Tolerance) -> tuple[bool, str]:
    """Compare an archived output with its replay: values, then the embedded record."""
    if not new.exists():
        return False, "the re-run did not write it"
    if old.is_dir():
        fa, fb = _dir_files(old), _dir_files(new)
        if fa != fb:
            return False, f"directory contents differ: {sorted(set(fa) ^ set(fb))[:5]}"
        for f in fa:
            ok, d = compare_file(old / f, new / f, tol)
            if not ok:
                return False, f"{f}: {d}"
        return True, f"{len(fa)} files equal"
    same_bytes = old.read_bytes() == new.read_bytes()
    ra = rb = None
    if old.suffix == ".safetensors":
        ok, detail, ra, rb = _compare_tensors(old, new, tol)
    elif old.suffix == ".parquet":
        ok, detail, ra, rb = _compare_rows(old, new, tol)
    elif old.suffix == ".json" and old.name.endswith(SIDECAR_SUFFIX):
        ra, rb = json.loads(old.read_text()), json.loads(new.read_text())
        ok, detail = True, "provenance record"
    elif old.suffix == ".json":
        ja, jb = json.loads(old.read_text()), json.loads(new.read_text())
        ra, rb = ja.get("provenance") if isinstance(ja, dict) else None, jb.get("provenance") if isinstance(jb, dict) else None
        strip = lambda j: {k: v for k, v in j.items() if k != "provenance"} if isinstance(j, dict) else j  # noqa: E731
        d = diff_values(strip(ja), strip(jb), "", tol)
        ok, detail = (d is None), (d or f"JSON values equal ({tol.describe()})")
    elif same_bytes:
        ok, detail = True, "bytes equal"
    elif old.suffix == ".png":
        ok, detail = _compare_png(old, new, tol)
    elif old.suffix in (".csv", ".md", ".tex", ".txt", ".tsv"):
        ok, detail = False, f"text differs at {_first_line_diff(old.read_bytes(), new.read_bytes())}"
    else:
        ok, detail = False, f"bytes differ ({old.stat().st_size} vs {new.stat().st_size} bytes)"
    if not ok:
        return False, detail
    if isinstance(ra, dict) and isinstance(rb, dict):
        problem, notes = compare_records(ra, rb, tol)
        if problem:
            return False, f"{detail}, but the provenance record differs: {problem}"
        vol = _volatile_record_keys(ra, rb)
        if same_bytes:
            detail += "; byte-identical"
        else:
            why = notes + [f"measured {k}" for k in vol]
            detail += f"; bytes differ only in provenance facts ({', '.join(why) or 'encoding'})"
    elif same_bytes and "byte" not in detail:
        detail += "; byte-identical"
    return True, detail
