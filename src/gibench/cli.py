"""The `gibench` command: where results are, provenance of a file, archive and verify."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_where(args: argparse.Namespace) -> int:
    root = Path(args.results)
    tables = sorted(root.glob("tables/*/*.md"))
    figures = sorted(root.glob("figures/*/*.png"))
    if args.print_tables:
        for t in tables:
            print(f"\n=== {t}\n")
            print(t.read_text())
    print(f"\nResults under {root.resolve()}:")
    print(f"  tables  ({len(tables)}): {root / 'tables'}/<study>/<table>.{{csv,md}}")
    for t in tables:
        print(f"    {t}")
    print(f"  figures ({len(figures)}): {root / 'figures'}/<study>/<figure>.{{png,pdf}}")
    for f in figures[:40]:
        print(f"    {f}")
    if len(figures) > 40:
        print(f"    … and {len(figures) - 40} more")
    return 0


def cmd_provenance(args: argparse.Namespace) -> int:
    from . import io

    rc = 0
    for f in args.files:
        try:
            rec = io.read_record(f)
        except Exception as e:
            print(f"{f}: {e}", file=sys.stderr)
            rc = 1
            continue
        if args.json:
            print(json.dumps(rec, indent=2, sort_keys=True))
            continue
        print(f"{f}")
        code = rec.get("code", {})
        print(f"  rule        {rec.get('rule')}   wildcards {rec.get('wildcards')}")
        print(f"  code        gibench {code.get('gibench')} commit {code.get('git_commit')}"
              f"{' (dirty)' if code.get('git_dirty') else ''}")
        print(f"  versions    " + ", ".join(f"{k} {v}" for k, v in (rec.get("versions") or {}).items() if v))
        print(f"  device      {rec.get('device')}   seed {rec.get('seed')}")
        print(f"  config      sha256 {rec.get('config_digest')}")
        if rec.get("params"):
            print(f"  params      {json.dumps(rec['params'], sort_keys=True)[:300]}")
        for p, d in (rec.get("inputs") or {}).items():
            print(f"  input       {p}  sha256 {d[:16]}…")
        for k in sorted(set(rec) - {"rule", "wildcards", "code", "versions", "device", "seed", "config_digest",
                                    "params", "inputs", "input_files", "output_files", "format"}):
            print(f"  {k:<11} {json.dumps(rec[k], sort_keys=True, default=str)[:300]}")
    return rc


def cmd_archive(args: argparse.Namespace) -> int:
    from . import archive, config

    cfg = config.load(args.configfile)
    manifest = archive.create(args.output, cfg, workdir=args.directory, include_scores=args.include_scores)
    print(f"wrote {args.output}: {len(manifest['files'])} files, config sha256 {manifest['config_digest'][:16]}…, "
          f"code {manifest['code']['git_commit'][:12]}{' (dirty)' if manifest['code']['git_dirty'] else ''}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from . import archive

    report = archive.verify(args.archive, sample=args.jobs, seed=args.seed, atol=args.atol, rtol=args.rtol)
    for v in report.verdicts:
        print(f"{'OK  ' if v.ok else 'FAIL'}  {v.item}: {v.detail}")
    print("verdict: " + ("archive verified" if report.ok else "MISMATCH — see FAIL lines above"))
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gibench", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("where", help="list (and print) the tables and figures of a run")
    w.add_argument("--results", default="results")
    w.add_argument("--print-tables", action="store_true", help="print every Markdown table")
    w.set_defaults(fn=cmd_where)
    pr = sub.add_parser("provenance", help="show the provenance record embedded in result files")
    pr.add_argument("files", nargs="+")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(fn=cmd_provenance)
    a = sub.add_parser("archive", help="pack workflow, config, environment and results into one file")
    a.add_argument("-o", "--output", default="gibench-archive.tar.gz")
    a.add_argument("--configfile", default="config/config.yaml")
    a.add_argument("--directory", default=".", help="working directory holding results/")
    a.add_argument("--include-scores", action="store_true", help="also pack significance scores (large)")
    a.set_defaults(fn=cmd_archive)
    v = sub.add_parser("verify", help="check an archive's manifest and re-run a sample of its jobs")
    v.add_argument("archive")
    v.add_argument("--jobs", type=int, default=4, help="how many jobs to re-run (default 4)")
    v.add_argument("--seed", type=int, default=0, help="seed of the deterministic job sample")
    v.add_argument("--atol", type=float, default=0.0, help="tolerance for non-deterministic devices (default exact)")
    v.add_argument("--rtol", type=float, default=0.0)
    v.set_defaults(fn=cmd_verify)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
