# gibench: gradient inversion attacks vs defenses, reproducibly.
# Embedded default: `snakemake --cores 2` (config/config.yaml, CPU scale, bundled data).
# A paper-scale study: `snakemake --configfile config/studies/selective_encryption.yaml`.
# On SLURM: `snakemake --profile slurm [--configfile ...]`.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# Prefer the source tree next to this Snakefile over any installed copy: here (sys.path) and in
# every job Snakemake spawns (script: jobs are new Python processes; PYTHONPATH comes before the
# venv's editable install, so a second clone sharing a venv runs its own code).
_SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, _SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [_SRC]
        + [
            p
            for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and p != _SRC
        ]
    )
)
from gibench import config as gconfig
from gibench.pipeline import paths as P
from gibench.pipeline import targets as T

# the study registry; importing it imports the modules named in GIBENCH_PLUGINS, so that a
# plugin's study is known to the config check and its rules are included below
from gibench.studies import STUDIES

# study 1 (selective encryption) runs the shared stage rules; its cases and input functions
from gibench.studies.selective_encryption import targets as SE

# The embedded default applies only when no --configfile is given: a study config is complete
# on its own (Snakemake would otherwise merge the demo's studies into it).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


try:
    gconfig.validate(
        config, os.path.join(workflow.basedir, "config/schema/config.schema.yaml")
    )
except gconfig.ConfigError as e:
    raise WorkflowError(str(e))

# A lock left by a run killed with SIGKILL (out of memory, lost node, kill -9) is removed when no
# process that held it runs any more (gibench.pipeline.runlock; Snakemake 9 cannot tell a stale
# lock from a live one); with rerun-incomplete (profiles/default) the same command resumes.
from gibench.pipeline import runlock, scheduler_fix, dag_speed

# three answers Snakemake recomputes for every job or file of the DAG (function parameters, the
# script check, which output pattern can make a file), remembered (gibench.pipeline.dag_speed:
# ~13 % of a paper-scale dry run)
dag_speed.apply()

if workflow.is_main_process:
    # one scheduler wake-up timer at a time instead of one more per finished job
    # (gibench.pipeline.scheduler_fix: Snakemake's loop otherwise polls ever faster)
    scheduler_fix.apply()
    _stale = runlock.clear_stale(".")
    if _stale:
        print(f"gibench: {_stale}", file=sys.stderr)


onstart:
    runlock.register(".")


onsuccess:
    runlock.release(".")


onerror:
    runlock.release(".")


# the exact config every record's config_digest names: results/configs/<digest>.yaml
from gibench.provenance import snapshot_config

snapshot_config(config)


# `snakemake --lint`: the one remaining lint, "Specify a conda environment or container for each
# rule", is deliberate.  Every rule runs the same Python environment (gibench + torch; the rules
# differ by function, not by software), deployed once per cluster as a venv (`make venv` /
# `make venv-gpu`) or the container image of envs/Dockerfile / envs/gibench.def (README, "Running
# on a cluster"); per-rule conda environments would duplicate a multi-GB CUDA torch per rule and
# cannot be tested offline.  tests/pipeline/test_workflow_conventions.py fails on any other lint.
# `snakemake --report report.html`: every table and figure, captioned (workflow/report/*.rst)
report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/downloads.smk"
include: "rules/data.smk"
include: "rules/gradient.smk"
include: "rules/significance.smk"
include: "rules/attack.smk"
include: "rules/tables.smk"
include: "rules/lm.smk"
include: "rules/fl.smk"


# each registered study's own rules file, in registration order (gibench.studies.STUDIES;
# study 1's is rules/overhead.smk, a plugin's is absolute)
for _study in STUDIES.in_order():

    include: _study.rules_path(workflow.basedir)


include: "rules/claims.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        T.all_targets(config),
