"""Malformed configs fail at validation with a message naming the key and what is allowed."""
import copy

import pytest
import yaml

from gibench.config import ConfigError, load, validate


@pytest.fixture()
def good(root):
    return yaml.safe_load((root / "config" / "config.yaml").read_text())


def test_default_config_is_valid_and_defaults_filled(good):
    cfg = validate(good)
    se = cfg["studies"]["selective_encryption"]
    assert se["gradient"]["batch_size"] == 1
    assert se["significance"]["selection"] == "global"
    assert cfg["datasets"]["cifar100"]["source"] == "bundled"


def _fails(cfg, *needles):
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    msg = str(e.value)
    for n in needles:
        assert n in msg, f"{n!r} not in error message: {msg}"
    return msg


def test_unknown_top_level_key(good):
    good["sede"] = 3
    _fails(good, "unknown key", "'sede'", "allowed keys", "seed")


def test_unknown_nested_key(good):
    good["studies"]["selective_encryption"]["gradient"]["batchsize"] = 4
    _fails(good, "studies.selective_encryption.gradient", "'batchsize'", "batch_size")


def test_wrong_type(good):
    good["studies"]["selective_encryption"]["victims"] = "two"
    _fails(good, "studies.selective_encryption.victims", "'two'", "integer")


def test_ratio_outside_unit_interval(good):
    good["studies"]["selective_encryption"].setdefault("significance", {})["ratios"] = [0.1, 1.5]
    _fails(good, "significance.ratios[1]", "1.5", "[0, 1]")


def test_ratio_with_too_many_decimals(good):
    good["studies"]["selective_encryption"].setdefault("significance", {})["ratios"] = [0.1234]
    _fails(good, "significance.ratios[0]", "3 decimals")


def test_unknown_dataset(good):
    good["datasets"]["cifar1000"] = {"victims": 2}
    _fails(good, "datasets.cifar1000", "unknown dataset", "cifar100", "mnist")


def test_unknown_dataset_in_case(good):
    good["studies"]["selective_encryption"]["cases"][0]["dataset"] = "imagenet"
    _fails(good, "cases[0].dataset", "'imagenet'", "known:")


def test_unknown_model(good):
    good["studies"]["selective_encryption"]["cases"][1]["model"] = "resnet"
    _fails(good, "cases[1].model", "unknown model 'resnet'", "lenet", "cnn")


def test_bad_enum_value(good):
    good["studies"]["selective_encryption"]["gradient"]["model_mode"] = "training"
    _fails(good, "gradient.model_mode", "'training'", "'eval'", "'train'")


def test_too_few_victims_in_pool(good):
    good["datasets"]["cifar100"]["victims"] = 1
    _fails(good, "victims", "need more victims")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("datasets: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(p)


def test_validation_does_not_accept_empty():
    with pytest.raises(ConfigError, match="empty"):
        validate({})


def test_schema_loader_gives_what_the_pure_python_loader_gives(root):
    # gibench.schema parses the bundled schema files with libyaml's loader (speed); PyYAML's own
    # pure-Python SafeLoader is the reference: every bundled schema file loads to the same object
    from gibench import schema

    files = sorted((root / "config" / "schema").rglob("*.yaml"))
    assert len(files) >= 5
    for f in files:
        assert schema._load_yaml(f) == yaml.safe_load(f.read_text()), f
