# gibench: gradient inversion attacks vs defenses, reproducibly.
# Embedded default: `snakemake --cores 2` (config/config.yaml, CPU scale, bundled data).
# A paper-scale study: `snakemake --configfile config/studies/selective_encryption.yaml`.
# On SLURM: `snakemake --profile slurm [--configfile ...]`.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# Prefer the source tree next to this Snakefile over any installed copy.
sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from gibench import config as gconfig
from gibench.pipeline import paths as P
from gibench.pipeline import targets as T


# The embedded default applies only when no --configfile is given: a study config is complete
# on its own (Snakemake would otherwise merge the demo's studies into it).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"



try:
    gconfig.validate(config, os.path.join(workflow.basedir, "config/schema/config.schema.yaml"))
except gconfig.ConfigError as e:
    raise WorkflowError(str(e))

# A lock left by a run killed with SIGKILL (out of memory, lost node, kill -9) is removed when no
# process that held it runs any more (gibench.pipeline.runlock; Snakemake 9 cannot tell a stale
# lock from a live one); with rerun-incomplete (profiles/default) the same command resumes.
from gibench.pipeline import runlock

if workflow.is_main_process:
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


# `snakemake --report report.html`: every table and figure, captioned (workflow/report/*.rst)
report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/gradient.smk"
include: "rules/significance.smk"
include: "rules/attack.smk"
include: "rules/tables.smk"
include: "rules/text.smk"
include: "rules/lm.smk"
include: "rules/fl.smk"
include: "rules/overhead.smk"
include: "rules/concealed_samples.smk"
include: "rules/stochastic_defenses.smk"
include: "rules/claims.smk"
include: "rules/report.smk"


rule all:
    input:
        T.all_targets(config),
    default_target: True
