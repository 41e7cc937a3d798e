"""Synthetic metric rows of the selective-encryption study whose table answers are known by
construction (shared by tests/tables/test_tables.py, test_figures_readable.py and
tests/claims/test_claims.py)."""
from __future__ import annotations

import math

SLOTS = ["s000", "s001", "s002", "s003"]
METRICS = ["grad", "prodsig", "sens", "param"]
RATIOS = [0.0, 0.1, 0.2, 0.3, 0.5, 1.0]
STUDY_CFG = {
    "cases": [{"dataset": "cifar100", "model": "lenet"}, {"dataset": "cifar100", "model": "cnn"}],
    "victims": len(SLOTS),
    "attacks": {"ig": {"restarts": 3}},
    "significance": {"metrics": METRICS, "ratios": RATIOS,
                     "cost_metrics": ["sens", "sens_discrete", "sens_probe", "prodsig"]},
    "evaluation": {"image_metrics": ["mse", "psnr", "ssim", "lpips"], "best_of_restarts": "attacker_loss",
                   "protection": {"image": {"metric": "lpips", "op": ">=", "threshold": 0.3}},
                   "table5_ratio": 0.3},
}
CONFIG = {"studies": {"selective_encryption": STUDY_CFG}}

# Per-sample LPIPS of the restart the attacker keeps (lowest attacker loss), chosen so the
# mean over the four samples crosses 0.3 at a known ratio.  Sample values straddle the
# threshold, so "any sample" or "every sample" rules would give other answers.
BELOW = [0.05, 0.10, 0.15, 0.50]      # mean 0.20: not protected (one sample above 0.3)
ABOVE = [0.20, 0.30, 0.40, 0.50]      # mean 0.35: protected (one sample below 0.3)
LOW = [0.01, 0.02, 0.03, 0.04]        # mean 0.025
HIGH = [0.8, 0.9, 0.85, 0.95]

# (model, metric) -> ratio -> per-sample lpips; ratios 0 and 1 come from metric "any"
CURVES = {
    ("lenet", "grad"): {0.1: BELOW, 0.2: ABOVE, 0.3: HIGH, 0.5: HIGH},        # -> 0.2
    ("lenet", "prodsig"): {0.1: LOW, 0.2: BELOW, 0.3: ABOVE, 0.5: HIGH},      # -> 0.3
    ("lenet", "sens"): {0.1: ABOVE, 0.2: BELOW, 0.3: HIGH, 0.5: HIGH},        # -> 0.1 (first crossing)
    ("lenet", "param"): {0.1: LOW, 0.2: LOW, 0.3: LOW, 0.5: BELOW},           # -> 1.0 (shared row only)
    ("cnn", "grad"): {0.1: LOW, 0.2: LOW, 0.3: LOW, 0.5: ABOVE},              # -> 0.5
    ("cnn", "prodsig"): {0.1: LOW, 0.2: LOW, 0.3: BELOW, 0.5: BELOW},         # -> NA
    ("cnn", "sens"): {0.1: LOW, 0.2: LOW, 0.3: LOW, 0.5: LOW},                # -> NA
    ("cnn", "param"): {0.1: LOW, 0.2: LOW, 0.3: LOW, 0.5: LOW},               # -> NA
}
SHARED = {("lenet", 0.0): LOW, ("lenet", 1.0): HIGH, ("cnn", 0.0): LOW, ("cnn", 1.0): BELOW}
EXPECTED_T4 = {("lenet", "grad"): 0.2, ("lenet", "prodsig"): 0.3, ("lenet", "sens"): 0.1,
               ("lenet", "param"): 1.0, ("cnn", "grad"): 0.5, ("cnn", "prodsig"): None,
               ("cnn", "sens"): None, ("cnn", "param"): None}
# MSE of the kept restart at ratio 0.3 (Table 5): (model, metric) -> per-sample values
MSE_AT_03 = {("lenet", "grad"): [0.01, 0.02, 0.04, 0.09]}


def _row(model, slot, metric, ratio, restart, lpips, mse, loss, status="ok", lpips_status="ok (alex, v0.1)"):
    return {"study": "selective_encryption", "dataset": "cifar100", "model": model, "slot": slot,
            "metric": metric, "ratio": ratio, "attack": "ig", "restart": restart, "status": status,
            "attacker_loss": loss, "encrypted_fraction": ratio, "mse": mse,
            "psnr": None if mse is None else -10 * math.log10(max(mse, 1e-12)), "ssim": 0.5,
            "lpips": lpips, "lpips_status": lpips_status, "iterations": 100, "seconds": 1.0}


def synthetic_rows(lpips_available: bool = True) -> list[dict]:
    """Three restarts per case; restart 1 has the lowest attacker loss and carries the
    designed values, restarts 0 and 2 are decoys (higher loss, different metrics)."""
    rows = []

    def add(model, metric, ratio, values):
        for i, slot in enumerate(SLOTS):
            lp = values[i]
            mse = MSE_AT_03.get((model, metric), [0.05] * 4)[i] if ratio == 0.3 else 0.05
            for rep, (dl, dm, loss) in enumerate([(+0.4, 0.5, 0.9), (0.0, 0.0, 0.1), (-0.3, 0.3, 0.5)]):
                rows.append(_row(model, slot, metric, ratio, rep,
                                 lp + dl if lpips_available else None, mse + dm, loss,
                                 lpips_status="ok (alex, v0.1)" if lpips_available
                                 else "unavailable: no AlexNet backbone weights in resources/hub"))

    for (model, metric), curve in CURVES.items():
        for ratio, values in curve.items():
            add(model, metric, ratio, values)
    for (model, ratio), values in SHARED.items():
        add(model, "any", ratio, values)
    return rows
