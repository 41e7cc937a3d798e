"""The accounting of :mod:`gibench.privacy`: a study's ``privacy`` settings, the Gaussian mechanism
of a DP defense, the accountants (exact, RDP, PLD; Poisson subsampling) and the budget records of
an attacked gradient and of a FedAvg run (:func:`budget`, :func:`format_epsilon`)."""
from __future__ import annotations

import functools
import math
from typing import Any, Mapping, Sequence


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
    from ..defenses import DefenseChain  # deferred: gibench.defenses imports torch
    from ..defenses.concealed import CSDefense, DPGaussian
    from ..defenses.specs import DP

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
    under zero_out (see :mod:`gibench.privacy`)."""
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
    from .. import fl  # deferred: gibench.fl imports torch (its training code)

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
