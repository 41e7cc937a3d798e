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

import importlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from ..registry import Registry

if TYPE_CHECKING:
    from ..params import ParamSpec

MODALITIES = ("image", "text")


@dataclass
class AttackResult:
    x: torch.Tensor                      # the reconstruction, in the model's input space
    labels: torch.Tensor                 # the labels the attacker used (known or recovered)
    status: str = "ok"                   # ok | nothing_visible | failed
    message: str = ""
    final_loss: float = float("nan")     # the attacker's own score (gradient distance), lower is better
    trace: list[dict] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


Attack = Callable[..., Any]


@dataclass(frozen=True)
class AttackEntry:
    """Everything the pipeline asks about one registered attack.

    ``display``: how the tables name it (None: its registry name); ``studies``: the studies
    whose config check accepts it where a study restricts its attacks (None: unrestricted);
    ``many``: ``f(..., seeds=[...]) -> [AttackResult]``, the restarts of one job run together
    (None: one after another); ``needs``: the extra artifacts its job must be given, by name
    (each study maps a need to a path and a loader; a study that cannot provide a need rejects
    the attack at DAG build); ``families``: the model families a text attack runs on."""

    name: str
    fn: Attack
    modality: str = "image"
    params: "ParamSpec | None" = None
    display: str | None = None
    studies: tuple[str, ...] | None = None
    many: Callable[..., list] | None = None
    needs: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    description: str = ""

    @property
    def label(self) -> str:
        return self.display if self.display is not None else self.name

    def applies_to(self, study: str) -> bool:
        return self.studies is None or study in self.studies


class AttackRegistry(Registry[Attack]):
    """:class:`~gibench.registry.Registry` of attack callables that also keeps each one's
    :class:`AttackEntry`."""

    def __init__(self, kind: str = "attack"):
        super().__init__(kind)
        self._meta: dict[str, AttackEntry] = {}

    def register(self, name: str, params: "ParamSpec | None" = None, *, modality: str = "image",
                 display: str | None = None, studies: Sequence[str] | None = None,
                 many: Callable[..., list] | None = None, needs: Sequence[str] = (),
                 families: Sequence[str] = (), description: str = "") -> Callable[[Attack], Attack]:
        if modality not in MODALITIES:
            raise ValueError(f"attack {name!r}: modality {modality!r} is not one of {', '.join(MODALITIES)}")
        if modality == "text" and not families:
            raise ValueError(f"text attack {name!r}: name the model families it runs on (families=...)")

        def deco(fn: Attack) -> Attack:
            super(AttackRegistry, self).register(name, params)(fn)
            self._meta[name] = AttackEntry(name, fn, modality, params, display,
                                           None if studies is None else tuple(studies), many, tuple(needs),
                                           tuple(families), description)
            return fn

        return deco

    def add(self, name: str, obj: Attack, params: "ParamSpec | None" = None, **meta: Any) -> Attack:
        return self.register(name, params, **meta)(obj)

    def entry(self, name: str) -> AttackEntry:
        self.get(name)                       # unknown names fail as every registry's do
        return self._meta[name]

    def names(self, modality: str | None = None, study: str | None = None) -> list[str]:
        """Sorted names, optionally only one modality's and only those a study accepts."""
        return [n for n in super().names()
                if (modality is None or self._meta[n].modality == modality)
                and (study is None or self._meta[n].applies_to(study))]

    def display(self, name: str) -> str:
        """The table spelling of a registered attack (``IG``, ``adaptive GS (class-average init)``)."""
        return self.entry(name).label


ATTACKS = AttackRegistry("attack")

from . import ig as _ig  # noqa: E402,F401  (registers ig)
from . import dlg as _dlg  # noqa: E402,F401  (registers dlg)
from . import stochastic as _stochastic  # noqa: E402,F401  (registers wiig, dpia, gpia, vbia, pig, dia, cdia, ig_defended)
from . import concealed as _concealed  # noqa: E402,F401  (registers gs, adaptive, imprint, ggl)
from . import text as _text  # noqa: E402,F401  (registers lamp, dager)

PLUGINS_ENV = "GIBENCH_PLUGINS"


def load_plugins(spec: str | None = None) -> list[str]:
    """Import the modules named in ``GIBENCH_PLUGINS`` (comma-separated); each registers its
    entries on import.  A module that cannot be imported is an error naming the variable."""
    spec = os.environ.get(PLUGINS_ENV, "") if spec is None else spec
    mods = [m.strip() for m in spec.split(",") if m.strip()]
    for m in mods:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise ImportError(f"{PLUGINS_ENV}={spec!r}: cannot import plugin module {m!r} ({e}); "
                              f"is its directory on PYTHONPATH?") from e
    return mods


load_plugins()

__all__ = ["ATTACKS", "AttackEntry", "AttackRegistry", "AttackResult", "Attack", "MODALITIES", "load_plugins",
           "PLUGINS_ENV"]
