"""Client-side defenses of the stochastic-defenses study (paper B): Dropout, DP, gradient
pruning, PRECODE and CVB, composable in any combination the paper's ablation uses
(DO x DP x GP x {none, PRECODE, CVB}: 24 combinations).

``DEFENSES`` maps a defense name to its parameter record (:mod:`.specs`);
:class:`DefenseChain` is the one entry point other code uses (:mod:`.chain`)."""
from __future__ import annotations

from .chain import DP_PREFIX, MODEL_PREFIX, DefenseChain, per_sample_gradients
from .ops import clip_and_sum, dp_noise, observed_masks, prune_mask, prune_masks, pruned_count
from .specs import DEFENSES, ORDER, PRIVACY_MODULES, Defense, DefenseSpecError


def ablation_combinations() -> list[list[str]]:
    """The 24 combinations of paper B's ablation (Table 4): DO x DP x GP x {none, PRECODE, CVB}."""
    out = []
    for do in (False, True):
        for dp in (False, True):
            for gp in (False, True):
                for pm in (None, "precode", "cvb"):
                    out.append([n for n, on in (("dropout", do), ("dp", dp), ("prune", gp), (pm, pm)) if on and n])
    return out


__all__ = ["DEFENSES", "DefenseChain", "DefenseSpecError", "Defense", "ORDER", "PRIVACY_MODULES",
           "MODEL_PREFIX", "DP_PREFIX", "ablation_combinations", "clip_and_sum", "dp_noise", "observed_masks",
           "prune_mask", "prune_masks", "pruned_count", "per_sample_gradients"]
