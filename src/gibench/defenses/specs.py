"""The five client-side defenses of paper B (section 3.4) as validated parameter records.

A defense config is a list whose items are a name (``dropout``) or a mapping with a ``name``
and parameters (``{name: dp, clip: 20, sigma: 1.0e-4}``).  Parameters a list item leaves out
come from the study's ``defense_defaults``, then from the paper's ablation values below
(paper B section 5.3): Dropout p_dr = 0.25, DP tau_clip = 20 and sigma = 1e-4, GP p_prune = 0.5,
PRECODE/CVB with the configuration the CVB paper recommends (``None`` = the model's
recommended value, see :mod:`gibench.models.defended`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Mapping

from ..registry import Registry


class DefenseSpecError(ValueError):
    """A defense list that cannot be run: unknown name or option, bad value, impossible combination."""


@dataclass(frozen=True)
class DefenseRecord:
    """A validated, immutable parameter record of one defense: the base of both defense
    families (paper B's :class:`Defense` here, the concealed-samples study's
    :class:`~gibench.defenses.concealed.CSDefense`)."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""         # how the paper's tables name it

    def check(self) -> None:
        pass

    def params(self) -> dict:
        return asdict(self)

    @classmethod
    def build(cls, params: Mapping[str, Any] | None = None) -> "DefenseRecord":
        params = dict(params or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise DefenseSpecError(f"defense {cls.name!r}: unknown option(s) {unknown}; known: {sorted(known) or 'none'}")
        try:
            d = cls(**params)
        except TypeError as e:
            raise DefenseSpecError(f"defense {cls.name!r}: {e}") from None
        d.check()
        return d


@dataclass(frozen=True)
class Defense(DefenseRecord):
    side: ClassVar[str] = ""          # "model" (changes the forward pass) | "gradient" (changes the update)


def _number(name: str, key: str, value: Any, lo: float, hi: float | None = None, lo_open: bool = False,
            hi_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DefenseSpecError(f"defense {name!r}: {key} must be a finite number, got {value!r}")
    bad_lo = value <= lo if lo_open else value < lo
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi:
        rng = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}{')' if hi_open or hi is None else ']'}"
        raise DefenseSpecError(f"defense {name!r}: {key} = {value!r} is outside {rng}")


@dataclass(frozen=True)
class Dropout(Defense):
    """Dropout with rate p_dr: each activation of a dropout layer is kept with probability 1 - p."""

    name: ClassVar[str] = "dropout"
    side: ClassVar[str] = "model"
    label: ClassVar[str] = "DO"
    rate: float = 0.25

    def check(self) -> None:
        _number(self.name, "rate", self.rate, 0.0, 1.0, lo_open=True, hi_open=True)


@dataclass(frozen=True)
class DP(Defense):
    """DPSGD (Abadi et al. 2016): per-sample clipping to tau_clip, Gaussian noise N(0, sigma^2 tau^2)."""

    name: ClassVar[str] = "dp"
    side: ClassVar[str] = "gradient"
    label: ClassVar[str] = "DP"
    clip: float = 20.0
    sigma: float = 1e-4

    def check(self) -> None:
        _number(self.name, "clip", self.clip, 0.0, lo_open=True)
        _number(self.name, "sigma", self.sigma, 0.0)


@dataclass(frozen=True)
class Prune(Defense):
    """Layer-wise magnitude pruning (DGC, Lin et al. 2017) at rate p_prune."""

    name: ClassVar[str] = "prune"
    side: ClassVar[str] = "gradient"
    label: ClassVar[str] = "GP"
    rate: float = 0.5

    def check(self) -> None:
        _number(self.name, "rate", self.rate, 0.0, 1.0, lo_open=True, hi_open=True)


@dataclass(frozen=True)
class Precode(Defense):
    """PRECODE's variational bottleneck (None: the model's recommended value; ``position``: None
    or ``'classifier'`` = before the classifier, the PRECODE repository's placement, or on the CNN
    a conv block index, docs/regimes_precode.md)."""

    name: ClassVar[str] = "precode"
    side: ClassVar[str] = "model"
    label: ClassVar[str] = "P"
    K: int | None = None
    beta: float | None = None
    position: int | str | None = None

    def check(self) -> None:
        if self.K is not None and (isinstance(self.K, bool) or not isinstance(self.K, int) or self.K < 1):
            raise DefenseSpecError(f"defense 'precode': K must be a positive integer, got {self.K!r}")
        if self.beta is not None:
            _number(self.name, "beta", self.beta, 0.0)
        p = self.position
        if p is not None and p != "classifier" and (isinstance(p, bool) or not isinstance(p, int) or p < 0):
            raise DefenseSpecError(f"defense 'precode': position must be 'classifier' or a conv block index >= 0, "
                                   f"got {p!r}")

    def params(self) -> dict:
        # ``position`` was added after results existed: left out while unset, so the canonical
        # spec (knowledge files, the rules' params) of every earlier config is unchanged
        d = asdict(self)
        if d["position"] is None:
            del d["position"]
        return d


@dataclass(frozen=True)
class CVB(Defense):
    """The convolutional variational bottleneck (None: the model's recommended value)."""

    name: ClassVar[str] = "cvb"
    side: ClassVar[str] = "model"
    label: ClassVar[str] = "C"
    K: int | str | None = None
    beta: float | None = None
    kernel_size: int | None = None
    position: int | None = None

    def check(self) -> None:
        if self.K is not None and self.K != "adaptive" and (isinstance(self.K, bool) or not isinstance(self.K, int) or self.K < 1):
            raise DefenseSpecError(f"defense 'cvb': K must be 'adaptive' or a positive integer, got {self.K!r}")
        if self.beta is not None:
            _number(self.name, "beta", self.beta, 0.0)
        for key in ("kernel_size", "position"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "kernel_size" else 0)):
                raise DefenseSpecError(f"defense 'cvb': {key} must be a {'positive' if key == 'kernel_size' else 'non-negative'} integer, got {v!r}")


