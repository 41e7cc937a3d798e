"""Atomic artifact I/O with the provenance record embedded.

* tensors: safetensors, record as JSON under the single metadata key ``gibench`` (one key:
  safetensors serialises its metadata map in arbitrary order, so several keys would make
  the bytes differ between runs); an attack artifact's loss trace rides in the same JSON
  object (:data:`TRACE_KEY`, :func:`load_trace`), kept out of the record when it is read;
* rows: Parquet via pyarrow, record in the schema metadata under ``gibench``;
* text (tables, JSON): written atomically as is.

Every writer goes through :func:`atomic_path`: the data is written to a temporary file in
the same directory, fsynced and renamed over the target, so an interrupted job leaves no
half-written artifact behind.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import safe_open

# torch is imported where tensors are handled, not here: the DAG build (Snakefile, rule files)
# imports this module through gibench.pipeline and needs no torch (tests/test_import_graph.py)
if TYPE_CHECKING:
    import torch

META_KEY = "gibench"


class ArtifactError(RuntimeError):
    """A file is missing, malformed or lacks its provenance record."""


class DiskFull(ArtifactError):
    """No space (or quota) left while writing an artifact; the message names the file."""

    errno = errno.ENOSPC


_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _disk_full(e: BaseException) -> bool:
    """True for "no space left" / "quota exceeded", also when a library (pyarrow) drops the errno."""
    return (isinstance(e, OSError) and e.errno in _FULL) or "No space left on device" in str(e) \
        or "Disk quota exceeded" in str(e)


def _free_bytes(folder: Path) -> str:
    try:
        st = os.statvfs(folder)
        return f"{st.f_bavail * st.f_frsize / 2**20:.0f} MiB free there now"
    except OSError:
        return "free space unknown"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in the target's directory, fsynced and renamed over ``path`` when the
    block ends without error (removed otherwise).  A full disk or exhausted quota raises
    :class:`DiskFull` naming ``path`` (nothing half-written is left behind)."""
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException as e:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
        if _disk_full(e) and not isinstance(e, DiskFull):
            raise DiskFull(f"{path}: no space left on the device (or quota exceeded) while "
                                         f"writing it ({_free_bytes(path.parent)}); nothing was written. Free "
                                         f"space on that filesystem (or put the working directory elsewhere) "
                                         f"and run again") from e
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def plain(obj: Any, nan: str = "str") -> Any:
    """``obj`` with tensors, NumPy scalars and tuples turned into plain Python values (dict keys
    as strings) for JSON or a Parquet row.  Infinities become strings ('inf', '-inf'); NaN
    becomes the string 'nan' (``nan="str"``, strict JSON) or stays a float (``nan="keep"``, a
    null-like value in a numeric Parquet column).  Anything else unknown becomes its ``str``."""
    if isinstance(obj, dict):
        return {str(k): plain(v, nan) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, nan) for v in obj]
    torch = sys.modules.get("torch")        # no tensor exists unless torch was imported
    if torch is not None and isinstance(obj, torch.Tensor):
        return plain(obj.tolist(), nan)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if hasattr(obj, "item") and not isinstance(obj, float):          # NumPy / 0-d array scalars
        return plain(obj.item(), nan)
    if isinstance(obj, float):
        if math.isfinite(obj) or (nan == "keep" and math.isnan(obj)):
            return float(obj)                                        # also np.float64 -> float
        return str(float(obj))
    return str(obj)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


# ---------------------------------------------------------------- tensors (safetensors)

