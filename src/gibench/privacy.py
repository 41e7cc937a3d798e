"""Privacy budgets: epsilon at a stated delta for the DP configurations the studies run.

What is accounted (sample-level DP, DP-SGD style: the guarantee protects one training sample
of a client against everything the server sees from that client):

* **Mechanism.**  Paper B's ``dp`` defense (:class:`gibench.defenses.specs.DP`, applied by
  :meth:`gibench.defenses.DefenseChain.client_gradient`): every sample's gradient is clipped
  to L2 norm tau over all parameters, the clipped gradients are summed, Xi ~ N(0, (sigma tau)^2 I)
  is added and the sum is divided by the batch size B (a public constant of the step).
  Dropout, the privacy modules (PRECODE/CVB: per-sample randomness inside each sample's
  gradient), pruning of the noisy gradient (GP) and the optimiser steps of FedAvg are
  post-processing or per-sample preprocessing and do not change the bound.
* **Neighbouring relation** (``relation``).  ``replace_one`` (default): datasets of the same
  size that differ in one sample.  Batch sizes do not change, the clipped sum moves by at
  most 2 tau, so each release is a Gaussian mechanism with noise multiplier
  (std / L2 sensitivity) sigma tau / (2 tau) = sigma / 2.  ``zero_out``: one sample replaced by
  a null sample whose clipped gradient is 0 (Kairouz et al. 2021, "Practical and private (deep)
  learning without sampling or shuffling"): sensitivity tau, noise multiplier sigma -- the
  relation DP-SGD papers' numbers usually correspond to.  Plain add/remove is not used for
  what runs here: the code divides by the actual batch size, which changes with the dataset's
  size, so add/remove is not a Gaussian mechanism.
* **Sampling.**  The FedAvg clients (:func:`gibench.fl.local_train`) shuffle their training
  shard every epoch and cut it into disjoint batches, so every sample is in exactly one
  (``drop_last``: at most one) noisy step per local epoch.  No privacy amplification by that
  shuffling is claimed (no theorem covers shuffled fixed-size batches in the RDP/PLD
  accountants; Chua et al. 2024, "How private are DP-SGD implementations?", show the
  Poisson numbers can underestimate it): ``sampling_rate`` is 1 and the guarantee composes
  one Gaussian release per epoch: ``compositions`` = rounds x local_epochs.  This is a formal
  guarantee (Gaussian mechanism + adaptive composition; the batch order is data-independent).
  The usual DP-SGD number -- Poisson subsampling at q = B / n over every local step -- is
  given as a labelled *variant* with ``guarantee: none`` (its assumption is not what runs).
* **Attacked gradient.**  The gradient the attacks invert is one release: one composition.
* **Accountants** (Google's ``dp-accounting``): ``exact`` -- the analytic Gaussian mechanism
  (Balle & Wang 2018, ``dp_accounting.gaussian_mechanism.get_epsilon_gaussian``); k Gaussian
  releases of noise multiplier s compose exactly to one of s / sqrt(k) (Dong, Roth & Su 2019),
  so this is tight; ``rdp`` -- ``dp_accounting.rdp.RdpAccountant`` (an upper bound, looser);
  ``pld`` -- ``dp_accounting.pld.PLDAccountant``, only for the Poisson variant and only where
  it is cheap (noise multiplier >= :data:`PLD_MIN_NOISE`).  ``epsilon`` is the smallest of the
  formal bounds computed (all are valid upper bounds; ``exact`` is the tight one).
* **No clipping** (the concealed-samples study's ``dp_gaussian``: N(0, std^2) added to the
  gradient, no clipping): no sensitivity bound is enforced, so no (epsilon, delta) follows from
  the mechanism: ``guarantee: none``, ``epsilon: inf`` (= no finite bound, not a measurement).
* **delta** (``delta``, default 1e-5: TF Privacy's MNIST convention, below 1/n for every client
  training set in the shipped configs; a record notes when delta >= 1/n).

Tiny noise multipliers give astronomically large epsilon (sigma = 1e-4: ~2e8 for one step);
those numbers are reported as computed.  Paper B itself reports no epsilon.

Entry points: :func:`budget` (a defense + the study's gradient/fl settings -> one record with
per-step, per-round and whole-run numbers), :func:`format_epsilon` (a table cell) and
:func:`study_budgets` (every DP configuration of a validated config).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Iterable, Mapping, Sequence

#: defaults of a study's ``privacy`` block (config/schema/privacy.defs.yaml holds the same)
DEFAULTS: dict[str, Any] = {
    "delta": 1e-5,
    "relation": "replace_one",
    "poisson_variant": True,
}
RELATIONS = ("replace_one", "zero_out")
ACCOUNTANTS = ("exact", "rdp", "pld")
#: the PLD accountant is only run for noise multipliers at least this large (below it the
#: privacy-loss range, ~ 1 / (2 s^2) per step, needs too many discretisation buckets)
PLD_MIN_NOISE = 0.3
#: value discretisation interval of the PLD accountant (dp-accounting's default is 1e-4)
PLD_INTERVAL = 1e-3


SECRET_NOISE_NOTE = ("DP assumes the noise Xi is secret: an attacker who knows it (WIIG's oracle) is outside its "
                     "threat model, and the benchmark seeds Xi from the run seed for reproducibility")


class PrivacyConfigError(ValueError):
    """A privacy setting or DP configuration that cannot be accounted; names the key."""


# ===================================================================== settings

def settings_from(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """A study's ``privacy`` block over :data:`DEFAULTS`, checked (errors name the key)."""
    s = {**DEFAULTS, **dict(cfg or {})}
    unknown = sorted(set(s) - set(DEFAULTS))
    if unknown:
        raise PrivacyConfigError(f"privacy: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
    d = s["delta"]
    if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 < float(d) < 1.0:
        raise PrivacyConfigError(f"privacy.delta must be a number in (0, 1), got {d!r}")
    s["delta"] = float(d)
    if s["relation"] not in RELATIONS:
        raise PrivacyConfigError(f"privacy.relation must be one of {list(RELATIONS)}, got {s['relation']!r}")
    if not isinstance(s["poisson_variant"], bool):
        raise PrivacyConfigError(f"privacy.poisson_variant must be true or false, got {s['poisson_variant']!r}")
    return s


# ===================================================================== the mechanism

def mechanism_of(defense: Any) -> dict[str, Any] | None:
    """The noise mechanism of a defense, or None when it adds no noise.

    Accepts a :class:`~gibench.defenses.DefenseChain`, a paper-B ``DP`` record, a
    concealed-samples step list (``CSDefense`` records) or a ``DPGaussian`` record, a spec
    list as either family takes it, or None.  Returns ``{"kind": "clipped_gaussian", "clip",
    "sigma"}`` or ``{"kind": "unclipped_gaussian", "std"}``."""
    from .defenses import DefenseChain
    from .defenses.concealed import CSDefense, DPGaussian, parse_steps
    from .defenses.specs import DP

    if defense is None:
        return None
    if isinstance(defense, DP):
        return {"kind": "clipped_gaussian", "clip": float(defense.clip), "sigma": float(defense.sigma)}
    if isinstance(defense, DPGaussian):
        return {"kind": "unclipped_gaussian", "std": float(defense.std)}
    if isinstance(defense, DefenseChain):
        return mechanism_of(defense.get("dp"))
    if isinstance(defense, (list, tuple)):
        if not defense:
            return None
        if all(isinstance(s, CSDefense) for s in defense):
            found = [s for s in defense if isinstance(s, DPGaussian)]
            return mechanism_of(found[0]) if found else None
        raise PrivacyConfigError(
            "privacy: a raw defense list is ambiguous (paper B's DefenseChain or the concealed-samples "
            f"steps?); pass DefenseChain(specs, defaults) or parse_steps(specs), got {list(defense)!r}")
    raise PrivacyConfigError(f"privacy: cannot read a noise mechanism from {type(defense).__name__} {defense!r}")


def noise_multiplier(sigma: float, relation: str) -> float:
    """std / L2 sensitivity of one release: sigma tau / (2 tau) under replace_one, sigma tau / tau
    under zero_out (see the module docstring)."""
    if relation == "replace_one":
        return float(sigma) / 2.0
    if relation == "zero_out":
        return float(sigma)
    raise PrivacyConfigError(f"privacy.relation must be one of {list(RELATIONS)}, got {relation!r}")


# ===================================================================== accountants

@functools.lru_cache(maxsize=1024)
def gaussian_epsilon(noise: float, compositions: int, delta: float, accountant: str = "exact") -> float:
    """epsilon at ``delta`` of ``compositions`` adaptive Gaussian releases, each of noise
    multiplier ``noise`` (std / L2 sensitivity), without subsampling."""
    import dp_accounting

    _check_counts(noise, compositions, delta)
    if noise == 0.0:
        return math.inf
    if accountant == "exact":
        from dp_accounting import gaussian_mechanism

        return float(gaussian_mechanism.get_epsilon_gaussian(noise / math.sqrt(compositions), delta))
    if accountant == "rdp":
        acc = dp_accounting.rdp.RdpAccountant()
        acc.compose(dp_accounting.GaussianDpEvent(noise), compositions)
        return float(acc.get_epsilon(delta))
    if accountant == "pld":
        acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=PLD_INTERVAL)
        acc.compose(dp_accounting.GaussianDpEvent(noise), compositions)
        return float(acc.get_epsilon(delta))
    raise PrivacyConfigError(f"unknown accountant {accountant!r}; known: {list(ACCOUNTANTS)}")


