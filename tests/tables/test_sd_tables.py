"""Tables of the stochastic-defenses study from constructed metric rows: SSIM mean ± std
(population), ASR = share of victims with SSIM above the threshold, the accuracy column from
FedAvg rows (mean ± std over seeds, in %) or "not computed" without them, restart selection."""
import pytest

from gibench.studies.stochastic_defenses.jobs import select_restart
from gibench.tables.stochastic_defenses import NOT_COMPUTED, defense_text, table_doc

CFG = {"studies": {"stochastic_defenses": {
    "victims": 4,
    "defense_defaults": {"dp": {"clip": 20, "sigma": 1e-4}},
    "defenses": {"dp_1e-3": [{"name": "dp", "clip": 20, "sigma": 1e-3}]},
    "attacks": {"ig": {"type": "ig_defended"}, "wiig": {"oracle": True}, "cdia": {}},
    "tables": {
        "table1": {"kind": "attacks", "datasets": ["mnist"], "models": ["sd_cnn"],
                   "baseline": {"defense": "none", "attack": "ig"}, "defenses": ["dp_1e-3"], "attacks": ["ig", "wiig"]},
        "table4": {"kind": "ablation", "datasets": ["mnist"], "models": ["sd_cnn"], "attack": "cdia",
                   "defenses": ["none", "dropout+dp+cvb"]},
    },
    "evaluation": {"asr_threshold": 0.5},
}}}


def _rows(defense, attack, ssims):
    return [{"dataset": "mnist", "model": "sd_cnn", "defense": defense, "attack": attack, "slot": f"s{i:03d}",
             "restart": 0, "status": "ok", "ssim": s} for i, s in enumerate(ssims)]


def test_attacks_table_statistics():
    rows = _rows("none", "ig", [0.9, 0.7, 0.4, 0.6]) + _rows("dp_1e-3", "ig", [0.2, 0.3, 0.1, 0.6]) \
        + _rows("dp_1e-3", "wiig", [0.95, 0.85, 0.9, 0.8])
    doc = table_doc("table1", rows, CFG)
    tidy = {(r["defense"], r["attack"]): r for r in doc.tidy}
    base = tidy[("none", "ig")]
    assert base["ssim_mean"] == pytest.approx(0.65) and base["asr"] == pytest.approx(75.0) and base["n"] == 4
    # population std of [0.9, 0.7, 0.4, 0.6]: sqrt(mean of squared deviations) = sqrt(0.0325)
    assert base["ssim_std"] == pytest.approx(0.0325 ** 0.5)
    assert tidy[("dp_1e-3", "ig")]["asr"] == pytest.approx(25.0)
    assert tidy[("dp_1e-3", "wiig")]["asr"] == pytest.approx(100.0)
    md = doc.to_markdown()
    # ours, then the paper's Table 1 value (MNIST CNN baseline IG: 0.95 (± 0.06), 100)
    assert "| MNIST | CNN | - | IG | 0.65 ± 0.18 | 0.95 (± 0.06) | 75.00 | 100 | 4 |" in md
    assert "DP (20, 0.001)" in md and "WIIG" in md


def test_ablation_table_accuracy_column():
    rows = _rows("none", "cdia", [0.9, 0.9, 0.9, 0.9]) + _rows("dropout+dp+cvb", "cdia", [0.1, 0.2, 0.1, 0.6])
    doc = table_doc("table4", rows, CFG)
    assert all(r["accuracy_status"] == "not computed" for r in doc.tidy)
    assert NOT_COMPUTED in doc.to_markdown()
    acc = [{"dataset": "mnist", "model": "sd_cnn", "defense": "none", "seed": s, "test_acc_best": a,
            "protected_acc_best": None, "last_round": 10} for s, a in enumerate([0.9910, 0.9906, 0.9914])]
    doc = table_doc("table4", rows, CFG, acc_rows=acc)
    none, combo = doc.tidy
    assert none["accuracy_mean"] == pytest.approx(99.10) and none["accuracy_status"] == "ok"
    assert combo["accuracy_status"] == "no run"
    line = [b for b in doc.body if b[2] == "✓"][0]              # the DO+DP+C row
    assert line[2:6] == ["✓", "✓", "✗", "C"] and line[8] == "25.00"


def test_defense_text_in_the_papers_order():
    assert defense_text([{"name": "cvb"}, {"name": "dp", "clip": 20.0, "sigma": 1e-4},
                         {"name": "dropout", "rate": 0.25}]) == "DO 0.25 + DP (20, 0.0001) + CVB"
    assert defense_text([{"name": "prune", "rate": 0.9}]) == "GP 0.90" and defense_text([]) == "-"


def test_restart_selection_by_attacker_loss_or_oracle():
    rows = [{"slot": "s000", "restart": 0, "status": "ok", "attacker_loss": 0.2, "ssim": 0.9},
            {"slot": "s000", "restart": 1, "status": "ok", "attacker_loss": 0.1, "ssim": 0.5},
            {"slot": "s000", "restart": 2, "status": "failed", "attacker_loss": 0.01, "ssim": 0.99}]
    assert select_restart(rows, "attacker_loss")[0]["restart"] == 1      # a failed run is never preferred
    assert select_restart(rows, "oracle")[0]["restart"] == 0
    assert select_restart(rows, "oracle")[0]["restarts"] == 3


def test_combinations_footnote_follows_the_config_whatever_the_hash_seed():
    # the footnote once followed a set's order, i.e. the interpreter's string hashing, so a
    # replay of the same job wrote a different table (found by `gibench verify --all`)
    import json
    import os
    import subprocess
    import sys

    script = ("import json, sys; from gibench.tables.stochastic_defenses import table_doc; "
              "cfg = json.loads(sys.argv[1]); print(table_doc('table4', [], cfg).to_markdown())")
    cfg = json.loads(json.dumps(CFG))
    cfg["studies"]["stochastic_defenses"]["tables"]["table4"]["defenses"] = ["none", "dropout+dp+cvb", "dp", "dropout"]
    outs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        md = subprocess.run([sys.executable, "-c", script, json.dumps(cfg)], env=env, capture_output=True, text=True,
                            check=True).stdout
        outs.add([line for line in md.splitlines() if line.startswith("Combinations: ")][0])
    assert len(outs) == 1
    line = outs.pop()
    assert [part.split(" = ")[0] for part in line[len("Combinations: "):].rstrip(".").split("; ")] == [
        "none", "dropout+dp+cvb", "dp", "dropout"]
