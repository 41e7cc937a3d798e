"""Output path patterns of the stochastic-defenses study (the constants
``rules/stochastic_defenses.smk`` uses); wildcard values are checked by the constraints below."""
from __future__ import annotations

from . import STUDY

R = "results"
#: a defense combination name (``none``, a key of ``defenses``, or names joined by '+')
DEFENSE_PATTERN = "[a-z0-9_+.-]+"
#: the privacy module a model carries (it adds parameters; dropout does not)
PM_CHOICES = ("none", "precode", "cvb")

WEIGHTS = R + "/models/" + STUDY + "/{dataset}/{model}/pm_{pm}.safetensors"
_CASE = R + "/gradients/" + STUDY + "/{dataset}/{model}/{defense}/{slot}"
UPDATE = _CASE + ".safetensors"
SECRETS = _CASE + ".secrets.safetensors"
KNOWLEDGE = _CASE + ".knowledge.json"
_ATTACK = R + "/attacks/" + STUDY + "/{dataset}/{model}/{defense}/{slot}/{attack}/rep{rep}"
RECON = _ATTACK + ".safetensors"      # carries its loss trace (gibench.io.load_trace)
METRICS = R + "/metrics/" + STUDY + "/{dataset}/{model}/{defense}/{attack}.parquet"
ALL_METRICS = R + "/metrics/" + STUDY + "/rows.parquet"
TABLE = R + "/tables/" + STUDY + "/{table}.{ext}"
FIGURE = R + "/figures/" + STUDY + "/{figure}.{ext}"
