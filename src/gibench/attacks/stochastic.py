"""Attacks that mimic a stochastically defended client (paper B, sections 3.3-4.4).

All of them are Inverting Gradients (:func:`gibench.attacks.ig.invert`: cosine distance, TV,
Adam, signed image gradients, box constraint, the study's LR schedule and stopping rules) with
the dummy gradient formed the way the attacker believes the client formed its gradient:

    G~' = [GP_Phi] ( [DP_Xi] ( grad_W L(F_{Psi_A, eps_A}(x'), y) ) )

L is the training loss (cross-entropy plus the privacy module's KL term, as in the reference
code's ``VBLoss``).  What each attack puts in the brackets (``MIMIC``):

=================  ============================  ====================  ==================  ======================
attack             dropout masks Psi_A           DP (clip + Xi_A)      pruning mask        bottleneck eps_A
=================  ============================  ====================  ==================  ======================
``ig_defended``    fresh random draws            --                    --                  fresh random draws
``wiig``           the client's (secrets)        client's Xi_C         Phi_C if GP used    the client's (secrets)
``dpia``           fresh random draws            optimised Xi_A        --                  fresh random draws
``gpia``           fresh random draws            --                    Phi_C = 1(|G~|>0)   fresh random draws
``vbia``           fresh random draws            --                    --                  optimised
``pig``            fresh random draws            --                    --                  fresh random draws
``dia``            optimised                     --                    --                  fresh random draws
``cdia``           optimised if DO used          -- (not targeted)     Phi_C if GP used    optimised if P/C used
=================  ============================  ====================  ==================  ======================

* "fresh random draws": the attacker samples Psi ~ Bernoulli(1 - p) and eps ~ N(0, I) anew in
  every iteration, as IG against a model in training mode does (paper B section 4); they come
  from a generator seeded from the attack's seed, so runs are reproducible.
* **WIIG** (well-informed IG, the DIA repository's ``imitate_dropout``; paper B sections 4.1
  and 4.3) reads the client's draws from the secrets file -- the pipeline hands it over only
  to attacks the config marks ``oracle: true``.
* **DPIA** (section 4.1): dummy noise Xi_A ~ N(0, sigma^2 tau^2) per parameter tensor,
  optimised jointly with the image; the dummy gradient is clipped per sample to tau and Xi_A/B
  is added.  Its entries have std sigma tau (0.02 for DP (20, 1e-3)) while Adam moves every
  optimised entry by about the learning rate per step (the image's: 1 in the paper), so
  optimising Xi_A itself throws it ~50 noise-stds per step.  ``noise_units`` says what is
  optimised (both are the same objective as a function of Xi_A at the same initial draw):

  - ``sigma_tau`` (default): z with Xi_A = sigma tau * z, z_0 ~ N(0, I) (the same draw), so an
    Adam step moves Xi_A by about ``noise_lr`` (default: the image's lr) noise-stds;
  - ``absolute``: Xi_A itself (what this code did before; kept to show the difference).

  The paper regularises Xi_A "to have a mean of 0 and a standard deviation of sigma^2 tau^2"
  (sic: sigma^2 tau^2 is the variance of the noise it draws; we take std sigma tau) without a
  formula or weight.  Ours, on the optimised variable v_l of each parameter tensor l:
  ``noise_reg`` * sum_l (|mean(v_l)| + |std(v_l) - s|), s = 1 for ``sigma_tau`` (v = z: the
  deviation in noise-stds) and s = sigma tau for ``absolute`` (v = Xi_A: the deviation in
  gradient units, 1/(sigma tau) = 50 times weaker for DP (20, 1e-3)).
* **WIIG with DP** (``secret_noise``): the paper's text (section 4.1) has the attacker compute
  GDF(DP_XiC(G), DP_XiC(G')), i.e. *add* the client's noise Xi_C to its clipped dummy gradient
  (``add``, the default).  ``subtract`` removes Xi_C/B from the update instead and matches
  it against the clipped dummy gradient: the same information, an exact copy of the clean
  clipped gradient as the target, and a better-conditioned cosine when the noise dominates the
  update (the cosine distance is not translation invariant, so the two optimise different
  objectives).  Both have distance 0 at the true input.
* **GPIA** (section 4.2): the client's pruning mask, read off the update (eq. 2), is applied
  to the dummy gradient.
* **VBIA** (section 4.3): eps_A ~ N(0, I) optimised jointly (no projection, no regulariser).
* **PIG** ("ignore" attack of the CVB paper): the gradient distance leaves out the
  bottleneck's decoder and every layer after it (``ignore: auto``, the model's
  ``pig_ignored()``, as the CVB configs' ``ignore_gradient_layers``), with fresh draws.
* **DIA** (Scheliga et al. 2023, DIA repository): masks initialised Bernoulli(1 - p) and
  optimised jointly (Adam, the image's learning rate unless ``mask_lr``), clipped to [0, 1]
  after every step, regulariser ``mask_reg`` (1e-4) * sum_layers |(1 - mean(psi)) - p|.
* **CDIA** (Algorithm 2) targets whichever defenses the client used and does not target DP;
  with one defense it *is* DIA (Dropout), IG (DP), GPIA (GP) or VBIA (PRECODE/CVB), and IG
  without defenses -- it builds exactly the same objective and extras.

The image gradient is signed (reference ``use_grad_signs``); the extras get raw gradients.
The attacker knows the defenses the client used and their public parameters (the server
coordinates training: architecture, dropout rate, DP parameters; pruning shows in the
update's sparsity), passed as ``defenses``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .base import ATTACKS, AttackResult
from ..params import ParamSpec
from .ig import (DEFAULTS as IG_DEFAULTS, SCHEMA as IG_SCHEMA, Extra, attack_labels, initial_input, invert, nothing_to_match,
                 prepare_model, resolve_cfg, result_from)
from .objectives import GradientMatch

OPTIONS: dict[str, Any] = {
    "mask_lr": None,        # DIA: learning rate of the dropout masks (None: the image's)
    "mask_reg": 1e-4,       # DIA: weight of sum_l |(1 - mean(psi_l)) - p| (DIA repository)
    "eps_lr": None,         # VBIA: learning rate of eps_A (None: the image's)
    "noise_lr": None,       # DPIA: learning rate of Xi_A (None: the image's)
    "noise_reg": 1.0,       # DPIA: weight of the noise regulariser (our choice; module docstring)
    "noise_units": "sigma_tau",  # DPIA: optimise z with Xi_A = sigma tau * z ('sigma_tau') or Xi_A itself ('absolute')
    "ignore": "auto",       # PIG: 'auto' (the model's pig_ignored()) or substrings of parameter names
    "secret_noise": "add",  # WIIG with DP: 'add' Xi_C to the clipped dummy gradient (the client's computation)
                            # or 'subtract' it from the update and match the clipped gradients (same information,
                            # better conditioned when the noise dominates the update)
}

#: the allowed values of the string options (checked by split_cfg, i.e. at DAG build)
CHOICES: dict[str, tuple[str, ...]] = {"secret_noise": ("add", "subtract"), "noise_units": ("sigma_tau", "absolute")}


@dataclass(frozen=True)
class Mimic:
    dropout: str = "random"       # random | secret | optimise
    dp: str = "none"              # none | secret | optimise
    prune: bool = False           # apply the mask read off the update
    bottleneck: str = "random"    # random | secret | optimise
    ignore: bool = False          # PIG: leave the bottleneck's decoder and later layers out

    def describe(self) -> dict:
        return {"dropout": self.dropout, "dp": self.dp, "prune": self.prune, "bottleneck": self.bottleneck,
                "ignore_after_bottleneck": self.ignore}


MIMIC: dict[str, Mimic] = {
    "ig_defended": Mimic(),
    "wiig": Mimic(dropout="secret", dp="secret", bottleneck="secret"),
    "dpia": Mimic(dp="optimise"),
    "gpia": Mimic(prune=True),
    "vbia": Mimic(bottleneck="optimise"),
    "pig": Mimic(ignore=True),
    "dia": Mimic(dropout="optimise"),
}
#: attacks that read the client's secrets (oracle attacks); the pipeline passes the secrets
#: file only to these, and only when the config marks the attack ``oracle: true``
ORACLE_ATTACKS = ("wiig",)
SD_ATTACKS = tuple(MIMIC) + ("cdia",)


def mimic_for(kind: str, chain) -> Mimic:
    """What attack ``kind`` mimics against a client that used ``chain``."""
    if kind == "cdia":
        return Mimic(dropout="optimise" if chain.uses("dropout") else "random",
                     prune=chain.uses("prune"),
                     bottleneck="optimise" if chain.privacy_module else "random")
    m = MIMIC[kind]
    if kind == "wiig":
        m = replace(m, dp="secret" if chain.uses("dp") else "none", prune=chain.uses("prune"))
    return m


def split_cfg(kind: str, cfg: Mapping[str, Any] | None) -> tuple[dict, dict]:
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(IG_DEFAULTS) - set(OPTIONS))
    if unknown:
        raise ValueError(f"{kind}: unknown option(s) {unknown}; known: {sorted(set(IG_DEFAULTS) | set(OPTIONS))}")
    ig_part = resolve_cfg({k: v for k, v in cfg.items() if k in IG_DEFAULTS})
    own = {**OPTIONS, **{k: v for k, v in cfg.items() if k in OPTIONS}}
    for key, allowed in CHOICES.items():
        if own[key] not in allowed:
            raise ValueError(f"{kind}: {key} must be one of {', '.join(map(repr, allowed))}, got {own[key]!r}")
    ign = own["ignore"]
    if ign != "auto" and not (isinstance(ign, list) and all(isinstance(s, str) for s in ign)):
        raise ValueError(f"{kind}: ignore must be 'auto' or a list of parameter-name substrings, got {ign!r}")
    return ig_part, own


def _as_chain(defenses):
    from ..defenses import DefenseChain

    if isinstance(defenses, DefenseChain):
        return defenses
    return DefenseChain(defenses or [])


def _generator(seed: int, purpose: str) -> torch.Generator:
    from ..seeds import derive_seed

    g = torch.Generator(device="cpu")
    g.manual_seed(derive_seed(int(seed), purpose))
    return g


@dataclass
class Prepared:
    """Everything :func:`gibench.attacks.ig.invert` needs for one attack run."""

    model: nn.Module
    match: GradientMatch
    y: torch.Tensor
    x0: torch.Tensor
    box: tuple | None
    cfg: dict
    dummy_gradient: Callable
    extras: dict
    penalty: Callable | None
    info: dict


def defended_attack(kind: str, model: nn.Module, shared: dict[str, torch.Tensor],
                    visible: dict[str, torch.Tensor] | None, *, input_shape: tuple[int, ...], mean, std,
                    labels: torch.Tensor | None, cfg: dict | None, seed: int, device: torch.device | str = "cpu",
                    progress: Callable[[int, float], None] | None = None, defenses=None,
                    secrets: Mapping[str, torch.Tensor] | None = None) -> AttackResult:
    p = prepare(kind, model, shared, visible, input_shape=input_shape, mean=mean, std=std, labels=labels, cfg=cfg,
                seed=seed, device=device, defenses=defenses, secrets=secrets)
    if p.match.empty:
        return AttackResult(x=p.x0, labels=p.y, status="nothing_visible", message=nothing_to_match(p.match),
                            final_loss=float("nan"), trace=[], info={**p.info, "iterations": 0})
    loop = invert(p.model, p.match, p.y, p.x0, p.cfg, box=p.box, dummy_gradient=p.dummy_gradient, extras=p.extras,
                  progress=progress, penalty=p.penalty)
    return result_from(loop, p.y, p.info)


def prepare(kind: str, model: nn.Module, shared: dict[str, torch.Tensor], visible: dict[str, torch.Tensor] | None,
            *, input_shape: tuple[int, ...], mean, std, labels: torch.Tensor | None, cfg: dict | None, seed: int,
            device: torch.device | str = "cpu", defenses=None,
            secrets: Mapping[str, torch.Tensor] | None = None) -> Prepared:
    """The objective of attack ``kind``: what is matched, the dummy gradient, the extras
    optimised with the image and their penalty (see the module docstring)."""
    from ..defenses import DP_PREFIX, MODEL_PREFIX, dp_noise, observed_masks
    from ..models.defended import NoiseSource, bottlenecks, dropout_layers, extra_loss, use_noise

    if kind not in SD_ATTACKS:
        raise ValueError(f"unknown defended attack {kind!r}; known: {', '.join(SD_ATTACKS)}")
    c, own = split_cfg(kind, cfg)
    device = torch.device(device)
    chain = _as_chain(defenses)
    chain.check_model(model)
    mimic = mimic_for(kind, chain)
    model = prepare_model(model, c, device)
    named = list(model.named_parameters())
    notes: list[str] = []

    # ---- what is matched: every visible entry, minus PIG's ignored layers
    vis = dict(visible or {})
    ignored: list[str] = []
    if mimic.ignore:
        if own["ignore"] == "auto":
            ignored = list(model.pig_ignored()) if hasattr(model, "pig_ignored") else []
        else:
            ignored = [n for n, _ in named if any(s in n for s in own["ignore"])]
        if not ignored:
            notes.append("pig: the model has no privacy module, nothing to ignore: plain IG")
        for n in ignored:
            vis[n] = torch.zeros_like(shared[n], dtype=torch.bool)
    match = GradientMatch(named, shared, vis, c["cost"])
    y, labels_from = attack_labels(model, shared, visible, labels, int(input_shape[0]), c["labels"], device)
    x0, box = initial_input(input_shape, c, mean, std, seed, device)
    info: dict[str, Any] = {"objective": match.describe(), "settings": {**c, **own}, "labels_from": labels_from,
                            "defenses": chain.spec(), "mimic": mimic.describe(), "ignored": ignored}
    # ---- the attacker's own randomness: initial extras, then fresh per-iteration draws
    init_gen, draw_gen = _generator(seed, "extras-init"), _generator(seed, "per-iteration-draws")
    probe = NoiseSource(init_gen)
    with torch.no_grad(), use_noise(model, probe):
        model(x0)
    drop_keys = [k for k, _ in dropout_layers(model)]
    rates = {k: m.p for k, m in dropout_layers(model)}
    vb_keys = [k for k, _ in bottlenecks(model)]
    extras: dict[str, Extra] = {}
    given: dict[str, torch.Tensor] = {}
    if mimic.dropout == "optimise":
        if not drop_keys:
            notes.append(f"{kind}: the model has no dropout: the masks are not optimised (IG)")
        for k in drop_keys:
            extras[MODEL_PREFIX + k] = Extra(probe.drawn[k], own["mask_lr"], lambda t: t.clamp(0.0, 1.0))
    if mimic.bottleneck == "optimise":
        if not vb_keys:
            notes.append(f"{kind}: the model has no privacy module: no eps to optimise (IG)")
        for k in vb_keys:
            extras[MODEL_PREFIX + k] = Extra(probe.drawn[k], own["eps_lr"])
    dp = chain.get("dp")
    if mimic.dp == "optimise" and dp is None:
        notes.append(f"{kind}: the client used no DP: no noise to optimise (IG)")
        mimic = replace(mimic, dp="none")
    # DPIA's optimised variable v: Xi_A = noise_scale * v (sigma_tau: v = z in noise-stds; absolute: v = Xi_A)
    sigma_tau = float(dp.sigma) * float(dp.clip) if dp is not None else 0.0
    noise_scale = sigma_tau if own["noise_units"] == "sigma_tau" else 1.0
    if mimic.dp == "optimise":
        z0 = dp_noise({n: p.shape for n, p in named}, 1.0, 1.0, init_gen)     # N(0, I): the draw of Xi_A / (sigma tau)
        for n, z in z0.items():
            v = z if own["noise_units"] == "sigma_tau" else z * sigma_tau
            extras[DP_PREFIX + n] = Extra(v.to(device, dtype=named[0][1].dtype), own["noise_lr"])
        info["dp_noise"] = {"units": own["noise_units"], "sigma_tau": sigma_tau, "scale": noise_scale,
                            "regulariser": "noise_reg * sum_l (|mean v_l| + |std v_l - s|), Xi_A = scale * v, "
                                           + ("s = 1" if own["noise_units"] == "sigma_tau" else "s = sigma tau")}
    secret_xi: dict[str, torch.Tensor] = {}
    if "secret" in (mimic.dropout, mimic.bottleneck, mimic.dp):
        needed = ([MODEL_PREFIX + k for k in drop_keys] if mimic.dropout == "secret" else []) \
            + ([MODEL_PREFIX + k for k in vb_keys] if mimic.bottleneck == "secret" else []) \
            + ([DP_PREFIX + n for n, _ in named] if mimic.dp == "secret" else [])
        if needed and secrets is None:
            raise ValueError(f"{kind} is an oracle attack and needs the client's secrets (dropout masks, eps, DP "
                             "noise); the pipeline passes them only to attacks marked 'oracle: true'")
        missing = [k for k in needed if k not in (secrets or {})]
        if missing:
            raise ValueError(f"{kind}: the client's secrets lack {missing[:3]}… (was the update made with these defenses?)")
        for k in needed:
            if k.startswith(MODEL_PREFIX):
                given[k[len(MODEL_PREFIX):]] = secrets[k].to(device=device, dtype=named[0][1].dtype)
            else:
                secret_xi[k[len(DP_PREFIX):]] = secrets[k].to(device=device, dtype=named[0][1].dtype)
    masks = None
    if mimic.prune:
        masks = observed_masks({n: shared[n].to(device) for n in match.names})
    subtract = mimic.dp == "secret" and own["secret_noise"] == "subtract"
    if subtract:     # match (G~ - Phi * Xi_C / B) against Phi * clip(G'): the noise removed from both sides
        batch_ = int(input_shape[0])
        target = {n: shared[n].to(device) - secret_xi[n] / batch_ * (masks[n] if masks is not None else 1.0)
                  for n in match.names}
        match = GradientMatch(named, {**shared, **target}, vis, c["cost"])
        info["objective"] = match.describe()

    # ---- the dummy gradient, formed like the client's
    all_params = [p for _, p in named]
    all_names = [n for n, _ in named]
    position = {n: i for i, n in enumerate(all_names)}
    want = [position[n] for n in match.names]
    batch = int(input_shape[0])
    loss_fn = torch.nn.functional.cross_entropy

    def forward_loss(xx: torch.Tensor, yy: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        with use_noise(model, NoiseSource(draw_gen, values)):
            return loss_fn(model(xx), yy) + extra_loss(model)

    def model_values(ex: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        values = dict(given)
        values.update({k[len(MODEL_PREFIX):]: v for k, v in ex.items() if k.startswith(MODEL_PREFIX)})
        return values

    def dummy_gradient(xx: torch.Tensor, ex: dict[str, torch.Tensor]):
        values = model_values(ex)
        if mimic.dp == "none":
            g = torch.autograd.grad(forward_loss(xx, y, values), [all_params[i] for i in want], create_graph=True)
        else:
            xi = secret_xi if mimic.dp == "secret" else {k[len(DP_PREFIX):]: v * noise_scale for k, v in ex.items()
                                                         if k.startswith(DP_PREFIX)}
            summed = [torch.zeros_like(p) for p in all_params]
            for i in range(batch):           # per-sample clipping to tau over all parameters
                vi = {k: v[i:i + 1] for k, v in values.items()}
                gi = torch.autograd.grad(forward_loss(xx[i:i + 1], y[i:i + 1], vi), all_params, create_graph=True)
                norm = torch.sqrt(sum(t.pow(2).sum() for t in gi))
                f = 1.0 / torch.clamp(norm / float(dp.clip), min=1.0)
                summed = [s + t * f for s, t in zip(summed, gi)]
            g = [(summed[i] + (0.0 if subtract else xi[all_names[i]])) / batch for i in want]
        if masks is not None:
            g = [t * masks[n] for t, n in zip(g, match.names)]
        return list(g)

    penalty = None
    if mimic.dropout == "optimise" and drop_keys or mimic.dp == "optimise":
        def penalty(xx: torch.Tensor, ex: dict[str, torch.Tensor]) -> torch.Tensor:
            total = torch.zeros((), device=xx.device, dtype=xx.dtype)
            if mimic.dropout == "optimise":
                for k in drop_keys:
                    total = total + own["mask_reg"] * ((1.0 - ex[MODEL_PREFIX + k].mean()) - rates[k]).abs()
            if mimic.dp == "optimise":
                target = 1.0 if own["noise_units"] == "sigma_tau" else sigma_tau
                for n in all_names:
                    v = ex[DP_PREFIX + n]
                    std = v.std() if v.numel() > 1 else v.abs().reshape(())
                    total = total + own["noise_reg"] * (v.mean().abs() + (std - target).abs())
            return total

    info["extras"] = {"count": len(extras), "entries": int(sum(e.value.numel() for e in extras.values()))}
    if notes:
        info["notes"] = notes
    return Prepared(model, match, y, x0, box, c, dummy_gradient, extras, penalty, info)


_LR = {"type": ["number", "null"], "exclusiveMinimum": 0}
#: JSON schema of this module's own options (gibench.params); every attack here also takes IG's
OPTIONS_SCHEMA: dict[str, dict] = {
    "mask_lr": _LR, "eps_lr": _LR, "noise_lr": _LR,
    "mask_reg": {"type": "number", "minimum": 0},
    "noise_reg": {"type": "number", "minimum": 0},
    "ignore": {"anyOf": [{"enum": ["auto"]}, {"type": "array", "items": {"type": "string"}}]},
    "secret_noise": {"enum": ["add", "subtract"]},
    "noise_units": {"enum": ["sigma_tau", "absolute"]},
}


def params_spec(kind: str) -> ParamSpec:
    return ParamSpec(kind, {**IG_SCHEMA, **OPTIONS_SCHEMA}, {**IG_DEFAULTS, **OPTIONS},
                     lambda cfg: split_cfg(kind, cfg))


#: table spelling where it is not the name in capitals (paper B writes IG for IG against a defended client)
DISPLAY = {"ig_defended": "IG"}


def _register(kind: str, doc: str) -> None:
    def attack(model, shared, visible, **kwargs) -> AttackResult:
        return defended_attack(kind, model, shared, visible, **kwargs)

    attack.__name__ = kind
    attack.__doc__ = doc
    ATTACKS.add(kind, attack, params=params_spec(kind), display=DISPLAY.get(kind, kind.upper()),
                studies=("stochastic_defenses",), description=doc)


for _kind, _doc in {
    "ig_defended": "IG against a defended client: plain dummy gradient, fresh random Dropout/eps draws.",
    "wiig": "Well-informed IG: the client's own dropout masks, eps and DP noise (oracle; reads secrets).",
    "dpia": "DP inversion attack: dummy noise optimised jointly with the image.",
    "gpia": "Gradient-pruning inversion attack: the client's pruning mask applied to the dummy gradient.",
    "vbia": "Variational-bottleneck inversion attack: eps optimised jointly with the image.",
    "pig": "Partial IG ('ignore' attack): the bottleneck's decoder and later layers left out of the distance.",
    "dia": "Dropout inversion attack: dropout masks optimised jointly with the image.",
    "cdia": "Combined defenses inversion attack (Algorithm 2): targets the client's Dropout, GP and PRECODE/CVB.",
}.items():
    _register(_kind, _doc)
