"""Archive a run into one file, and verify an archive (``gibench archive`` / ``gibench verify``).

An archive (``.tar.gz``) is a snapshot of the working directory a result came from, laid out
like that directory, so that it can be unpacked and used as a checkout:

* the workflow: every file git knows in the project (tracked, plus untracked files that are
  not ignored — what ``snakemake --archive`` packs, without requiring a clean commit):
  Snakefile, rules, scripts, ``src/gibench``, configs, schema, envs, bundled resources;
* ``results/`` — everything the pipeline wrote, whatever the study (tables, figures, metric
  and cost rows, reconstructions (each carrying its loss trace), masks, gradients, weights,
  victims, FL runs, overhead rows, ...), including ``results/configs/<digest>.yaml`` (the exact config each
  record names) and the ``<file>.prov.json`` records of tables and figures; patterns in
  ``exclude`` leave files out (default: significance scores, large and only needed to
  re-make masks; ``include_scores`` keeps them);
* ``logs/`` (each job's run record: start/end, host, SLURM job id) and
  ``.snakemake/metadata`` (Snakemake's own records, for ``--report`` and re-run detection);
* ``ARCHIVE/config.yaml`` — the config the final tables and figures came from,
  ``ARCHIVE/environment.txt`` / ``environment.json`` — Python, platform, torch build and the
  exact version of every installed package;
* ``ARCHIVE/MANIFEST.json`` — sha256 of every other member, code identity, config digests,
  inputs that were not archived; ``ARCHIVE/MANIFEST.sha256`` — the manifest's own sha256,
  the archive's id.

``verify`` checks (0) with ``expect_id``, the archive id against the published one, (1) the
manifest (every member's sha256, nothing missing or extra, the manifest's own digest), (2) the
configs (each snapshot's digest), (3) every tensor artifact's data against the digest recorded
when it was written, (4) the provenance chain (every artifact's record names the sha256 of its
inputs: they must match the archived files), (5) re-makes every table and figure from the
archived rows (cheap; a forged number in a table under a rewritten manifest differs from the
re-made one, shown as the differing line and position), and (6) re-runs a deterministic, seeded
sample of the other jobs — spread over the rules — from the archived inputs with the archived
code, comparing each output with the archived one: exactly (tensor values, row values, bytes) when the job was recorded on this kind of
device with the same torch/numpy, within ``atol``/``rtol`` otherwise; measured columns
(seconds, peak memory) are reported, not compared.  Each check prints a verdict; any FAIL
makes the exit status non-zero.

The package, by seam: :mod:`~gibench.archive.pack` (what goes in, :func:`create`),
:mod:`~gibench.archive.checks` (checks 0-4 and their :class:`Report`),
:mod:`~gibench.archive.compare` (a replayed output against the archived one),
:mod:`~gibench.archive.replay` (checks 5-6: re-making and re-running jobs) and
:mod:`~gibench.archive.verifier` (:func:`verify`, the checks in order).  This ``__init__`` is its
public face: import from ``gibench.archive``, not from the submodules.
"""
from __future__ import annotations

from .checks import (
    Report, Verdict, all_records, check_chain, check_configs, check_id, check_manifest, check_tensor_digests)
from .compare import (
    DEFAULT_ATOL, DEFAULT_RTOL, MEASUREMENT, RECORD_INFO_KEYS, SNAKEMAKE_DIR_MARKER, Tolerance, compare_file,
    compare_records, diff_values)
from .pack import (
    ARCHIVE_FORMAT, DEFAULT_EXCLUDE, MANIFEST, MANIFEST_SHA, META, WORKDIR_TREES, ArchiveError, collect, create,
    environment_info, environment_text)
from .replay import Job, is_table_or_figure, rederive, replay_and_compare, replay_jobs, sample_jobs
from .verifier import verify

__all__ = [
    # packing
    "ARCHIVE_FORMAT", "DEFAULT_EXCLUDE", "MANIFEST", "MANIFEST_SHA", "META", "WORKDIR_TREES", "ArchiveError",
    "collect", "create", "environment_info", "environment_text",
    # checks
    "Report", "Verdict", "all_records", "check_chain", "check_configs", "check_id", "check_manifest",
    "check_tensor_digests",
    # comparing a replay
    "DEFAULT_ATOL", "DEFAULT_RTOL", "MEASUREMENT", "RECORD_INFO_KEYS", "SNAKEMAKE_DIR_MARKER", "Tolerance",
    "compare_file", "compare_records", "diff_values",
    # replaying jobs, verifying
    "Job", "is_table_or_figure", "rederive", "replay_and_compare", "replay_jobs", "sample_jobs", "verify",
]
