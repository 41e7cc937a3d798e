"""The typed, frozen spec of ``studies.stochastic_defenses``: built once per study block by
:func:`spec` (cached on the block's content), the only reader of the raw study block.  Defaults
come from the schema (``config/schema/studies/stochastic_defenses.schema.yaml``, filled by
:func:`gibench.config.validate`), not from this code.  :func:`check` returns the study's
semantic errors (run at DAG build through :mod:`gibench.studies`; the ``fl`` block is
checked by :func:`gibench.pipeline.jobs_fl.check_fl`, which gibench.config runs for every study).

The names the spec resolves are methods of :class:`Spec`, shared by the rules, the jobs, the
tables (:mod:`gibench.tables.stochastic_defenses`, :mod:`gibench.tables.paper`),
:mod:`gibench.privacy` and :mod:`gibench.claims`, so they all read the same values:
:meth:`Spec.defense_specs` / :meth:`Spec.chain` (a combination name -> its defenses),
:meth:`Spec.attack_settings` (an attack entry's settings on a model) and
:meth:`Spec.dataset_view` (the dataset as the models see it).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterator, Mapping

from ...datasets import DATASETS
from ...wildcards import fmt_slot
from . import STUDY

_PRE = f"studies.{STUDY}"
NO_DEFENSE = "none"

#: (dataset, model, defense combination, attack)
Case = tuple[str, str, str, str]


def _ro(v: Any) -> Any:
    """A read-only deep copy: mappings as read-only mappings (key order kept), lists as tuples."""
    if isinstance(v, Mapping):
        return MappingProxyType({k: _ro(x) for k, x in v.items()})
    if isinstance(v, (list, tuple)):
        return tuple(_ro(x) for x in v)
    return v


def plain(v: Any) -> Any:
    """A read-only value back as plain dicts and lists, key order kept (what rule params,
    provenance records and the defense builders take)."""
    if isinstance(v, Mapping):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return [plain(x) for x in v]
    return v


# ---------------------------------------------------------------- the spec

@dataclass(frozen=True)
class Gradient:
    """``gradient``: the client's batch and loss."""
    batch_size: int
    loss: str


@dataclass(frozen=True)
class ThreatModel:
    """``threat_model``: what the attacker knows besides the model, the update and the protocol."""
    labels_known: bool


@dataclass(frozen=True)
class Attack:
    """``attacks.<name>``: the registry type (the entry's name when ``type`` is not given), whether
    it reads the client's secrets, its restarts and its overrides of ``attack_params``."""
    name: str
    type: str
    oracle: bool
    restarts: int
    params: Mapping[str, Any]
    model_params: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Baseline:
    defense: str
    attack: str


@dataclass(frozen=True)
class Table:
    """``tables.<name>``: kind ``attacks`` (rows (defense, attack), Tables 1-3) or ``ablation``
    (one attack over defense combinations, Tables 4-5)."""
    name: str
    kind: str
    title: str | None
    datasets: tuple[str, ...]
    models: tuple[str, ...]
    defenses: tuple[str, ...]
    attacks: tuple[str, ...]          # kind attacks (none listed: a config error, see check)
    attack: str | None                # kind ablation
    baseline: Baseline | None
    accuracy: bool

    def cases(self) -> Iterator[Case]:
        """(dataset, model, defense, attack) the table needs, in display order."""
        for d in self.datasets:
            for m in self.models:
                if self.kind == "attacks":
                    if self.baseline is not None:
                        yield d, m, self.baseline.defense, self.baseline.attack
                    for dfn in self.defenses:
                        for a in self.attacks:
                            yield d, m, dfn, a
                else:
                    for dfn in self.defenses:
                        yield d, m, dfn, self.attack


@dataclass(frozen=True)
class Figure:
    """``figures.<name>``: a reconstruction grid of one model and attack."""
    name: str
    model: str
    datasets: tuple[str, ...]
    defenses: tuple[str, ...]
    attack: str
    victims: int

    def cases(self) -> Iterator[Case]:
        for d in self.datasets:
            for dfn in self.defenses:
                yield d, self.model, dfn, self.attack


