"""A new image attack is one function plus its registration (issue 21): a toy attack defined
here -- the "mean image" attack, which returns the dataset's mean image (zeros in the model's
normalised input space) whatever the gradient -- is registered from a plugin module named in
``GIBENCH_PLUGINS`` (gibench.plugins.load_plugins), named in a config (the demo config trimmed
to one study, one case, one significance metric and one ratio), and

* the DAG builds with it, with one attack job per restart of the toy attack, and fails with
  "unknown attack" when the plugin is not loaded (so it is the registration that makes it work);
* (slow) the attack job runs for real: its artifact holds the mean image, its record names the
  toy attack, and the metrics job reads it: its MSE row equals the MSE between the victim and
  the dataset mean computed here from the victims table (an independent computation).
"""
from __future__ import annotations

import copy
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from workflow_helpers import ROOT, run_with_plugin, write_config

STUDY, DS, MODEL, SLOT, METRIC, RATIO = "selective_encryption", "cifar100", "lenet", "s000", "grad", "r0.300"
PLUGIN = textwrap.dedent('''
    """A toy attack: the dataset's mean image (zeros in the normalised input space)."""
    import torch

    from gibench.attacks import ATTACKS, AttackResult
    from gibench.params import ParamSpec

    PARAMS = ParamSpec("toy_mean", {"scale": {"type": "number", "minimum": 0}}, {"scale": 0.0})


    @ATTACKS.register("toy_mean", params=PARAMS, display="Mean image", studies=("selective_encryption",))
    def mean_image(model, shared, visible, *, input_shape, mean, std, labels, cfg, seed, device="cpu",
                   progress=None, **_):
        PARAMS.check(cfg)
        x = torch.zeros(input_shape, device=device)          # normalised space: the dataset mean
        y = labels if labels is not None else torch.zeros(input_shape[0], dtype=torch.long)
        return AttackResult(x=x, labels=y, message="the dataset mean image", final_loss=0.0)
''')


def _config() -> dict:
    """The demo config trimmed to one study, one case, one metric and one ratio; one attack: the toy."""
    demo = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    se = copy.deepcopy(demo["studies"][STUDY])
    se.update({
        "cases": [{"dataset": DS, "model": MODEL}],
        "victims": 1,
        "models": {MODEL: {"init": "torch_default"}},
        "significance": {"metrics": [METRIC], "ratios": [0.3], "cost_metrics": [METRIC], "selection": "global"},
        "attacks": {"toy": {"type": "toy_mean", "params": {"scale": 0.0}}},
        "overhead": {"enabled": False},
    })
    se["evaluation"] = {**se["evaluation"], "image_metrics": ["mse", "psnr", "ssim"]}
    return {"seed": demo["seed"], "device": "cpu", "datasets": {DS: {**demo["datasets"][DS], "victims": 2}},
            "studies": {STUDY: se}}


def _snakemake(wd: Path, cfg_path: Path, *args: str, plugin: bool, check: bool = True) -> subprocess.CompletedProcess:
    return run_with_plugin(wd, cfg_path, *args, plugin="toy_mean_attack" if plugin else None, check=check)


@pytest.fixture
def workdir(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "toy_mean_attack.py").write_text(PLUGIN)
    return tmp_path, write_config(tmp_path, _config())


def _target() -> str:
    return f"results/metrics/{STUDY}/{DS}/{MODEL}/{SLOT}.parquet"


def test_the_dag_builds_with_a_registered_toy_attack(workdir):
    wd, cfg = workdir
    dry = _snakemake(wd, cfg, "-n", _target(), plugin=True)
    out = dry.stdout + dry.stderr
    recon = f"results/attacks/{STUDY}/{DS}/{MODEL}/{SLOT}/{METRIC}/{RATIO}/toy/rep0.safetensors"
    assert recon in out, out[-3000:]
    assert "rule attack:" in out and "rule evaluate:" in out


def test_without_its_registration_the_toy_attack_is_unknown(workdir):
    wd, cfg = workdir
    proc = _snakemake(wd, cfg, "-n", _target(), plugin=False, check=False)
    assert proc.returncode != 0
    assert f"studies.{STUDY}.attacks.toy: unknown attack 'toy_mean'" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_toy_attack_job_runs_and_the_evaluate_job_reads_it(workdir):
    import numpy as np
    import torch

    from gibench import io
    from gibench.datasets import DATASETS

    wd, cfg = workdir
    _snakemake(wd, cfg, _target(), plugin=True)
    recon = wd / f"results/attacks/{STUDY}/{DS}/{MODEL}/{SLOT}/{METRIC}/{RATIO}/toy/rep0.safetensors"
    tensors, rec = io.load_tensors(recon)
    assert rec["params"]["type"] == "toy_mean"
    assert rec["attack"]["message"] == "the dataset mean image"
    assert torch.count_nonzero(tensors["x"]) == 0

    rows, _ = io.load_table(wd / _target())
    rows = [r for r in rows.to_pylist() if r["attack"] == "toy"]
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    # independent: the victim image (pixels in [0, 1]) against the dataset mean, per channel
    victims, _ = io.load_table(wd / f"results/data/{DS}/victims.parquet")
    v = victims.slice(0, 1).to_pylist()[0]                    # slot s000 = victim row 0 (batch size 1)
    img = np.frombuffer(v["image"], np.uint8).reshape(v["height"], v["width"], v["channels"]) / 255.0
    mean = np.asarray(DATASETS.get(DS).mean, dtype=np.float64).reshape(1, 1, -1)
    assert rows[0]["mse"] == pytest.approx(float(np.mean((img - mean) ** 2)), rel=1e-5)
