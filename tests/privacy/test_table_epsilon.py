"""ε columns in the stochastic-defenses and concealed-samples tables (issue 24, item 4): a DP row
shows ε at the stated δ, per step and over the FedAvg run; DP-Gaussian without clipping shows
"none (no clipping)"; rows without noise show "—"; tables without a noisy row get no column.
The numbers are checked against Balle & Wang's analytic Gaussian δ(ε) equation (independent of
dp-accounting); the accountant itself is checked against the TF Privacy tutorial's published
ε = 2.92 in tests/privacy/test_privacy.py."""
import copy
import math
from pathlib import Path

import pytest
from scipy.optimize import brentq

from test_privacy import balle_wang_log_delta
from gibench import config as gconfig
from gibench.tables.concealed_samples import table_doc as cs_table_doc
from gibench.tables.stochastic_defenses import table_doc as sd_table_doc

ROOT = Path(__file__).resolve().parents[2]

SD = {"studies": {"stochastic_defenses": {
    "victims": 2,
    "defense_defaults": {"dp": {"clip": 1.0, "sigma": 2.0}},
    # sigma 2 with clip 1 -> noise multiplier sigma/2 = 1 under replace-one (sensitivity 2 tau)
    "defenses": {"dp_2": [{"name": "dp", "clip": 1.0, "sigma": 2.0}]},
    "attacks": {"ig": {"type": "ig_defended"}, "cdia": {}},
    "tables": {
        "table1": {"kind": "attacks", "datasets": ["mnist"], "models": ["sd_cnn"],
                   "baseline": {"defense": "none", "attack": "ig"}, "defenses": ["dp_2"], "attacks": ["ig"]},
        "table2": {"kind": "attacks", "datasets": ["mnist"], "models": ["sd_cnn"], "defenses": ["none"],
                   "attacks": ["ig"]},
        "table4": {"kind": "ablation", "datasets": ["mnist"], "models": ["sd_cnn"], "attack": "cdia",
                   "defenses": ["none", "dropout+dp"]},
    },
    "fl": {"rounds": 9, "local_epochs": 1, "batch_size": 8,
           "runs": [{"dataset": "mnist", "model": "sd_cnn", "defenses": ["none", "dropout+dp"]}]},
    "evaluation": {"asr_threshold": 0.5},
}}}


def exact_eps(s: float, delta: float = 1e-5) -> float:
    """ε of one Gaussian release with noise multiplier s, from Balle & Wang's equation."""
    return brentq(lambda e: balle_wang_log_delta(s, e) - math.log(delta), 1e-9, 1e3, xtol=1e-12)


def _rows(defense, attack):
    return [{"dataset": "mnist", "model": "sd_cnn", "defense": defense, "attack": attack, "slot": f"s{i:03d}",
             "restart": 0, "status": "ok", "ssim": 0.3} for i in range(2)]


def test_sd_attacks_table_dp_row_shows_epsilon():
    doc = sd_table_doc("table1", _rows("none", "ig") + _rows("dp_2", "ig"), SD)
    assert doc.header[-1] == "ε/step (δ = 1e-05) ↓"
    base, dp = doc.body
    assert base[-1] == "—"
    want = exact_eps(1.0)
    assert 4.0 < want < 5.0                                  # one release, multiplier 1, δ = 1e-5
    assert dp[-1] == f"{want:.3g}"
    rec = [r for r in doc.tidy if r["defense"] == "dp_2"][0]
    assert rec["epsilon_step"] == pytest.approx(want, rel=1e-6)
    assert rec["epsilon_delta"] == 1e-5 and rec["privacy_guarantee"] == "formal"
    assert "epsilon_step" in doc.to_csv().splitlines()[0]
    assert any(n.startswith("ε: sample-level (ε, δ)-DP at δ = 1e-05") for n in doc.notes)


