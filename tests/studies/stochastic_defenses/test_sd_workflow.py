"""The stochastic-defenses study through the real Snakefile (temp dir, micro config), and its
config check at DAG build: unknown defense names and impossible combinations fail with a
message that names the key; the secrets file reaches only attacks marked oracle."""
import copy
from types import SimpleNamespace

import pytest

from gibench import config as C
from gibench.studies.stochastic_defenses import targets as T
from gibench.studies.stochastic_defenses.spec import spec
from workflow_helpers import run_snakemake, write_config

STUDY = {
    "victims": 1,
    "inputs": {"mnist": {"shape": [3, 32, 32]}},
    "defense_defaults": {"dp": {"clip": 20, "sigma": 1e-4}},
    "defenses": {"dp_strong": [{"name": "dp", "sigma": 1e-3}]},
    "attack_params": {"iterations": 4, "lr": 0.1, "lr_schedule": "plateau", "tv": 0.01, "model_mode": "train",
                      "keep": "best"},
    "attacks": {"ig": {"type": "ig_defended"}, "wiig": {"oracle": True}, "cdia": {}},
    "tables": {
        "table1": {"kind": "attacks", "datasets": ["mnist"], "models": ["sd_cnn"],
                   "baseline": {"defense": "none", "attack": "ig"}, "defenses": ["dp_strong"],
                   "attacks": ["ig", "wiig"]},
        "table4": {"kind": "ablation", "datasets": ["mnist"], "models": ["sd_cnn"], "attack": "cdia",
                   "defenses": ["none", "dropout+cvb", "dp+prune+precode"]},
    },
    "figures": {"fig2_cnn": {"model": "sd_cnn", "datasets": ["mnist"], "defenses": ["none", "dropout+cvb"],
                             "attack": "cdia", "victims": 1}},
}
MICRO = {"seed": 1, "datasets": {"mnist": {"victims": 2}}, "studies": {"stochastic_defenses": STUDY}}


def _cfg(**changes) -> dict:
    cfg = copy.deepcopy(MICRO)
    cfg["resources_dir"] = "resources"
    cfg["studies"]["stochastic_defenses"].update(changes)
    return cfg


def _errors(cfg: dict) -> str:
    with pytest.raises(C.ConfigError) as e:
        C.validate(cfg)
    return str(e.value)


def test_micro_config_is_valid_and_lists_the_cases():
    cfg = C.validate(_cfg())
    assert T.cases(cfg) == [("mnist", "sd_cnn", "none", "ig"), ("mnist", "sd_cnn", "dp_strong", "ig"),
                            ("mnist", "sd_cnn", "dp_strong", "wiig"), ("mnist", "sd_cnn", "none", "cdia"),
                            ("mnist", "sd_cnn", "dropout+cvb", "cdia"), ("mnist", "sd_cnn", "dp+prune+precode", "cdia")]
    assert spec(cfg).chain("dp+prune+precode").spec()[1] == {"name": "dp", "clip": 20.0, "sigma": 1e-4}
    assert spec(cfg).chain("dp_strong").get("dp").sigma == 1e-3


def test_secrets_reach_only_oracle_attacks():
    cfg = C.validate(_cfg())
    wc = dict(dataset="mnist", model="sd_cnn", defense="dp_strong", slot="s000", rep="0")
    assert "secrets" in T.attack_inputs(cfg, SimpleNamespace(attack="wiig", **wc))
    assert "secrets" not in T.attack_inputs(cfg, SimpleNamespace(attack="ig", **wc))
    assert "secrets" not in T.attack_inputs(cfg, SimpleNamespace(attack="cdia", **wc))


