"""The concealed-samples study's spec and its attack needs (gibench.studies.concealed_samples):
the spec is frozen, built once per config content, takes its defaults from the schema file; the
one registry of needs (NEEDS) gives the rule-input function its inputs and server model, and an
attack needing what the study cannot provide is a config error at DAG build."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
RES = str(ROOT / "resources")
SCHEMA = ROOT / "config" / "schema" / "studies" / "concealed_samples.schema.yaml"


def _cfg(**study):
    base = {"cases": {"mnist": "lenet_mnist"}, "tables": ["table7"], "victims": 1,
            "defenses": {"none": [], "prune": ["prune"], "dcs2": ["dcs2"], "prune+dcs2": ["dcs2", "prune"]},
            "attacks": {"gs": {"type": "gs", "params": {"iterations": 1}}}}
    base.update(study)
    return {"seed": 0, "resources_dir": RES, "datasets": {"mnist": {"victims": 4}},
            "studies": {"concealed_samples": base}}


def test_spec_is_frozen_built_once_and_takes_the_schemas_defaults():
    from gibench.config import validate
    from gibench.studies.concealed_samples.spec import spec

    cfg = validate(_cfg())
    s = spec(cfg)
    assert spec(copy.deepcopy(cfg)) is s                 # cached on the block's content
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.victims = 2
    with pytest.raises(TypeError):
        s.cases["cifar10"] = "convnet"                    # read-only mappings
    props = yaml.safe_load(SCHEMA.read_text())["properties"]
    assert s.public_for("mnist").size == props["public"]["additionalProperties"]["properties"]["size"]["default"]
    assert s.generator.generator_steps == props["generator"]["properties"]["generator_steps"]["default"]
    assert s.evaluation.lpips.datasets == tuple(props["evaluation"]["properties"]["lpips"]["properties"]
                                                ["datasets"]["default"])
    assert s.utility is None and not s.utility_on         # no utility block: no FedAvg runs
    # a block that was not validated (the table builders take the raw study file) gets the same defaults
    assert spec(_cfg()) == s and spec(_cfg()) is not s
    other = copy.deepcopy(cfg)
    other["studies"]["concealed_samples"]["victims"] = 2
    assert spec(other).victims == 2 and spec(cfg).victims == 1


def _wc(**kw):
    base = dict(dataset="mnist", model="lenet_mnist", server="honest", cohort="iid", defense="none", slot="s000")
    return SimpleNamespace(**{**base, **kw})


def test_needs_registry_gives_each_attack_its_inputs_and_server():
    from gibench.config import validate
    from gibench.studies.concealed_samples import targets as T
    from gibench.studies.concealed_samples.needs import NEEDS

    cfg = validate(_cfg(attacks={"gs": {"type": "gs", "params": {"iterations": 1}},
                                 "adaptive": {"type": "adaptive", "params": {"iterations": 1}},
                                 "imprint": {"type": "imprint"},
                                 "ggl": {"type": "ggl", "params": {"iterations": 1}}}))
    # the malicious server's attack runs against its imprinted model, the others against the honest one
    assert {a: T.server_of(cfg, a) for a in ("gs", "adaptive", "imprint", "ggl")} == {
        "gs": "honest", "adaptive": "honest", "imprint": "imprint", "ggl": "honest"}
    case = "results/gradients/concealed_samples/mnist/lenet_mnist/honest/iid/none/s000"
    assert T.attack_inputs(cfg, _wc(attack="gs")) == {
        "gradient": case + ".safetensors", "knowledge": case + ".knowledge.json",
        "weights": "results/models/concealed_samples/mnist/lenet_mnist/init.safetensors"}
    assert T.attack_inputs(cfg, _wc(attack="adaptive"))["class_means"] == "results/cs/priors/mnist/class_means.safetensors"
    assert T.attack_inputs(cfg, _wc(attack="ggl"))["generator"] == "results/cs/priors/mnist/generator.safetensors"
    imp = T.attack_inputs(cfg, _wc(attack="imprint", server="imprint"))
    assert imp["server"] == "results/models/concealed_samples/mnist/lenet_mnist/server_imprint.json"
    assert imp["weights"] == "results/models/concealed_samples/mnist/lenet_mnist/server_imprint.safetensors"
    # one record per need: the input it fills is the keyword the attack receives it under
    assert {n: (r.input, r.keyword, r.server) for n, r in NEEDS.items()} == {
        "class_means": ("class_means", "class_means", None), "generator": ("generator", "generator", None),
        "imprinted_server": ("server", "server", "imprint")}


def test_an_attack_needing_what_the_study_cannot_provide_fails_at_dag_build(monkeypatch):
    from gibench.attacks import ATTACKS
    from gibench.config import ConfigError, validate

    gs = ATTACKS.entry("gs")
    monkeypatch.setitem(ATTACKS._entries, "toy_needy", ATTACKS.get("gs"))
    monkeypatch.setitem(ATTACKS._meta, "toy_needy", dataclasses.replace(gs, name="toy_needy", needs=("mind_reader",)))
    attacks = {"gs": {"type": "gs", "params": {"iterations": 1}}, "toy": {"type": "toy_needy"}}
    with pytest.raises(ConfigError, match=r"studies\.concealed_samples\.attacks\.toy: attack 'toy_needy' needs "
                                          r"mind_reader, which this study cannot provide \(it provides class_means, "
                                          r"generator, imprinted_server\)"):
        validate(_cfg(attacks=attacks))
