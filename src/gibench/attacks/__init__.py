"""The attack registry: one entry per attack, image and text alike (timm-style).

``ATTACKS.get(name)`` is the attack's callable; ``ATTACKS.entry(name)`` (an :class:`AttackEntry`)
answers every other question about it: its modality, its declared parameters (``ParamSpec``),
its display name in the tables, the studies it applies to, its vectorised-restarts variant and
the extra artifacts its job must be given (``needs``).

Image attacks (``modality="image"``) share one call convention

``attack(model, shared, visible, *, input_shape, mean, std, labels, cfg, seed, device, progress, **extras)
-> AttackResult``

* ``shared``: the gradient the server received, name -> tensor, with encrypted entries
  already replaced by zeros by the caller (the server never holds their values);
* ``visible``: name -> bool tensor, True where an entry was sent in plaintext;
* ``labels``: what the threat model grants (a tensor of class indices) or None;
* ``cfg``: the attack's hyperparameters from the study config (unknown keys are errors);
* ``extras``: one keyword per declared need (``class_means=...`` for ``needs=("class_means",)``),
  loaded by the study's attack job from the files its need -> path map names.

Text attacks (``modality="text"``: :mod:`.text`, adapters around :mod:`.lamp` / :mod:`.dager`)
reconstruct token ids, not images: their callable takes one
:class:`~gibench.attacks.text.TextAttackContext` and returns a ``TextAttackOutput``;
``families`` lists the text model families they run on.

Adding an attack: one module with the function and one ``ATTACKS.register(...)`` call.  Modules
named in the environment variable ``GIBENCH_PLUGINS`` (comma-separated, importable from
``PYTHONPATH``) are imported after the built-in attacks, in the Snakefile's process and in every
job's, so an attack registered there can be named in a config (docs/extending.md).
"""
from __future__ import annotations

from ..plugins import PLUGINS_ENV, load_plugins  # noqa: F401  (re-exported)
from .base import ATTACKS, MODALITIES, Attack, AttackEntry, AttackRegistry, AttackResult  # noqa: F401

from . import ig as _ig  # noqa: E402,F401  (IG, one restart)
from . import ig_many as _ig_many  # noqa: E402,F401  (registers ig: ig.inverting_gradients and its vectorised restarts)
from . import dlg as _dlg  # noqa: E402,F401  (registers dlg)
from . import stochastic as _stochastic  # noqa: E402,F401  (registers wiig, dpia, gpia, vbia, pig, dia, cdia, ig_defended)
from . import concealed as _concealed  # noqa: E402,F401  (registers gs, adaptive, imprint, ggl)
from . import text as _text  # noqa: E402,F401  (registers lamp, dager)

# the one plugin loader (gibench.plugins, a leaf): run again here so that importing the attack
# package alone (a job script) registers a plugin's attacks; importing a module twice is a no-op
load_plugins()

__all__ = ["ATTACKS", "AttackEntry", "AttackRegistry", "AttackResult", "Attack", "MODALITIES", "load_plugins",
           "PLUGINS_ENV"]