@pytest.mark.parametrize("change,message", [
    ({"defenses": {"bad": ["dropuot"]}}, "studies.stochastic_defenses.defenses.bad"),
    ({"defenses": {"both": ["precode", "cvb"]}}, "impossible combination"),
    ({"tables": {"table4": {"kind": "ablation", "datasets": ["mnist"], "models": ["sd_cnn"], "attack": "cdia",
                            "defenses": ["dropout+dpp"]}}}, "'dropout+dpp' is neither"),
    ({"tables": {"table4": {"kind": "ablation", "datasets": ["mnist"], "models": ["sd_cnn"], "attack": "cdia",
                            "defenses": ["precode+cvb"]}}}, "impossible combination"),
    ({"attacks": {"wiig": {"oracle": False}}}, "mark it oracle: true"),
    ({"attacks": {"ig": {"type": "ig"}}}, "use type: ig_defended"),
    ({"attacks": {"ig": {"type": "ig_defended", "oracle": True}}}, "not an oracle attack"),
    ({"attack_params": {"iterations": 3, "learning_rate": 1}}, "unknown option"),
    ({"tables": {"table1": {"kind": "attacks", "datasets": ["mnist"], "models": ["lenet"], "defenses": ["none"],
                            "attacks": ["ig"]}}}, "has no defense options"),
    ({"defense_defaults": {"noise": {}}}, "unknown defense 'noise'"),
])
def test_bad_configs_fail_with_the_key(change, message):
    cfg = _cfg(**change)
    assert message in _errors(cfg)


def test_unknown_table_key_fails_in_the_schema():
    cfg = _cfg()
    cfg["studies"]["stochastic_defenses"]["tables"]["table1"]["rows"] = 3
    assert "unknown key(s) 'rows'" in _errors(cfg)


@pytest.mark.slow
def test_bad_defense_name_fails_at_dag_build(tmp_path):
    cfg = _cfg(defenses={"bad": ["dropout", "precode", "cvb"]})
    cfg.pop("resources_dir")
    proc = run_snakemake(tmp_path, write_config(tmp_path, cfg), "-n", check=False, timeout=600)
    assert proc.returncode != 0
    assert "impossible combination" in proc.stdout + proc.stderr
    assert "studies.stochastic_defenses.defenses.bad" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_micro_run_produces_the_tables_and_the_grid(tmp_path):
    cfg = _cfg()
    cfg.pop("resources_dir")
    run_snakemake(tmp_path, write_config(tmp_path, cfg), timeout=1800)
    out = tmp_path / "results"
    t1 = (out / "tables/stochastic_defenses/table1.md").read_text()
    assert "| MNIST | CNN | - | IG |" in t1 and "WIIG" in t1 and "DP (20, 0.001)" in t1
    # the DP row's privacy budget at the stated δ (one release, σ/2 = 5e-4: 2.01e+06; docs/privacy_budgets.md)
    assert "ε/step (δ = 1e-05) ↓" in t1 and "| 2.01e+06 |" in t1
    t4 = (out / "tables/stochastic_defenses/table4.csv").read_text().splitlines()
    assert t4[0].startswith("dataset,model,defense,defense_label,attack,ssim_mean,ssim_std,asr,n,status")
    assert len(t4) == 4 and all(",cdia," in line for line in t4[1:])
    assert "not computed (no FedAvg run)" in (out / "tables/stochastic_defenses/table4.md").read_text()
    assert (out / "figures/stochastic_defenses/fig2_cnn.png").stat().st_size > 1000
    # the client's secrets are a separate file; the update holds no secret tensor
    from gibench import io

    case = out / "gradients/stochastic_defenses/mnist/sd_cnn/dropout+cvb"
    update, _ = io.load_tensors(case / "s000.safetensors")
    secrets, _ = io.load_tensors(case / "s000.secrets.safetensors")
    assert not any(k.startswith(("model/", "dp/")) for k in update)
    assert {k.split(".")[0] for k in secrets} == {"model/bottleneck", "model/drops"} and len(secrets) == 4
    # only the oracle attack's record names the secrets file among its inputs
    rec = io.read_record(out / "attacks/stochastic_defenses/mnist/sd_cnn/dp_strong/s000/wiig/rep0.safetensors")
    assert any("secrets" in str(v) for v in rec["input_files"].values())
    rec = io.read_record(out / "attacks/stochastic_defenses/mnist/sd_cnn/dp_strong/s000/ig/rep0.safetensors")
    assert not any("secrets" in str(v) for v in rec["input_files"].values())
