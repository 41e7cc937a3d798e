"""Bad input fails when the DAG is built, naming the key (issue 26, items 1-3).

Independent facts: the pool sizes the registry declares for bundled splits are counted here
from the bundled files themselves; the slot names have three digits (rule wildcard
``s[0-9]{3}``); each attack's declared defaults are checked against its declared schema with
``jsonschema`` directly and accepted by the attack's own resolver (the one its job calls).
"""
from __future__ import annotations

import copy

import jsonschema
import pytest

from gibench import config as C
from workflow_helpers import MICRO

SE = "studies.selective_encryption"


def _errors(cfg: dict) -> str:
    with pytest.raises(C.ConfigError) as e:
        C.validate(cfg)
    return str(e.value)


def _se(**changes) -> dict:
    cfg = copy.deepcopy(MICRO)
    cfg["studies"]["selective_encryption"].update(changes)
    return cfg


# ------------------------------------------------------------------ 1. sizes bounded at config check

def test_victims_above_the_bundled_pool_fail_naming_the_key_and_the_pool():
    cfg = _se()
    cfg["datasets"]["cifar100"]["victims"] = 917
    msg = _errors(cfg)
    assert "datasets.cifar100.victims: 917 is more than the 916 samples" in msg


def test_a_billion_victims_fail_at_config_check():
    # before: accepted, and `snakemake -n` built a target path per slot until the kernel killed it
    cfg = _se(victims=1_000_000_000)
    cfg["datasets"]["cifar100"]["victims"] = 1_000_000_000
    msg = _errors(cfg)
    assert "datasets.cifar100.victims" in msg and f"{SE}.victims" in msg


def test_hub_split_bounded_by_its_declared_size():
    cfg = _se()
    cfg["datasets"]["cifar100"] = {"source": "hub", "split": "test", "victims": 10_001}
    assert "datasets.cifar100.victims: 10001 is more than the 10000 samples of cifar100's hub split 'test'" in _errors(cfg)


def test_bundled_split_that_does_not_exist_fails_naming_the_key():
    cfg = _se()
    cfg["datasets"]["cifar100"]["split"] = "train"
    assert "datasets.cifar100.split: the bundled slice of cifar100 has split(s) 'test', not 'train'" in _errors(cfg)


@pytest.mark.parametrize("key", ["victims"])
def test_study_victims_bounded_by_the_three_digit_slot_names(key):
    cfg = _se(**{key: 1001})
    cfg["datasets"]["cifar100"]["victims"] = 916
    assert f"{SE}.{key}: 1001 is not allowed" in _errors(cfg)


def test_declared_bundled_pool_sizes_are_the_sizes_of_the_bundled_files(resources):
    from gibench.datasets import DATASETS

    checked = 0
    for name in DATASETS.names():
        ds = DATASETS.get(name)
        for key, n in (getattr(ds, "pool_sizes", None) or {}).items():
            source, split = key.split(":")
            if source != "bundled":
                continue
            data = ds.load("bundled", split, resources)
            assert len(data.labels) == n, (name, split)
            checked += 1
        for split in ds.bundled_splits:          # every bundled split declares its size
            assert f"bundled:{split}" in ds.pool_sizes, name
    assert checked >= 7


# ------------------------------------------------------------------ 2. every attack's params, every study

@pytest.mark.parametrize("params,needle", [
    ({"lr": "fast"}, f"{SE}.attacks.ig.params.lr: 'fast' is not a number > 0"),
    ({"iterations": -5}, f"{SE}.attacks.ig.params.iterations: -5 is not an integer >= 0"),
    ({"iteratons": 5}, f"{SE}.attacks.ig.params.iteratons: unknown option of ig (did you mean 'iterations'?)"),
    ({"signed": "yes"}, f"{SE}.attacks.ig.params.signed: 'yes' is not true or false"),
    ({"lr_schedule": "cosine"}, f"{SE}.attacks.ig.params.lr_schedule: 'cosine' is not one of 'multistep'"),
])
def test_selective_encryption_attack_params_fail_at_dag_build(params, needle):
    # before: lr 'fast' passed the dry run and died in torch's Adam; -5 and typos in the attack job
    assert needle in _errors(_se(attacks={"ig": {"params": params}}))


