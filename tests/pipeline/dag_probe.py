"""Run the Snakemake command line (arguments as ``snakemake``'s) and write, to the JSON file named by
``DAG_PROBE_OUT``, what the DAG build did:

- ``created``: Job objects Snakemake built, per rule (candidates it threw away included);
- ``kept``: the jobs of the finished DAG, per rule;
- ``slots``: for each decade twin (``X_decade``, ``X_decade_part``), the victim slots its kept jobs
  run (per job: the slot digits ``<name>__<d>`` of its outputs);
- ``pairs``: for each per-slot rule X with a decade twin ``X_decade`` (and ``X_decade_part``, if
  defined), the output files of the DAG's jobs of any of these rules (``files``) and those not
  matched by exactly one of them by Snakemake's own matching (``Rule.is_producer``), or matched by
  another rule than the job's (``bad``, up to 20); not looked at with ``DAG_PROBE_PAIRS=0``
  (benchmarks/bench_jobs.py times the dry run with it).

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

SUFFIX = "_decade"            # gibench.pipeline.slot_groups.SUFFIX, PART_SUFFIX (not imported:
PART_SUFFIX = "_decade_part"  # the probe reads the rules as Snakemake has them)
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
    slots: collections.Counter = collections.Counter()
    for j in jobs:
        if j.rule.name.endswith((SUFFIX, PART_SUFFIX)):
            slots[j.rule.name] += len({n.rsplit("__", 1)[1] for n in j.output._names if "__" in n})
    found["slots"] = dict(slots)
    if os.environ.get("DAG_PROBE_PAIRS", "1") == "0":
        return out
    rules = {r.name: r for r in self.workflow.rules}
    pairs = {}
    for name, twin in rules.items():
        if not name.endswith(SUFFIX) or name[: -len(SUFFIX)] not in rules:
            continue
        x = rules[name[: -len(SUFFIX)]]
        group = [r for r in (x, twin, rules.get(x.name + PART_SUFFIX)) if r is not None]
        files, bad = 0, []
        for j in jobs:
            if j.rule.name not in [r.name for r in group]:
                continue
            for f in j.output:
                files += 1
                hits = [r.name for r in group if r.is_producer(str(f))]
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
