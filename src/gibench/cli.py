"""The `gibench` command: where results are, provenance of a file, archive and verify.

  gibench where [--print-tables [--notes]]  list (and print) the tables and figures of a run
  gibench provenance FILE...                a result file's record (+ run facts) in readable form
  gibench archive -o run.tar.gz             workflow + config + environment + results + sha256 manifest
  gibench verify run.tar.gz [--jobs N]      check the manifest and the provenance chain, re-derive the tables
                                            and figures, re-run N jobs
  gibench check-config FILE...              a config file's YAML (file:line:column of a syntax error) and
                                            every check the Snakefile runs at DAG build
  gibench claims [--study S] [--configfile F]   the papers' findings checked against a run's tables
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def cmd_where(args: argparse.Namespace) -> int:
    root = Path(args.results)
    tables = sorted(root.glob("tables/*/*.md"))
    figures = sorted(root.glob("figures/*/*.png"))
    if args.print_tables:
        for t in tables:
            print(f"\n=== {t}\n")
            print(table_text(t.read_text(), t, notes=args.notes))
    claims = sorted(root.glob("claims/*.md"))
    if args.print_tables and claims:
        from .claims import summary_lines

        print("\n=== The papers' findings checked against this run (gibench claims; full reports below)\n")
        for c in claims:
            if c.with_suffix(".csv").exists():
                print("\n".join(summary_lines(c.with_suffix(".csv"))))
    print(f"\nResults under {root.resolve()}:")
    if claims:
        print(f"  claims  ({len(claims)}): {root / 'claims'}/<study>.{{md,csv}} (the papers' findings checked)")
        for c in claims:
            print(f"    {c}")
    print(f"  tables  ({len(tables)}): {root / 'tables'}/<study>/<table>.{{csv,md}}")
    for t in tables:
        print(f"    {t}")
    print(f"  figures ({len(figures)}): {root / 'figures'}/<study>/<figure>.{{png,pdf}}")
    for f in figures[:40]:
        print(f"    {f}")
    if len(figures) > 40:
        print(f"    … and {len(figures) - 40} more")
    return 0


def table_text(md: str, path: Path | str, notes: bool = False) -> str:
    """A Markdown table as the terminal shows it: the title and the table; its notes (legend,
    comparability, what could not be computed) only with ``notes``, else a line naming the file."""
    lines = md.rstrip("\n").splitlines()
    end = next((i for i, ln in enumerate(lines) if ln.startswith("|")), len(lines))
    end = next((i for i in range(end, len(lines)) if not lines[i].startswith("|")), len(lines))
    rest = [ln for ln in lines[end:] if ln.strip()]
    if notes or not rest:
        return "\n".join(lines)
    return "\n".join(lines[:end] + ["", f"({len(rest)} line(s) of notes: {path})"])


def _short(obj, n: int = 400) -> str:
    s = json.dumps(obj, sort_keys=True, default=str)
    return s if len(s) <= n else s[:n] + f" … ({len(s)} characters; --json shows all)"


def _input_status(path: str, digest: str, root: Path) -> str:
    from .provenance import file_digest

    p = Path(path) if os.path.isabs(path) else root / path
    if not p.exists():
        return "not on disk"
    try:
        return "matches" if file_digest(p) == digest else "CHANGED since (the file on disk has other bytes)"
    except OSError as e:
        return f"unreadable ({e})"


def show_provenance(path: str, rec: dict, root: Path, out=None) -> None:
    from .provenance import config_path, missing_fields, run_facts

    out = out or sys.stdout

    w = lambda k, v: print(f"  {k:<13} {v}", file=out)  # noqa: E731
    print(path, file=out)
    code = rec.get("code") or {}
    w("rule", f"{rec.get('rule')}" + (f"   job {rec['job']}" if rec.get("job") else ""))
    w("wildcards", ", ".join(f"{k}={v}" for k, v in (rec.get("wildcards") or {}).items()) or "-")
    cfg = rec.get("config_digest")
    snap = config_path(cfg, root) if cfg else None
    w("config", f"sha256 {cfg}" + (f"  ({snap.relative_to(root) if snap.is_relative_to(root) else snap})"
                                    if snap is not None and snap.exists() else "  (no snapshot on disk)"))
    if rec.get("params"):
        w("params", _short(rec["params"]))
    if rec.get("rule_params") and rec.get("rule_params") != rec.get("params"):
        w("rule params", _short(rec["rule_params"]))
    w("code", f"gibench {code.get('gibench')}  commit {code.get('git_commit')}"
              f"{' (with local changes)' if code.get('git_dirty') else ' (clean)' if code.get('git_dirty') is False else ''}"
              + (f"  source sha256 {code['source_sha256'][:16]}…" if code.get("source_sha256") else ""))
    w("versions", ", ".join(f"{k} {v}" for k, v in (rec.get("versions") or {}).items() if v))
    w("device", f"{rec.get('device')}  torch threads {rec.get('torch_threads')}")
    w("seed", rec.get("seed"))
    for p, d in (rec.get("inputs") or {}).items():
        w("input", f"{p}  sha256 {str(d)[:16]}…  {_input_status(p, d, root)}")
    outs = rec.get("output_files") or {}
    if outs:
        w("outputs", _short(outs, 300))
    if rec.get("unavailable"):
        for k, reasons in rec["unavailable"].items():
            for r in reasons:
                w("unavailable", f"{k}: {r[:300]}")
    known = {"rule", "job", "wildcards", "code", "versions", "device", "seed", "config_digest", "params", "rule_params",
             "inputs", "input_files", "output_files", "format", "log_files", "torch_threads", "unavailable", "file"}
    for k in sorted(set(rec) - known):
        w(k, _short(rec[k], 300))
    facts = run_facts(path, rec, root)
    log = facts.get("log")
    if log:
        w("run", f"{log.get('start')} -> {log.get('end')}  ({log.get('seconds')} s)  host {log.get('host')}  "
                 f"SLURM job {log.get('slurm_job_id') or '-'}  status {log.get('status')}   [{log.get('path')}]")
    elif facts.get("snakemake"):
        sm = facts["snakemake"]
        w("run", f"{sm.get('start')} -> {sm.get('end')} (Snakemake metadata; no run record in logs/)")
    else:
        w("run", "no run record found (log: " + ", ".join(rec.get("log_files") or ["?"]) + ")")
    miss = missing_fields(rec)
    if miss:
        w("INCOMPLETE", f"record lacks {', '.join(miss)} (written by an older gibench?)")


def cmd_provenance(args: argparse.Namespace) -> int:
    from .provenance import read_any_record, run_facts

    rc = 0
    root = Path(args.root)
    for f in args.files:
        try:
            rec = read_any_record(f)
        except Exception as e:
            print(f"{f}: {e}", file=sys.stderr)
            rc = 1
            continue
        if args.json:
            print(json.dumps({"file": f, "record": rec, "run": run_facts(f, rec, root)}, indent=2, sort_keys=True))
        else:
            show_provenance(f, rec, root)
    return rc


def cmd_archive(args: argparse.Namespace) -> int:
    from . import archive

    exclude = None if args.exclude is None else list(args.exclude)
    try:
        m = archive.create(args.output, workdir=args.directory, include_scores=args.include_scores, exclude=exclude,
                           configfile=args.configfile)
    except archive.ArchiveError as e:
        print(f"gibench archive: {e}", file=sys.stderr)
        return 1
    code = m["code"]
    print(f"wrote {args.output}: {len(m['files'])} files, {m['records']} artifacts with provenance records")
    print(f"  config sha256 {m['config_digest']}  ({len(m['configs_used'])} config(s) named by the records)")
    print(f"  code gibench {code['gibench']} commit {code['git_commit'][:12]}{' (with local changes)' if code['git_dirty'] else ''}")
    print(f"  left out: {', '.join(m['excluded']) or 'nothing'}")
    if m["not_archived_inputs"]:
        print(f"  {len(m['not_archived_inputs'])} recorded inputs are not in the archive (excluded or outside the "
              f"working directory), e.g. {next(iter(m['not_archived_inputs']))}")
    if m["configs_missing"]:
        print(f"  WARNING: {len(m['configs_missing'])} config(s) named by records have no snapshot in results/configs")
    print(f"  archive id (sha256 of ARCHIVE/MANIFEST.json): {m['id']}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from . import archive

    n = None if args.all else args.jobs
    report = archive.verify(args.archive, sample=n, seed=args.seed, atol=args.atol, rtol=args.rtol, keep=args.keep,
                            only=args.only or (), device=args.device, timeout=args.timeout,
                            derive=not args.no_derive, expect_id=args.expect_id)
    for v in report.verdicts:
        tag = "INFO" if v.info else ("OK  " if v.ok else "FAIL")
        print(f"{tag}  {v.item}: {v.detail}")
    fails = report.failures()
    print("verdict: " + ("archive verified" if report.ok else
                         f"MISMATCH in {len(fails)} item(s): " + ", ".join(v.item for v in fails[:5])
                         + (" …" if len(fails) > 5 else "")))
    return 0 if report.ok else 1


def cmd_check_config(args: argparse.Namespace) -> int:
    """What `snakemake --configfile FILE` cannot say: Snakemake reads the file before any workflow
    code runs, and reports a YAML syntax error without file, line or column."""
    from .config import ConfigError, load

    rc = 0
    for f in args.files:
        try:
            cfg = load(f)
        except ConfigError as e:
            print(e, file=sys.stderr)
            rc = 1
            continue
        print(f"{f}: valid (studies: {', '.join(cfg['studies'])})")
    return rc


def _run_config(study: str, results: Path, root: Path) -> tuple[dict | None, str]:
    """The config a study's tables were made with: the snapshot their records name."""
    from collections import Counter

    from .provenance import load_config_snapshot, read_any_record

    digests = Counter()
    for f in sorted((results / "tables" / study).glob("*.csv")):
        try:
            d = read_any_record(f).get("config_digest")
        except Exception:
            continue
        if d:
            digests[d] += 1
    for d, _ in digests.most_common():
        cfg = load_config_snapshot(d, root)
        if cfg is not None:
            more = f" ({len(digests) - 1} other config(s) made some tables)" if len(digests) > 1 else ""
            return cfg, f"the config the tables name, sha256 {d[:16]}…{more}"
    return None, ("no config: the tables carry no record naming a config snapshot under results/configs/ "
                  "(give --configfile)")


