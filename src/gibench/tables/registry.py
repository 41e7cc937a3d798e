"""The table and figure registries: every table or figure a study can make is one entry,
and each study's table/figure targets are derived from these entries
(:func:`gibench.pipeline.targets.registered_outputs`).  Adding a table is one builder
function plus one :func:`register_table` call.

An entry (:class:`OutputEntry`) names its study, its name, its builder, which gathered
inputs the builder reads (``inputs``: ``metrics``, the study's gathered metric rows;
``cost``, the gathered cost rows; ``accuracy``, the FedAvg accuracies), when the study
makes it (``when``) and its display name (``caption``).  ``when`` is one of

- ``"always"``: whenever the study is configured;
- ``"attacks"``: when the study configures attacks (selective encryption's Tables 2, 4, 5);
- ``"selectors"``: when some attack runs a layer selector (selective encryption's Table 3);
- ``"listed"``: when the study's ``tables:`` list names the entry (concealed samples);
- ``"kind"``: once per entry of the study's ``tables:`` (``figures:``) mapping whose ``kind``
  is the entry's name (stochastic defenses: ``attacks``, ``ablation``; its figures are all
  of kind ``grid``);
- ``"specs"``: once per figure of :func:`gibench.tables.selective_encryption.figure_specs` of the entry's
  kind, when the study configures attacks (selective encryption's curves, traces, grids);
- or a callable ``(config, study_config) -> bool``.

Builders take keyword arguments (``metrics_path``, ``cost_path``, ``accuracy_path``, ``config``,
``out_dir``, ``formats``, ...) and return the paths they wrote; a ``"kind"`` entry's builder takes
the config entry's name (``table3``) as its first argument.

This module is a leaf (it imports only :mod:`gibench.registry`): the study table modules
register their entries here when imported, and :mod:`gibench.tables` imports them all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..registry import Registry

#: the ``when`` tokens :func:`gibench.pipeline.targets.registered_outputs` understands
WHEN = ("always", "attacks", "selectors", "listed", "kind", "specs")
#: the gathered inputs a builder may read
INPUTS = ("metrics", "cost", "accuracy")


@dataclass(frozen=True)
class OutputEntry:
    """One table (or figure) of one study."""
    study: str
    name: str
    build: Callable[..., list[Path]] = field(repr=False)
    inputs: tuple[str, ...] = ("metrics",)
    when: str | Callable[[dict, dict], bool] = "always"
    caption: str = ""
    #: study-specific layout data the builder reads (concealed samples: the table's blocks)
    layout: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not callable(self.when) and self.when not in WHEN:
            raise ValueError(f"{self.key}: when={self.when!r} is none of {', '.join(WHEN)} (or a callable)")
        bad = [i for i in self.inputs if i not in INPUTS]
        if bad:
            raise ValueError(f"{self.key}: unknown inputs {bad}; known: {', '.join(INPUTS)}")

    @property
    def key(self) -> str:
        return f"{self.study}/{self.name}"

    def __call__(self, **kwargs: Any) -> list[Path]:
        return self.build(**kwargs)


class OutputRegistry(Registry[OutputEntry]):
    """A :class:`gibench.registry.Registry` keyed ``<study>/<name>``, listing a study's
    entries in registration order (the order tables are built and printed)."""

    def add_entry(self, entry: OutputEntry) -> OutputEntry:
        return self.add(entry.key, entry)

    def entry(self, study: str, name: str) -> OutputEntry:
        return self.get(f"{study}/{name}")

    def has(self, study: str, name: str) -> bool:
        return f"{study}/{name}" in self

    def of_study(self, study: str) -> list[OutputEntry]:
        return [e for e in self._entries.values() if e.study == study]

    def remove(self, study: str, name: str) -> None:
        """Unregister (tests that register a toy entry clean up with this)."""
        self.get(f"{study}/{name}")
        del self._entries[f"{study}/{name}"]



TABLES = OutputRegistry("table")
FIGURES = OutputRegistry("figure")


def register_table(study: str, name: str, build: Callable[..., list[Path]], **kw: Any) -> OutputEntry:
    return TABLES.add_entry(OutputEntry(study, name, build, **kw))


def register_figure(study: str, name: str, build: Callable[..., list[Path]], **kw: Any) -> OutputEntry:
    return FIGURES.add_entry(OutputEntry(study, name, build, **kw))


__all__ = ["TABLES", "FIGURES", "OutputEntry", "OutputRegistry", "register_table", "register_figure", "WHEN",
           "INPUTS"]
