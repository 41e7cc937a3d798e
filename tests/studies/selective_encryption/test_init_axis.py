"""Model init as an axis of the selective-encryption study (issue 20): model ids, config checks,
attack selection, the model each id builds, table labels, and one micro run of the workflow."""
import copy
import math

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from gibench import model_ids
from gibench.config import ConfigError, validate
from gibench.pipeline import paths as P
from gibench.pipeline.jobs_attack import attack_settings
from gibench.pipeline.jobs_data import case_list, model_for, model_init
from gibench.studies.selective_encryption import targets as SET
from gibench.tables.render import display
from gibench.tables.selective_encryption import table4
from workflow_helpers import MICRO, ROOT, run_snakemake, write_config

SE = "selective_encryption"


def _cfg(inits=("torch_default", "dlg_uniform"), models=None, attacks=None):
    cfg = copy.deepcopy(MICRO)
    cfg["resources_dir"] = str(ROOT / "resources")
    cfg["hub_dir"] = str(ROOT / "resources" / "hub")
    se = cfg["studies"][SE]
    se["cases"] = [{"dataset": "cifar100", "model": "lenet", "inits": list(inits)}]
    if models is not None:
        se["models"] = models
    se["attacks"] = attacks if attacks is not None else {
        "ig": {"models": ["lenet@torch_default"], "params": {"iterations": 5}},
        "dlg": {"models": ["lenet@dlg_uniform"], "params": {"iterations": 1}},
    }
    return cfg


def test_model_ids():
    assert model_ids.split("lenet@dlg_uniform") == ("lenet", "dlg_uniform")
    assert model_ids.split("lenet") == ("lenet", None)
    assert model_ids.join("lenet", "torch_default", "torch_default") == "lenet"
    assert model_ids.join("lenet", "dlg_uniform", "torch_default") == "lenet@dlg_uniform"
    assert model_ids.matches("lenet", "lenet", "dlg_uniform")            # the bare name: every init
    assert model_ids.matches("lenet@dlg_uniform", "lenet", "dlg_uniform")
    assert not model_ids.matches("lenet@dlg_uniform", "lenet", "torch_default")
    assert display("lenet@dlg_uniform") == "LeNet (DLG init)" and display("lenet") == "LeNet"


def test_the_configured_init_keeps_the_bare_name():
    # demo style: models.lenet.init = torch_default -> lenet (torch_default) and lenet@dlg_uniform
    se = validate(_cfg(models={"lenet": {"init": "torch_default"}}))["studies"][SE]
    assert case_list(se) == [("cifar100", "lenet"), ("cifar100", "lenet@dlg_uniform")]
    assert model_init(se, "lenet") == "torch_default" and model_init(se, "lenet@dlg_uniform") == "dlg_uniform"
    # without models.lenet the builder's default (dlg_uniform) keeps the bare name
    se = validate(_cfg())["studies"][SE]
    assert case_list(se) == [("cifar100", "lenet@torch_default"), ("cifar100", "lenet")]
    assert model_init(se, "lenet") == "dlg_uniform"
    # no inits: the case as it always was
    cfg = _cfg(attacks={"ig": {"params": {"iterations": 5}}})
    del cfg["studies"][SE]["cases"][0]["inits"]
    assert case_list(validate(cfg)["studies"][SE]) == [("cifar100", "lenet")]


def test_paths_keep_the_inits_apart():
    se = validate(_cfg(models={"lenet": {"init": "torch_default"}}))
    gradients = SET.gradient_targets(se)
    assert "results/gradients/selective_encryption/cifar100/lenet/s000.safetensors" in gradients
    assert "results/gradients/selective_encryption/cifar100/lenet@dlg_uniform/s000.safetensors" in gradients
    assert P.fmt(P.ATTACK, study=SE, dataset="cifar100", model="lenet@dlg_uniform", slot=0, significance="grad",
                 ratio=0.3, attack="dlg", rep=0).startswith("results/attacks/selective_encryption/cifar100/lenet@dlg_uniform/")


def test_attacks_pick_their_inits_and_model_params_apply_by_model_then_id():
    cfg = validate(_cfg(models={"lenet": {"init": "torch_default"}}))
    se = cfg["studies"][SE]
    assert SET.attack_runs_on(se, "ig", "cifar100", "lenet") and not SET.attack_runs_on(se, "ig", "cifar100", "lenet@dlg_uniform")
    assert SET.attack_runs_on(se, "dlg", "cifar100", "lenet@dlg_uniform") and not SET.attack_runs_on(se, "dlg", "cifar100", "lenet")
    assert {c[2] for c in SET.attack_cases(cfg, "dlg")} == {"lenet@dlg_uniform"}
    assert {c[2] for c in SET.attack_cases(cfg, "ig")} == {"lenet"}
    se["attacks"]["dlg"]["model_params"] = {"lenet": {"iterations": 7, "lr": 0.5}, "lenet@dlg_uniform": {"iterations": 9}}
    _, params, _ = attack_settings(se, "dlg", "lenet@dlg_uniform")
    assert params == {"iterations": 9, "lr": 0.5}
    assert attack_settings(se, "dlg", "lenet")[1] == {"iterations": 7, "lr": 0.5}


