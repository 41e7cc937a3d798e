"""Privacy budgets (gibench.privacy): independent facts.

* Published value: TF Privacy's MNIST DP-SGD tutorial (tensorflow/privacy, tutorials/README.md,
  "Select Parameters" table, first row; the tutorial's compute_epsilon in
  tutorials/mnist_dpsgd_tutorial.py): N = 60000, batch 256, noise multiplier 1.12, 60 epochs of
  60000 // 256 = 234 steps, Poisson rate q = 256/60000, RDP orders 1.1..10.9 and 12..63,
  delta = 1e-5, epsilon reported as 2.92 -- with the RDP -> (epsilon, delta) conversion of
  Mironov 2017, Prop. 3 (epsilon = min_a rdp(a) + log(1/delta) / (a - 1)).
* The analytic Gaussian mechanism (Balle & Wang 2018, Thm. 8): delta(eps) =
  Phi(1/(2s) - eps s) - e^eps Phi(-1/(2s) - eps s) for noise multiplier s, evaluated here in log
  space with scipy, independently of dp-accounting; and the classical bound
  eps <= sqrt(2 ln(1.25/delta)) / s (Dwork & Roth 2014, Thm. A.1, for eps < 1).
* RDP of k Gaussian releases is k alpha / (2 s^2) (Mironov 2017, Prop. 7 + composition), so it
  equals one release of s / sqrt(k); RDP and PLD bound the exact value from above.
* Monotonicity: more releases -> larger epsilon, more noise -> smaller, larger delta -> smaller,
  replace-one (sensitivity 2 tau) -> larger than zero-out (tau).
* Noise without clipping (concealed-samples dp_gaussian) carries no guarantee; sigma = 0 neither.
* Every DP configuration of the shipped configs is accounted without error, clipped ones with a
  formal, finite epsilon that satisfies Balle & Wang's equation at the stated delta.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.special import log_ndtr

from gibench import privacy as P
from gibench.defenses import DefenseChain
from gibench.defenses.concealed import parse_steps

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ["config/config.yaml", "config/studies/stochastic_defenses.yaml",
           "config/studies/concealed_samples.yaml", "config/studies/selective_encryption.yaml"]


def balle_wang_log_delta(s: float, eps: float) -> float:
    """log delta(eps) of the Gaussian mechanism with noise multiplier s (std / sensitivity)."""
    a = log_ndtr(1 / (2 * s) - eps * s)
    b = eps + log_ndtr(-1 / (2 * s) - eps * s)
    return float(a + np.log1p(-np.exp(b - a)))


# ------------------------------------------------------------------ published value

def test_tf_privacy_mnist_tutorial_published_epsilon():
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    q, steps, delta = 256 / 60000, 60 * (60000 // 256), 1e-5
    o, rdp = P.poisson_rdp_curve(1.12, q, steps, orders)
    classic = min(r + math.log(1 / delta) / (a - 1) for a, r in zip(o, rdp))
    assert round(classic, 2) == 2.92                       # tutorials/README.md: 2.92
    # dp-accounting's conversion (Canonne et al. 2020, Prop. 12) is tighter at every order and its
    # default orders include the tutorial's, so our RDP number cannot exceed the published one;
    # PLD (near-exact) is tighter still
    ours = P.poisson_epsilon(1.12, q, steps, delta, "rdp")
    pld = P.poisson_epsilon(1.12, q, steps, delta, "pld")
    assert 2.0 < ours < classic
    assert 2.0 < pld < ours


# ------------------------------------------------------------------ accountants

@pytest.mark.parametrize("s,k", [(0.5, 1), (1.0, 1), (1.0, 10), (5.0, 3), (5e-4, 1), (5e-5, 300)])
def test_exact_epsilon_solves_balle_wang(s, k):
    eps = P.gaussian_epsilon(s, k, 1e-5, "exact")
    assert eps > 0
    assert balle_wang_log_delta(s / math.sqrt(k), eps) == pytest.approx(math.log(1e-5), abs=1e-6)


def test_exact_below_classical_bound():
    s, delta = 5.0, 1e-5
    classical = math.sqrt(2 * math.log(1.25 / delta)) / s
    assert classical < 1
    assert P.gaussian_epsilon(s, 1, delta, "exact") < classical


@pytest.mark.parametrize("s,k", [(0.8, 1), (1.0, 25), (3.0, 7)])
def test_rdp_composition_and_upper_bounds(s, k):
    delta = 1e-5
    exact = P.gaussian_epsilon(s, k, delta, "exact")
    rdp = P.gaussian_epsilon(s, k, delta, "rdp")
    assert rdp == pytest.approx(P.gaussian_epsilon(s / math.sqrt(k), 1, delta, "rdp"), rel=1e-12)
    assert rdp >= exact
    pld = P.gaussian_epsilon(s, k, delta, "pld")
    assert exact * (1 - 1e-3) <= pld <= exact * 1.02 + 1e-3


def test_monotone():
    d = 1e-5
    e = [P.gaussian_epsilon(0.5, k, d) for k in (1, 2, 10, 300)]
    assert all(a < b for a, b in zip(e, e[1:]))
    e = [P.gaussian_epsilon(s, 10, d) for s in (1e-4, 1e-2, 0.5, 2.0)]
    assert all(a > b for a, b in zip(e, e[1:]))
    assert P.gaussian_epsilon(1.0, 10, 1e-3) < P.gaussian_epsilon(1.0, 10, 1e-6)
    e = [P.poisson_epsilon(1.0, 0.01, k, d) for k in (100, 1000, 10000)]
    assert all(a < b for a, b in zip(e, e[1:]))
    assert P.poisson_epsilon(1.0, 0.01, 1000, d) > P.poisson_epsilon(2.0, 0.01, 1000, d)
    assert P.poisson_epsilon(1.0, 0.01, 1000, d) < P.poisson_epsilon(1.0, 0.1, 1000, d)


# ------------------------------------------------------------------ records

FL = {"rounds": 4, "local_epochs": 2, "batch_size": 10, "val_fraction": 0.0}


def test_attack_record_formal_and_relation():
    chain = DefenseChain([{"name": "dp", "clip": 20, "sigma": 1.0}])
    rec = P.budget(chain, gradient={"batch_size": 1})
    assert rec["guarantee"] == "formal" and rec["level"] == "sample"
    assert rec["compositions"] == 1 and rec["sampling_rate"] == 1.0 and rec["delta"] == 1e-5
    assert rec["noise_multiplier"] == 0.5                  # replace-one: sensitivity 2 tau
    assert rec["epsilon"] == pytest.approx(P.gaussian_epsilon(0.5, 1, 1e-5, "exact"))
    zero = rec["variants"][0]
    assert zero["relation"] == "zero_out" and zero["noise_multiplier"] == 1.0 and zero["epsilon"] < rec["epsilon"]
    # the clip does not change epsilon (noise is sigma * tau); sigma does
    assert P.budget(DefenseChain([{"name": "dp", "clip": 1, "sigma": 1.0}]))["epsilon"] == rec["epsilon"]
    assert P.budget(DefenseChain([{"name": "dp", "clip": 20, "sigma": 2.0}]))["epsilon"] < rec["epsilon"]


def test_fedavg_record_counts_epochs():
    chain = DefenseChain(["dropout", {"name": "dp", "clip": 5, "sigma": 1.0}, "prune"])
    rec = P.budget(chain, fl=FL, n_train=95)
    assert rec["guarantee"] == "formal"
    assert rec["compositions"] == 8 and rec["per_round"]["compositions"] == 2 and rec["per_step"]["compositions"] == 1
    assert rec["steps"] == 4 * 2 * 10                      # ceil(95 / 10) steps per epoch
    assert rec["per_step"]["epsilon"] < rec["per_round"]["epsilon"] < rec["epsilon"]
    assert rec["epsilon"] == pytest.approx(P.gaussian_epsilon(0.5, 8, 1e-5, "exact"))
    poisson = [v for v in rec["variants"] if v["relation"] == "add_remove"][0]
    assert poisson["guarantee"] == "none" and poisson["sampling_rate"] == pytest.approx(10 / 95)
    assert poisson["steps"] == 80 and "pld" in poisson["epsilon_by_accountant"]
    # fewer rounds actually trained (early stopping) -> smaller epsilon
    assert P.budget(chain, fl=FL, n_train=95, rounds=2)["epsilon"] < rec["epsilon"]


def test_tiny_sigma_reported_not_hidden():
    rec = P.budget(DefenseChain([{"name": "dp", "clip": 20, "sigma": 1e-4}]))
    assert rec["guarantee"] == "formal" and math.isfinite(rec["epsilon"]) and rec["epsilon"] > 1e8
    assert P.format_epsilon(rec) == "2.00e+08"


def test_no_clipping_has_no_guarantee():
    steps = parse_steps([{"name": "dp_gaussian", "std": 0.01}])
    for rec in (P.budget(steps), P.budget(steps, fl=FL, n_train=50)):
        assert rec["guarantee"] == "none" and rec["mechanism"] == "unclipped_gaussian"
        assert rec["epsilon"] == math.inf and rec["accountant"] == "none"
        assert P.format_epsilon(rec) == "none (no clipping)"
    rec = P.budget(DefenseChain([{"name": "dp", "clip": 20, "sigma": 0.0}]))
    assert rec["guarantee"] == "none" and rec["epsilon"] == math.inf and P.format_epsilon(rec) == "∞"


def test_noise_free_defenses_have_no_record():
    assert P.budget(DefenseChain(["dropout", "prune", "cvb"])) is None
    assert P.budget(DefenseChain([])) is None
    assert P.budget(parse_steps(["prune", "soteria"])) is None
    assert P.format_epsilon(None) == "—"


@pytest.mark.parametrize("cfg,key", [({"delta": 0}, "privacy.delta"), ({"delta": 1.5}, "privacy.delta"),
                                     ({"relation": "add_remove"}, "privacy.relation"), ({"detla": 1e-5}, "detla")])
def test_bad_settings_name_the_key(cfg, key):
    with pytest.raises(P.PrivacyConfigError, match=key):
        P.settings_from(cfg)


def test_delta_vs_n_is_flagged():
    chain = DefenseChain([{"name": "dp", "clip": 20, "sigma": 1.0}])
    rec = P.budget(chain, fl=FL, n_train=50, privacy={"delta": 0.05})
    assert any("not below 1/n" in n for n in rec["notes"])
    assert not any("not below 1/n" in n for n in P.budget(chain, fl=FL, n_train=50)["notes"])


def test_schema_defaults_match():
    import jsonschema

    block = yaml.safe_load((ROOT / "config/schema/privacy.defs.yaml").read_text())["$defs"]["privacy"]
    assert {k: v["default"] for k, v in block["properties"].items()} == P.DEFAULTS
    jsonschema.validate({"delta": 1e-6, "relation": "zero_out"}, block)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"delta": 1.0}, block)


# ------------------------------------------------------------------ shipped configs

@pytest.mark.parametrize("path", CONFIGS)
def test_shipped_configs_accounted(path):
    from gibench import config as C

    cfg = C.load(ROOT / path)
    rows = P.study_budgets(cfg)
    studies = set(cfg["studies"])
    if "stochastic_defenses" in studies:
        assert any(r["study"] == "stochastic_defenses" and r["setting"] == "attack" for r in rows)
        assert any(r["study"] == "stochastic_defenses" and r["setting"] == "fedavg" for r in rows)
    if "concealed_samples" in studies:
        assert any(r["study"] == "concealed_samples" for r in rows)
    if studies == {"selective_encryption"}:
        assert rows == []                                   # paper A: encryption, no DP
    for r in rows:
        rec = r["record"]
        if r["study"] == "concealed_samples":
            assert rec["mechanism"] == "unclipped_gaussian" and rec["guarantee"] == "none"
            continue
        assert rec["guarantee"] == "formal" and 0 < rec["epsilon"] < math.inf
        s = rec["noise_multiplier"] / math.sqrt(rec["compositions"])
        assert balle_wang_log_delta(s, rec["epsilon"]) == pytest.approx(math.log(rec["delta"]), abs=1e-5)
        if r["setting"] == "fedavg":
            assert rec["n_train"] and rec["per_step"]["epsilon"] <= rec["epsilon"]
    assert all(math.isfinite(x) or x == math.inf for row in P.summary_rows(rows)
               for k, x in row.items() if k.startswith("eps_") and x is not None)


def test_client_sizes_as_the_fedavg_job_cuts_them():
    """The demo's FedAvg shards (bundled MNIST less the held-out test share, 64 per client,
    10 % validation) have the sizes the FedAvg job itself builds."""
    from gibench import config as C, fl
    from gibench.pipeline import jobs_fl

    cfg = C.load(ROOT / "config/config.yaml")
    study = "stochastic_defenses"
    block = jobs_fl.fl_block(cfg, study)
    _pool, shards, _test, info = jobs_fl.load_fl_data(cfg, study, "mnist", 0)
    pool = P.fl_pool_size(cfg, "mnist", (block.get("data") or {}).get("holdout_fraction", 0.2))
    assert pool == info["train_pool"]
    assert P.client_train_sizes(pool, fl.settings_from(block)) == [len(c.train) for c in shards]