def poisson_rdp_curve(noise: float, sampling_rate: float, steps: int,
                      orders: Sequence[float] | None = None) -> tuple[list[float], list[float]]:
    """(orders, RDP values) of Poisson-subsampled DP-SGD after ``steps`` steps, from
    ``dp_accounting.rdp.RdpAccountant`` (its default orders unless given)."""
    import dp_accounting

    acc = dp_accounting.rdp.RdpAccountant(orders=orders)
    acc.compose(dp_accounting.PoissonSampledDpEvent(sampling_rate, dp_accounting.GaussianDpEvent(noise)), steps)
    return [float(a) for a in acc.orders], [float(r) for r in acc.rdp]


@functools.lru_cache(maxsize=256)
def poisson_epsilon(noise: float, sampling_rate: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """epsilon at ``delta`` of DP-SGD with Poisson subsampling at ``sampling_rate`` over ``steps``
    steps, add/remove relation (Abadi et al. 2016; Mironov et al. 2019)."""
    import dp_accounting

    _check_counts(noise, steps, delta)
    if not 0.0 < sampling_rate <= 1.0:
        raise PrivacyConfigError(f"sampling rate must be in (0, 1], got {sampling_rate!r}")
    if noise == 0.0:
        return math.inf
    event = dp_accounting.PoissonSampledDpEvent(sampling_rate, dp_accounting.GaussianDpEvent(noise))
    if accountant == "rdp":
        acc = dp_accounting.rdp.RdpAccountant()
    elif accountant == "pld":
        acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=PLD_INTERVAL)
    else:
        raise PrivacyConfigError(f"accountant {accountant!r} has no Poisson-subsampled form; use rdp or pld")
    acc.compose(event, steps)
    return float(acc.get_epsilon(delta))