#: key of the embedded record that holds :func:`tensor_digest` of the file's tensors (verified on load)
DIGEST_KEY = "tensor_sha256"
#: key of the embedded JSON object that holds an attack artifact's loss trace (:func:`save_tensors`
#: ``trace=``, read by :func:`load_trace`): ``[[column, [values...]], ...]`` in column order.  Not
#: part of the record: :func:`load_tensors` / :func:`read_record` leave it out.
TRACE_KEY = "loss_trace"


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor in name order: its name, dtype and shape, then its raw bytes
    (CPU, contiguous, native little-endian: the bytes safetensors stores)."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach()
        if t.device.type != "cpu":
            t = t.to("cpu")
        t = t.contiguous()
        h.update(json.dumps([name, str(t.dtype).removeprefix("torch."), list(t.shape)]).encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def _trace_value(v: Any) -> Any:
    """A trace value as a plain JSON value: floats as they are (NaN and infinities too: the
    record is written with ``allow_nan``, read back by ``json.loads`` as the same floats),
    NumPy / 0-d tensor scalars as Python values, anything else unknown as its ``str``."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return float(v) if isinstance(v, float) else v
    if isinstance(v, (list, tuple)):
        return [_trace_value(x) for x in v]
    if hasattr(v, "tolist"):           # tensors, NumPy arrays and scalars
        return _trace_value(v.tolist())
    if hasattr(v, "item"):
        return _trace_value(v.item())
    return str(v)


def trace_columns(rows: list[Mapping[str, Any]]) -> list[list]:
    """Trace rows (dicts) -> ``[[column, [values...]], ...]``: the columns in the order they first
    appear, a row's missing column as None (the form stored under :data:`TRACE_KEY`; a list of
    pairs, not a dict, because the record is written with sorted keys)."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    return [[str(n), [_trace_value(r.get(n)) for r in rows]] for n in names]


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                 record: Mapping[str, Any], trace: list[Mapping[str, Any]] | None = None) -> None:
    """Write ``tensors`` with ``record`` embedded, plus the digest of their data (:data:`DIGEST_KEY`),
    which :func:`load_tensors` checks: a flipped byte in the data is found when the file is read.
    ``trace``: an attack's loss trace (a list of row dicts), stored beside the record under
    :data:`TRACE_KEY` in the same metadata entry and read back by :func:`load_trace`."""
    import torch
    from safetensors.torch import save as st_save

    clean = {}
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"save_tensors({path}): {k!r} is {type(v).__name__}, not a tensor")
        clean[k] = v.detach().to("cpu").contiguous()
    rec = {**dict(record), DIGEST_KEY: tensor_digest(clean)}
    if trace is not None:
        if not isinstance(trace, list) or not all(isinstance(r, Mapping) for r in trace):
            raise TypeError(f"save_tensors({path}): the trace must be a list of rows (dicts)")
        rec[TRACE_KEY] = trace_columns(trace)
    meta = {META_KEY: json.dumps(rec, sort_keys=True, separators=(",", ":"), default=str)}
    data = st_save(clean, metadata=meta)
    write_bytes(path, data)


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu", verify: bool = True
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the embedded record (without the digest) of a gibench tensor artifact.
    The tensor data must match the digest its record holds (files written before digests were
    recorded have none and are read unchecked; ``verify=False``: not checked, for tools that
    report a mismatch themselves)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such file")
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types
        raise ArtifactError(f"{path}: not a readable safetensors file ({e})") from e
    record = _parse_record(path, meta.get(META_KEY), keep_digest=True)
    want = record.pop(DIGEST_KEY, None)
    if want is not None and verify:
        got = tensor_digest(tensors)
        if got != want:
            raise ArtifactError(f"{path}: its tensor data has sha256 {got[:16]}…, not the {str(want)[:16]}… "
                                f"recorded when it was written: the file was altered or damaged since. Delete it "
                                f"and run the workflow again (the job that makes it re-creates it)")
    if str(device) != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return tensors, record


