"""Study registry: a study name in the config maps to its semantic config check and its
target list.  Adding a study is one schema file (``config/schema/studies/<study>.schema.yaml``),
one module that registers a :class:`Study` here (imported at the bottom), and one rules file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..registry import Registry


@dataclass(frozen=True)
class Study:
    name: str
    #: (whole config, this study's config) -> error messages naming the bad key (checked at DAG build)
    check: Callable[[dict, dict], list[str]]
    #: whole config -> the artifacts `rule all` asks for
    targets: Callable[[dict], list[str]]


STUDIES: Registry[Study] = Registry("study")


def _selective_encryption() -> Study:
    # the study's package (gibench.studies.selective_encryption) is imported when its check or
    # targets are first asked for, as the other studies' below
    def check(config: dict, _se: dict) -> list[str]:
        from ..studies.selective_encryption import spec

        return spec.check(config)

    def targets(config: dict) -> list[str]:
        from ..studies.selective_encryption import targets as T

        return T.targets(config)

    return Study("selective_encryption", check, targets)


STUDIES.add("selective_encryption", _selective_encryption())


def _concealed_samples() -> Study:
    # the study's package (gibench.studies.concealed_samples): its spec's check; its targets are
    # the tables and figure the table registry makes for its `tables:` list
    def check(config: dict, cs: dict) -> list[str]:
        from ..studies.concealed_samples import spec

        return spec.check(config)

    def targets(config: dict) -> list[str]:
        from .targets import registered_outputs

        return registered_outputs(config, "concealed_samples")

    return Study("concealed_samples", check, targets)


STUDIES.add("concealed_samples", _concealed_samples())


def _stochastic_defenses() -> Study:
    # the study's package (gibench.studies.stochastic_defenses) is imported when its check or
    # targets are first asked for, as concealed_samples' above
    def check(config: dict, _sd: dict) -> list[str]:
        from ..studies.stochastic_defenses import spec

        return spec.check(config)

    def targets(config: dict) -> list[str]:
        from ..studies.stochastic_defenses import targets as T

        return T.targets(config)

    return Study("stochastic_defenses", check, targets)


STUDIES.add("stochastic_defenses", _stochastic_defenses())