@dataclass(frozen=True)
class Evaluation:
    asr_threshold: float
    ssim: str
    best_of_restarts: str


@dataclass(frozen=True)
class Spec:
    """The study block, typed.  Scalars keep the type the config gave them (an integer stays an
    int, a threshold written ``1`` stays 1): the jobs record them as written."""
    victims: int
    inputs: Mapping[str, tuple[int, ...]]
    gradient: Gradient
    threat_model: ThreatModel
    defense_defaults: Mapping[str, Mapping[str, Any]]
    defenses: Mapping[str, tuple]
    attack_params: Mapping[str, Any]
    attack_model_params: Mapping[str, Mapping[str, Any]]
    attacks: Mapping[str, Attack]
    tables: Mapping[str, Table]
    figures: Mapping[str, Figure]
    evaluation: Evaluation
    fl: Mapping[str, Any] | None
    privacy: Mapping[str, Any] | None
    #: the block as validated (read-only, key order kept): :meth:`written` gives parts of it to
    #: rule params and records, which must repeat the config byte for byte (Snakemake's params
    #: trigger compares their repr)
    block: Mapping[str, Any] = field(repr=False, compare=False)

    def written(self, *keys: str) -> Any:
        """The part of the block at ``keys`` as plain dicts/lists (None when absent)."""
        v: Any = self.block
        for k in keys:
            if not isinstance(v, Mapping) or k not in v:
                return None
            v = v[k]
        return plain(v)

    # ------------------------------------------------------------ cases

    def cases(self) -> list[Case]:
        """Every (dataset, model, defense, attack) the tables and figures need (first-seen order)."""
        out: dict[Case, None] = {}
        for t in self.tables.values():
            out.update(dict.fromkeys(t.cases()))
        for f in self.figures.values():
            out.update(dict.fromkeys(f.cases()))
        return list(out)

    def slots(self) -> list[str]:
        return [fmt_slot(s) for s in range(int(self.victims))]

    # ------------------------------------------------------------ names

    def defense_specs(self, name: str) -> list:
        """The DefenseChain list of a combination name (see :mod:`gibench.studies.stochastic_defenses`)."""
        if name in self.defenses:
            return plain(self.defenses[name])
        if name == NO_DEFENSE:
            return []
        from ...defenses import CHAIN, DEFENSES  # deferred: the defense modules import torch

        family = DEFENSES.of(CHAIN)       # paper B's family of the one defense namespace
        parts = name.split("+")
        if all(p in family for p in parts):
            return parts
        raise KeyError(f"defense combination {name!r} is neither an entry of {_PRE}.defenses "
                       f"({', '.join(sorted(self.defenses)) or 'none defined'}), 'none', nor defense names joined "
                       f"by '+' (known defenses: {', '.join(family.names())})")

    def chain(self, name: str):
        """The :class:`gibench.defenses.DefenseChain` of a combination name."""
        from ...defenses import DefenseChain  # deferred: the defense modules import torch

        return DefenseChain(self.defense_specs(name), plain(self.defense_defaults))

    def privacy_module(self, defense: str) -> str:
        """The privacy module (``none``, ``precode``, ``cvb``) the combination's model carries."""
        return self.chain(defense).privacy_module or "none"

    def attack_settings(self, attack: str, model: str | None = None) -> tuple[str, dict, int, bool]:
        """(registry name, hyperparameters, restarts, oracle) of an attack entry: ``attack_params``,
        then ``attack_model_params`` for ``model`` (every attack on that model, e.g. the TV weight),
        then the entry's ``params``, then its ``model_params`` for ``model``."""
        entry = self.attacks[attack]
        params = plain(self.attack_params)
        if model is not None:
            params.update(plain(self.attack_model_params.get(model) or {}))
        params.update(plain(entry.params))
        if model is not None:
            params.update(plain(entry.model_params.get(model) or {}))
        return entry.type, params, entry.restarts, entry.oracle

    def dataset_view(self, dataset: str):
        """The dataset as the study's models see it (``inputs.<dataset>.shape``, e.g. MNIST at
        3x32x32: ``ImageDataset.normalize`` resizes bilinearly and repeats the grey channel)."""
        ds = DATASETS.get(dataset)
        shape = self.inputs.get(dataset)
        return dataclasses.replace(ds, shape=shape) if shape else ds


