"""gibench.device.pick_device: a job given a GPU that finds no CUDA stops (or warns with
cpu_fallback), with the environment monkeypatched (no GPU needed)."""
from types import SimpleNamespace

import pytest
import torch

from gibench import device as D

GPU_ENV_VARS = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_TRES_PER_TASK", *D.SLURM_GPU_VARS)


@pytest.fixture
def clean_env(monkeypatch):
    for var in GPU_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_no_gpu_request_runs_on_cpu(clean_env):
    assert D.gpu_request() is None
    assert D.pick_device("auto", cuda_available=False) == torch.device("cpu")


@pytest.mark.parametrize("var,value", [
    ("CUDA_VISIBLE_DEVICES", "0"),
    ("CUDA_VISIBLE_DEVICES", "GPU-8e3c1f2a"),
    ("SLURM_GPUS_ON_NODE", "1"),
    ("SLURM_JOB_GPUS", "3"),
    ("SLURM_GPUS", "a100:1"),
    ("SLURM_TRES_PER_TASK", "cpu=1,gres/gpu=1"),
])
def test_gpu_job_without_cuda_fails_naming_the_cause(clean_env, var, value):
    clean_env.setenv(var, value)
    with pytest.raises(D.NoCudaError) as e:
        D.pick_device("auto", cuda_available=False)
    msg = str(e.value)
    assert f"{var}={value}" in msg and "cpu_fallback: true" in msg
    assert "CPU-only build" in msg or "is_available() is False" in msg


@pytest.mark.parametrize("var,value", [("CUDA_VISIBLE_DEVICES", ""), ("CUDA_VISIBLE_DEVICES", "-1"),
                                       ("CUDA_VISIBLE_DEVICES", "NoDevFiles"), ("SLURM_GPUS_ON_NODE", "0")])
def test_values_meaning_no_device_are_no_request(clean_env, var, value):
    clean_env.setenv(var, value)
    assert D.gpu_request() is None
    assert D.pick_device("auto", cuda_available=False).type == "cpu"


def test_cpu_fallback_warns_loudly(clean_env, capsys):
    clean_env.setenv("SLURM_GPUS_ON_NODE", "1")
    with pytest.warns(RuntimeWarning, match="GPU job running on the CPU"):
        dev = D.pick_device("auto", cpu_fallback=True, cuda_available=False)
    assert dev.type == "cpu"
    err = capsys.readouterr().err
    assert "WARNING" in err and "SLURM_GPUS_ON_NODE=1" in err and "!" * 40 in err


def test_gpu_resource_counts_only_inside_a_slurm_job(clean_env):
    # the workflow profile sets gpu: 1 for local runs too, where it constrains nothing
    res = SimpleNamespace(gpu=1, mem_mb=8000)
    assert D.pick_device("auto", resources=res, cuda_available=False).type == "cpu"
    clean_env.setenv("SLURM_JOB_ID", "4242")
    with pytest.raises(D.NoCudaError, match="Slurm job 4242 with resource gpu=1"):
        D.pick_device("auto", resources=res, cuda_available=False)
    # a CPU rule inside a Slurm job is no GPU request
    assert D.pick_device("auto", resources={"mem_mb": 4000}, cuda_available=False).type == "cpu"


def test_explicit_settings(clean_env):
    clean_env.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert D.pick_device("cpu", cuda_available=False).type == "cpu"  # an explicit choice
    with pytest.raises(D.NoCudaError, match="config device: cuda"):
        D.pick_device("cuda", cuda_available=False)
    assert D.pick_device("cuda", cuda_available=True).type == "cuda"
    assert D.pick_device("auto", cuda_available=True).type == "cuda"
    with pytest.raises(ValueError, match="'tpu'"):
        D.pick_device("tpu")


def test_job_device_reads_config_and_resources(clean_env):
    clean_env.setenv("SLURM_JOB_ID", "7")
    smk = SimpleNamespace(config={"device": "auto"}, resources=SimpleNamespace(gpu=1))
    if torch.cuda.is_available():
        assert D.job_device(smk).type == "cuda"
        return
    with pytest.raises(D.NoCudaError):
        D.job_device(smk)
    smk.config["cpu_fallback"] = True
    with pytest.warns(RuntimeWarning):
        assert D.job_device(smk).type == "cpu"


def test_run_job_uses_it(clean_env, tmp_path):
    """The runner every workflow script goes through refuses a GPU job without CUDA, and writes
    the failure into the job's log record."""
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the refusal cannot happen here")
    from gibench.pipeline.runner import run_job
    clean_env.setenv("CUDA_VISIBLE_DEVICES", "0")
    called = []
    smk = SimpleNamespace(config={"device": "auto"}, resources=SimpleNamespace(), threads=1, rule="attack",
                          log=[str(tmp_path / "job.json")], input=[], output=[], params={}, wildcards={})
    with pytest.raises(D.NoCudaError):
        run_job(smk, lambda s, d: called.append(d))
    assert called == []


def test_schema_default_is_false():
    import yaml
    from pathlib import Path
    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/schema/config.schema.yaml").read_text())
    assert schema["properties"]["cpu_fallback"] == {**schema["properties"]["cpu_fallback"], "type": "boolean",
                                                     "default": False}