def test_each_id_builds_its_init():
    cfg = validate(_cfg(models={"lenet": {"init": "torch_default"}}))
    dlg = model_for(cfg, SE, "cifar100", "lenet@dlg_uniform")
    torch_init = model_for(cfg, SE, "cifar100", "lenet")
    # DLG's weights_init: U(-0.5, 0.5) everywhere; PyTorch: fc weights within 1/sqrt(fan_in = 768)
    w_dlg, w_pt = dlg.fc.weight.detach().abs(), torch_init.fc.weight.detach().abs()
    assert 0.49 < float(w_dlg.max()) <= 0.5
    assert float(w_pt.max()) <= 1 / math.sqrt(768) + 1e-7


@pytest.mark.parametrize("change, key", [
    (lambda se: se["cases"].append({"dataset": "cola", "model": "gpt2", "inits": ["dlg_uniform"]}), "cases[1].inits"),
    (lambda se: se["cases"][0].update(inits=["kaiming"]), "inits"),
    (lambda se: se["cases"][0].update(inits=["dlg_uniform", "dlg_uniform"]), "inits"),
    (lambda se: se["cases"].append({"dataset": "cifar100", "model": "lenet"}), "cases"),
    (lambda se: se["attacks"]["dlg"]["params"].update(history=5), "attacks.dlg.params"),
    (lambda se: se["attacks"]["ig"]["params"].update(dtype="float16"), "attacks.ig.params"),
    (lambda se: se["attacks"]["dlg"].update(models=["cnn@dlg_uniform"]), "attacks.dlg.models[0]"),
])
def test_bad_init_settings_fail_at_dag_build_naming_the_key(change, key):
    cfg = _cfg(models={"lenet": {"init": "torch_default"}})
    cfg["datasets"]["cola"] = {"victims": 2, "split": "in_domain_dev"}
    change(cfg["studies"][SE])
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        validate(cfg)


def _rows(model, init, attack, ssim_by_ratio, dtype="float32"):
    return [{"study": SE, "dataset": "cifar100", "model": model, "init": init, "slot": "s000",
             "metric": "any" if r in (0.0, 1.0) else "grad", "ratio": r, "attack": attack, "restart": 0,
             "status": "ok", "attacker_loss": 0.1, "mse": 0.01, "psnr": 20.0, "ssim": s, "lpips": None,
             "lpips_status": "unavailable: test", "dtype": dtype} for r, s in ssim_by_ratio.items()]


def test_tables_label_each_init_and_state_the_precision():
    cfg = {"cases": [{"dataset": "cifar100", "model": "lenet", "inits": ["torch_default", "dlg_uniform"]}],
           "significance": {"metrics": ["grad"], "ratios": [0.0, 0.3, 1.0]},
           "attacks": {"ig": {}, "dlg": {}},
           "evaluation": {"protection": {"image": {"metric": "ssim", "op": "<=", "threshold": 0.3}},
                          "table4_max_ratio": 0.99}}
    rows = (_rows("lenet", "torch_default", "ig", {0.0: 0.9, 0.3: 0.8, 1.0: 0.0})
            + _rows("lenet@dlg_uniform", "dlg_uniform", "dlg", {0.0: 0.9, 0.3: 0.1, 1.0: 0.0}, dtype="float64"))
    doc = table4(rows, cfg)
    labels = [r[1] for r in doc.body]
    assert labels == ["LeNet (PyTorch init)", "LeNet (DLG init)"]
    cells = {(c["attack"], c["init"]): c for c in doc.tidy}
    assert cells[("ig", "torch_default")]["status"] == "NA"
    assert cells[("dlg", "dlg_uniform")]["min_ratio"] == 0.3
    md = doc.to_markdown()
    assert "U(-0.5, 0.5)" in md and "DLG on LeNet (DLG init) float64" in md and "IG on LeNet (PyTorch init) float32" in md


@pytest.mark.slow
def test_micro_run_with_two_inits(tmp_path):
    cfg = _cfg(models={"lenet": {"init": "torch_default"}})
    se = cfg["studies"][SE]
    se.update({"victims": 1, "significance": {"metrics": ["grad"], "ratios": [0.0, 0.3], "cost_metrics": ["grad"]},
               "overhead": {"enabled": False}})
    cfg.pop("resources_dir")
    cfg.pop("hub_dir")
    path = write_config(tmp_path, cfg)
    run_snakemake(tmp_path, path, "results/tables/selective_encryption/table4.md")
    rows = pq.read_table(tmp_path / "results/metrics/selective_encryption/metrics.parquet").to_pylist()
    got = {(r["model"], r["init"], r["attack"], r["dtype"]) for r in rows}
    assert got == {("lenet", "torch_default", "ig", "float32"), ("lenet@dlg_uniform", "dlg_uniform", "dlg", "float32")}
    w = tmp_path / "results/models/selective_encryption/cifar100"
    assert (w / "lenet/init.safetensors").exists() and (w / "lenet@dlg_uniform/init.safetensors").exists()
    from gibench import io

    state, rec = io.load_tensors(w / "lenet@dlg_uniform/init.safetensors")
    assert rec["model"]["init"] == "dlg_uniform" and float(state["fc.weight"].abs().max()) > 0.49
    md = (tmp_path / "results/tables/selective_encryption/table4.md").read_text()
    assert "LeNet (PyTorch init)" in md and "LeNet (DLG init)" in md
    # DLG's trace (with its status strings) rides in the reconstruction artifact
    trace = io.load_trace(tmp_path / "results/attacks/selective_encryption/cifar100/lenet@dlg_uniform/s000/any/"
                                     "r0.000/dlg/rep0.safetensors").to_pylist()
    assert trace and trace[0]["status"] == "ok" and trace[0]["func_evals"] >= 1