def test_sd_table_without_dp_has_no_epsilon_column():
    doc = sd_table_doc("table2", _rows("none", "ig"), SD)
    assert not any(h.startswith("ε") for h in doc.header)


def test_sd_ablation_epsilon_per_step_and_over_the_rounds_trained():
    rows = _rows("none", "cdia") + _rows("dropout+dp", "cdia")
    acc = [{"dataset": "mnist", "model": "sd_cnn", "defense": d, "seed": s, "test_acc_best": 0.9,
            "protected_acc_best": None, "last_round": r} for d in ("none", "dropout+dp") for s, r in enumerate([7, 9])]
    doc = sd_table_doc("table4", rows, SD, acc_rows=acc)
    assert doc.header[-2:] == ["ε/step (δ = 1e-05) ↓", "ε FedAvg (δ = 1e-05) ↓"]
    none, dp = doc.body
    assert none[-2:] == ["—", "—"]
    # 9 rounds x 1 epoch: 9 Gaussian releases compose exactly to one with multiplier 1/sqrt(9)
    assert dp[-2] == f"{exact_eps(1.0):.3g}"
    assert dp[-1] == f"{exact_eps(1 / 3):.3g} (9×1)"
    rec = doc.tidy[1]
    assert rec["epsilon_fedavg"] == pytest.approx(exact_eps(1 / 3), rel=1e-6) and rec["epsilon_fedavg_rounds"] == 9
    # without FedAvg runs the column says so
    doc = sd_table_doc("table4", rows, SD)
    assert doc.body[1][-1] == "no FedAvg run"


def test_sd_delta_from_the_privacy_block():
    cfg = copy.deepcopy(SD)
    cfg["studies"]["stochastic_defenses"]["privacy"] = {"delta": 1e-6}
    doc = sd_table_doc("table1", _rows("dp_2", "ig"), cfg)
    assert doc.header[-1] == "ε/step (δ = 1e-06) ↓"
    assert doc.body[-1][-1] == f"{exact_eps(1.0, 1e-6):.3g}"


def test_sd_demo_config_dp_rows():
    """The demo's own Table 1 (dp_1e-3: τ 20, σ 1e-3) shows the docs' 2.01e+06 at δ = 1e-5."""
    cfg = gconfig.load(ROOT / "config/config.yaml")
    st = cfg["studies"]["stochastic_defenses"]
    name = next(t for t, s in st["tables"].items() if s["kind"] == "attacks" and "dp_1e-3" in s["defenses"])
    doc = sd_table_doc(name, [], cfg)
    dp_rows = [b for b, r in zip(doc.body, doc.tidy) if r["defense"] == "dp_1e-3"]
    assert dp_rows and all(b[-1] == "2.01e+06" for b in dp_rows)


def test_cs_dp_gaussian_row_has_no_formal_guarantee():
    cfg = gconfig.load(ROOT / "config/config.yaml")
    doc = cs_table_doc("table1", [], [], cfg)
    assert doc.header[-2:] == ["ε/step (δ = 1e-05) ↓", "ε FedAvg (δ = 1e-05) ↓"]
    rows = {b[0]: b for b in doc.body}
    assert rows["DP-Gaussian"][-2] == "none (no clipping)"
    assert "none (no clipping)" in rows["DP-Gaussian"][-1]
    assert rows["DCS²"][-2:] == ["—", "—"] and rows["None"][-2:] == ["—", "—"]
    cells = [c for c in doc.tidy if c["defense"] == "dp_gaussian"]
    assert cells and all(c["privacy_guarantee"] == "none" and c["epsilon_step"] is None for c in cells)
    assert any("no formal (ε, δ) guarantee" in n for n in doc.notes)


def test_cs_table_without_dp_gaussian_has_no_column():
    cfg = gconfig.load(ROOT / "config/config.yaml")
    doc = cs_table_doc("table7", [], [], cfg)
    assert not any(h.startswith("ε") for h in doc.header)
