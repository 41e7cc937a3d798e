"""The typed, frozen spec of ``studies.concealed_samples``: built once from the config by
:func:`spec` (cached on the study block's content), the only reader of the raw study block.
Defaults come from the schema (``config/schema/studies/concealed_samples.schema.yaml``), not
from this code: :func:`gibench.config.validate` fills them in; a block that was not validated
(the table builders accept the raw study file) gets them filled the same way here.
:func:`check` returns the study's semantic errors (run at DAG build by ``gibench.config``).

The config-derived helpers every stage shares (an attack's type and parameters per dataset, a
defense's validated steps, the proxy dataset, the victim count, the FedAvg settings) are here too,
as functions of the config, so that the jobs, the tables, ``gibench.privacy`` and ``gibench.claims``
read the same values.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from ...datasets import DATASETS
from ...schema import load_schema, study_block_with_defaults
from . import STUDY
from .layouts import TABLES, needed_blocks
from .needs import NEEDS

_PRE = f"studies.{STUDY}"


def _ro(d: Mapping | None) -> Mapping:
    """A read-only view of a (nested) mapping."""
    return MappingProxyType({k: _ro(v) if isinstance(v, Mapping) else v for k, v in (d or {}).items()})


@dataclass(frozen=True)
class Attack:
    """``attacks.<name>``: the registry type (the name when ``type`` is not given) and its
    parameters, with per-dataset overrides."""
    name: str
    type: str
    params: Mapping[str, Any]
    dataset_params: Mapping[str, Mapping[str, Any]]

    def params_for(self, dataset: str) -> dict:
        """The parameters the job on ``dataset`` receives (``dataset_params.<dataset>`` over ``params``)."""
        return {**_plain(self.params), **_plain(self.dataset_params.get(dataset, {}))}


@dataclass(frozen=True)
class Defense:
    """``defenses.<name>``: its steps (names or ``{name: ..., option: value}``, as written) and
    the dataset whose public pool DCS² starts from when it is not the attacked one."""
    name: str
    steps: tuple
    proxy_dataset: str | None


@dataclass(frozen=True)
class InputSize:
    """``inputs.<dataset>``: resize the shorter side, then centre-crop."""
    resize: int
    crop: int


@dataclass(frozen=True)
class Public:
    """``public.<dataset>``: where the public pool is drawn from (None: the victims' source/split)."""
    source: str | None
    split: str | None
    size: int


@dataclass(frozen=True)
class NonIID:
    clients: int
    alpha: float
    protected_client: int


@dataclass(frozen=True)
class Generator:
    """GGL's WGAN-GP (rule cs_generator)."""
    generator_steps: int
    batch_size: int
    n_critic: int
    lambda_gp: float
    lr: float
    dim: int


@dataclass(frozen=True)
class Lpips:
    backbone: str
    version: str
    input: str
    datasets: tuple[str, ...]


@dataclass(frozen=True)
class Evaluation:
    ssim: str
    lpips: Lpips
    ats_ground_truth: str


@dataclass(frozen=True)
class Utility:
    """``utility``: the FedAvg runs of the accuracy columns."""
    enabled: bool
    datasets: tuple[str, ...] | None          # None: every dataset in cases
    seeds: tuple[int, ...]
    clients: int
    protected_client: int
    samples_per_client: Mapping[str, int]
    holdout_fraction: float
    max_test: int | None
    rounds: int
    local_epochs: int
    batch_size: int
    lr: float
    momentum: float
    lr_gamma: float
    val_fraction: float
    report: str
    defense_overrides: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Spec:
    cases: Mapping[str, str]                  # dataset -> model
    unavailable: Mapping[str, str]
    tables: tuple[str, ...]
    victims: int
    victims_per_dataset: Mapping[str, int]
    restarts: int
    models: Mapping[str, Mapping[str, Any]]   # model -> build options
    inputs: Mapping[str, InputSize]
    model_mode: str
    public: Mapping[str, Public]
    public_size: int                          # the schema's default size of a public pool
    non_iid: NonIID
    defenses: Mapping[str, Defense]
    defense_params: Mapping[str, Mapping[str, Mapping[str, Any]]]   # dataset -> step -> options
    attacks: Mapping[str, Attack]
    generator: Generator
    evaluation: Evaluation
    privacy: Mapping[str, Any] | None
    utility: Utility | None
    #: the validated block as written (read-only): rule params that record a config block
    #: verbatim (so that partial re-runs compare exactly what main compared) read it via :meth:`recorded`
    raw: Mapping[str, Any]

    def recorded(self, key: str) -> Any:
        """The validated ``studies.concealed_samples.<key>`` as written (None if absent), for rule
        params and provenance records that keep the block verbatim."""
        v = self.raw.get(key)
        return _plain(v)

    def n_victims(self, dataset: str) -> int:
        return int(self.victims_per_dataset.get(dataset, self.victims))

    def model_options(self, model: str) -> dict:
        return _plain(self.models.get(model, {}))

    def public_for(self, dataset: str) -> Public:
        return self.public.get(dataset) or Public(source=None, split=None, size=self.public_size)

    @property
    def utility_on(self) -> bool:
        return self.utility is not None and self.utility.enabled

    def utility_datasets(self) -> tuple[str, ...]:
        u = self.utility
        return tuple(self.cases) if u is None or u.datasets is None else u.datasets


def _plain(v: Any) -> Any:
    """A read-only mapping back as plain dicts/lists (for params and records)."""
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


@functools.cache
def _study_schema() -> dict:
    """The study's schema, with the root's ``$defs`` its references point to."""
    root = load_schema()
    return {**root["properties"]["studies"]["properties"][STUDY], "$defs": root.get("$defs", {})}


def _schema_default_public_size() -> int:
    """The schema's default ``public.<dataset>.size`` (the size of a pool no ``public`` entry names)."""
    return int(_study_schema()["properties"]["public"]["additionalProperties"]["properties"]["size"]["default"])


def _with_schema_defaults(block: Mapping[str, Any]) -> dict:
    """A copy of the block with the schema's defaults filled in (:func:`gibench.schema.study_block_with_defaults`)."""
    return study_block_with_defaults(STUDY, block)


def _build(c: Mapping[str, Any]) -> Spec:
    """The spec of a validated study block (every default already filled by the schema)."""
    def steps_of(d: Any) -> tuple[tuple, str | None]:
        if isinstance(d, Mapping):
            return tuple(d["steps"]), d.get("proxy_dataset")
        return tuple(d), None

    defenses = {}
    for name, d in c["defenses"].items():
        st, pd = steps_of(d)
        defenses[name] = Defense(name, tuple(_ro(s) if isinstance(s, Mapping) else s for s in st), pd)
    attacks = {name: Attack(name, e.get("type", name), _ro(e["params"]), _ro(e["dataset_params"]))
               for name, e in c["attacks"].items()}
    ev, lp = c["evaluation"], c["evaluation"]["lpips"]
    u = c.get("utility")
    utility = None if u is None else Utility(
        enabled=bool(u["enabled"]), datasets=None if u.get("datasets") is None else tuple(u["datasets"]),
        seeds=tuple(u["seeds"]), clients=u["clients"], protected_client=u["protected_client"],
        samples_per_client=_ro(u["samples_per_client"]), holdout_fraction=u["holdout_fraction"],
        max_test=u["max_test"], rounds=u["rounds"], local_epochs=u["local_epochs"], batch_size=u["batch_size"],
        lr=u["lr"], momentum=u["momentum"], lr_gamma=u["lr_gamma"], val_fraction=u["val_fraction"],
        report=u["report"], defense_overrides=_ro(u["defense_overrides"]))
    g, nid = c["generator"], c["non_iid"]
    return Spec(
        cases=_ro(c["cases"]), unavailable=_ro(c["unavailable"]), tables=tuple(c["tables"]), victims=c["victims"],
        victims_per_dataset=_ro(c["victims_per_dataset"]), restarts=c["restarts"], models=_ro(c["models"]),
        inputs=MappingProxyType({d: InputSize(int(v["resize"]), int(v["crop"])) for d, v in c["inputs"].items()}),
        model_mode=c["model_mode"],
        public=MappingProxyType({d: Public(v.get("source"), v.get("split"), v["size"]) for d, v in c["public"].items()}),
        public_size=_schema_default_public_size(),
        non_iid=NonIID(nid["clients"], nid["alpha"], nid["protected_client"]),
        defenses=MappingProxyType(defenses), defense_params=_ro(c["defense_params"]),
        attacks=MappingProxyType(attacks),
        generator=Generator(g["generator_steps"], g["batch_size"], g["n_critic"], g["lambda_gp"], g["lr"], g["dim"]),
        evaluation=Evaluation(ev["ssim"], Lpips(lp["backbone"], lp["version"], lp["input"], tuple(lp["datasets"])),
                              ev["ats_ground_truth"]),
        privacy=None if c.get("privacy") is None else _ro(c["privacy"]), utility=utility, raw=_ro(c))


_CACHE: dict[str, Spec] = {}


def spec(config: Mapping[str, Any]) -> Spec:
    """The spec of the config's ``studies.concealed_samples`` (built once per block content)."""
    c = config["studies"][STUDY]
    key = hashlib.sha1(json.dumps(c, sort_keys=True, default=repr).encode()).hexdigest()
    s = _CACHE.get(key)
    if s is None:
        s = _CACHE[key] = _build(_with_schema_defaults(c))
    return s


def enabled(config: Mapping[str, Any]) -> bool:
    return STUDY in config.get("studies", {})


def paper_values_digest() -> str | None:
    """Content hash of the study's paper-values file (part of the table rule's params)."""
    from ...paper_values import digest

    return digest(STUDY)


# ====================================================================== derived settings

def attack_type(config: Mapping[str, Any], attack: str) -> str:
    return spec(config).attacks[attack].type


def attack_params(config: Mapping[str, Any], attack: str, dataset: str) -> dict:
    return spec(config).attacks[attack].params_for(dataset)


def n_victims(config: Mapping[str, Any], dataset: str) -> int:
    return spec(config).n_victims(dataset)


def defense_entry(config: Mapping[str, Any], defense: str) -> tuple[list, str | None]:
    """(steps, proxy dataset or None) of a configured defense name."""
    s = spec(config)
    d = s.defenses.get(defense)
    if d is None:
        if defense == "none":
            return [], None
        raise KeyError(f"studies.{STUDY}.defenses has no entry {defense!r} (known: {', '.join(sorted(s.defenses))})")
    return list(d.steps), d.proxy_dataset


def defense_steps(config: Mapping[str, Any], defense: str, dataset: str, overrides: Mapping | None = None):
    """Validated steps with the dataset's defaults (``defense_params.<dataset>``) under each
    step's own options (and ``overrides`` -- FedAvg-only options -- over both)."""
    from ...defenses.concealed import parse_steps   # deferred: gibench.defenses imports torch

    steps, _ = defense_entry(config, defense)
    dflt = spec(config).defense_params.get(dataset, {})
    merged = []
    for s in steps:
        name, opts = (s, {}) if isinstance(s, str) else (s["name"], {k: v for k, v in s.items() if k != "name"})
        merged.append({"name": name, **_plain(dflt.get(name, {})), **_plain(opts),
                       **_plain((overrides or {}).get(name, {}))})
    return parse_steps(merged, where=f"studies.{STUDY}.defenses.{defense}")


def proxy_dataset(config: Mapping[str, Any], defense: str, dataset: str) -> str | None:
    """The dataset whose public pool DCS² starts from (None when no step needs proxies)."""
    from ...defenses.concealed import DCS2   # deferred: gibench.defenses imports torch

    steps = defense_steps(config, defense, dataset)
    if not any(isinstance(s, DCS2) and s.needs_proxy for s in steps):
        return None
    return defense_entry(config, defense)[1] or dataset


def input_size(config: Mapping[str, Any], dataset: str) -> tuple[tuple[int, int, int], int | None]:
    """(the (C, H, W) the study's model takes for ``dataset``, the resize of the shorter side or
    None): ``inputs.<dataset>`` when the study is configured and sets one, else the dataset's own size."""
    ds = DATASETS.get(dataset)
    size = spec(config).inputs.get(dataset) if enabled(config) else None
    if size is not None:
        return (ds.shape[0], size.crop, size.crop), size.resize
    return tuple(ds.shape), None


def fl_settings(config: Mapping[str, Any], dataset: str, cohort: str) -> dict:
    """The FedAvg settings (``gibench.fl``) of a run of ``utility`` on ``dataset``'s ``cohort``."""
    s = spec(config)
    u = s.utility
    part = ({"type": "iid"} if cohort == "iid" else
            {"type": "dirichlet", "alpha": float(s.non_iid.alpha), "min_samples": 2})
    return {
        "clients": int(u.clients), "partition": part, "samples_per_client": u.samples_per_client.get(dataset),
        "val_fraction": float(u.val_fraction), "rounds": int(u.rounds), "local_epochs": int(u.local_epochs),
        "batch_size": int(u.batch_size), "optimizer": {"type": "sgd", "lr": float(u.lr), "momentum": float(u.momentum)},
        "lr_schedule": {"type": "exponential", "gamma": float(u.lr_gamma)},
        "early_stopping": {"patience": None}, "protected_clients": [int(u.protected_client)],
        "defended_clients": [int(u.protected_client)],
    }


# ====================================================================== checks (DAG build)

def _shape_or_none(config: Mapping[str, Any], dataset: str) -> tuple[int, int]:
    try:
        return tuple(input_size(config, dataset)[0][1:])
    except Exception:  # noqa: BLE001 - unknown dataset: reported elsewhere
        return (0, 0)


def check(config: Mapping[str, Any]) -> list[str]:
    """The study's semantic errors (each names the key), after schema validation."""
    from ...attacks import ATTACKS             # deferred: the attack modules import torch
    from ...defenses import CONCEALED, DEFENSES
    from ...defenses.concealed import CSDefenseError
    from ...models import MODELS               # deferred: the model registry imports torch (the builders)
    from ...params import attack_param_errors

    s = spec(config)
    pre = _PRE
    errs: list[str] = []
    CS_DEFENSES = DEFENSES.of(CONCEALED)      # this study's family of the one defense namespace
    for d, m in s.cases.items():
        if d not in DATASETS:
            errs.append(f"config error at {pre}.cases.{d}: unknown dataset {d!r}; known: {', '.join(DATASETS.names())}")
            continue
        if d not in config["datasets"]:
            errs.append(f"config error at {pre}.cases.{d}: {d!r} has no entry under datasets: (add datasets.{d}.victims)")
        elif config["datasets"][d]["victims"] < s.n_victims(d):
            errs.append(f"config error at {pre}.victims: {s.n_victims(d)} victims of {d} need datasets.{d}.victims "
                        f">= {s.n_victims(d)} (it is {config['datasets'][d]['victims']})")
        if m not in MODELS:
            errs.append(f"config error at {pre}.cases.{d}: unknown model {m!r}; known: {', '.join(MODELS.names())}")
    image_attacks = ATTACKS.names(modality="image")
    ours = ATTACKS.names(modality="image", study=STUDY)
    for name, a in s.attacks.items():
        kind = a.type
        if kind not in image_attacks:
            errs.append(f"config error at {pre}.attacks.{name}: unknown attack {kind!r}; known: {', '.join(image_attacks)}")
        elif kind not in ours:
            errs.append(f"config error at {pre}.attacks.{name}: attack type {kind!r} is not one of this study's "
                        f"({', '.join(ours)})")
        elif set(ATTACKS.entry(kind).needs) - set(NEEDS):
            missing = sorted(set(ATTACKS.entry(kind).needs) - set(NEEDS))
            errs.append(f"config error at {pre}.attacks.{name}: attack {kind!r} needs {', '.join(missing)}, which "
                        f"this study cannot provide (it provides {', '.join(NEEDS)})")
        else:
            base = [(f"{pre}.attacks.{name}.params", _plain(a.params))]
            errs += attack_param_errors(kind, base)
            for d, over in a.dataset_params.items():   # what the job on dataset d receives
                errs += attack_param_errors(kind, base + [(f"{pre}.attacks.{name}.dataset_params.{d}", _plain(over))])
    bad_params = False
    for d, per_step in s.defense_params.items():
        for step, opts in per_step.items():
            if step not in CS_DEFENSES:
                errs.append(f"config error at {pre}.defense_params.{d}.{step}: unknown defense step {step!r}; "
                            f"known: {', '.join(CS_DEFENSES.names())}")
                continue
            try:        # each dataset's defaults on their own, at their own key
                CS_DEFENSES.get(step).build(_plain(opts))
            except (CSDefenseError, TypeError, ValueError) as e:
                errs.append(f"config error at {pre}.defense_params.{d}.{step}: {e}")
                bad_params = True
    over = s.utility.defense_overrides if s.utility is not None else {}
    for step, opts in over.items():      # FedAvg-only options over each dataset's defaults
        if step not in CS_DEFENSES:
            errs.append(f"config error at {pre}.utility.defense_overrides.{step}: unknown defense step {step!r}; "
                        f"known: {', '.join(CS_DEFENSES.names())}")
            continue
        for d in s.cases:
            try:
                CS_DEFENSES.get(step).build({**_plain(s.defense_params.get(d, {}).get(step, {})), **_plain(opts)})
            except (CSDefenseError, TypeError, ValueError) as e:
                errs.append(f"config error at {pre}.utility.defense_overrides.{step} (dataset {d}): {e}")
                bad_params = True
    if bad_params:            # every defense list built from them would repeat the same complaint
        return list(dict.fromkeys(errs))
    for name, dfn in s.defenses.items():
        for d in s.cases:
            try:
                defense_steps(config, name, d)
            except (CSDefenseError, KeyError) as e:
                errs.append(f"config error at {pre}.defenses.{name} (dataset {d}): {e}")
                continue
        pd = dfn.proxy_dataset
        if pd is not None and pd not in config["datasets"]:
            errs.append(f"config error at {pre}.defenses.{name}.proxy_dataset: {pd!r} has no entry under datasets:")
    for t in s.tables:
        for blk in TABLES[t].blocks:
            if blk.dataset not in s.cases:
                continue
            for dfn in blk.defenses:
                if dfn != "none" and dfn not in s.defenses:
                    errs.append(f"config error at {pre}.defenses: {t} needs defense {dfn!r} (add it, or drop {t} from tables)")
            if blk.attack not in s.attacks:
                errs.append(f"config error at {pre}.attacks: {t} needs attack {blk.attack!r} (add it, or drop {t} from tables)")
    for (d, _m, attack, _cohort, _defense) in needed_blocks(config):
        if attack in s.attacks and s.attacks[attack].type == "ggl" and _shape_or_none(config, d) != (32, 32):
            errs.append(f"config error at {pre}.cases.{d}: GGL's generator makes 32x32 images; {d} is "
                        f"{_shape_or_none(config, d)}")
    u = s.utility
    if u is not None and u.enabled:
        for d in s.utility_datasets():
            if d not in s.cases:
                errs.append(f"config error at {pre}.utility.datasets: {d!r} is not in cases")
        if u.protected_client >= u.clients:
            errs.append(f"config error at {pre}.utility.protected_client: {u.protected_client} >= clients {u.clients}")
    if s.non_iid.protected_client >= s.non_iid.clients:
        errs.append(f"config error at {pre}.non_iid.protected_client: must be < non_iid.clients")
    return errs