def test_model_params_are_checked_at_their_own_key():
    cfg = _se(attacks={"ig": {"params": {"lr": 0.1}, "model_params": {"lenet": {"tv": -1}}}})
    assert f"{SE}.attacks.ig.model_params.lenet.tv: -1 is not a number >= 0" in _errors(cfg)


def test_text_attack_params_are_checked():
    cfg = _se(cases=[{"dataset": "cola", "model": "gpt2"}], models={"gpt2": {"size": "demo"}},
              attacks={"dager": {"params": {"n_layers": 1}}, "lamp": {"params": {"n_step": 3}}})
    cfg["datasets"] = {"cola": {"split": "in_domain_dev", "victims": 2}}
    msg = _errors(cfg)
    assert f"{SE}.attacks.dager.params.n_layers: 1 is not an integer >= 2" in msg
    assert f"{SE}.attacks.lamp.params.n_step: unknown option of lamp (did you mean 'n_steps'?)" in msg


SD = "studies.stochastic_defenses"
SD_MICRO = {"seed": 1, "datasets": {"mnist": {"victims": 2}}, "studies": {"stochastic_defenses": {
    "victims": 1,
    "attack_params": {"iterations": 4},
    "attacks": {"ig": {"type": "ig_defended"}, "wiig": {"oracle": True}},
    "tables": {"table1": {"kind": "attacks", "datasets": ["mnist"], "models": ["sd_cnn"], "defenses": ["dp"],
                          "attacks": ["ig", "wiig"]}},
}}}


def _sd(mutate) -> dict:
    cfg = copy.deepcopy(SD_MICRO)
    mutate(cfg["studies"]["stochastic_defenses"])
    return cfg


@pytest.mark.parametrize("mutate,needle", [
    (lambda s: s["attack_params"].update(lr="fast"), f"{SD}.attack_params.lr: 'fast' is not a number > 0"),
    (lambda s: s["attacks"]["wiig"].update(params={"secret_noise": "mix"}),
     f"{SD}.attacks.wiig.params.secret_noise: 'mix' is not one of 'add', 'subtract'"),
    (lambda s: s["attacks"]["ig"].update(model_params={"sd_cnn": {"mask_lr": 0}}),
     f"{SD}.attacks.ig.model_params.sd_cnn.mask_lr: 0 is not a number > 0 or null"),
    (lambda s: s.update(defense_defaults={"dp": {"clip": "x"}}), f"{SD}.defense_defaults.dp: defense 'dp': clip"),
    # the weights are made per privacy module from defense_defaults: a combination may not move PRECODE
    (lambda s: s.update(defenses={"p0": [{"name": "precode", "position": 0}]}),
     f"{SD}.defenses.p0: precode option(s) position differ from {SD}.defense_defaults.precode"),
    (lambda s: s.update(defenses={"c3": [{"name": "cvb", "kernel_size": 3}]}),
     f"{SD}.defenses.c3: cvb option(s) kernel_size differ from {SD}.defense_defaults.cvb"),
])
def test_stochastic_defenses_params_fail_naming_the_key(mutate, needle):
    assert needle in _errors(_sd(mutate))


def test_precode_placement_from_defense_defaults_is_accepted():
    # docs/regimes_precode.md: the placement set where the weights are made builds and checks clean
    cfg = _sd(lambda s: s.update(inputs={"mnist": {"shape": [3, 32, 32]}}, defense_defaults={"precode": {"position": 0}},
                                 defenses={"p0": [{"name": "precode", "position": 0}], "p": ["precode"]}))
    C.validate(cfg)


