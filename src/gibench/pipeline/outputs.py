"""The outputs the table and figure registries (:mod:`gibench.tables.registry`) make for a
config -- which tables and figures of a study its config asks for, their files, the registry
entry behind a table name -- and the LPIPS backbone file an evaluate job reads.  The studies'
target lists (``gibench.studies.<study>.targets``, the study registry's builders) and
:mod:`.targets` (`rule all`, the rules' input functions) read it; it imports no target list.
"""
from __future__ import annotations

import re
from typing import Any

from ..studies.selective_encryption.cases import has_selector_cases
from ..tables import FIGURES, TABLES, figure_specs
from . import paths as P


def attack_choice(names: list[str]) -> str:
    """A wildcard constraint matching exactly these attack names (none: matches nothing)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def lpips_backbone_file(config: dict, study: str) -> str | None:
    """The backbone file LPIPS will read, if one is on disk: the bundled AlexNet, or what the
    download rule (``download_lpips_backbone``) left under ``hub_dir``.  ``None`` otherwise
    (LPIPS is then reported as unavailable, with the reason and the command that fetches it)."""
    ev = config["studies"][study].get("evaluation", {})
    if "lpips" not in ev.get("image_metrics", []):
        return None
    return lpips_backbone_path(config, (ev.get("lpips") or {}).get("backbone", "alex"))


def lpips_backbone_path(config: dict, backbone: str) -> str | None:
    """:func:`gibench.metrics.lpips.find_backbone` with the config's hub and resources dirs."""
    from ..metrics.lpips import find_backbone  # deferred: gibench.metrics.lpips imports torch

    path = find_backbone(backbone, config["hub_dir"], config.get("resources_dir", "resources"))
    return None if path is None else str(path)


def _instances(config: dict, study: str, entry, figures: bool) -> list[str]:
    """The target names one registry entry makes under this config (its ``when``:
    :mod:`gibench.tables.registry`)."""
    st = config["studies"][study]
    when = entry.when
    if callable(when):
        return [entry.name] if when(config, st) else []
    if when == "always":
        return [entry.name]
    if when == "attacks":
        return [entry.name] if st.get("attacks") else []
    if when == "selectors":
        return [entry.name] if st.get("attacks") and has_selector_cases(config) else []
    if when == "listed":
        return [entry.name] if entry.name in (st.get("tables") or ()) else []
    if when == "kind":           # figures: every `figures.<name>` is a grid
        if figures:
            return list(st.get("figures") or {}) if entry.name == "grid" else []
        return [n for n, spec in (st.get("tables") or {}).items() if spec.get("kind") == entry.name]
    if when == "specs":
        if not st.get("attacks"):
            return []
        return [s["name"] for s in figure_specs(st) if s["kind"] == entry.name]
    raise ValueError(f"{entry.key}: when={when!r} is not understood")


def registered_tables(config: dict, study: str) -> list[tuple[str, Any]]:
    """(table name, registry entry) of every table the config makes for ``study``: the entries
    of :data:`gibench.tables.TABLES` for the study, in registration order."""
    if not (config.get("studies") or {}).get(study):
        return []
    return [(n, e) for e in TABLES.of_study(study) for n in _instances(config, study, e, figures=False)]


def registered_figures(config: dict, study: str) -> list[tuple[str, Any]]:
    """(figure name, registry entry) of every figure the config makes for ``study`` (:data:`gibench.tables.FIGURES`)."""
    if not (config.get("studies") or {}).get(study):
        return []
    return [(n, e) for e in FIGURES.of_study(study) for n in _instances(config, study, e, figures=True)]


def registered_outputs(config: dict, study: str) -> list[str]:
    """The table (csv, md) and figure (png, pdf) files of ``study``, derived from the registries
    (``results/tables/<study>/<table>.<ext>``, ``results/figures/<study>/<figure>.<ext>``)."""
    out = [P.fmt(P.TABLE, study=study, table=t, ext=ext)
           for t, _ in registered_tables(config, study) for ext in ("csv", "md")]
    out += [P.fmt(P.FIGURE, study=study, figure=f, ext=ext)
            for f, _ in registered_figures(config, study) for ext in ("png", "pdf")]
    return out


def table_entry(config: dict, study: str, table: str):
    """The registry entry that makes table ``table`` of ``study``: the entry of that name, else
    (``when="kind"``) the entry that makes it under this config; an unknown name is the registry's error."""
    if TABLES.has(study, table):
        return TABLES.entry(study, table)
    for name, entry in registered_tables(config, study):
        if name == table:
            return entry
    return TABLES.entry(study, table)


def table_choice(study: str) -> str:
    """A wildcard constraint matching the study's registered fixed-name tables."""
    return attack_choice([e.name for e in TABLES.of_study(study)])
