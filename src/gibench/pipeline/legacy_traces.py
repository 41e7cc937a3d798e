"""Move the loss traces of a results directory made before traces rode in the reconstruction
artifacts into those artifacts: ``python -m gibench.pipeline.legacy_traces [results]``.

Before, every attack restart wrote two files, ``rep<k>.safetensors`` and ``rep<k>.trace.parquet``;
now the reconstruction carries its trace (:func:`gibench.io.load_trace`).  Snakemake does not
re-run an attack job for that (its inputs, params and script are unchanged), so in an older
results directory the traces figures would stop with "carries no loss trace".  This rewrites
each such reconstruction with the same tensors and the same record plus the trace rows read from
its ``.trace.parquet`` (keeping the file's modification time, so nothing downstream re-runs for
it), then removes the parquet file.  Re-running the attack jobs instead gives the same files,
at the cost of the attacks."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .. import io

#: the suffix of the trace files of the old layout
LEGACY_SUFFIX = ".trace.parquet"


def embed_legacy_traces(root: str | Path = "results", dry_run: bool = False) -> list[Path]:
    """Each ``<attacks>/.../rep<k>.trace.parquet`` under ``root`` whose ``rep<k>.safetensors``
    exists: the trace goes into the reconstruction (tensors and record unchanged, mtime kept)
    and the parquet file is removed.  Returns the reconstructions rewritten (or, ``dry_run``,
    that would be).  A reconstruction that already carries a trace keeps it (the old file goes)."""
    done = []
    for old in sorted(Path(root).rglob("rep*" + LEGACY_SUFFIX)):
        recon = old.with_name(old.name[:-len(LEGACY_SUFFIX)] + ".safetensors")
        if not recon.exists():
            continue
        done.append(recon)
        if dry_run:
            continue
        if io.load_trace(recon, optional=True) is None:
            table, _ = io.load_table(old)
            tensors, record = io.load_tensors(recon)           # checks the tensor digest
            st = recon.stat()
            io.save_tensors(recon, tensors, record, trace=table.to_pylist())
            os.utime(recon, ns=(st.st_atime_ns, st.st_mtime_ns))
        old.unlink()
    return done


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    dry = "-n" in args
    roots = [a for a in args if a != "-n"] or ["results"]
    for root in roots:
        done = embed_legacy_traces(root, dry_run=dry)
        print(f"{root}: {len(done)} reconstruction(s) {'would carry' if dry else 'now carry'} their trace")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