def _check_counts(noise: float, count: int, delta: float) -> None:
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0.0 or math.isinf(noise):
        raise PrivacyConfigError(f"noise multiplier must be a finite number >= 0, got {noise!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise PrivacyConfigError(f"the number of releases must be a positive integer, got {count!r}")
    if not 0.0 < delta < 1.0:
        raise PrivacyConfigError(f"delta must be in (0, 1), got {delta!r}")


# ===================================================================== records

def _formal_record(mech: Mapping[str, Any], settings: Mapping[str, Any], *, scope: str, compositions: int,
                   steps: int | None, assumption: str, notes: Sequence[str]) -> dict[str, Any]:
    delta, relation = settings["delta"], settings["relation"]
    nm = noise_multiplier(mech["sigma"], relation)
    rec: dict[str, Any] = {
        "scope": scope, "mechanism": "clipped_gaussian", "level": "sample", "relation": relation,
        "clip": mech["clip"], "sigma": mech["sigma"], "noise_multiplier": nm, "delta": delta,
        "sampling_rate": 1.0, "steps": steps, "compositions": int(compositions), "assumption": assumption,
        "notes": list(notes),
    }
    if nm == 0.0:
        rec.update(epsilon=math.inf, accountant="none", epsilon_by_accountant={}, guarantee="none")
        rec["notes"].append("sigma = 0: no noise is added, so no finite epsilon holds")
        return rec
    by = {a: gaussian_epsilon(nm, int(compositions), delta, a) for a in ("exact", "rdp")}
    best = min(by, key=lambda a: by[a])
    rec.update(epsilon=by[best], accountant=f"dp_accounting {best}", epsilon_by_accountant=by, guarantee="formal")
    return rec


def _unclipped_record(mech: Mapping[str, Any], settings: Mapping[str, Any], *, scope: str, compositions: int,
                      steps: int | None) -> dict[str, Any]:
    return {
        "scope": scope, "mechanism": "unclipped_gaussian", "level": "sample", "relation": settings["relation"],
        "clip": None, "sigma": None, "std": mech["std"], "noise_multiplier": None, "delta": settings["delta"],
        "sampling_rate": 1.0, "steps": steps, "compositions": int(compositions),
        "epsilon": math.inf, "accountant": "none", "epsilon_by_accountant": {}, "guarantee": "none",
        "assumption": "none holds: the gradient is not clipped",
        "notes": [f"N(0, {mech['std']:g}^2) is added to the gradient without clipping: no sensitivity bound is "
                  "enforced, so the mechanism implies no (epsilon, delta) guarantee; epsilon = inf means 'no "
                  "finite bound', not a measured value"],
    }


def attack_budget(defense: Any, gradient: Mapping[str, Any] | None = None,
                  privacy: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The record of the one gradient the attacks invert (a single release); None without noise.

    ``gradient`` is the study's ``gradient`` block (``batch_size``, default 1)."""
    mech = mechanism_of(defense)
    if mech is None:
        return None
    s = settings_from(privacy)
    b = int((gradient or {}).get("batch_size", 1))
    if mech["kind"] == "unclipped_gaussian":
        return {**_unclipped_record(mech, s, scope="attacked_gradient", compositions=1, steps=1), "variants": []}
    rec = _formal_record(
        mech, s, scope="attacked_gradient", compositions=1, steps=1,
        assumption=(f"one release of a batch of {b}: per-sample clipping to tau = {mech['clip']:g}, "
                    f"N(0, (sigma tau)^2) on the sum, divided by the fixed batch size; {s['relation']} relation"),
        notes=[SECRET_NOISE_NOTE])
    rec["variants"] = [other_relation_variant(mech, s, scope="attacked_gradient", compositions=1, steps=1)]
    return rec


def local_steps(n_train: int, batch_size: int, epochs: int, drop_last: bool = False) -> int:
    """Noisy steps of one client in one round (as :func:`gibench.fl.local_train` takes them)."""
    per_epoch = n_train // batch_size if (drop_last and n_train >= batch_size) else math.ceil(n_train / batch_size)
    return int(per_epoch) * int(epochs)


def fedavg_budget(defense: Any, fl_settings: Mapping[str, Any] | None, *, n_train: int | None = None,
                  rounds: int | None = None, privacy: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The record of a FedAvg run: the whole run (top level), with ``per_step`` (one noisy local
    step) and ``per_round`` sub-records and labelled ``variants``; None without noise.

    ``fl_settings`` is the study's ``fl`` block (or the concealed-samples utility settings);
    ``n_train`` the client's training-sample count (only for step counts, the Poisson variant
    and the delta check; the formal bound does not depend on it); ``rounds`` the rounds
    actually trained (default: ``fl.rounds``, an upper bound when early stopping ends a run
    sooner)."""
    from . import fl

    mech = mechanism_of(defense)
    if mech is None:
        return None
    s = settings_from(privacy)
    f = fl.settings_from(fl_settings)
    rounds = int(f["rounds"] if rounds is None else rounds)
    epochs, batch = int(f["local_epochs"]), int(f["batch_size"])
    if rounds < 1 or epochs < 1 or batch < 1:
        raise PrivacyConfigError(f"fl: rounds ({rounds}), local_epochs ({epochs}) and batch_size ({batch}) must be >= 1")
    if n_train is not None and (isinstance(n_train, bool) or int(n_train) < 1):
        raise PrivacyConfigError(f"n_train must be a positive integer, got {n_train!r}")
    per_round_steps = local_steps(int(n_train), batch, epochs, bool(f["drop_last"])) if n_train else None
    notes = [SECRET_NOISE_NOTE]
    dc = f.get("defended_clients", "all")
    if dc != "all":
        notes.append(f"only clients {list(dc)} add noise: samples of the other clients have no guarantee")
    if float(f.get("client_fraction", 1.0)) < 1.0:
        notes.append("client sampling (client_fraction < 1) is not used for amplification")
    if float(f.get("val_fraction", 0.0)) > 0:
        notes.append("the clients' validation samples are not protected (their losses drive early stopping)")
    if n_train and s["delta"] >= 1.0 / n_train:
        notes.append(f"delta = {s['delta']:g} is not below 1/n = {1.0 / n_train:.3g} for n = {n_train}: a weak guarantee")
    if n_train and batch >= n_train:
        notes.append(f"batch size {batch} >= the client's {n_train} samples: every step uses the whole shard")
    early = f.get("early_stopping") or {}
    if early.get("patience") is not None and float(f.get("val_fraction", 0.0)) > 0:
        notes.append(f"at {rounds} rounds (fl.rounds); early stopping can end a run sooner, with a smaller epsilon")

    if mech["kind"] == "unclipped_gaussian":
        out = _unclipped_record(mech, s, scope="fedavg", compositions=rounds * epochs,
                                steps=per_round_steps * rounds if per_round_steps else None)
        out["notes"] += notes
        out["per_step"] = _unclipped_record(mech, s, scope="step", compositions=1, steps=1)
        out["per_round"] = _unclipped_record(mech, s, scope="round", compositions=epochs, steps=per_round_steps)
        out["rounds"], out["local_epochs"], out["batch_size"], out["n_train"] = rounds, epochs, batch, n_train
        out["variants"] = []
        return out

    how = (f"per-sample clipping to tau = {mech['clip']:g}, N(0, (sigma tau)^2) on each batch's sum; each sample in "
           f"exactly one noisy step per local epoch (shuffled disjoint batches), no amplification claimed; "
           f"{s['relation']} relation")
    out = _formal_record(mech, s, scope="fedavg", compositions=rounds * epochs,
                         steps=per_round_steps * rounds if per_round_steps else None,
                         assumption=f"{rounds} rounds x {epochs} local epoch(s); " + how, notes=notes)
    out["per_step"] = _formal_record(mech, s, scope="step", compositions=1, steps=1,
                                     assumption="one noisy local step that contains the sample; " + how, notes=[])
    out["per_round"] = _formal_record(mech, s, scope="round", compositions=epochs, steps=per_round_steps,
                                      assumption=f"one round ({epochs} local epoch(s)); " + how, notes=[])
    out["rounds"], out["local_epochs"], out["batch_size"], out["n_train"] = rounds, epochs, batch, n_train
    out["variants"] = [other_relation_variant(mech, s, scope="fedavg", compositions=rounds * epochs,
                                              steps=out["steps"])]
    if s["poisson_variant"] and n_train:
        out["variants"].append(poisson_variant(mech, s, n_train=int(n_train), batch_size=batch,
                                               steps=per_round_steps * rounds))
    return out


def other_relation_variant(mech: Mapping[str, Any], settings: Mapping[str, Any], *, scope: str, compositions: int,
                           steps: int | None) -> dict[str, Any]:
    """The same formal bound under the other neighbouring relation (labelled)."""
    other = RELATIONS[1 - RELATIONS.index(settings["relation"])]
    rec = _formal_record(mech, {**settings, "relation": other}, scope=scope, compositions=compositions, steps=steps,
                         assumption=f"as the main record, {other} relation", notes=[])
    rec["label"] = {"zero_out": "zero-out relation (sensitivity tau; the relation DP-SGD papers' numbers use)",
                    "replace_one": "replace-one relation (sensitivity 2 tau)"}[other]
    return rec


def poisson_variant(mech: Mapping[str, Any], settings: Mapping[str, Any], *, n_train: int, batch_size: int,
                    steps: int) -> dict[str, Any]:
    """What the usual DP-SGD accounting would report: Poisson subsampling at q = B / n over
    every local step, add/remove relation, noise multiplier sigma.  The clients shuffle
    instead, so this carries ``guarantee: none`` for the code that runs."""
    q = min(1.0, batch_size / n_train)
    nm = float(mech["sigma"])
    rec: dict[str, Any] = {
        "label": "Poisson-subsampled DP-SGD (assumed; not what runs)", "scope": "fedavg",
        "mechanism": "clipped_gaussian", "level": "sample", "relation": "add_remove", "clip": mech["clip"],
        "sigma": mech["sigma"], "noise_multiplier": nm, "delta": settings["delta"], "sampling_rate": q,
        "steps": int(steps), "compositions": int(steps), "guarantee": "none",
        "assumption": (f"each sample joins each of the {steps} local steps independently with probability "
                       f"q = {batch_size}/{n_train} (Poisson), add/remove relation"),
        "notes": ["the clients shuffle and cut fixed-size batches, so this theorem does not cover what runs; "
                  "it is the number DP-SGD papers usually quote"],
    }
    by = {"rdp": poisson_epsilon(nm, q, int(steps), settings["delta"], "rdp")}
    if nm >= PLD_MIN_NOISE:
        by["pld"] = poisson_epsilon(nm, q, int(steps), settings["delta"], "pld")
    else:
        rec["notes"].append(f"PLD not computed: noise multiplier {nm:g} < {PLD_MIN_NOISE} (too many buckets)")
    best = min(by, key=lambda a: by[a])
    rec.update(epsilon=by[best], accountant=f"dp_accounting {best}", epsilon_by_accountant=by)
    return rec


def budget(defense: Any, *, gradient: Mapping[str, Any] | None = None, fl: Mapping[str, Any] | None = None,
           n_train: int | None = None, rounds: int | None = None,
           privacy: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """One record for a DP configuration: over the FedAvg rounds when ``fl`` is given
    (:func:`fedavg_budget`), else for the one attacked gradient (:func:`attack_budget`).
    None when the defense adds no noise."""
    if fl is not None:
        return fedavg_budget(defense, fl, n_train=n_train, rounds=rounds, privacy=privacy)
    return attack_budget(defense, gradient, privacy)


def format_epsilon(rec: Mapping[str, Any] | None, digits: int = 3) -> str:
    """A table cell: '—' without noise, 'none (no clipping)' without a guarantee from an
    unclipped mechanism, '∞', else epsilon with ``digits`` significant digits."""
    if rec is None:
        return "—"
    if rec.get("guarantee") == "none" and rec.get("mechanism") == "unclipped_gaussian":
        return "none (no clipping)"
    eps = float(rec["epsilon"])
    if math.isinf(eps):
        return "∞"
    if eps >= 1e4:
        return f"{eps:.{digits - 1}e}"
    return f"{eps:.{digits}g}"


# ===================================================================== the shipped configs

def client_train_sizes(pool_size: int, fl_settings: Mapping[str, Any]) -> list[int] | None:
    """The clients' training-sample counts for a pool of ``pool_size`` samples, as
    :func:`gibench.fl.make_clients` cuts it (IID only: the sizes do not depend on the seed or
    labels; None for a label-dependent partition)."""
    import numpy as np

    from . import fl

    s = fl.settings_from(fl_settings)
    if s["partition"]["type"] != "iid":
        return None
    shards = fl.make_clients(np.zeros(int(pool_size), dtype=np.int64), s, seed=0)
    return [int(len(c.train)) for c in shards]


def fl_pool_size(config: Mapping[str, Any], dataset: str, holdout_fraction: float,
                 train_split: str = "train") -> int | None:
    """Training pool of a FedAvg run (as the FedAvg jobs build it): the hub's train split, or
    the bundled split less the held-out test share."""
    from .datasets import DATASETS

    spec = dict((config.get("datasets") or {}).get(dataset) or {})
    ds = DATASETS.get(dataset)
    if spec.get("source", "bundled") == "hub":
        return ds.pool_size("hub", train_split)
    n = ds.pool_size("bundled", spec.get("split") or ds.bundled_splits[0])
    return None if n is None else n - int(round(float(holdout_fraction) * n))


def study_budgets(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per DP configuration of a validated config: every attacked gradient and every
    FedAvg run whose defense adds noise (paper B's ``dp``; the concealed-samples
    ``dp_gaussian``).  Row: study, setting (attack | fedavg), defense, dataset, model, and the
    record of :func:`budget` under ``record``.

    Names are resolved by the pipeline's own functions (gibench.studies.stochastic_defenses.spec,
    jobs_fl; gibench.studies.concealed_samples.spec), so the budgets are those of what the jobs run."""
    rows: list[dict[str, Any]] = []
    studies = config.get("studies") or {}
    if "stochastic_defenses" in studies:
        rows += _sd_rows(config)
    if "concealed_samples" in studies:
        rows += _cs_rows(config)
    return rows


def _sd_rows(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    from .pipeline import jobs_fl
    from .studies.stochastic_defenses.spec import spec as sd_spec

    study = "stochastic_defenses"
    sd = sd_spec(config)
    if sd is None:          # an empty study block: nothing attacked, nothing trained
        return []
    priv = sd.written("privacy")
    rows, seen = [], set()
    for d, m, dfn, _a in sd.cases():
        rec = attack_budget(sd.chain(dfn), sd.written("gradient"), priv)
        if rec is not None and (dfn, d) not in seen:
            seen.add((dfn, d))
            rows.append({"study": study, "setting": "attack", "defense": dfn, "dataset": d, "model": m, "record": rec})
    block = jobs_fl.fl_block(config, study)
    if block:
        f = dict(block)
        hold = float((f.get("data") or {}).get("holdout_fraction", 0.2))
        split = (f.get("data") or {}).get("train_split", "train")
        seen = set()
        for d, m, dfn, _seed in jobs_fl.fl_runs(config, study):
            if (d, m, dfn) in seen:
                continue
            seen.add((d, m, dfn))
            chain = jobs_fl.defense_chain(jobs_fl.defense_specs(config, study, dfn), jobs_fl.defense_defaults(config, study))
            if chain is None:
                continue
            pool = fl_pool_size(config, d, hold, split)
            sizes = client_train_sizes(pool, f) if pool else None
            rec = fedavg_budget(chain, f, n_train=min(sizes) if sizes else None, privacy=priv)
            if rec is not None:
                rows.append({"study": study, "setting": "fedavg", "defense": dfn, "dataset": d, "model": m,
                             "record": rec})
    return rows


def _cs_rows(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    from .studies.concealed_samples import spec as cs_spec

    study = "concealed_samples"
    cs = config["studies"][study]
    priv = cs.get("privacy")
    cases = cs.get("cases") or {}
    rows = []
    for dfn in cs.get("defenses") or {}:
        for d, m in cases.items():
            rec = attack_budget(cs_spec.defense_steps(config, dfn, d), None, priv)
            if rec is not None:
                rows.append({"study": study, "setting": "attack", "defense": dfn, "dataset": d, "model": m,
                             "record": rec})
    u = cs.get("utility") or {}
    if u.get("enabled", True):
        for d in u.get("datasets") or list(cases):
            settings = cs_spec.fl_settings(config, d, "iid")
            for dfn in cs.get("defenses") or {}:
                steps = cs_spec.defense_steps(config, dfn, d, u.get("defense_overrides", {}))
                pool = fl_pool_size(config, d, float(u.get("holdout_fraction", 0.2)))
                sizes = client_train_sizes(pool, settings) if pool else None
                rec = fedavg_budget(steps, settings, n_train=min(sizes) if sizes else None, privacy=priv)
                if rec is not None:
                    rows.append({"study": study, "setting": "fedavg", "defense": dfn, "dataset": d,
                                 "model": cases.get(d), "record": rec})
    return rows


def summary_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows for a table / the docs: per step, per round and over the run (main relation),
    the run under the other relation and the Poisson-assumed number (None where not computed)."""
    out = []
    for r in rows:
        rec = r["record"]
        row = {k: r[k] for k in ("study", "setting", "defense", "dataset", "model")}
        row.update(mechanism=rec["mechanism"], clip=rec.get("clip"), sigma=rec.get("sigma"), std=rec.get("std"),
                   relation=rec["relation"], delta=rec["delta"], guarantee=rec["guarantee"])
        other = next((v for v in rec.get("variants", []) if v.get("guarantee") == "formal"), None)
        poisson = next((v for v in rec.get("variants", []) if v.get("relation") == "add_remove"), None)
        if r["setting"] == "fedavg":
            row.update(n_train=rec.get("n_train"), rounds=rec["rounds"], local_epochs=rec["local_epochs"],
                       batch_size=rec["batch_size"], steps=rec["steps"],
                       eps_step=rec["per_step"]["epsilon"], eps_round=rec["per_round"]["epsilon"])
        else:
            row.update(eps_step=rec["epsilon"])
        row.update(eps_total=rec["epsilon"], eps_total_rdp=rec["epsilon_by_accountant"].get("rdp"),
                   eps_total_other_relation=other["epsilon"] if other else None,
                   eps_poisson_assumed=poisson["epsilon"] if poisson else None)
        out.append(row)
    return out