def load_trace(path: str | os.PathLike, optional: bool = False) -> pa.Table | None:
    """The loss trace an attack artifact carries (:data:`TRACE_KEY`, written by
    :func:`save_tensors`) as a table, one row per trace row, the columns in the attack's order,
    the values as the attack gave them (floats exactly, NaN kept, strings such as DLG's
    ``status`` kept).  A file without a trace (not an attack artifact, or one written before
    traces were stored in it) is an :class:`ArtifactError` naming the file, or None when
    ``optional`` (an unreadable file is an error either way)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such file")
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except Exception as e:  # safetensors raises its own error types
        raise ArtifactError(f"{path}: not a readable safetensors file ({e})") from e
    columns = _parse_record(path, raw, keep_trace=True).get(TRACE_KEY)
    if columns is None and optional:
        return None
    if columns is None:
        raise ArtifactError(f"{path}: carries no loss trace (its record has no {TRACE_KEY!r}): not an attack "
                            f"artifact, or one written before the trace was stored in the artifact (then "
                            f"`python -m gibench.pipeline.legacy_traces results` moves the old "
                            f"rep<k>.trace.parquet files into their artifacts; or delete it and run the "
                            f"workflow again: its attack job re-creates it)")
    return pa.table({name: pa.array(values) for name, values in columns})


def tensor_names_in_file_order(path: str | os.PathLike) -> list[str]:
    with safe_open(os.fspath(path), framework="pt") as f:
        return list(f.keys())


# ---------------------------------------------------------------- rows (parquet)

def save_table(path: str | os.PathLike, table: pa.Table | Mapping[str, list] | list[dict],
               record: Mapping[str, Any]) -> None:
    if isinstance(table, list):
        table = pa.Table.from_pylist(table)
    elif not isinstance(table, pa.Table):
        table = pa.table(dict(table))
    meta = dict(table.schema.metadata or {})
    meta[META_KEY.encode()] = json.dumps(record, sort_keys=True, separators=(",", ":"),
                                         default=str).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def load_table(path: str | os.PathLike) -> tuple[pa.Table, dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such file")
    try:
        table = pq.read_table(path)
    except Exception as e:
        raise ArtifactError(f"{path}: not a readable Parquet file ({e})") from e
    raw = (table.schema.metadata or {}).get(META_KEY.encode())
    rec = _parse_record(path, raw.decode() if raw is not None else None)
    table = table.replace_schema_metadata(
        {k: v for k, v in (table.schema.metadata or {}).items() if k != META_KEY.encode()})
    return table, rec


# ---------------------------------------------------------------- generic

def _parse_record(path: Path, raw: str | None, keep_digest: bool = False, keep_trace: bool = False
                  ) -> dict[str, Any]:
    """The embedded record; the content digest (an integrity field of the file, checked by
    :func:`load_tensors`) is not part of it unless ``keep_digest``, an attack's loss trace
    (:data:`TRACE_KEY`, read by :func:`load_trace`) not unless ``keep_trace``."""
    if raw is None:
        raise ArtifactError(f"{path}: has no embedded gibench provenance record")
    try:
        rec = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: provenance record is not valid JSON ({e})") from e
    if not keep_digest and isinstance(rec, dict):
        rec.pop(DIGEST_KEY, None)
    if not keep_trace and isinstance(rec, dict):
        rec.pop(TRACE_KEY, None)
    return rec


def recorded_digest(path: str | os.PathLike) -> str | None:
    """The tensor-data digest a tensor artifact recorded when it was written (None: an older file)."""
    with safe_open(os.fspath(path), framework="pt") as f:
        raw = (f.metadata() or {}).get(META_KEY)
    return _parse_record(Path(path), raw, keep_digest=True).get(DIGEST_KEY) if raw else None


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance record of any gibench artifact, by file type."""
    path = Path(path)
    if path.suffix == ".safetensors":
        with safe_open(os.fspath(path), framework="pt") as f:
            return _parse_record(path, (f.metadata() or {}).get(META_KEY))
    if path.suffix == ".parquet":
        raw = (pq.read_schema(path).metadata or {}).get(META_KEY.encode())
        return _parse_record(path, raw.decode() if raw is not None else None)
    if path.suffix == ".json":
        obj = json.loads(path.read_text())
        if isinstance(obj, dict) and "provenance" in obj:
            return obj["provenance"]
    sidecar = path.with_name(path.name + ".prov.json")
    if sidecar.exists():
        return json.loads(sidecar.read_text())
    raise ArtifactError(f"{path}: no provenance record (not a gibench artifact type)")