def cmd_claims(args: argparse.Namespace) -> int:
    from . import claims as C
    from . import io
    from .config import ConfigError, validate
    from .provenance import make_record, sidecar_path, sidecar_text

    results = Path(args.results)
    root = Path(args.root) if args.root else results.resolve().parent
    config = None
    if args.configfile:
        import yaml

        try:
            config = validate(yaml.safe_load(Path(args.configfile).read_text()))
        except (OSError, ConfigError) as e:
            print(f"gibench claims: {args.configfile}: {e}", file=sys.stderr)
            return 2
    cdir = Path(args.claims_dir) if args.claims_dir else None
    studies = args.study or [s for s in C.STUDIES if (results / "tables" / s).is_dir()]
    if not studies:
        print(f"gibench claims: no tables under {results / 'tables'}; run the pipeline first", file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else results / "claims"
    rc = 0
    for study in studies:
        path = (cdir / f"{study}.yaml") if cdir else C.claims_file(study, config)
        try:
            cf = C.load_claims(path)
        except C.ClaimsError as e:
            print(f"gibench claims: {e}", file=sys.stderr)
            rc = 2
            continue
        cfg, source = (config, f"--configfile {args.configfile}") if config is not None else \
            _run_config(study, results, root)
        if cfg is None:
            print(f"gibench claims: {study}: {source}", file=sys.stderr)
            rc = 2
            continue
        made = C.tables_made(cfg, study) if study in (cfg.get("studies") or {}) else set()
        tables_dir = results / "tables" / study
        written, verdicts = C.write_report(cf, cfg, tables_dir, out_dir, made)
        inputs = [str(path)] + [str(tables_dir / f"{t}.csv") for t in cf.tables_read()
                                if (tables_dir / f"{t}.csv").exists()]
        rec = make_record(rule="gibench claims", wildcards={"study": study}, config=cfg, inputs=inputs,
                          outputs=[str(p) for p in written], params={"config_source": source})
        for p in written:
            io.write_text(sidecar_path(p), sidecar_text({**rec, "file": str(p)}))
        n = C.counts(verdicts)
        if not args.quiet:
            print((out_dir / f"{study}.md").read_text())
        print(f"{study}: {len(cf.claims)} findings, {len(verdicts)} checks: {n[C.HOLDS]} hold, {n[C.FAILS]} fail, "
              f"{n[C.NOT_CHECKABLE]} not checkable here  ->  {out_dir / (study + '.md')}  (config: {source})")
    return rc


def main(argv: list[str] | None = None) -> int:
    from . import archive as _a

    p = argparse.ArgumentParser(prog="gibench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("where", help="list (and print) the tables and figures of a run")
    w.add_argument("--results", default="results")
    w.add_argument("--print-tables", action="store_true",
                   help="print every Markdown table (title and rows; the notes with --notes)")
    w.add_argument("--notes", action="store_true", help="with --print-tables: also print each table's notes")
    w.set_defaults(fn=cmd_where)
    pr = sub.add_parser("provenance", help="show the provenance record of result files (embedded or <file>.prov.json)")
    pr.add_argument("files", nargs="+")
    pr.add_argument("--json", action="store_true", help="the full record and run facts as JSON")
    pr.add_argument("--root", default=".", help="working directory the paths in records are relative to")
    pr.set_defaults(fn=cmd_provenance)
    a = sub.add_parser("archive", help="pack workflow, config, environment and results into one file")
    a.add_argument("-o", "--output", default="gibench-archive.tar.gz")
    a.add_argument("--directory", default=".", help="working directory holding results/ (default: .)")
    a.add_argument("--configfile", default=None,
                   help="the config the results came from (default: the snapshot in results/configs/ "
                        "that the tables and figures name)")
    a.add_argument("--exclude", action="append", default=None, metavar="GLOB",
                   help=f"leave out files matching GLOB (* spans directories; default: {', '.join(_a.DEFAULT_EXCLUDE)})")
    a.add_argument("--include-scores", action="store_true", help="also pack significance scores (large)")
    a.set_defaults(fn=cmd_archive)
    v = sub.add_parser("verify", help="check an archive's manifest and provenance chain, re-make its tables and "
                                      "figures, re-run a sample of its other jobs")
    v.add_argument("archive")
    v.add_argument("--jobs", type=int, default=4,
                   help="how many jobs to re-run besides the tables and figures (default 4; 0: none)")
    v.add_argument("--no-derive", action="store_true",
                   help="do not re-make the tables and figures from the archived rows (by default all are)")
    v.add_argument("--expect-id", metavar="ID", default=None,
                   help="the archive id (sha256 of ARCHIVE/MANIFEST.json) the archive must have, e.g. the one a "
                        "paper or README publishes")
    v.add_argument("--all", action="store_true", help="re-run every job that can be re-run from the archive")
    v.add_argument("--only", action="append", metavar="GLOB", help="re-run only jobs with an output matching GLOB")
    v.add_argument("--seed", type=int, default=0, help="seed of the deterministic job sample (default 0)")
    v.add_argument("--atol", type=float, default=_a.DEFAULT_ATOL,
                   help="absolute tolerance when a job was recorded on another device or torch/numpy version "
                        f"(default {_a.DEFAULT_ATOL:g}; same device and versions: exact)")
    v.add_argument("--rtol", type=float, default=_a.DEFAULT_RTOL, help=f"relative tolerance (default {_a.DEFAULT_RTOL:g})")
    v.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="device of the re-runs (default: the recorded kind when available)")
    v.add_argument("--timeout", type=float, default=3600.0, help="seconds per re-run job (default 3600)")
    v.add_argument("--keep", default=None, help="unpack into this directory and keep it (default: a temporary one)")
    v.set_defaults(fn=cmd_verify)
    c = sub.add_parser("check-config", help="check config files: YAML syntax (file:line:column) and every DAG-build check")
    c.add_argument("files", nargs="+")
    c.set_defaults(fn=cmd_check_config)
    c = sub.add_parser("claims", help="check the papers' findings (config/claims/<study>.yaml) against a run's tables")
    c.add_argument("--study", action="append", help="a study (default: every study with tables under --results)")
    c.add_argument("--results", default="results", help="the run's results directory (default: results)")
    c.add_argument("--root", default=None, help="the run's working directory (default: the parent of --results)")
    c.add_argument("--configfile", default=None,
                   help="the config the run used (default: the snapshot in results/configs/ its tables name)")
    c.add_argument("--claims-dir", default=None, help="directory of the claims files (default: config/claims)")
    c.add_argument("--out", default=None, help="where to write <study>.{md,csv} (default: <results>/claims)")
    c.add_argument("--quiet", action="store_true", help="print only the one-line summary per study")
    c.set_defaults(fn=cmd_claims)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
