"""The layouts of the concealed-samples tables and Fig. 2 (which (dataset, attack, cohort) blocks,
defenses and columns each shows) and what the requested ones need: :func:`needed_blocks` (the
attack cases the targets, the config check and the tables share).

The table builders (:mod:`gibench.tables.concealed_samples`) register one table or figure per
entry of :data:`LAYOUTS`, its layout on the registry entry; :data:`TABLES` reads the layouts
back from the registry.  Read at DAG build: no torch, no gibench.tables module but its registry (when read).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from . import STUDY


def _registries():
    # deferred: importing gibench.tables.registry runs gibench.tables' __init__, which imports
    # gibench.tables.concealed_samples, which imports this module (for LAYOUTS)
    from ...tables.registry import FIGURES, TABLES

    return TABLES, FIGURES

BASE = ("none", "dp_gaussian", "prune", "soteria", "dcs2")


@dataclass(frozen=True)
class Block:
    dataset: str
    attack: str
    defenses: tuple[str, ...]
    columns: tuple[str, ...]
    cohort: str = "iid"


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    blocks: tuple[Block, ...]


P4 = ("psnr", "ssim", "acc_sensitive", "acc_test")
# the paper's values of every block come from config/paper_values/concealed_samples.yaml
# (gibench.tables.concealed_samples._paper)
LAYOUTS: list[Table] = [
    Table("table1", "Table 1: Defenses against GS attack on MNIST and CIFAR10", (
        Block("mnist", "gs", BASE, P4), Block("cifar10", "gs", BASE, P4))),
    Table("table2", "Table 2: Defenses against GGL attack on CelebA and Imprint attack on TinyImageNet", (
        Block("celeba", "ggl", BASE, P4),
        Block("tiny_imagenet", "imprint", BASE, ("ssim", "lpips", "acc_sensitive", "acc_test")))),
    Table("table3", "Table 3: DCS² with different λg on TinyImageNet (Imprint attack)", (
        Block("tiny_imagenet", "imprint", ("dcs2_lg05", "dcs2", "dcs2_lg10"), ("ssim", "lpips", "acc_sensitive", "acc_test")),)),
    Table("table4", "Table 4: Defend against adaptive attacks (GS initialised with the class-average image, MNIST)", (
        Block("mnist", "adaptive", ("none", "dcs2"), ("psnr", "ssim")),)),
    Table("table5", "Table 5: Different start points on MNIST (GS attack)", (
        Block("mnist", "gs", ("dcs2_start_proxy_mixup", "dcs2", "dcs2_start_mixup", "dcs2_start_noise"), P4),)),
    Table("table6", "Table 6: Start points from CIFAR10 for CelebA (GGL attack)", (
        Block("celeba", "ggl", ("none", "dcs2_start_cifar10"), ("psnr", "ssim", "acc_test")),)),
    Table("table7", "Table 7: Combination of defenses (GS attack, MNIST)", (
        Block("mnist", "gs", ("prune", "dcs2", "prune+dcs2"), P4),)),
    Table("table9", "Table 9: Defenses against GS attack on CIFAR10: ATS vs DCS²", (
        Block("cifar10", "gs", ("ats", "dcs2"), P4),)),
    Table("table10", "Table 10: Against GS attack on MNIST in the non-IID setting", (
        Block("mnist", "gs", BASE, P4, cohort="noniid"),)),
    Table("table11", "Table 11: Defend against adaptive attacks on MNIST", (
        Block("mnist", "adaptive", BASE, ("psnr", "ssim")),)),
    Table("fig2", "Figure 2: example reconstructions (GS on MNIST and CIFAR10, GGL on CelebA, Imprint on TinyImageNet)", (
        Block("mnist", "gs", BASE, ()), Block("cifar10", "gs", BASE, ()), Block("celeba", "ggl", BASE, ()),
        Block("tiny_imagenet", "imprint", BASE, ()))),
]


class _Layouts(Mapping[str, Table]):
    """Table/figure name -> its :class:`Table` layout, read from the registry entries
    (:data:`gibench.tables.registry.TABLES` / ``FIGURES``, key ``concealed_samples/<name>``);
    before gibench.tables.concealed_samples has registered them (the config check can run
    first), the paper's layouts it registers (:data:`LAYOUTS`)."""

    def _entry(self, name: str):
        TABLES_REGISTRY, FIGURES = _registries()
        reg = FIGURES if FIGURES.has(STUDY, name) else TABLES_REGISTRY
        return reg.entry(STUDY, name)

    def __getitem__(self, name: str) -> Table:
        try:
            return self._entry(name).layout
        except KeyError:
            pass
        for t in LAYOUTS:
            if t.name == name:
                return t
        raise KeyError(name)

    def _names(self) -> list[str]:
        TABLES_REGISTRY, FIGURES = _registries()
        names = [e.name for e in TABLES_REGISTRY.of_study(STUDY)] + [e.name for e in FIGURES.of_study(STUDY)]
        return names + [t.name for t in LAYOUTS if t.name not in names]

    def __iter__(self):
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


#: the layouts of the study's registered tables and figure (a view of the registry entries)
TABLES: Mapping[str, Table] = _Layouts()


def _cs(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return config["studies"][STUDY]


def needed_blocks(config: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(dataset, model, attack, cohort, defense) every requested table/figure needs, in order."""
    c = _cs(config)
    out: list[tuple[str, str, str, str, str]] = []
    for t in c["tables"]:
        for blk in TABLES[t].blocks:
            if blk.dataset not in c["cases"]:
                continue
            for dfn in blk.defenses:
                key = (blk.dataset, c["cases"][blk.dataset], blk.attack, blk.cohort, dfn)
                if key not in out:
                    out.append(key)
    return out


def grid_cells(config: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    c = _cs(config)
    return [(b.dataset, c["cases"][b.dataset], b.attack, b.cohort, d)
            for b in TABLES["fig2"].blocks if b.dataset in c["cases"] for d in b.defenses]