class DefenseRegistry:
    """Every defense record class in one namespace, each filed under its *family*: the paper
    whose semantics it follows.  Both papers have a ``prune`` (paper B: DGC's layer-wise top-k;
    DCS²: numpy's per-tensor percentile), and the configs name both plainly (``prune``), so a
    name is looked up within a family: ``DEFENSES.get(CHAIN, "prune")`` or the family's view
    ``DEFENSES.of(CONCEALED)``, a :class:`~gibench.registry.Registry` whose messages name the
    family's kind ("unknown defense ...", "unknown concealed-samples defense ...").

    Families: :data:`CHAIN` (paper B's defenses, applied by
    :class:`~gibench.defenses.chain.DefenseChain`: the stochastic-defenses study and the FedAvg
    runs of any study) and :data:`CONCEALED` (the DCS² study's staged list,
    :func:`gibench.defenses.concealed.defend`)."""

    def __init__(self) -> None:
        self._families: dict[str, Registry[type[DefenseRecord]]] = {}

    def family(self, family: str, kind: str) -> Registry[type[DefenseRecord]]:
        """Declare a family (``kind``: how its error messages name a defense of it)."""
        if family in self._families:
            raise ValueError(f"defense family {family!r} declared twice")
        self._families[family] = Registry(kind)
        return self._families[family]

    def add(self, family: str, cls: type[DefenseRecord]) -> type[DefenseRecord]:
        self.of(family).add(cls.name, cls)
        return cls

    def register(self, family: str):
        """Class decorator: ``@DEFENSES.register(CHAIN)`` files the record class under its ``name``."""
        return lambda cls: self.add(family, cls)

    def of(self, family: str) -> Registry[type[DefenseRecord]]:
        try:
            return self._families[family]
        except KeyError:
            raise KeyError(f"unknown defense family {family!r}; known: {', '.join(sorted(self._families))}") from None

    def get(self, family: str, name: str) -> type[DefenseRecord]:
        return self.of(family).get(name)

    def families(self) -> list[str]:
        return sorted(self._families)

    def entries(self) -> list[tuple[str, str, type[DefenseRecord]]]:
        """(family, name, record class) of every defense."""
        return [(f, n, self._families[f].get(n)) for f in self.families() for n in self._families[f].names()]

    def label(self, family: str, name: str) -> str:
        """How the family's paper names the defense in its tables (the record's ``label``)."""
        return self.get(family, name).label


#: the families (see :class:`DefenseRegistry`)
CHAIN = "stochastic_defenses"
CONCEALED = "concealed_samples"
DEFENSES = DefenseRegistry()
DEFENSES.family(CHAIN, "defense")
for _cls in (Dropout, DP, Prune, Precode, CVB):
    DEFENSES.add(CHAIN, _cls)

#: the order the paper applies them in: G~ = GP(DP(grad L(F_{Psi, eps}(x), y)))
ORDER = ("dropout", "precode", "cvb", "dp", "prune")
PRIVACY_MODULES = ("precode", "cvb")
