"""Gradient-matching objectives with encrypted entries handled as ``DESIGN.md`` says.

The server sees ``(1-m)⊙g`` in plaintext and ``E(m⊙g)`` as ciphertext.  The default
attacker (paper A, section 3) **removes encrypted entries from its objective**: every
inner product and norm runs over visible entries only, and a tensor with no visible entry
drops out entirely (it is not even differentiated, which also saves work).  The
``zero_fill_*`` costs are a different, weaker attacker that treats encrypted entries as
zeros of the target while its own dummy gradient keeps every entry.

Costs (``cost`` in an attack's config):

=============================  =================================================================
``masked_cosine``              IG's ``sim``: one global cosine over all visible entries,
                               ``1 - Σ⟨m⊙g', m⊙g⟩ / (‖m⊙g'‖ ‖m⊙g‖)`` (norms over the concatenation)
``masked_cosine_layerwise``    IG's ``simlocal``: mean over tensors of ``1 - cos`` of the visible entries
``masked_l2``                  ``Σ ‖m⊙(g' - g)‖²`` (DLG's distance on visible entries)
``zero_fill_cosine``           global cosine of the full dummy gradient against the zero-filled target
``zero_fill_l2``               ``Σ ‖g' - g_zero_filled‖²``
=============================  =================================================================

In the formulas ``m`` is the *visibility* mask (1 = plaintext).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

COSTS = ("masked_cosine", "masked_cosine_layerwise", "masked_l2", "zero_fill_cosine", "zero_fill_l2")
_TINY = 1e-30


class GradientMatch:
    """The distance between a dummy gradient and what the attacker sees of the shared one.

    ``named_params``: (name, parameter) in model order.  ``params`` are the parameters
    the attacker must differentiate (in that order); :meth:`__call__` takes the dummy
    gradients of exactly those parameters."""

    def __init__(self, named_params: Sequence[tuple[str, torch.Tensor]], shared: Mapping[str, torch.Tensor],
                 visible: Mapping[str, torch.Tensor | None] | None, cost: str = "masked_cosine"):
        if cost not in COSTS:
            raise ValueError(f"unknown gradient-matching cost {cost!r}; known: {', '.join(COSTS)}")
        self.cost = cost
        self.masked = cost.startswith("masked_")
        self.kind = cost.split("_", 1)[1] if self.masked else cost.split("_", 2)[2]
        visible = visible or {}
        self.names: list[str] = []
        self.params: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.masks: list[torch.Tensor | None] = []     # None: every entry visible (no multiply)
        self.dropped: list[str] = []                    # fully encrypted tensors (masked costs)
        self.n_visible = 0
        self.n_total = 0
        for name, p in named_params:
            if name not in shared:
                raise KeyError(f"shared update lacks parameter {name!r}")
            g = shared[name].detach().to(device=p.device, dtype=p.dtype).reshape(p.shape)
            v = visible.get(name)
            v = None if v is None else v.to(device=p.device, dtype=torch.bool).reshape(p.shape)
            self.n_total += g.numel()
            nv = g.numel() if v is None else int(v.sum())
            self.n_visible += nv
            if v is not None and bool(v.all()):
                v = None
            if self.masked and nv == 0:
                self.dropped.append(name)
                continue
            m = None if v is None else v.to(g.dtype)
            target = g if m is None else g * m          # the server never holds encrypted values
            self.names.append(name)
            self.params.append(p)
            self.targets.append(target)
            self.masks.append(m if self.masked else None)
        self.target_sq = [t.pow(2).sum() for t in self.targets]
        self.target_norm = torch.sqrt(sum(self.target_sq)) if self.targets else torch.zeros(())
        # the global cosine works on one flat vector, as a minimal IG loop does: the target
        # flattened once, and the indices of the visible entries in that vector (None: all);
        # the other costs work per tensor and need neither
        if self.kind == "cosine" and self.targets:
            self._flat_target = torch.cat([t.reshape(-1) for t in self.targets])
            if any(m is not None for m in self.masks):
                vis = torch.cat([torch.ones(t.numel(), dtype=torch.bool, device=t.device) if m is None
                                 else m.reshape(-1) > 0 for t, m in zip(self.targets, self.masks)])
                self._flat_visible = vis.nonzero().reshape(-1)
            else:
                self._flat_visible = None

    @property
    def empty(self) -> bool:
        """True when nothing is left to match (every entry encrypted, or a zero target for
        a cosine cost, which has no direction)."""
        if not self.targets:
            return True
        return self.kind.startswith("cosine") and float(self.target_norm) == 0.0

    def describe(self) -> dict:
        return {"cost": self.cost, "tensors_used": len(self.names), "tensors_dropped": self.dropped,
                "visible_entries": self.n_visible, "total_entries": self.n_total}

    def _masked(self, dummy: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [d if m is None else d * m for d, m in zip(dummy, self.masks)]

    def batched(self, dummy: Sequence[torch.Tensor]) -> torch.Tensor:
        """:meth:`__call__` for ``n`` dummy gradients at once: each tensor of ``dummy`` has a
        leading instance dimension (``[n, *param.shape]``); returns the ``n`` distances.
        The same formulas, term by term, with plain batched ops (per-tensor matrix-vector
        products with the target and the mask instead of the flat gather of :meth:`__call__`,
        whose batched form costs more than the double backward on LeNet,
        ``benchmarks/bench_restarts.py``); equal to :meth:`__call__` per instance up to
        summation order (``tests/attacks/test_ig_many.py``)."""
        if len(dummy) != len(self.targets):
            raise ValueError(f"expected {len(self.targets)} dummy gradients, got {len(dummy)}")
        flat_t = [t.reshape(-1) for t in self.targets]
        if self.kind == "cosine":
            # <m⊙g', m⊙g> = <g', m⊙g> (the target is zero where encrypted) and
            # ‖m⊙g'‖² = <g'⊙g', m> (m is 0/1), per tensor: no masked copy of g'
            a = [t.flatten(1) for t in dummy]
            dot = sum(x @ t for x, t in zip(a, flat_t))
            sq = sum((x * x).sum(1) if m is None else (x * x) @ m.reshape(-1) for x, m in zip(a, self.masks))
            return 1.0 - dot / (torch.sqrt(sq) * self.target_norm).clamp_min(_TINY)
        d = [a.flatten(1) if m is None else (a * m).flatten(1) for a, m in zip(dummy, self.masks)]
        if self.kind == "cosine_layerwise":
            terms = [1.0 - (a @ t) / (a.norm(dim=1) * tsq.sqrt()).clamp_min(_TINY)
                     for a, t, tsq in zip(d, flat_t, self.target_sq) if float(tsq) > 0]
            return sum(terms) / max(1, len(terms))
        if self.kind == "l2":
            return sum((a - t).pow(2).sum(1) for a, t in zip(d, flat_t))
        raise AssertionError(self.kind)

    def __call__(self, dummy: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(dummy) != len(self.targets):
            raise ValueError(f"expected {len(self.targets)} dummy gradients, got {len(dummy)}")
        if self.kind == "cosine":
            # one flat vector (a cat; per-tensor ops cost more than the copy on small models).
            # The target is already zero where encrypted, so <m⊙g', m⊙g> = <g', m⊙g>, and
            # ‖m⊙g'‖² is the sum of squares of the visible entries (one gather): no masked
            # copy of g' whose backward would cost another pass (benchmarks/bench_ig.py)
            flat = torch.cat([a.reshape(-1) for a in dummy])
            dot = torch.dot(flat, self._flat_target)
            vis = flat if self._flat_visible is None else flat.index_select(0, self._flat_visible)
            return 1.0 - dot / (torch.sqrt(torch.dot(vis, vis)) * self.target_norm).clamp_min(_TINY)
        d = self._masked(dummy)
        if self.kind == "cosine_layerwise":
            terms = [1.0 - (a * t).sum() / (a.norm() * tsq.sqrt()).clamp_min(_TINY)
                     for a, t, tsq in zip(d, self.targets, self.target_sq) if float(tsq) > 0]
            return sum(terms) / max(1, len(terms))
        if self.kind == "l2":
            return sum((a - t).pow(2).sum() for a, t in zip(d, self.targets))
        raise AssertionError(self.kind)
