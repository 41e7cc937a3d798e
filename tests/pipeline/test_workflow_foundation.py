"""Real snakemake runs of a micro config: expected files, byte-identical re-runs, bad configs."""
import copy
import hashlib

import pytest

from gibench import io
from workflow_helpers import MICRO, run_snakemake, write_config

pytestmark = pytest.mark.slow

FOUNDATION = [
    "results/data/cifar100/victims.parquet",
    "results/models/selective_encryption/cifar100/lenet/init.safetensors",
    "results/gradients/selective_encryption/cifar100/lenet/s000.safetensors",
    "results/gradients/selective_encryption/cifar100/lenet/s000.knowledge.json",
]


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_micro_run_produces_foundation_and_reruns_are_byte_identical(tmp_path):
    digests = []
    for run in ("a", "b"):
        wd = tmp_path / run
        wd.mkdir()
        # identical config content in both runs (hub_dir would otherwise differ)
        cfg = write_config(wd, {**MICRO, "hub_dir": str(tmp_path / "hub")})
        run_snakemake(wd, cfg, *FOUNDATION)
        for f in FOUNDATION:
            assert (wd / f).exists(), f
        digests.append({f: _sha(wd / f) for f in FOUNDATION if f.endswith((".parquet", ".safetensors"))})
        rec = io.read_record(wd / FOUNDATION[2])
        assert rec["rule"] == "gradient" and rec["wildcards"]["slot"] == "s000"
        assert set(rec["inputs"]) == {"results/data/cifar100/victims.parquet",
                                      "results/models/selective_encryption/cifar100/lenet/init.safetensors"}
        assert (wd / "logs/gradient/selective_encryption/cifar100/lenet/s000.json").exists()
    assert digests[0] == digests[1]


def test_bad_config_fails_at_dag_build_with_message(tmp_path):
    cfg = copy.deepcopy(MICRO)
    cfg["studies"]["selective_encryption"]["cases"][0]["model"] = "alexnet"
    path = write_config(tmp_path, cfg)
    proc = run_snakemake(tmp_path, path, "-n", check=False)
    assert proc.returncode != 0
    assert "unknown model 'alexnet'" in proc.stdout + proc.stderr


def test_attack_checkpoint_makes_the_client_use_the_trained_model(tmp_path):
    """fl.attack_checkpoint: the gradient, significance and attack jobs read the FedAvg global
    model after that round (rule fl_checkpoint) instead of the initialisation."""
    cfg = copy.deepcopy(MICRO)
    cfg["studies"]["selective_encryption"]["fl"] = {
        "runs": [{"dataset": "cifar100", "model": "lenet"}], "seeds": [0], "rounds": 2,
        "attack_checkpoint": {"round": 1}}
    path = write_config(tmp_path, cfg)
    target = "results/gradients/selective_encryption/cifar100/lenet/s000.safetensors"
    proc = run_snakemake(tmp_path, path, "-n", target)
    out = proc.stdout + proc.stderr
    assert "rule fl_checkpoint" in out and "rule fl_train" in out
    assert "results/models/selective_encryption/cifar100/lenet/fl/none/seed0/round0001.safetensors" in out
    assert "rule model:" not in out      # the initialisation is not what the client trains on
