"""The stochastic-defenses spec (gibench.studies.stochastic_defenses.spec): frozen, its defaults
are the schema file's (read here on their own), rule params repeat the config's key order, and
the cache tells blocks apart by content."""
import copy
import dataclasses

import pytest
import yaml

from gibench.schema import REPO_ROOT
from gibench.studies.stochastic_defenses.spec import spec

SCHEMA = yaml.safe_load((REPO_ROOT / "config/schema/studies/stochastic_defenses.schema.yaml").read_text())

BLOCK = {
    "victims": 3,
    "evaluation": {"ssim": "ssim", "asr_threshold": 0.4},          # written out of the schema's order
    "attacks": {"ig": {"type": "ig_defended"}, "cdia": {}},
    "tables": {"table1": {"kind": "attacks", "datasets": ["mnist"], "models": ["sd_cnn"],
                          "baseline": {"defense": "none", "attack": "ig"}, "defenses": ["dp", "dropout+dp"],
                          "attacks": ["ig", "cdia"]}},
    "figures": {"fig2": {"model": "sd_cnn", "datasets": ["mnist"], "defenses": ["none"], "attack": "cdia"}},
}


def _cfg(block=BLOCK):
    return {"studies": {"stochastic_defenses": copy.deepcopy(block)}}


def test_defaults_are_the_schemas():
    s = spec(_cfg())
    props = SCHEMA["properties"]
    ev = props["evaluation"]["properties"]
    assert s.evaluation.best_of_restarts == ev["best_of_restarts"]["default"]
    assert s.evaluation.asr_threshold == 0.4 and s.evaluation.ssim == "ssim"          # as written
    attack = SCHEMA["properties"]["attacks"]["additionalProperties"]["properties"]
    assert s.attacks["cdia"].restarts == attack["restarts"]["default"]
    assert s.attacks["cdia"].oracle is attack["oracle"]["default"]
    assert s.attacks["cdia"].type == "cdia" and s.attacks["ig"].type == "ig_defended"  # type: the entry name
    assert s.figures["fig2"].victims == SCHEMA["$defs"]["sd_figure"]["properties"]["victims"]["default"]
    assert s.tables["table1"].accuracy is SCHEMA["$defs"]["sd_table"]["properties"]["accuracy"]["default"]
    grad = props["gradient"]["properties"]
    assert (s.gradient.batch_size, s.gradient.loss) == (grad["batch_size"]["default"], grad["loss"]["default"])


def test_spec_is_frozen():
    s = spec(_cfg())
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.victims = 4
    with pytest.raises(TypeError):
        s.attacks["ig"].params["tv"] = 1.0            # a read-only mapping
    assert s.written("attacks", "ig") == {"type": "ig_defended", "oracle": False, "restarts": 1, "params": {},
                                          "model_params": {}}


def test_written_keeps_the_configs_key_order():
    s = spec(_cfg())
    assert list(s.written("evaluation")) == ["ssim", "asr_threshold", "best_of_restarts"]   # defaults after
    assert s.written("privacy") is None and s.written("tables", "nope") is None


def test_cases_baseline_first_then_every_attack_per_defense():
    s = spec(_cfg())
    assert list(s.tables["table1"].cases()) == [
        ("mnist", "sd_cnn", "none", "ig"),
        ("mnist", "sd_cnn", "dp", "ig"), ("mnist", "sd_cnn", "dp", "cdia"),
        ("mnist", "sd_cnn", "dropout+dp", "ig"), ("mnist", "sd_cnn", "dropout+dp", "cdia")]
    assert s.cases()[-1] == ("mnist", "sd_cnn", "none", "cdia")          # the figure's case, after the table's
    assert s.slots() == ["s000", "s001", "s002"]


def test_cache_tells_blocks_apart_by_content():
    cfg = _cfg()
    assert spec(cfg) is spec(_cfg())                  # another object, the same content: built once
    cfg["studies"]["stochastic_defenses"]["victims"] = 5
    assert spec(cfg).victims == 5                     # a key set anew is seen
    other = _cfg()
    other["studies"]["stochastic_defenses"]["attack_params"] = {"tv": 0.3}
    assert spec(other).attack_settings("ig", "sd_cnn")[1] == {"tv": 0.3}
    assert spec({"studies": {"selective_encryption": {}}}) is None
