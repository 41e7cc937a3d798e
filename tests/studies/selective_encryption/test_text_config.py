"""Config and targets of the text path: which attack runs on which case, per-attack grids,
selectors attacked once, and the config errors (at DAG build) that name the key."""
from __future__ import annotations

import copy

import pytest

from gibench import config as C
from gibench.pipeline import targets as T
from gibench.studies.selective_encryption import targets as SE

BASE = {
    "seed": 0,
    "datasets": {"cifar100": {"victims": 2}, "cola": {"source": "bundled", "split": "in_domain_dev", "victims": 2}},
    "studies": {"selective_encryption": {
        "cases": [{"dataset": "cifar100", "model": "lenet"}, {"dataset": "cola", "model": "gpt2"},
                  {"dataset": "cola", "model": "bert"}],
        "victims": 2,
        "models": {"gpt2": {"size": "demo"}, "bert": {"size": "demo"}},
        "significance": {"metrics": ["grad", "random"], "ratios": [0.0, 0.3, 1.0]},
        "attacks": {
            "ig": {"params": {"iterations": 1}},
            "lamp": {"metrics": ["grad", "attn", "onefifth_1"], "victims": 1, "params": {"n_steps": 1}},
            "dager": {"ratios": [0.0, 0.001, 1.0]},
        },
    }},
}


def _cfg(mutate=None):
    cfg = copy.deepcopy(BASE)
    if mutate:
        mutate(cfg["studies"]["selective_encryption"])
    return C.validate(cfg)


def test_attacks_run_on_their_modality_with_their_own_grids():
    cfg = _cfg()
    se = cfg["studies"]["selective_encryption"]
    assert SE.attack_runs_on(se, "ig", "cifar100", "lenet") and not SE.attack_runs_on(se, "ig", "cola", "gpt2")
    assert SE.attack_runs_on(se, "lamp", "cola", "bert") and SE.attack_runs_on(se, "lamp", "cola", "gpt2")
    assert SE.attack_runs_on(se, "dager", "cola", "gpt2") and not SE.attack_runs_on(se, "dager", "cola", "bert")
    lamp = list(SE.attack_cases(cfg, "lamp"))
    assert {c[3] for c in lamp} == {"s000"}                                   # lamp: victims 1
    sel = SE.selector_ratio(cfg)
    assert sel == "r0.001"                                                    # smallest interior ratio of all grids
    by_metric = {}
    for c in lamp:
        by_metric.setdefault(c[4], set()).add(c[5])
    assert by_metric["attn"] == {sel} and by_metric["onefifth_1"] == {sel}  # selectors once
    assert by_metric["grad"] == {"r0.300"} and by_metric["any"] == {"r0.000", "r1.000"}
    dager = list(SE.attack_cases(cfg, "dager"))
    assert {c[2] for c in dager} == {"gpt2"} and {c[5] for c in dager if c[4] == "grad"} == {"r0.001"}
    assert "r0.001" in SE.interior_ratios(cfg) and "r0.300" in SE.interior_ratios(cfg)
    tables = [t for t in T.all_targets(cfg) if "/tables/" in t]
    assert any(t.endswith("table3.md") for t in tables)
    figs = {t.rsplit("/", 1)[1] for t in T.all_targets(cfg) if "/figures/" in t}
    assert {"curves_gpt2_cola_lamp.png", "curves_bert_cola_lamp.png", "curves_gpt2_cola_dager.png"} <= figs
    assert not any(f.startswith(("traces_gpt2", "grid_gpt2")) for f in figs)
    # the text protection default (paper: ROUGE-1 <= 0.2) is filled in
    assert se["evaluation"]["protection"]["text"] == {"metric": "rouge1", "op": "<=", "threshold": 0.2}


def test_datasets_restriction_and_cost_metrics():
    cfg = _cfg(lambda se: se["attacks"]["lamp"].update(datasets=["cola"], models=["gpt2"]))
    se = cfg["studies"]["selective_encryption"]
    assert not SE.attack_runs_on(se, "lamp", "cola", "bert")
    from gibench.pipeline.jobs_text import sens_estimator

    # text models: exact Sens is infeasible (paper, Table 6 "-"); their Sens masks come from the
    # paper's Sens (Discrete), timed once, by the `sens` job that makes the masks (no second job)
    assert sens_estimator(se, "gpt2") == "sens_discrete" and sens_estimator(se, "lenet") == "sens"
    assert SE.model_cost_metrics(se, "gpt2", "cola") == ["sens", "sens_probe", "prodsig"]
    assert SE.model_cost_metrics(se, "lenet", "cifar100") == ["sens", "sens_discrete", "sens_probe", "prodsig"]
    probe = _cfg(lambda se: se["models"]["gpt2"].update(sens_estimator="sens_probe"))["studies"]["selective_encryption"]
    assert sens_estimator(probe, "gpt2") == "sens_probe"
    assert SE.model_cost_metrics(probe, "gpt2", "cola") == ["sens", "prodsig"]   # no sens_discrete job then
    assert T.model_inputs(cfg, "selective_encryption", "gpt2") == []          # random weights: no download


def test_pretrained_model_and_prior_need_their_downloads():
    def m(se):
        se["models"]["gpt2"] = {"pretrained": "openai-community/gpt2"}
        se["attacks"]["lamp"]["params"]["prior"] = "openai-community/gpt2"
    cfg = _cfg(m)
    [ckpt] = T.model_inputs(cfg, "selective_encryption", "gpt2")
    assert ckpt.endswith("models/openai-community__gpt2/config.json")

    class WC:
        study, dataset, model, attack = "selective_encryption", "cola", "gpt2", "lamp"
    assert T.attack_inputs(cfg, WC) == {"prior": ckpt}


@pytest.mark.parametrize("mutate,needle", [
    (lambda se: se["attacks"]["dager"].update(models=["bert"]), "attacks.dager.models[0]: dager runs on gpt2"),
    (lambda se: se["attacks"]["ig"].update(metrics=["grad", "attn"]), "layer selectors ['attn'] need transformer"),
    (lambda se: se["attacks"]["dager"].update(ratios=[0.0, 0.0005]), "attacks.dager.ratios[1]"),
    (lambda se: se["attacks"]["lamp"].update(victims=5), "attacks.lamp.victims"),
    (lambda se: se["threat_model"].update(labels_known=False), "threat_model.labels_known: LAMP needs it"),
    (lambda se: se["attacks"].update(tag={}), "unknown attack 'tag'"),
    (lambda se: se["cases"].append({"dataset": "cifar100", "model": "gpt2"}), "do not match"),
    (lambda se: se["models"]["gpt2"].update(cost_metrics=["sens"]), "cost_metrics[0]: 'sens' would time"),
    (lambda se: se["attacks"]["lamp"].update(datasets=["sst2"]), "attacks.lamp.datasets[0]"),
])
def test_config_errors_name_the_key(mutate, needle):
    def m(se):
        se.setdefault("threat_model", {})
        mutate(se)
    with pytest.raises(C.ConfigError) as e:
        _cfg(m)
    assert needle in str(e.value)


def test_schema_rejects_unknown_text_keys():
    with pytest.raises(C.ConfigError, match="unknown key"):
        _cfg(lambda se: se["models"]["gpt2"].update(layers=3))
    with pytest.raises(C.ConfigError, match="size"):
        _cfg(lambda se: se["models"]["gpt2"].update(size="huge"))
    cfg = copy.deepcopy(BASE)
    cfg["datasets"]["cola"]["sampler"] = "random"
    with pytest.raises(C.ConfigError, match="sampler"):
        C.validate(cfg)
