"""The attack registry's types (:class:`AttackResult`, :class:`AttackEntry`, :class:`AttackRegistry`)
and :data:`ATTACKS` itself, in a module of their own so that the attack modules register into it
without importing their package (no import cycle; tests/test_import_graph.py).  Import
:mod:`gibench.attacks` to have every built-in attack registered."""
from __future__ import annotations

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
