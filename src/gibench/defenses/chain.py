"""``DefenseChain``: the one entry point to the client's defended gradient computation.

    chain = DefenseChain([{"name": "dropout"}, "dp", {"name": "prune", "rate": 0.9}, "cvb"])
    model = build_model("sd_cnn", 10, (3, 32, 32), seed, **chain.model_options())
    grads, secrets = chain.client_gradient(model, x, y, generator=gen)

computes paper B's released gradient

    G~ = GP_Phi( DP_Xi( grad_W L(F_{Psi, eps}(x), y) ) )

* the model runs in training mode with the client's Dropout masks Psi and bottleneck draws
  eps, drawn from ``generator`` (see :class:`gibench.models.defended.NoiseSource`);
* the loss is the training loss: cross-entropy (batch mean) plus the privacy module's KL term
  (:meth:`extra_loss`), as the reference code trains and computes the victim gradient;
* with DP every sample's gradient is clipped to tau (norm over all parameters), the clipped
  gradients are summed, Xi ~ N(0, sigma^2 tau^2 I) is added and the sum is divided by the
  batch size B (Abadi et al. 2016); for B > 1 the per-sample gradients use the same Psi/eps
  the batch forward pass drew (``torch.func.vmap``, with a per-sample loop as fallback);
* with GP each tensor keeps its n - floor(p n) largest-magnitude entries (:mod:`.ops`).

``secrets`` holds every random draw -- ``model/<layer>`` (Psi and eps, batch-shaped) and
``dp/<parameter>`` (Xi) -- so that ``client_gradient(..., secrets=secrets)`` reproduces the
same gradient, and an oracle attacker (WIIG) can plug them in.  The pruning mask is not
secret: it is the support of the released update.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..gradient import LOSSES
from ..models.defended import NoiseSource, extra_loss as _extra_loss, use_noise
from . import ops
from .specs import CHAIN, DEFENSES, ORDER, PRIVACY_MODULES, Defense, DefenseSpecError

MODEL_PREFIX = "model/"
#: the order of the paper's tables (DO, DP, GP, PM) used in labels
LABEL_ORDER = ("dropout", "dp", "prune", "precode", "cvb")
DP_PREFIX = "dp/"


def _parse_item(item: Any, where: str) -> tuple[str, dict]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, Mapping):
        if "name" not in item:
            raise DefenseSpecError(f"{where}: a defense given as a mapping needs a 'name' key, got {dict(item)!r}")
        params = {k: v for k, v in item.items() if k != "name"}
        return str(item["name"]), params
    raise DefenseSpecError(f"{where}: a defense is a name or a mapping with 'name', got {item!r}")


class DefenseChain:
    """A validated list of defenses (see the module docstring)."""

    def __init__(self, specs: Iterable[Any] | None = None, defaults: Mapping[str, Mapping[str, Any]] | None = None):
        specs = list(specs or [])
        defaults = dict(defaults or {})
        known = DEFENSES.of(CHAIN)          # paper B's family of the one defense namespace
        for name in defaults:
            if name not in known:
                raise DefenseSpecError(f"defense defaults: unknown defense {name!r}; known: {', '.join(known.names())}")
        found: dict[str, Defense] = {}
        for i, item in enumerate(specs):
            name, params = _parse_item(item, f"defense [{i}]")
            if name not in known:
                raise DefenseSpecError(f"unknown defense {name!r}; known: {', '.join(known.names())}")
            if name in found:
                raise DefenseSpecError(f"defense {name!r} is listed twice")
            found[name] = known.get(name).build({**dict(defaults.get(name) or {}), **params})
        pms = [n for n in PRIVACY_MODULES if n in found]
        if len(pms) > 1:
            raise DefenseSpecError(f"impossible combination: {' and '.join(pms)} are both privacy modules "
                                   "(variational bottlenecks); a model takes at most one")
        self.defenses: dict[str, Defense] = {n: found[n] for n in ORDER if n in found}

    # ---------------------------------------------------------------- description
    def uses(self, name: str) -> bool:
        return name in self.defenses

    def get(self, name: str) -> Defense | None:
        return self.defenses.get(name)

    @property
    def names(self) -> list[str]:
        return list(self.defenses)

    @property
    def privacy_module(self) -> str | None:
        return next((n for n in PRIVACY_MODULES if n in self.defenses), None)

    @property
    def label(self) -> str:
        """The paper's notation, e.g. ``DO+DP+GP+C``; ``none`` without defenses."""
        rank = {n: i for i, n in enumerate(LABEL_ORDER)}
        return "+".join(self.defenses[n].label for n in sorted(self.defenses, key=rank.get)) or "none"

    def spec(self) -> list[dict]:
        """Canonical JSON-able form (what the server knows about the client's protocol)."""
        return [{"name": n, **d.params()} for n, d in self.defenses.items()]

    def __repr__(self) -> str:
        return f"DefenseChain({self.spec()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DefenseChain) and self.spec() == other.spec()

    # ---------------------------------------------------------------- model side
    def model_options(self) -> dict:
        """Extra keyword arguments for the model builder (``build_model(..., **options)``)."""
        do = self.defenses.get("dropout")
        pm = self.privacy_module
        params = {k: v for k, v in self.defenses[pm].params().items() if v is not None} if pm else {}
        return {"dropout": float(do.rate) if do else 0.0, "bottleneck": pm, "bottleneck_params": params}

    def extra_loss(self, model: nn.Module) -> torch.Tensor | float:
        """The privacy module's KL term of the model's last forward pass (0.0 without one);
        the reference adds it to the training loss, so it is part of the client's gradient."""
        return _extra_loss(model) if self.privacy_module else 0.0

    def check_model(self, model: nn.Module) -> None:
        opts = self.model_options()
        if getattr(model, "bottleneck_kind", None) != opts["bottleneck"]:
            raise DefenseSpecError(f"model has bottleneck {getattr(model, 'bottleneck_kind', None)!r} but the defenses "
                                   f"ask for {opts['bottleneck']!r}: build it with **chain.model_options()")
        if abs(float(getattr(model, "dropout", 0.0)) - opts["dropout"]) > 0:
            raise DefenseSpecError(f"model has dropout {getattr(model, 'dropout', 0.0)} but the defenses ask for "
                                   f"{opts['dropout']}: build it with **chain.model_options()")

    # ---------------------------------------------------------------- the client's gradient
    def client_gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                        generator: torch.Generator | None = None, loss: str = "cross_entropy",
                        secrets: Mapping[str, torch.Tensor] | None = None
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(released gradient by parameter name, secrets); see the module docstring.

        ``secrets`` (from an earlier call) replays those draws instead of drawing new ones."""
        self.check_model(model)
        try:
            loss_fn = LOSSES[loss]
        except KeyError:
            raise ValueError(f"unknown loss {loss!r}; known: {sorted(LOSSES)}") from None
        secrets = dict(secrets or {})
        given = {k[len(MODEL_PREFIX):]: v for k, v in secrets.items() if k.startswith(MODEL_PREFIX)}
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        names = [n for n, _ in named]
        params = [p for _, p in named]
        model.train()
        src = NoiseSource(generator, given)
        dp = self.defenses.get("dp")
        if dp is None:
            with use_noise(model, src):
                value = loss_fn(model(x), y) + self.extra_loss(model)
            grads = dict(zip(names, torch.autograd.grad(value, params)))
        else:
            b = x.shape[0]
            if b == 1:
                with use_noise(model, src):
                    value = loss_fn(model(x), y) + self.extra_loss(model)
                per = [g.unsqueeze(0) for g in torch.autograd.grad(value, params)]
            else:
                with torch.no_grad(), use_noise(model, src):     # draw Psi, eps for the whole batch
                    model(x)
                noise = {**given, **src.drawn}
                per = per_sample_gradients(model, x, y, noise, loss_fn, self, names)
            summed = ops.clip_and_sum(per, dp.clip)
            xi_keys = [DP_PREFIX + n for n in names]
            if all(k in secrets for k in xi_keys):
                xi = {n: secrets[DP_PREFIX + n] for n in names}
            elif any(k in secrets for k in xi_keys):
                missing = [k for k in xi_keys if k not in secrets][:3]
                raise ValueError(f"secrets hold DP noise for some parameters but not {missing}…")
            else:
                xi = ops.dp_noise({n: p.shape for n, p in named}, dp.clip, dp.sigma, generator)
            grads = {n: (s + xi[n].to(s)) / b for n, s in zip(names, summed)}
            src.drawn.update({DP_PREFIX + n: v for n, v in xi.items()})
        prune = self.defenses.get("prune")
        if prune is not None:
            masks = ops.prune_masks(grads, prune.rate)
            grads = {n: g * masks[n] for n, g in grads.items()}
        out_secrets = {}
        for k, v in {**given, **src.drawn}.items():
            key = k if k.startswith(DP_PREFIX) else MODEL_PREFIX + k
            out_secrets[key] = v.detach().to("cpu", torch.float32).contiguous()
        return {n: g.detach() for n, g in grads.items()}, dict(sorted(out_secrets.items()))


def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, noise: Mapping[str, torch.Tensor],
                         loss_fn, chain: DefenseChain, names: Sequence[str]) -> list[torch.Tensor]:
    """grad_W of sample i's training loss, stacked to (B, *shape) per parameter, with sample i's
    slice of the given batch draws ``noise``.  ``torch.func.vmap`` when it can, else a loop."""
    try:
        return _per_sample_vmap(model, x, y, noise, loss_fn, chain, names)
    except Exception:  # an op without a batching rule: the loop gives the same numbers, slower
        return _per_sample_loop(model, x, y, noise, loss_fn, chain, names)


def _per_sample_loop(model, x, y, noise, loss_fn, chain, names) -> list[torch.Tensor]:
    params = dict(model.named_parameters())
    rows = []
    for i in range(x.shape[0]):
        src = NoiseSource(None, {k: v[i:i + 1] for k, v in noise.items()})
        with use_noise(model, src):
            value = loss_fn(model(x[i:i + 1]), y[i:i + 1]) + chain.extra_loss(model)
        rows.append(torch.autograd.grad(value, [params[n] for n in names]))
    return [torch.stack([r[j] for r in rows]) for j in range(len(names))]


def _per_sample_vmap(model, x, y, noise, loss_fn, chain, names) -> list[torch.Tensor]:
    from torch.func import functional_call, grad, vmap

    params = {n: p.detach() for n, p in model.named_parameters() if n in set(names)}
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    buffers = dict(model.named_buffers())

    def sample_loss(ps, xi, yi, ni):
        src = NoiseSource(None, {k: v.unsqueeze(0) for k, v in ni.items()})
        with use_noise(model, src):
            out = functional_call(model, {**ps, **frozen, **buffers}, (xi.unsqueeze(0),))
            return loss_fn(out, yi.unsqueeze(0)) + chain.extra_loss(model)

    g = vmap(grad(sample_loss), in_dims=(None, 0, 0, 0))(params, x, y, dict(noise))
    return [g[n] for n in names]