def _table(name: str, t: Mapping[str, Any]) -> Table:
    base = t.get("baseline")
    return Table(name=name, kind=t["kind"], title=t.get("title"), datasets=tuple(t["datasets"]),
                 models=tuple(t["models"]), defenses=tuple(t["defenses"]), attacks=tuple(t.get("attacks") or ()),
                 attack=t.get("attack"), baseline=Baseline(base["defense"], base["attack"]) if base else None,
                 accuracy=bool(t["accuracy"]))


def _build(block: Mapping[str, Any]) -> Spec:
    b = _ro(block)
    return Spec(
        victims=b["victims"],
        inputs=MappingProxyType({d: tuple(int(v) for v in e["shape"]) for d, e in b["inputs"].items()}),
        gradient=Gradient(batch_size=b["gradient"]["batch_size"], loss=b["gradient"]["loss"]),
        threat_model=ThreatModel(labels_known=bool(b["threat_model"]["labels_known"])),
        defense_defaults=b["defense_defaults"],
        defenses=b["defenses"],
        attack_params=b["attack_params"],
        attack_model_params=b["attack_model_params"],
        attacks=MappingProxyType({
            n: Attack(name=n, type=e.get("type", n), oracle=bool(e["oracle"]), restarts=int(e["restarts"]),
                      params=e["params"], model_params=e["model_params"])
            for n, e in b["attacks"].items()}),
        # a block the schema has not seen (claims' scale probes, table builders' tests) may lack tables
        tables=MappingProxyType({n: _table(n, t) for n, t in (b.get("tables") or {}).items()}),
        figures=MappingProxyType({
            n: Figure(name=n, model=f["model"], datasets=tuple(f["datasets"]), defenses=tuple(f["defenses"]),
                      attack=f["attack"], victims=f["victims"])
            for n, f in b["figures"].items()}),
        evaluation=Evaluation(asr_threshold=b["evaluation"]["asr_threshold"], ssim=b["evaluation"]["ssim"],
                              best_of_restarts=b["evaluation"]["best_of_restarts"]),
        fl=b.get("fl"),
        privacy=b.get("privacy"),
        block=b,
    )


def _with_schema_defaults(block: Mapping[str, Any]) -> dict:
    """A copy of the block with the schema's defaults filled in (:func:`gibench.schema.study_block_with_defaults`)."""
    from ...schema import study_block_with_defaults

    return study_block_with_defaults(STUDY, block)


_CACHE: dict[str, Spec] = {}
#: the last block asked for, its top-level values and its spec: the input functions of every job
#: at DAG build ask with the same block, and comparing identities is ~30x cheaper than its repr
_LAST: list = [None, (), None]


def spec(config: Mapping[str, Any]) -> Spec | None:
    """The spec of the config's ``studies.stochastic_defenses`` (None when absent or empty),
    built once per block content: the cache key is the block's repr, so a copy of a block finds
    its spec and a block changed in place gets a new one.  Fast path: the same block object with
    the same top-level values as the last call (a validated config is not changed afterwards;
    a top-level key set anew, as tests do, is seen)."""
    block = (config.get("studies") or {}).get(STUDY)
    if not block:
        return None
    last_block, last_values, last_spec = _LAST
    values = tuple(block.values())
    if block is last_block and len(values) == len(last_values) and all(a is b for a, b in zip(values, last_values)):
        return last_spec
    key = repr(block)
    s = _CACHE.get(key)
    if s is None:
        if len(_CACHE) >= 32:
            _CACHE.pop(next(iter(_CACHE)))
        s = _CACHE[key] = _build(_with_schema_defaults(block))
    _LAST[:] = [block, values, s]       # strong references: the identities cannot be reused
    return s


# ---------------------------------------------------------------- semantic checks

#: privacy-module options that change the module's parameters (its shape or where it sits)
STRUCTURAL_OPTIONS = ("K", "kernel_size", "position")