CS = "studies.concealed_samples"
CS_MICRO = {"seed": 1, "datasets": {"mnist": {"victims": 2}}, "studies": {"concealed_samples": {
    "cases": {"mnist": "lenet_mnist"}, "tables": ["table7"], "victims": 1, "public": {"mnist": {"size": 20}},
    "defenses": {"none": [], "dp_gaussian": ["dp_gaussian"], "prune": ["prune"], "dcs2": ["dcs2"],
                 "prune+dcs2": ["dcs2", "prune"]},
    "defense_params": {"mnist": {"dp_gaussian": {"std": 0.01}}},
    "attacks": {"gs": {"type": "gs", "params": {"iterations": 5}}},
    "utility": {"datasets": ["mnist"], "clients": 3, "protected_client": 1, "samples_per_client": {"mnist": 10},
                "rounds": 1, "defense_overrides": {}},
}}}


def _cs(mutate) -> dict:
    cfg = copy.deepcopy(CS_MICRO)
    mutate(cfg["studies"]["concealed_samples"])
    return cfg


def test_cs_micro_config_is_valid():
    C.validate(_cs(lambda c: None))


@pytest.mark.parametrize("mutate,needle", [
    (lambda c: c["attacks"]["gs"].update(dataset_params={"mnist": {"lr": "fast"}}),
     f"{CS}.attacks.gs.dataset_params.mnist.lr: 'fast' is not a number > 0"),
    (lambda c: c["attacks"]["gs"]["params"].update(iteratons=3), f"{CS}.attacks.gs.params.iteratons: unknown option"),
    (lambda c: c["defense_params"]["mnist"]["dp_gaussian"].update(std="big"),
     f"{CS}.defense_params.mnist.dp_gaussian: defense 'dp_gaussian': std"),
    (lambda c: c["utility"]["defense_overrides"].update(dcs2={"iteratons": 2}),
     f"{CS}.utility.defense_overrides.dcs2 (dataset mnist): defense 'dcs2': unknown option(s) ['iteratons']"),
])
def test_concealed_samples_params_fail_naming_the_key(mutate, needle):
    assert needle in _errors(_cs(mutate))


def _all_attack_specs():
    from gibench.attacks import ATTACKS

    return [(n, ATTACKS.params(n)) for n in ATTACKS.names()]


@pytest.mark.parametrize("name,spec", _all_attack_specs(), ids=[n for n, _ in _all_attack_specs()])
def test_every_attack_declares_its_params_and_its_defaults_fit_them(name, spec):
    assert spec is not None, f"attack {name!r} registers no ParamSpec: its params cannot be checked at DAG build"
    assert set(spec.defaults) <= set(spec.schema), sorted(set(spec.defaults) - set(spec.schema))
    for key, value in spec.defaults.items():
        jsonschema.Draft202012Validator(dict(spec.schema[key])).validate(value)
    if spec.resolve is not None:
        spec.resolve({})                     # the attack's own resolver accepts its defaults
    assert spec.errors([("p", dict(spec.defaults))]) == []


# ------------------------------------------------------------------ 3. no silent nothing

def test_empty_significance_metrics_fail():
    # before: ran green and wrote tables with a header only
    msg = _errors(_se(significance={"metrics": []}))
    assert f"{SE}.significance.metrics: the list is empty" in msg


def test_a_metric_listed_twice_fails():
    # before: a duplicate column in the tables
    msg = _errors(_se(significance={"metrics": ["grad", "random", "grad"]}))
    assert f"{SE}.significance.metrics: 'grad' listed more than once" in msg


def test_dager_in_an_image_only_study_fails():
    # before: dropped without a word
    msg = _errors(_se(attacks={"ig": {"params": {"iterations": 1}}, "dager": {}}))
    assert f"{SE}.attacks.dager: dager attacks text models (gpt2), but no case of this study (cifar100/lenet)" in msg
