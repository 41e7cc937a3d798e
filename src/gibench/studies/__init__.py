"""The studies, one package each in the common shape (issue 21), and their registry::

    studies/<study>/__init__.py   STUDY = "<study>"; what the study is, its files
    studies/<study>/spec.py       the typed, frozen spec built once from the validated config
                                  (the only reader of the raw study block); check(config)
    studies/<study>/paths.py      output path patterns (the constants the rules use)
    studies/<study>/targets.py    target lists, rule-input and rule-params functions
    studies/<study>/jobs*.py      the study-only job functions (workflow/scripts/<x>.py call them)

plus its schema (``config/schema/studies/<study>.schema.yaml``: the block ``studies.<study>``)
and its rules file (``rules/<study>.smk``).  :data:`STUDIES` is the one study registry: each
entry (:class:`Study`) knows the study's name, package, schema file, semantic check, targets
and rules file.  gibench.config merges each registered study's schema and runs its check, the
Snakefile includes each registered study's rules file, ``rule all`` asks for its targets.

A new study is one folder of that shape plus one :func:`register_study` call, made here or in a
plugin module named in ``GIBENCH_PLUGINS`` (loaded when this module is imported, before any
config is validated): tests/studies/test_extend_study.py registers a toy one from a plugin and builds
and runs its DAG.  A plugin study names its schema and rules files by absolute path.

Import-light: the DAG build imports this module first, so it imports no torch and no study
package; each entry's check and targets import their study's modules when first called
(deferred imports, on purpose).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable

from ..plugins import load_plugins
from ..registry import Registry

#: a study name is a config key and the ``{study}`` wildcard's value (rules/common.smk)
NAME_PATTERN = "[a-z_]+"


@dataclass(frozen=True)
class Study:
    """One study: everything the pipeline asks about it."""

    name: str
    #: its package (dotted module name), in the common shape above
    package: str
    #: (whole config, this study's block) -> error messages naming the bad key (run at DAG build,
    #: after the schema, by gibench.config)
    check: Callable[[dict, dict], list[str]]
    #: whole config -> the artifacts `rule all` asks for
    targets: Callable[[dict], list[str]]
    #: the JSON schema of ``studies.<name>``: relative to config/schema/ or absolute
    schema: str
    #: its rules file: relative to the workflow's folder (the Snakefile's) or absolute
    rules: str

    def schema_path(self, schema_dir: str | os.PathLike) -> str:
        """The schema file, a relative one resolved against ``schema_dir`` (config/schema)."""
        return os.path.join(schema_dir, self.schema)

    def rules_path(self, basedir: str | os.PathLike) -> str:
        """The rules file, a relative one resolved against ``basedir`` (the Snakefile's folder)."""
        return os.path.join(basedir, self.rules)


class StudyRegistry(Registry[Study]):
    """The study registry; entries are kept in registration order (the Snakefile includes their
    rules files in it)."""

    def in_order(self) -> list[Study]:
        return list(self._entries.values())

    def schema_files(self) -> dict[str, str]:
        """study -> its schema file (as registered: relative to config/schema/ or absolute)."""
        return {s.name: s.schema for s in self.in_order()}

    def rules_files(self) -> list[str]:
        """Each study's rules file (as registered: relative to the workflow's folder or absolute)."""
        return [s.rules for s in self.in_order()]


STUDIES = StudyRegistry("study")


def register_study(name: str, *, package: str, check: Callable[[dict, dict], list[str]],
                   targets: Callable[[dict], list[str]], schema: str | os.PathLike | None = None,
                   rules: str | os.PathLike | None = None) -> Study:
    """Register study ``name`` (the key under ``studies:``); ``schema`` defaults to
    ``studies/<name>.schema.yaml`` under config/schema/, ``rules`` to ``rules/<name>.smk`` in the
    workflow's folder.  Returns the entry."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise ValueError(f"study name {name!r}: use lower-case letters and '_' only ({NAME_PATTERN}: it is "
                         f"the {{study}} wildcard's value in file names)")
    entry = Study(name=name, package=package, check=check, targets=targets,
                  schema=os.fspath(schema) if schema is not None else f"studies/{name}.schema.yaml",
                  rules=os.fspath(rules) if rules is not None else f"rules/{name}.smk")
    return STUDIES.add(name, entry)


# ---- the built-in studies (registration order = the order their rules files are included) ----

def _se_check(config: dict, _se: dict) -> list[str]:
    from .selective_encryption import spec

    return spec.check(config)


def _se_targets(config: dict) -> list[str]:
    from .selective_encryption import targets

    return targets.targets(config)


# study 1 runs the shared stage rules (rules/data, gradient, significance, attack, tables, lm, fl);
# its own rules file holds what only it runs: the HE overhead
register_study("selective_encryption", package="gibench.studies.selective_encryption", check=_se_check,
               targets=_se_targets, rules="rules/overhead.smk")


def _cs_check(config: dict, _cs: dict) -> list[str]:
    from .concealed_samples import spec

    return spec.check(config)


def _cs_targets(config: dict) -> list[str]:
    from .concealed_samples import targets

    return targets.targets(config)


register_study("concealed_samples", package="gibench.studies.concealed_samples", check=_cs_check,
               targets=_cs_targets)


def _sd_check(config: dict, _sd: dict) -> list[str]:
    from .stochastic_defenses import spec

    return spec.check(config)


def _sd_targets(config: dict) -> list[str]:
    from .stochastic_defenses import targets

    return targets.targets(config)


register_study("stochastic_defenses", package="gibench.studies.stochastic_defenses", check=_sd_check,
               targets=_sd_targets)

# last: a plugin module's register_study(...) needs the names above
load_plugins()

__all__ = ["NAME_PATTERN", "STUDIES", "Study", "StudyRegistry", "register_study"]