def check(config: Mapping[str, Any]) -> list[str]:
    """Config errors of the study, each naming its key (run at DAG build, after the schema)."""
    from ...attacks import ATTACKS          # deferred: the attack, defense and model modules import torch
    from ...attacks.stochastic import ORACLE_ATTACKS, SD_ATTACKS
    from ...defenses import CHAIN, DEFENSES, DefenseChain, DefenseSpecError
    from ...models import MODELS
    from ...params import attack_param_errors

    s = spec(config)
    if s is None:
        return []
    pre = _PRE
    errs: list[str] = []
    family = DEFENSES.of(CHAIN)       # paper B's family of the one defense namespace
    batch = int(s.gradient.batch_size)
    n_victims = int(s.victims)
    for name, opts in s.defense_defaults.items():
        if name not in family:
            errs.append(f"config error at {pre}.defense_defaults.{name}: unknown defense {name!r}; known: "
                        f"{', '.join(family.names())}")
            continue
        try:                 # the defaults on their own, at their own key
            family.get(name).build(plain(opts))
        except (DefenseSpecError, TypeError, ValueError) as e:
            errs.append(f"config error at {pre}.defense_defaults.{name}: {e}")
    if errs:                 # every combination built from them would repeat the same complaint
        return list(dict.fromkeys(errs))
    for d in s.inputs:
        if d not in DATASETS:
            errs.append(f"config error at {pre}.inputs.{d}: unknown dataset {d!r}; known: {', '.join(DATASETS.names())}")
    chains: dict[str, Any] = {}

    def chain(name: str, where: str):
        if name in chains:
            return chains[name]
        try:
            c = s.chain(name)
        except KeyError as e:
            errs.append(f"config error at {where}: {e.args[0]}")
            c = None
        except DefenseSpecError as e:
            errs.append(f"config error at {where} (defense combination {name!r}): {e}")
            c = None
        if c is not None and c.privacy_module:
            # the weights are made once per privacy module from defense_defaults (rule sd_model), so a
            # combination may not change the module's shape (K, kernel, placement) on its own
            pm = c.privacy_module
            made = DefenseChain([pm], plain(s.defense_defaults)).model_options()["bottleneck_params"]
            asked = c.model_options()["bottleneck_params"]
            diff = sorted(k for k in STRUCTURAL_OPTIONS if made.get(k) != asked.get(k))
            if diff:
                errs.append(f"config error at {where}: {pm} option(s) {', '.join(diff)} differ from "
                            f"{pre}.defense_defaults.{pm} ({ {k: made.get(k) for k in diff} }); the study makes one "
                            f"weights file per privacy module from defense_defaults: set them there")
        chains[name] = c
        return c

    for name in s.defenses:
        chain(name, f"{pre}.defenses.{name}")
    image_attacks = ATTACKS.names(modality="image")       # an image study: text attacks are unknown here
    for name, entry in s.attacks.items():
        kind = entry.type
        where = f"{pre}.attacks.{name}"
        if kind not in image_attacks:
            errs.append(f"config error at {where}: unknown attack {kind!r}; known: {', '.join(image_attacks)}")
            continue
        if kind not in SD_ATTACKS:
            hint = " (use type: ig_defended for IG against a defended client)" if kind == "ig" else ""
            errs.append(f"config error at {where}: attack {kind!r} is not one of this study's attacks "
                        f"({', '.join(SD_ATTACKS)}){hint}")
            continue
        if kind in ORACLE_ATTACKS and not entry.oracle:
            errs.append(f"config error at {where}: {kind} reads the client's secrets; mark it oracle: true")
        if entry.oracle and kind not in ORACLE_ATTACKS:
            errs.append(f"config error at {where}: oracle: true gives {kind} the client's secrets, but it is not an "
                        f"oracle attack (oracle attacks: {', '.join(ORACLE_ATTACKS)})")
        base = [(f"{pre}.attack_params", plain(s.attack_params)), (f"{where}.params", plain(entry.params))]
        errs += attack_param_errors(kind, base)
        for model, over in entry.model_params.items():   # what the job on that model receives
            errs += attack_param_errors(kind, base + [(f"{where}.model_params.{model}", plain(over))])
    errs += attack_model_param_errors(s)
    datasets = config.get("datasets", {})      # the top-level datasets block (not the study's)

    def check_case(d: str, m: str, dfn: str, a: str | None, where: str) -> None:
        if d not in DATASETS:
            errs.append(f"config error at {where}: unknown dataset {d!r}; known: {', '.join(DATASETS.names())}")
        elif d not in datasets:
            errs.append(f"config error at {where}: dataset {d!r} has no entry under datasets: (add datasets.{d}.victims)")
        elif datasets[d]["victims"] < n_victims * batch:
            errs.append(f"config error at {pre}.victims: {n_victims} slots x batch {batch} need more victims than "
                        f"datasets.{d}.victims = {datasets[d]['victims']}")
        if m not in MODELS:
            errs.append(f"config error at {where}: unknown model {m!r}; known: {', '.join(MODELS.names())}")
        elif not getattr(MODELS.get(m), "supports_defenses", False):
            errs.append(f"config error at {where}: model {m!r} has no defense options; this study's models: "
                        f"{', '.join(n for n in MODELS.names() if getattr(MODELS.get(n), 'supports_defenses', False))}")
        c = chain(dfn, where)
        if a is not None and a not in s.attacks:
            errs.append(f"config error at {where}: attack {a!r} has no entry under {pre}.attacks "
                        f"({', '.join(s.attacks) or 'none'})")
        if c is not None and m in MODELS and getattr(MODELS.get(m), "supports_defenses", False) and d in DATASETS:
            err = _builds(s, d, m, c)
            if err:
                errs.append(f"config error at {where}: model {m!r} with defenses {dfn!r} on {d!r}: {err}")

    for t, table in s.tables.items():
        where = f"{pre}.tables.{t}"
        if table.kind == "attacks" and not table.attacks:
            errs.append(f"config error at {where}.attacks: a table of kind 'attacks' lists the attacks to run")
        if table.kind == "ablation" and not table.attack:
            errs.append(f"config error at {where}.attack: a table of kind 'ablation' names its attack (paper B: cdia)")
        seen = set()
        for d, m, dfn, a in table.cases():
            if (d, m, dfn, a) not in seen:
                seen.add((d, m, dfn, a))
                check_case(d, m, dfn, a, where)
    for f, figure in s.figures.items():
        where = f"{pre}.figures.{f}"
        for d, m, dfn, a in figure.cases():
            check_case(d, m, dfn, a, where)
    # the fl block (FedAvg runs) is checked by gibench.config for every study, right after this
    return list(dict.fromkeys(errs))


