"""Client-side defenses of the stochastic-defenses study (paper B): Dropout, DP, gradient
pruning, PRECODE and CVB, composable in any combination the paper's ablation uses
(DO x DP x GP x {none, PRECODE, CVB}: 24 combinations).

``DEFENSES`` is the one defense namespace of every study (:class:`.specs.DefenseRegistry`):
a defense name maps to its parameter record within a *family* (``DEFENSES.of(CHAIN)``: these
five; ``DEFENSES.of(CONCEALED)``: the concealed-samples study's, :mod:`.concealed`, registered
when that module is imported, which this package does).  :class:`DefenseChain` is the one entry
point other code uses for paper B's (:mod:`.chain`)."""
from __future__ import annotations

from .chain import DP_PREFIX, MODEL_PREFIX, DefenseChain, per_sample_gradients
from .ops import clip_and_sum, dp_noise, observed_masks, prune_mask, prune_masks, pruned_count
from .specs import CHAIN, CONCEALED, DEFENSES, ORDER, PRIVACY_MODULES, Defense, DefenseRegistry, DefenseSpecError
from . import concealed as _concealed  # noqa: E402,F401  (registers the concealed_samples family)


def ablation_combinations() -> list[list[str]]:
    """The 24 combinations of paper B's ablation (Table 4): DO x DP x GP x {none, PRECODE, CVB}."""
    out = []
    for do in (False, True):
        for dp in (False, True):
            for gp in (False, True):
                for pm in (None, "precode", "cvb"):
                    out.append([n for n, on in (("dropout", do), ("dp", dp), ("prune", gp), (pm, pm)) if on and n])
    return out


__all__ = ["DEFENSES", "CHAIN", "CONCEALED", "DefenseRegistry", "DefenseChain", "DefenseSpecError", "Defense", "ORDER", "PRIVACY_MODULES",
           "MODEL_PREFIX", "DP_PREFIX", "ablation_combinations", "clip_and_sum", "dp_noise", "observed_masks",
           "prune_mask", "prune_masks", "pruned_count", "per_sample_gradients"]
