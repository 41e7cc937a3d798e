"""Attack registry.  A name in the config maps to one function

``attack(model, shared, visible, *, input_shape, mean, std, labels, cfg, seed, device, progress)
-> AttackResult``

* ``shared``: the gradient the server received, name -> tensor, with encrypted entries
  already replaced by zeros by the caller (the server never holds their values);
* ``visible``: name -> bool tensor, True where an entry was sent in plaintext;
* ``labels``: what the threat model grants (a tensor of class indices) or None;
* ``cfg``: the attack's hyperparameters from the study config (unknown keys are errors).

Image attacks live in :mod:`.ig` and :mod:`.dlg` (and the study modules); the text attacks
(:mod:`.lamp`, :mod:`.dager`) have their own call conventions because they reconstruct token
ids, not images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..registry import Registry


@dataclass
class AttackResult:
    x: torch.Tensor                      # the reconstruction, in the model's input space
    labels: torch.Tensor                 # the labels the attacker used (known or recovered)
    status: str = "ok"                   # ok | nothing_visible | failed
    message: str = ""
    final_loss: float = float("nan")     # the attacker's own score (gradient distance), lower is better
    trace: list[dict] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


Attack = Callable[..., AttackResult]
ATTACKS: Registry[Attack] = Registry("attack")

from . import ig as _ig  # noqa: E402,F401  (registers ig)
from . import dlg as _dlg  # noqa: E402,F401  (registers dlg)
from . import stochastic as _stochastic  # noqa: E402,F401  (registers wiig, dpia, gpia, vbia, pig, dia, cdia, ig_defended)

__all__ = ["ATTACKS", "AttackResult", "Attack"]
from . import concealed as _concealed  # noqa: E402,F401  (registers gs, adaptive, imprint, ggl)