def attack_model_param_errors(s: Spec) -> list[str]:
    """``attack_model_params``: known models, and every attack's settings on each of them (what
    the job on that model receives: attack_params < attack_model_params < params < model_params)."""
    from ...attacks.stochastic import SD_ATTACKS, split_cfg  # deferred: the attacks import torch
    from ...models import MODELS

    pre = f"{_PRE}.attack_model_params"
    errs: list[str] = []
    for model in s.attack_model_params:
        if model not in MODELS:
            errs.append(f"config error at {pre}.{model}: unknown model {model!r}; known: {', '.join(MODELS.names())}")
            continue
        for name, entry in s.attacks.items():
            if entry.type not in SD_ATTACKS:
                continue                       # reported with the attack entry
            try:
                split_cfg(entry.type, s.attack_settings(name, model)[1])
            except ValueError as e:
                errs.append(f"config error at {pre}.{model} (attack {name}): {e}")
    return errs


def _builds(s: Spec, dataset: str, model: str, chain) -> str | None:
    """An error message if the model cannot be built with the chain's options for the
    dataset's input shape (built and run on the meta device: no memory, no compute)."""
    import torch  # deferred: DAG build imports this module without torch

    from ...models import MODELS

    ds = s.dataset_view(dataset)
    try:
        with torch.device("meta"):
            net = MODELS.get(model)(num_classes=ds.num_classes, in_shape=ds.shape, **chain.model_options())
            net.eval()
            net(torch.zeros(1, *ds.shape))
    except (ValueError, RuntimeError, TypeError) as e:
        return str(e).splitlines()[0][:200]
    except Exception:  # an op without meta support: the job will say
        return None
    return None
