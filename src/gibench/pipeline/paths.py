"""Artifact paths.  A case name spells out its wildcards in a fixed order
(study/dataset/model/slot/significance/ratio/attack/rep, where ``significance`` names the
significance metric that ranked the entries: grad, prodsig, sens, ...); ratios use three decimals (r0.300) and
slots three digits (s003) so file names are stable."""
from __future__ import annotations

import os

from ..wildcards import fmt, fmt_ratio, fmt_slot  # noqa: F401  (re-exported: P.fmt, P.fmt_ratio, ...)

R = "results"

VICTIMS = R + "/data/{dataset}/victims.parquet"
WEIGHTS = R + "/models/{study}/{dataset}/{model}/init.safetensors"
GRADIENT = R + "/gradients/{study}/{dataset}/{model}/{slot}.safetensors"
KNOWLEDGE = R + "/gradients/{study}/{dataset}/{model}/{slot}.knowledge.json"
SCORES = R + "/significance/{study}/{dataset}/{model}/{slot}/{significance}.safetensors"
MASK = R + "/masks/{study}/{dataset}/{model}/{slot}/{significance}/{ratio}.safetensors"
# one restart's reconstruction; it carries its loss trace (gibench.io.load_trace)
ATTACK = R + "/attacks/{study}/{dataset}/{model}/{slot}/{significance}/{ratio}/{attack}/rep{rep}.safetensors"
# the metric rows of every attack output of one victim slot (one evaluation job per slot)
METRICS = R + "/metrics/{study}/{dataset}/{model}/{slot}.parquet"
# what the slot's grid/traces figures show (the kept restarts), written by its evaluate job
VIEWS = R + "/metrics/{study}/{dataset}/{model}/{slot}.views.safetensors"
ALL_METRICS = R + "/metrics/{study}/metrics.parquet"
COST = R + "/cost/{study}/significance_cost.parquet"
TABLE = R + "/tables/{study}/{table}.{ext}"
FIGURE = R + "/figures/{study}/{figure}.{ext}"
# the local language model of a text family (rule lm_pretrain; gibench.models.pretrain)
LM_WEIGHTS = R + "/lm/{family}/lm.safetensors"



def hub(config: dict, pattern: str) -> str:
    """A download rule's output under the config's ``hub_dir`` (relative or absolute)."""
    return os.path.join(config["hub_dir"], pattern)


# Ratio 0 (nothing encrypted) and 1 (everything encrypted) give the same mask whatever the
# significance metric: those cases are computed once under this name and shared by every curve.
ANY_METRIC = "any"


def metric_for_ratio(metric: str, ratio: float) -> str:
    return ANY_METRIC if ratio in (0.0, 1.0) else metric


SCORE_COST = R + "/significance/{study}/{dataset}/{model}/{slot}/{significance}.cost.parquet"
BACKBONE = "{hub_dir}/lpips/{file}"  # LPIPS backbone features (download_lpips_backbone)
