"""Output path patterns of the concealed-samples study (the constants ``rules/concealed_samples.smk``
uses; wildcards in braces)."""
from __future__ import annotations

from . import STUDY

R = "results"
CS_PUBLIC = R + "/data/{dataset}/cs_public.parquet"
CS_MEANS = R + "/cs/priors/{dataset}/class_means.safetensors"
CS_GEN = R + "/cs/priors/{dataset}/generator.safetensors"
CS_GEN_LOG = R + "/cs/priors/{dataset}/generator_log.parquet"
CS_INIT = R + "/models/" + STUDY + "/{dataset}/{model}/init.safetensors"      # rule model
CS_SERVER = R + "/models/" + STUDY + "/{dataset}/{model}/server_{server}.safetensors"
CS_SERVER_INFO = R + "/models/" + STUDY + "/{dataset}/{model}/server_{server}.json"
_CASE = "{dataset}/{model}/{server}/{cohort}/{defense}"
CS_GRAD = R + "/gradients/" + STUDY + "/" + _CASE + "/{slot}.safetensors"
CS_KNOW = R + "/gradients/" + STUDY + "/" + _CASE + "/{slot}.knowledge.json"
CS_SECRETS = R + "/gradients/" + STUDY + "/" + _CASE + "/{slot}.secrets.safetensors"
# one restart's reconstruction; it carries its loss trace (gibench.io.load_trace)
CS_ATTACK = R + "/attacks/" + STUDY + "/" + _CASE + "/{slot}/{attack}/rep{rep}.safetensors"
CS_METRICS = R + "/metrics/" + STUDY + "/" + _CASE + "/{attack}.parquet"    # rule cs_evaluate
CS_ALL = R + "/metrics/" + STUDY + "/cs_metrics.parquet"                       # rule cs_gather
CS_FL_DIR = R + "/fl/" + STUDY + "/{dataset}/{model}/{cohort}/{defense}/seed{seed}"
CS_FL_ACC = CS_FL_DIR + "/accuracy.json"
CS_FL_CURVE = CS_FL_DIR + "/curve.parquet"
CS_FL_ALL = R + "/fl/" + STUDY + "/cs_accuracy.parquet"
CS_TABLE = R + "/tables/" + STUDY + "/{table}.{ext}"
CS_FIGURE = R + "/figures/" + STUDY + "/{figure}.{ext}"
VICTIMS = R + "/data/{dataset}/victims.parquet"                                # rule data
SERVERS = ("honest", "imprint")
COHORTS = ("iid", "noniid")
