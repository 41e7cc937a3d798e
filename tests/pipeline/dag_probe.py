"""Run the Snakemake command line (arguments as ``snakemake``'s) and write, to the JSON file named by
``DAG_PROBE_OUT``, what the DAG build did:

- ``created``: Job objects Snakemake built, per rule (candidates it threw away included);
- ``kept``: the jobs of the finished DAG, per rule;
- ``pairs``: for each per-slot rule X with a decade twin ``X_decade``, the output files of the DAG's
  jobs of either rule (``files``) and those not matched by exactly one of the two by Snakemake's own
  matching (``Rule.is_producer``), or matched by the other rule than the job's (``bad``, up to 20);
  not looked at with ``DAG_PROBE_PAIRS=0`` (benchmarks/bench_jobs.py times the dry run with it).

Used by tests/pipeline/test_slot_groups_complement.py (subprocess: the DAG build of a paper-scale
study is tens of seconds; a fresh process each time keeps Snakemake's module state out of pytest's).
"""
from __future__ import annotations

import collections
import json
import os
import sys

import snakemake.api  # noqa: F401  (first: snakemake.dag or .workflow alone is a circular import)
import snakemake.dag as D
import snakemake.jobs as J

SUFFIX = "_decade"
created: collections.Counter = collections.Counter()
found: dict = {}

_init_job = J.Job.__init__


def _count(self, rule, *a, **k):
    created[rule.name] += 1
    return _init_job(self, rule, *a, **k)


J.Job.__init__ = _count
_init_dag = D.DAG.init


async def _probe(self, *a, **k):
    out = await _init_dag(self, *a, **k)
    jobs = list(self.jobs)
    found["kept"] = dict(collections.Counter(j.rule.name for j in jobs))
    if os.environ.get("DAG_PROBE_PAIRS", "1") == "0":
        return out
    rules = {r.name: r for r in self.workflow.rules}
    pairs = {}
    for name, twin in rules.items():
        if not name.endswith(SUFFIX) or name[: -len(SUFFIX)] not in rules:
            continue
        x = rules[name[: -len(SUFFIX)]]
        files, bad = 0, []
        for j in jobs:
            if j.rule.name not in (x.name, twin.name):
                continue
            for f in j.output:
                files += 1
                hits = [r.name for r in (x, twin) if r.is_producer(str(f))]
                if hits != [j.rule.name] and len(bad) < 20:
                    bad.append([str(f), j.rule.name, hits])
        pairs[x.name] = {"files": files, "bad": bad}
    found["pairs"] = pairs
    return out


D.DAG.init = _probe


def main() -> int:
    from snakemake.cli import main as snakemake_main

    sys.argv = ["snakemake"] + sys.argv[1:]
    rc = 0
    try:
        snakemake_main()
    except SystemExit as e:
        rc = int(e.code or 0)
    finally:
        with open(os.environ["DAG_PROBE_OUT"], "w") as fh:
            json.dump({"created": dict(created), **found}, fh, indent=1, sort_keys=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
