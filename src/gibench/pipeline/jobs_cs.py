"""The concealed-samples study (DCS², Wu et al. AAAI 2024) in the pipeline: config checks,
targets and the job functions of ``rules/concealed_samples.smk``.

Data flow (one rule per arrow; ``{server}`` is ``honest`` or ``imprint``, ``{cohort}`` is
``iid`` or ``noniid``)::

    victims (rule data) ─┬─ cs_public ─┬─ cs_class_means ─────────────┐  (adaptive attack's prior)
                         │             ├─ cs_generator ───────────────┤  (GGL's prior)
                         │             └──────────┐                   │
    init weights (rule model) ─ cs_server_model ──┼─ cs_gradient ── cs_attack ── cs_metrics ── cs_gather
                                                  │  (shared update,   (GPU job)          │
                                                  │   knowledge,                          │
                                                  │   client secrets)       cs_fl (FedAvg accuracies)
                                                  │                                      │
                                                  └──────────────── cs_table / cs_figure ┘

Attacker boundary (DESIGN.md): ``cs_attack`` reads the model the server sent (initial
weights, or its own imprinted model plus the secrets of its block), the shared update,
the knowledge file (labels, batch size, input shape) and public priors; the client's
secrets (the sensitive image it trained on, concealed samples) reach only ``cs_metrics``
and the figure.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import torch
from torch.nn import functional as F

from .. import io
from ..wildcards import fmt_slot, parse_slot
from ..datasets import DATASETS
from ..models import MODELS, build_model, count_parameters
from ..provenance import make_record
from ..seeds import derive_seed
from .runner import say

STUDY = "concealed_samples"
R = "results"
CS_PUBLIC = R + "/data/{dataset}/cs_public.parquet"
CS_MEANS = R + "/cs/priors/{dataset}/class_means.safetensors"
CS_GEN = R + "/cs/priors/{dataset}/generator.safetensors"
CS_GEN_LOG = R + "/cs/priors/{dataset}/generator_log.parquet"
CS_INIT = R + "/models/" + STUDY + "/{dataset}/{model}/init.safetensors"      # rule model
CS_SERVER = R + "/models/" + STUDY + "/{dataset}/{model}/server_{server}.safetensors"
CS_SERVER_INFO = R + "/models/" + STUDY + "/{dataset}/{model}/server_{server}.json"
_CASE = "{dataset}/{model}/{server}/{cohort}/{defense}"
CS_GRAD = R + "/gradients/" + STUDY + "/" + _CASE + "/{slot}.safetensors"
CS_KNOW = R + "/gradients/" + STUDY + "/" + _CASE + "/{slot}.knowledge.json"
CS_SECRETS = R + "/gradients/" + STUDY + "/" + _CASE + "/{slot}.secrets.safetensors"
CS_ATTACK = R + "/attacks/" + STUDY + "/" + _CASE + "/{slot}/{attack}/rep{rep}.safetensors"
CS_TRACE = R + "/attacks/" + STUDY + "/" + _CASE + "/{slot}/{attack}/rep{rep}.trace.parquet"
CS_METRICS = R + "/metrics/" + STUDY + "/" + _CASE + "/{attack}.parquet"
CS_ALL = R + "/metrics/" + STUDY + "/cs_metrics.parquet"
CS_FL_DIR = R + "/fl/" + STUDY + "/{dataset}/{model}/{cohort}/{defense}/seed{seed}"
CS_FL_ACC = CS_FL_DIR + "/accuracy.json"
CS_FL_CURVE = CS_FL_DIR + "/curve.parquet"
CS_FL_ALL = R + "/fl/" + STUDY + "/cs_accuracy.parquet"
CS_TABLE = R + "/tables/" + STUDY + "/{table}.{ext}"
CS_FIGURE = R + "/figures/" + STUDY + "/{figure}.{ext}"
SERVERS = ("honest", "imprint")
COHORTS = ("iid", "noniid")


# ====================================================================== what an attack needs

# An attack declares the extra artifacts its job must be given (``ATTACKS.entry(kind).needs``);
# this study maps each need to the server model it implies, the job's input (name -> path) and
# the keyword the job passes to the attack (loaded from that input).  An attack with a need this
# study cannot provide is a config error at DAG build (:func:`check_cs`).

def _class_means(inp: Any, device: torch.device) -> torch.Tensor:
    t, _ = io.load_tensors(inp.class_means)
    return t["class_means"]


def _server_secrets(inp: Any, device: torch.device) -> dict:
    return json.loads(Path(inp.server).read_text())["secrets"]


#: need -> the server model (wildcard ``server``) an attack with that need is run against
SERVER_OF_NEED = {"imprinted_server": "imprint"}
#: need -> (input name, path function of the attack job's wildcards)
NEED_INPUTS: dict[str, tuple[str, Callable[[Any], str]]] = {
    # the public data's class-average images (rule cs_class_means): the adaptive attack's start
    "class_means": ("class_means", lambda wc: CS_MEANS.format(dataset=wc.dataset)),
    # the WGAN-GP generator trained on public data (rule cs_generator): GGL's prior
    "generator": ("generator", lambda wc: CS_GEN.format(dataset=wc.dataset)),
    # the malicious server's own record of its imprint block (rule cs_server)
    "imprinted_server": ("server", lambda wc: CS_SERVER_INFO.format(dataset=wc.dataset, model=wc.model,
                                                                     server=wc.server)),
}
#: need -> (the attack's keyword, loader of the job's input: f(smk.input, device))
NEED_ARGS: dict[str, tuple[str, Callable[[Any, torch.device], Any]]] = {
    "class_means": ("class_means", _class_means),
    "generator": ("generator", lambda inp, device: load_generator(inp.generator, device)),
    "imprinted_server": ("server", _server_secrets),
}


def attack_needs(config: dict, attack: str) -> tuple[str, ...]:
    """The needs the registry entry of a configured attack declares."""
    from ..attacks import ATTACKS

    return ATTACKS.entry(attack_type(config, attack)).needs


# ====================================================================== config access

def cs(config: dict) -> dict:
    return config["studies"][STUDY]


def paper_values_digest() -> str | None:
    """Content hash of the study's paper-values file (part of the table rule's params)."""
    from ..paper_values import digest

    return digest(STUDY)


def enabled(config: dict) -> bool:
    return STUDY in config.get("studies", {})


def attack_type(config: dict, attack: str) -> str:
    return cs(config)["attacks"][attack].get("type", attack)


def attack_params(config: dict, attack: str, dataset: str) -> dict:
    e = cs(config)["attacks"][attack]
    return {**dict(e.get("params", {})), **dict(e.get("dataset_params", {}).get(dataset, {}))}


def server_of(config: dict, attack: str) -> str:
    """The server model an attack runs against: the one a need of it implies, else the honest one."""
    servers = [SERVER_OF_NEED[n] for n in attack_needs(config, attack) if n in SERVER_OF_NEED]
    return servers[0] if servers else "honest"


def defense_entry(config: dict, defense: str) -> tuple[list, str | None]:
    """(steps, proxy dataset or None) of a configured defense name."""
    d = cs(config)["defenses"].get(defense)
    if d is None:
        if defense == "none":
            return [], None
        raise KeyError(f"studies.{STUDY}.defenses has no entry {defense!r} (known: {', '.join(sorted(cs(config)['defenses']))})")
    if isinstance(d, dict):
        return list(d.get("steps", [])), d.get("proxy_dataset")
    return list(d), None


def defense_steps(config: dict, defense: str, dataset: str, overrides: dict | None = None):
    """Validated steps with the dataset's defaults (``defense_params.<dataset>``) under each
    step's own options (and ``overrides`` -- FedAvg-only options -- over both)."""
    from ..defenses.concealed import parse_steps

    steps, _ = defense_entry(config, defense)
    dflt = cs(config).get("defense_params", {}).get(dataset, {})
    merged = []
    for s in steps:
        name, opts = (s, {}) if isinstance(s, str) else (s["name"], {k: v for k, v in s.items() if k != "name"})
        merged.append({"name": name, **dict(dflt.get(name, {})), **opts, **dict((overrides or {}).get(name, {}))})
    return parse_steps(merged, where=f"studies.{STUDY}.defenses.{defense}")


def proxy_dataset(config: dict, defense: str, dataset: str) -> str | None:
    """The dataset whose public pool DCS² starts from (None when no step needs proxies)."""
    from ..defenses.concealed import DCS2

    steps = defense_steps(config, defense, dataset)
    if not any(isinstance(s, DCS2) and s.needs_proxy for s in steps):
        return None
    return defense_entry(config, defense)[1] or dataset


def n_victims(config: dict, dataset: str) -> int:
    c = cs(config)
    return int(c.get("victims_per_dataset", {}).get(dataset, c["victims"]))


# ====================================================================== inputs of a dataset

@dataclasses.dataclass
class Prep:
    """How this study feeds a dataset to its model (the dataset's normalisation; optional
    resize of the shorter side + centre crop, DCS-2's TinyImageNet 256/224)."""
    ds: Any
    shape: tuple[int, int, int]
    resize: int | None = None

    @property
    def name(self) -> str:
        return self.ds.name

    @property
    def num_classes(self) -> int:
        return self.ds.num_classes

    @property
    def mean(self):
        return self.ds.mean

    @property
    def std(self):
        return self.ds.std

    def mean_t(self) -> torch.Tensor:
        return torch.tensor(self.ds.mean, dtype=torch.float32).view(1, -1, 1, 1).expand(1, self.shape[0], 1, 1)

    def std_t(self) -> torch.Tensor:
        return torch.tensor(self.ds.std, dtype=torch.float32).view(1, -1, 1, 1).expand(1, self.shape[0], 1, 1)

    def to_pixels01(self, images_u8: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(images_u8), dtype=torch.float32).div(255.0).permute(0, 3, 1, 2)
        c = self.shape[0]
        if x.shape[1] == 1 and c == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != c:
            raise ValueError(f"{self.name}: images have {x.shape[1]} channels, the model takes {c}")
        h, w = x.shape[2:]
        if self.resize is not None:
            s = self.resize / min(h, w)
            x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", align_corners=False,
                              antialias=True)
            top = (x.shape[2] - self.shape[1]) // 2
            left = (x.shape[3] - self.shape[2]) // 2
            x = x[:, :, top:top + self.shape[1], left:left + self.shape[2]]
        elif (h, w) != tuple(self.shape[1:]):
            x = F.interpolate(x, size=self.shape[1:], mode="bilinear", align_corners=False, antialias=True)
        return x.contiguous()

    def from_pixels(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean_t().to(x01)) / self.std_t().to(x01)

    def normalize(self, images_u8: np.ndarray) -> torch.Tensor:
        return self.from_pixels(self.to_pixels01(images_u8))

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std_t().to(x) + self.mean_t().to(x)


def prep_for(config: dict, dataset: str) -> Prep:
    ds = DATASETS.get(dataset)
    spec = (cs(config).get("inputs") or {}).get(dataset) if enabled(config) else None
    if spec:
        return Prep(ds, (ds.shape[0], int(spec["crop"]), int(spec["crop"])), int(spec["resize"]))
    return Prep(ds, tuple(ds.shape))


def build_cs_model(config: dict, dataset: str, model: str, weights: str | Path | None, device) -> torch.nn.Module:
    """The study's model (options from ``models``) with the rule ``model``'s initial weights."""
    prep = prep_for(config, dataset)
    seed = derive_seed(config["seed"], "model", study=STUDY, dataset=dataset, model=model)
    net = build_model(model, prep.num_classes, prep.shape, seed, **dict(cs(config).get("models", {}).get(model, {})))
    if weights is not None:
        state, _ = io.load_tensors(weights)
        net.load_state_dict(state, strict=True)
    return net.to(device)


def load_server_model(config: dict, dataset: str, model: str, server: str, weights: str, device) -> torch.nn.Module:
    """The model the server sends: the initial model (honest) or its imprinted model."""
    if server == "honest":
        return build_cs_model(config, dataset, model, weights, device)
    from ..attacks.imprint import ImprintedModel

    state, rec = io.load_tensors(weights)
    base = build_cs_model(config, dataset, model, None, "cpu")
    b = rec["server"]
    net = ImprintedModel(base, prep_for(config, dataset).shape, bins=b["bins"], gain=b["gain"], mode=b["mode"])
    net.load_state_dict(state, strict=True)
    return net.to(device)


# ====================================================================== checks (DAG build)

TABLE_DATASETS = {
    "table1": ["mnist", "cifar10"], "table2": ["celeba", "tiny_imagenet"], "table3": ["tiny_imagenet"],
    "table4": ["mnist"], "table5": ["mnist"], "table6": ["celeba"], "table7": ["mnist"], "table9": ["cifar10"],
    "table10": ["mnist"], "table11": ["mnist"], "fig2": ["mnist", "cifar10", "celeba", "tiny_imagenet"],
}


def check_cs(config: dict, c: dict) -> list[str]:
    from ..attacks import ATTACKS
    from ..defenses import CONCEALED, DEFENSES
    from ..defenses.concealed import CSDefenseError
    from ..params import attack_param_errors
    from ..tables.concealed_samples import TABLES, needed_blocks

    pre = f"studies.{STUDY}"
    errs: list[str] = []
    CS_DEFENSES = DEFENSES.of(CONCEALED)      # this study's family of the one defense namespace
    for d, m in c["cases"].items():
        if d not in DATASETS:
            errs.append(f"config error at {pre}.cases.{d}: unknown dataset {d!r}; known: {', '.join(DATASETS.names())}")
            continue
        if d not in config["datasets"]:
            errs.append(f"config error at {pre}.cases.{d}: {d!r} has no entry under datasets: (add datasets.{d}.victims)")
        elif config["datasets"][d]["victims"] < n_victims(config, d):
            errs.append(f"config error at {pre}.victims: {n_victims(config, d)} victims of {d} need datasets.{d}.victims "
                        f">= {n_victims(config, d)} (it is {config['datasets'][d]['victims']})")
        if m not in MODELS:
            errs.append(f"config error at {pre}.cases.{d}: unknown model {m!r}; known: {', '.join(MODELS.names())}")
    image_attacks = ATTACKS.names(modality="image")
    ours = ATTACKS.names(modality="image", study=STUDY)
    for name, entry in c["attacks"].items():
        kind = entry.get("type", name)
        if kind not in image_attacks:
            errs.append(f"config error at {pre}.attacks.{name}: unknown attack {kind!r}; known: {', '.join(image_attacks)}")
        elif kind not in ours:
            errs.append(f"config error at {pre}.attacks.{name}: attack type {kind!r} is not one of this study's "
                        f"({', '.join(ours)})")
        elif set(ATTACKS.entry(kind).needs) - set(NEED_INPUTS):
            missing = sorted(set(ATTACKS.entry(kind).needs) - set(NEED_INPUTS))
            errs.append(f"config error at {pre}.attacks.{name}: attack {kind!r} needs {', '.join(missing)}, which "
                        f"this study cannot provide (it provides {', '.join(NEED_INPUTS)})")
        else:
            base = [(f"{pre}.attacks.{name}.params", entry.get("params") or {})]
            errs += attack_param_errors(kind, base)
            for d, over in (entry.get("dataset_params") or {}).items():   # what the job on dataset d receives
                errs += attack_param_errors(kind, base + [(f"{pre}.attacks.{name}.dataset_params.{d}", over)])
    bad_params = False
    for d in c.get("defense_params", {}):
        for step in c["defense_params"][d]:
            if step not in CS_DEFENSES:
                errs.append(f"config error at {pre}.defense_params.{d}.{step}: unknown defense step {step!r}; "
                            f"known: {', '.join(CS_DEFENSES.names())}")
                continue
            try:        # each dataset's defaults on their own, at their own key
                CS_DEFENSES.get(step).build(c["defense_params"][d][step])
            except (CSDefenseError, TypeError, ValueError) as e:
                errs.append(f"config error at {pre}.defense_params.{d}.{step}: {e}")
                bad_params = True
    over = ((c.get("utility") or {}).get("defense_overrides") or {})
    for step, opts in over.items():      # FedAvg-only options over each dataset's defaults
        if step not in CS_DEFENSES:
            errs.append(f"config error at {pre}.utility.defense_overrides.{step}: unknown defense step {step!r}; "
                        f"known: {', '.join(CS_DEFENSES.names())}")
            continue
        for d in c["cases"]:
            try:
                CS_DEFENSES.get(step).build({**dict(c.get("defense_params", {}).get(d, {}).get(step, {})), **dict(opts)})
            except (CSDefenseError, TypeError, ValueError) as e:
                errs.append(f"config error at {pre}.utility.defense_overrides.{step} (dataset {d}): {e}")
                bad_params = True
    if bad_params:            # every defense list built from them would repeat the same complaint
        return list(dict.fromkeys(errs))
    for name in c["defenses"]:
        for d in c["cases"]:
            try:
                defense_steps(config, name, d)
            except (CSDefenseError, KeyError) as e:
                errs.append(f"config error at {pre}.defenses.{name} (dataset {d}): {e}")
                continue
        pd = defense_entry(config, name)[1]
        if pd is not None and pd not in config["datasets"]:
            errs.append(f"config error at {pre}.defenses.{name}.proxy_dataset: {pd!r} has no entry under datasets:")
    for t in c["tables"]:
        for blk in TABLES[t].blocks:
            if blk.dataset not in c["cases"]:
                continue
            for dfn in blk.defenses:
                if dfn != "none" and dfn not in c["defenses"]:
                    errs.append(f"config error at {pre}.defenses: {t} needs defense {dfn!r} (add it, or drop {t} from tables)")
            if blk.attack not in c["attacks"]:
                errs.append(f"config error at {pre}.attacks: {t} needs attack {blk.attack!r} (add it, or drop {t} from tables)")
    for (d, _m, attack, _cohort, _defense) in needed_blocks(config):
        if attack in c["attacks"] and attack_type(config, attack) == "ggl" and prep_ok(config, d) != (32, 32):
            errs.append(f"config error at {pre}.cases.{d}: GGL's generator makes 32x32 images; {d} is {prep_ok(config, d)}")
    u = c.get("utility")
    if u and u.get("enabled", True):
        for d in u.get("datasets", list(c["cases"])):
            if d not in c["cases"]:
                errs.append(f"config error at {pre}.utility.datasets: {d!r} is not in cases")
        if u["protected_client"] >= u["clients"]:
            errs.append(f"config error at {pre}.utility.protected_client: {u['protected_client']} >= clients {u['clients']}")
    nid = c.get("non_iid", {})
    if nid.get("protected_client", 5) >= nid.get("clients", 10):
        errs.append(f"config error at {pre}.non_iid.protected_client: must be < non_iid.clients")
    return errs


def prep_ok(config: dict, dataset: str) -> tuple[int, int]:
    try:
        return tuple(prep_for(config, dataset).shape[1:])
    except Exception:  # noqa: BLE001 - unknown dataset: reported elsewhere
        return (0, 0)


# ====================================================================== targets

def cases(config: dict) -> Iterator[tuple[str, str, str, str, str]]:
    """(dataset, model, attack, cohort, defense) the requested tables need (config order)."""
    from ..tables.concealed_samples import needed_blocks

    yield from needed_blocks(config)


def attack_files(config: dict, dataset: str, model: str, attack: str, cohort: str, defense: str,
                 pattern: str = CS_ATTACK) -> list[str]:
    server = server_of(config, attack)
    return [pattern.format(dataset=dataset, model=model, server=server, cohort=cohort, defense=defense,
                           slot=fmt_slot(s), attack=attack, rep=r)
            for s in range(n_victims(config, dataset)) for r in range(int(cs(config).get("restarts", 1)))]


def secrets_files(config: dict, dataset: str, model: str, attack: str, cohort: str, defense: str) -> list[str]:
    server = server_of(config, attack)
    return [CS_SECRETS.format(dataset=dataset, model=model, server=server, cohort=cohort, defense=defense,
                              slot=fmt_slot(s)) for s in range(n_victims(config, dataset))]


def metric_files(config: dict) -> list[str]:
    out = []
    for d, m, a, coh, dfn in cases(config):
        out.append(CS_METRICS.format(dataset=d, model=m, server=server_of(config, a), cohort=coh, defense=dfn, attack=a))
    return sorted(dict.fromkeys(out))


def utility_on(config: dict) -> bool:
    u = cs(config).get("utility")
    return bool(u) and bool(u.get("enabled", True))


def fl_runs(config: dict) -> list[tuple[str, str, str, str, int]]:
    """(dataset, model, cohort, defense, seed) of the FedAvg runs the tables' accuracy columns need."""
    if not utility_on(config):
        return []
    u = cs(config)["utility"]
    ds = set(u.get("datasets", list(cs(config)["cases"])))
    seen = []
    for d, m, _a, coh, dfn in cases(config):
        if d in ds:
            for s in u.get("seeds", [0]):
                key = (d, m, coh, dfn, int(s))
                if key not in seen:
                    seen.append(key)
    return seen


def fl_files(config: dict) -> list[str]:
    return [CS_FL_ACC.format(dataset=d, model=m, cohort=coh, defense=dfn, seed=s) for d, m, coh, dfn, s in fl_runs(config)]


def table_inputs(config: dict, table: str) -> dict:
    out = {"metrics": CS_ALL}
    if utility_on(config):
        out["accuracy"] = CS_FL_ALL
    return out


def figure_inputs(config: dict, figure: str) -> dict:
    from ..tables.concealed_samples import grid_cells

    recons, secrets = [], []
    for d, m, a, coh, dfn in grid_cells(config):
        server = server_of(config, a)
        wc = dict(dataset=d, model=m, server=server, cohort=coh, defense=dfn, slot=fmt_slot(0), attack=a)
        recons.append(CS_ATTACK.format(rep=0, **wc))
        secrets.append(CS_SECRETS.format(**wc))
    return {"recons": recons, "secrets": sorted(dict.fromkeys(secrets)), "metrics": CS_ALL}


def cs_targets(config: dict) -> list[str]:
    """The tables and the figure the study's `tables:` list names (registry entries: gibench.tables)."""
    from .targets import registered_outputs

    return registered_outputs(config, STUDY)


# ====================================================================== jobs: data and priors

def victim_rows(config: dict, dataset: str, cohort: str, victims_path: str) -> list[int]:
    """Rows of the victim pool that are this cohort's sensitive images, slot order."""
    n = n_victims(config, dataset)
    if cohort == "iid":
        return list(range(n))
    if cohort != "noniid":
        raise ValueError(f"unknown cohort {cohort!r} (iid | noniid)")
    from ..fl import partition_dirichlet

    table, _ = io.load_table(victims_path)
    labels = np.asarray(table.column("label").to_pylist())
    nid = {"clients": 10, "alpha": 0.5, "protected_client": 5, **cs(config).get("non_iid", {})}
    rng = np.random.default_rng(derive_seed(config["seed"], "cs_noniid", dataset=dataset))
    parts = partition_dirichlet(labels, int(nid["clients"]), float(nid["alpha"]), rng, min_samples=1)
    rows = [int(i) for i in parts[int(nid["protected_client"])]]
    if len(rows) < n:
        raise ValueError(f"non-IID cohort of {dataset}: client {nid['protected_client']} holds {len(rows)} of the "
                         f"{len(labels)} pooled victims, fewer than the {n} asked for; raise datasets.{dataset}.victims")
    return rows[:n]


def read_rows(path: str, rows: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from .jobs_data import read_victims

    return read_victims(path, rows)


def _victim_spec(config: dict, dataset: str) -> dict:
    """The victims' source/split (datasets.<name>), or the bundled slice when not configured."""
    spec = config["datasets"].get(dataset)
    if spec is not None:
        return dict(spec)
    ds = DATASETS.get(dataset)
    return {"source": "bundled" if ds.bundled_splits else "hub",
            "split": ds.bundled_splits[0] if ds.bundled_splits else "train"}


def public_job(smk: Any, device: torch.device) -> dict:
    dataset = smk.wildcards.dataset
    cfg = smk.config
    ds = DATASETS.get(dataset)
    vspec = _victim_spec(cfg, dataset)
    pspec = {"source": vspec.get("source", "bundled"), "split": vspec.get("split", "test"), "size": 1000,
             **dict(cs(cfg).get("public", {}).get(dataset, {}))}
    split = ds.load(pspec["source"], pspec["split"], cfg["resources_dir"], cfg["hub_dir"])
    exclude: set[int] = set()
    victims = getattr(smk.input, "victims", None)
    if victims and pspec["source"] == vspec.get("source") and pspec["split"] == vspec.get("split"):
        t, _ = io.load_table(victims)
        exclude = set(int(i) for i in t.column("source_index").to_pylist())
    avail = np.asarray([i for i in range(len(split.labels)) if int(split.indices[i]) not in exclude])
    if len(avail) < pspec["size"]:
        raise ValueError(f"public pool of {dataset}: {len(avail)} images of {split.source} are left after removing "
                         f"the {len(exclude)} victims, fewer than studies.{STUDY}.public.{dataset}.size = {pspec['size']}")
    seed = derive_seed(cfg["seed"], "cs_public", dataset=dataset)
    pos = np.random.default_rng(seed).permutation(avail)[: pspec["size"]]
    imgs = split.images[pos]
    table = pa.table({
        "index": pa.array(np.arange(len(pos)), pa.int32()),
        "source_index": pa.array(split.indices[pos], pa.int64()),
        "label": pa.array(split.labels[pos], pa.int64()),
        "height": pa.array([imgs.shape[1]] * len(pos), pa.int32()),
        "width": pa.array([imgs.shape[2]] * len(pos), pa.int32()),
        "channels": pa.array([imgs.shape[3]] * len(pos), pa.int32()),
        "image": pa.array([im.tobytes() for im in imgs], pa.binary()),
    })
    rec = make_record(rule="cs_public", wildcards={"dataset": dataset}, params=pspec, config=cfg, inputs=smk.input,
                      outputs=smk.output, seed=seed, extra={"data": {"source": split.source, "excluded": len(exclude)}})
    io.save_table(smk.output[0], table, rec)
    say(f"public pool of {dataset}: {len(pos)} images from {split.source} ({len(exclude)} victims excluded)")
    return {"images": int(len(pos))}


def read_public(path: str) -> tuple[np.ndarray, np.ndarray]:
    t, _ = io.load_table(path)
    d = t.to_pydict()
    imgs = [np.frombuffer(b, np.uint8).reshape(h, w, c) for b, h, w, c in
            zip(d["image"], d["height"], d["width"], d["channels"])]
    return np.stack(imgs), np.asarray(d["label"], np.int64)


def class_means_job(smk: Any, device: torch.device) -> dict:
    dataset = smk.wildcards.dataset
    prep = prep_for(smk.config, dataset)
    imgs, labels = read_public(smk.input.public)
    x = torch.cat([prep.normalize(imgs[i:i + 256]) for i in range(0, len(imgs), 256)])
    means = torch.zeros((prep.num_classes, *prep.shape))
    counts = []
    overall = x.mean(0)
    for k in range(prep.num_classes):
        sel = torch.as_tensor(labels == k)
        counts.append(int(sel.sum()))
        means[k] = x[sel].mean(0) if counts[-1] else overall
    rec = make_record(rule="cs_class_means", wildcards={"dataset": dataset}, params={}, config=smk.config,
                      inputs=smk.input, outputs=smk.output,
                      extra={"class_counts": counts, "empty_classes_use_overall_mean": [k for k, c in enumerate(counts) if not c]})
    io.save_tensors(smk.output[0], {"class_means": means, "counts": torch.tensor(counts)}, rec)
    return {"classes_without_images": sum(1 for c in counts if not c)}


def generator_job(smk: Any, device: torch.device) -> dict:
    from ..attacks.ggl import train_wgan_gp

    dataset = smk.wildcards.dataset
    g = {"generator_steps": 100000, "batch_size": 64, "n_critic": 5, "lambda_gp": 10.0, "lr": 1e-4, "dim": 128,
         **dict(cs(smk.config).get("generator", {}))}
    prep = prep_for(smk.config, dataset)
    imgs, _ = read_public(smk.input.public)
    x = torch.cat([prep.to_pixels01(imgs[i:i + 512]) for i in range(0, len(imgs), 512)]) * 2 - 1
    seed = derive_seed(smk.config["seed"], "cs_generator", dataset=dataset)
    every = max(1, g["generator_steps"] // 20)

    def progress(step: int, row: dict) -> None:
        if step % every == 0:
            say(f"wgan-gp {dataset}: step {step}, critic {row['critic_loss']:.3f}, W {row['wasserstein']:.3f}")

    net, log = train_wgan_gp(x, generator_steps=g["generator_steps"], seed=seed, dim=g["dim"],
                             batch_size=g["batch_size"], n_critic=g["n_critic"], lambda_gp=g["lambda_gp"], lr=g["lr"],
                             device=device, progress=progress)
    rec = make_record(rule="cs_generator", wildcards={"dataset": dataset}, params=g, config=smk.config,
                      inputs=smk.input, outputs=smk.output, seed=seed, device=device,
                      extra={"generator": {"channels": prep.shape[0], "dim": g["dim"], "public_images": len(imgs)}})
    io.save_tensors(smk.output.generator, dict(net.state_dict()), rec)
    io.save_table(smk.output.log, log, rec)
    return {"steps": len(log)}


def load_generator(path: str, device) -> torch.nn.Module:
    from ..attacks.ggl import Generator

    state, rec = io.load_tensors(path)
    gi = rec["generator"]
    g = Generator(gi["channels"], dim=gi["dim"])
    g.load_state_dict(state, strict=True)
    return g.to(device).eval()


def server_model_job(smk: Any, device: torch.device) -> dict:
    from ..attacks.imprint import DEFAULTS as IMP, ImprintedModel, ImprintSecrets

    wc = dict(smk.wildcards)
    cfg = smk.config
    if wc["server"] != "imprint":
        raise ValueError(f"unknown server modification {wc['server']!r} (imprint)")
    attack = next((a for a in cs(cfg)["attacks"] if attack_type(cfg, a) == "imprint"), None)
    p = {**IMP, **(attack_params(cfg, attack, wc["dataset"]) if attack else {})}
    base = build_cs_model(cfg, wc["dataset"], wc["model"], smk.input.weights, "cpu")
    seed = derive_seed(cfg["seed"], "cs_server", **wc)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ImprintedModel(base, prep_for(cfg, wc["dataset"]).shape, bins=int(p["bins"]), gain=float(p["gain"]),
                             mode=int(p["mode"]))
    sec = ImprintSecrets(bins=int(p["bins"]))
    server = {"kind": "imprint", "bins": int(p["bins"]), "gain": float(p["gain"]), "mode": int(p["mode"])}
    rec = make_record(rule="cs_server_model", wildcards=wc, params=server, config=cfg, inputs=smk.input,
                      outputs=smk.output, seed=seed, extra={"server": server,
                                                            "model": {"parameters": count_parameters(net)}})
    io.save_tensors(smk.output.weights, dict(net.state_dict()), rec)
    io.write_json(smk.output.info, {"provenance": rec, "secrets": sec.to_dict(), **server})
    return {"parameters": count_parameters(net)}


# ====================================================================== jobs: client and server

def _fmt_wc(wc: dict) -> str:
    return "/".join(str(wc[k]) for k in ("dataset", "model", "server", "cohort", "defense", "slot") if k in wc)


def gradient_job(smk: Any, device: torch.device) -> dict:
    from ..defenses.concealed import defend

    wc = dict(smk.wildcards)
    cfg = smk.config
    prep = prep_for(cfg, wc["dataset"])
    steps = defense_steps(cfg, wc["defense"], wc["dataset"])
    rows = victim_rows(cfg, wc["dataset"], wc["cohort"], smk.input.victims)
    slot = parse_slot(wc["slot"])
    imgs, labels, src = read_rows(smk.input.victims, [rows[slot]])
    x = prep.normalize(imgs).to(device)
    y = torch.as_tensor(labels, device=device)
    net = load_server_model(cfg, wc["dataset"], wc["model"], wc["server"], smk.input.weights, device)
    seed = derive_seed(cfg["seed"], "cs_gradient", **wc)
    gen = torch.Generator().manual_seed(seed)
    proxy = None
    public = getattr(smk.input, "public", None)
    if public:
        pimgs, plabels = read_public(public)
        pprep = prep_for(cfg, proxy_dataset(cfg, wc["defense"], wc["dataset"]) or wc["dataset"])
        need = max((getattr(s, "per_sensitive", 1) for s in steps), default=1) * x.shape[0]
        pick = np.random.default_rng(derive_seed(cfg["seed"], "cs_proxy", **wc)).choice(len(plabels), size=need,
                                                                                      replace=False)
        px01 = pprep.to_pixels01(pimgs[pick])
        if px01.shape[1:] != (prep.shape[0], *prep.shape[1:]):    # another dataset's images (Table 6)
            if px01.shape[1] != prep.shape[0]:
                px01 = px01.mean(1, keepdim=True).expand(-1, prep.shape[0], -1, -1) if prep.shape[0] in (1, 3) else px01
            px01 = F.interpolate(px01, size=prep.shape[1:], mode="bilinear", align_corners=False, antialias=True)
        proxy = (prep.from_pixels(px01).to(device), torch.as_tensor(plabels[pick], device=device))
    every = 50

    def progress(it: int, loss: float) -> None:
        if it % every == 0:
            say(f"dcs2 {_fmt_wc(wc)}: iteration {it}, objective {loss:.4g}")

    upd = defend(net, x, y, steps, num_classes=prep.num_classes, generator=gen, proxy=proxy,
                 to_pixels=prep.denormalize, from_pixels=prep.from_pixels, mode=cs(cfg).get("model_mode", "eval"),
                 progress=progress)
    spec = [{"name": s.name, **s.params()} for s in steps]
    rec = make_record(rule="cs_gradient", wildcards=wc, params={"defense": spec, "model_mode": cs(cfg).get("model_mode")},
                      config=cfg, inputs=smk.input, outputs=smk.output, seed=seed, device=device,
                      extra={"victim_rows": [rows[slot]], "source_indices": src.tolist(), "defense_info": upd.info})
    io.save_tensors(smk.output.gradient, upd.shared, rec)
    secrets = {"sensitive_x": x.cpu().clone(), "sensitive_y": y.cpu().clone(),
               "trained_on": upd.trained_on.cpu().clone(), **{k: v.cpu().clone() for k, v in upd.secrets.items()}}
    io.save_tensors(smk.output.secrets, secrets, rec)
    knowledge = {
        "provenance": make_record(rule="cs_gradient", wildcards=wc, params={}, config=cfg, device=device),
        "batch_size": int(x.shape[0]), "input_shape": list(prep.shape), "dataset": wc["dataset"],
        "labels": labels.tolist(), "server": wc["server"],
    }
    io.write_json(smk.output.knowledge, knowledge)
    say(f"gradient {_fmt_wc(wc)}: defense {[s.name for s in steps] or 'none'}")
    return {"defense_info": {k: v for k, v in upd.info.items() if k != "ats_subpolicies"}}


def attack_job(smk: Any, device: torch.device) -> dict:
    from ..attacks import ATTACKS

    wc = dict(smk.wildcards)
    cfg = smk.config
    kind = attack_type(cfg, wc["attack"])
    params = attack_params(cfg, wc["attack"], wc["dataset"])
    knowledge = json.loads(Path(smk.input.knowledge).read_text())
    prep = prep_for(cfg, wc["dataset"])
    net = load_server_model(cfg, wc["dataset"], wc["model"], wc["server"], smk.input.weights, device)
    shared, _ = io.load_tensors(smk.input.gradient, device=device)
    labels = knowledge.get("labels")
    labels_t = torch.as_tensor(labels, device=device) if labels is not None else None
    seed = derive_seed(cfg["seed"], "cs_attack", **wc)
    shape = (knowledge["batch_size"], *knowledge["input_shape"])
    extra: dict[str, Any] = {}
    for need in ATTACKS.entry(kind).needs:           # declared by the attack, resolved by this study
        arg, load = NEED_ARGS[need]
        extra[arg] = load(smk.input, device)
    every = max(1, int(params.get("iterations", 1000)) // 10)

    def progress(it: int, loss: float) -> None:
        if it % every == 0:
            say(f"attack {wc['attack']} {_fmt_wc(wc)}/rep{wc['rep']}: iteration {it}, loss {loss:.4g}")

    result = ATTACKS.get(kind)(net, shared, None, input_shape=shape, mean=prep.mean, std=prep.std, labels=labels_t,
                               cfg=params, seed=seed, device=device, progress=progress, **extra)
    info = dict(result.info or {})
    seconds = info.pop("seconds", None)
    info.pop("latent", None)
    info.update({"status": result.status, "message": result.message, "final_loss": result.final_loss})
    rec = make_record(rule="cs_attack", wildcards=wc, params={"type": kind, **params}, config=cfg, inputs=smk.input,
                      outputs=smk.output, seed=seed, device=device, extra={"attack": info})
    io.save_tensors(smk.output.recon, {"x": result.x.float().cpu(), "labels": result.labels.cpu()}, rec)
    trace = result.trace or [{"iteration": 0, "loss": float("nan"), "grad_distance": float("nan"),
                              "tv": float("nan"), "lr": float("nan")}]
    io.save_table(smk.output.trace, trace, rec)
    say(f"attack {wc['attack']} {_fmt_wc(wc)} done: {result.status} ({result.message})")
    return {"attack_status": result.status, "attack_seconds": seconds}


# ====================================================================== evaluation

#: evaluation.ssim -> the registered SSIM (gibench.metrics.METRICS) that fills the rows' ssim column
CS_SSIM = {"dcs2": "ssim_dcs2", "torchmetrics": "ssim"}


def _batch_value(name: str, vals: list) -> float:
    """A registered metric's value for the batch: its one batch value, or the mean over the images."""
    from ..metrics import METRICS

    return float(vals[0]) if METRICS.get(name).reduce == "batch" else float(np.mean(vals))


def metrics_job(smk: Any, device: torch.device) -> dict:
    from ..metrics import METRICS
    from ..metrics.image import image_metrics
    from .jobs_attack import lpips_for

    wc = dict(smk.wildcards)
    cfg = smk.config
    ev = {"ssim": "dcs2", "lpips": {"backbone": "alex", "version": "0.1", "input": "raw01", "datasets": ["tiny_imagenet"]},
          "ats_ground_truth": "transformed", **dict(cs(cfg).get("evaluation", {}))}
    prep = prep_for(cfg, wc["dataset"])
    lp_model, lp_status = None, "not computed for this dataset (DCS-2 reports LPIPS for TinyImageNet only)"
    if wc["dataset"] in ev["lpips"].get("datasets", []):
        backbone = getattr(smk.input, "backbone", None)
        lp_model, lp_status = lpips_for(cfg, {"evaluation": {"lpips": {"backbone": "alex", "version": "0.1",
                                                                       "input": "raw01", **ev["lpips"]}}},
                                        backbone, device)
    secrets = {}
    for p in smk.input.secrets:
        t, rec = io.load_tensors(p)
        secrets[rec["wildcards"]["slot"]] = t
    rows = []
    for path in smk.input.recons:
        tensors, rec = io.load_tensors(path, device=device)
        rwc = rec["wildcards"]
        sec = secrets[rwc["slot"]]
        gt_key = "trained_on" if ev["ats_ground_truth"] == "transformed" else "sensitive_x"
        gt = prep.denormalize(sec[gt_key].to(device)).clamp(0, 1)
        x = prep.denormalize(tensors["x"].to(device)).clamp(0, 1)
        m = image_metrics(x, gt, lpips_model=lp_model, lpips_status=lp_status,
                          names=("mse", "psnr", "ssim") + (("lpips",) if lp_model is not None else ()))
        info = rec.get("attack", {})
        dcs = {"ssim_dcs2": _batch_value("ssim_dcs2", METRICS.get("ssim_dcs2").fn(x, gt))}
        tm = {n: _batch_value(n, m[n]) for n in ("mse", "psnr", "ssim")}
        chosen = CS_SSIM[ev["ssim"]]
        row = {"study": STUDY, "dataset": wc["dataset"], "model": wc["model"], "server": wc["server"],
               "cohort": wc["cohort"], "defense": wc["defense"], "attack": wc["attack"], "slot": rwc["slot"],
               "restart": int(rwc["rep"]), "label": int(sec["sensitive_y"][0]), "status": info.get("status", "unknown"),
               "attacker_loss": float(info.get("final_loss", float("nan"))),
               "iterations": int(info.get("iterations", 0) or 0),
               "mse": tm["mse"], "psnr": tm["psnr"], "ssim": {**tm, **dcs}[chosen],
               "ssim_torchmetrics": tm["ssim"], "ssim_dcs2": dcs["ssim_dcs2"],
               "lpips": (None if lp_model is None or any(v is None for v in m.get("lpips", [None]))
                         else float(np.mean(m["lpips"]))),
               "lpips_status": m.get("lpips_status", lp_status) if lp_model is not None else lp_status}
        rows.append(row)
    rec = make_record(rule="cs_metrics", wildcards=wc, params=ev, config=cfg, inputs=smk.input, outputs=smk.output,
                      device=device)
    io.save_table(smk.output[0], rows, rec)
    return {"rows": len(rows)}


def gather_job(smk: Any, device: torch.device) -> dict:
    tables = [io.load_table(p)[0] for p in smk.input]
    rows: list[dict] = []
    for t in tables:
        rows += t.to_pylist()
    rec = make_record(rule=smk.rule, wildcards={}, params={}, config=smk.config, inputs=smk.input, outputs=smk.output)
    io.save_table(smk.output[0], rows if rows else {"dataset": []}, rec)
    return {"rows": len(rows)}


# ====================================================================== FedAvg accuracies

def fl_settings(config: dict, dataset: str, cohort: str) -> dict:
    u = cs(config)["utility"]
    spc = u.get("samples_per_client", {}).get(dataset)
    nid = {"alpha": 0.5, **cs(config).get("non_iid", {})}
    part = {"type": "iid"} if cohort == "iid" else {"type": "dirichlet", "alpha": float(nid["alpha"]), "min_samples": 2}
    return {
        "clients": int(u["clients"]), "partition": part, "samples_per_client": spc,
        "val_fraction": float(u["val_fraction"]), "rounds": int(u["rounds"]), "local_epochs": int(u["local_epochs"]),
        "batch_size": int(u["batch_size"]), "optimizer": {"type": "sgd", "lr": float(u["lr"]),
                                                          "momentum": float(u["momentum"])},
        "lr_schedule": {"type": "exponential", "gamma": float(u["lr_gamma"])},
        "early_stopping": {"patience": None}, "protected_clients": [int(u["protected_client"])],
        "defended_clients": [int(u["protected_client"])],
    }


def fl_params(config: dict, dataset: str, model: str, cohort: str, defense: str) -> dict:
    u = cs(config)["utility"]
    steps = defense_steps(config, defense, dataset, u.get("defense_overrides", {}))
    return {"fedavg": fl_settings(config, dataset, cohort), "defense": [{"name": s.name, **s.params()} for s in steps],
            "holdout_fraction": u["holdout_fraction"], "max_test": u.get("max_test"),
            "data": config["datasets"].get(dataset), "model_options": cs(config).get("models", {}).get(model, {}),
            "report": u.get("report", "final")}


def fl_job(smk: Any, device: torch.device) -> dict:
    from .. import fl
    from ..defenses.concealed import fl_gradient_fn

    wc = dict(smk.wildcards)
    cfg = smk.config
    d, m, cohort, defense, seed = wc["dataset"], wc["model"], wc["cohort"], wc["defense"], int(wc["seed"])
    u = cs(cfg)["utility"]
    prep = prep_for(cfg, d)
    ds = prep.ds
    spec = cfg["datasets"][d]
    base = cfg["seed"]
    settings = fl_settings(cfg, d, cohort)
    if spec.get("source", "bundled") == "hub":
        test_split = "test" if "test" in ds.hub_splits else "val"     # TinyImageNet has no labelled test split
        train = ds.load("hub", "train", cfg["resources_dir"], cfg["hub_dir"])
        test = ds.load("hub", test_split, cfg["resources_dir"], cfg["hub_dir"])
        images = np.concatenate([train.images, test.images])
        labels = np.concatenate([train.labels, test.labels])
        train_pos, test_pos = np.arange(len(train.labels)), np.arange(len(train.labels), len(labels))
        source = f"{train.source} / {test.source}"
    else:
        split = ds.load("bundled", spec.get("split") or ds.bundled_splits[0], cfg["resources_dir"], cfg["hub_dir"])
        images, labels = split.images, split.labels
        perm = np.random.default_rng(derive_seed(base, "cs_fl_holdout", dataset=d)).permutation(len(labels))
        n_test = int(round(float(u["holdout_fraction"]) * len(labels)))
        test_pos, train_pos = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        source = f"{split.source}: {n_test} held out as the test set"
    if u.get("max_test") is not None and len(test_pos) > u["max_test"]:
        test_pos = np.sort(np.random.default_rng(derive_seed(base, "cs_fl_max_test", dataset=d)).choice(
            test_pos, size=int(u["max_test"]), replace=False))
    used = np.concatenate([train_pos, test_pos])
    pool = fl.Pool.from_images(images[used], labels[used], prep.normalize)
    n_train = len(train_pos)
    shards = fl.make_clients(labels[train_pos], settings,
                             seed=derive_seed(base, "cs_fl_clients", dataset=d, cohort=cohort, seed=seed))
    test_local = np.arange(n_train, n_train + len(test_pos))
    taken = set(np.concatenate([np.concatenate([c.train, c.val]) for c in shards]).tolist())
    public = np.asarray([i for i in range(n_train) if i not in taken], np.int64)
    steps = defense_steps(cfg, defense, d, u.get("defense_overrides", {}))
    proxy_pool = public
    pdset = proxy_dataset(cfg, defense, d)
    if pdset not in (None, d):
        raise ValueError(f"FedAvg with DCS² proxies from {pdset!r}: only proxies of the trained dataset are supported")

    def proxy_sampler(n: int, gen: torch.Generator):
        if len(proxy_pool) < n:
            raise ValueError(f"FedAvg on {d}: DCS² needs {n} proxy images per step but only {len(proxy_pool)} "
                             "training images are left outside the clients; lower utility.samples_per_client")
        idx = proxy_pool[torch.randperm(len(proxy_pool), generator=gen)[:n].numpy()]
        return pool.get(idx, device)

    gfn = fl_gradient_fn(steps, num_classes=prep.num_classes, proxy_sampler=proxy_sampler,
                         to_pixels=prep.denormalize, from_pixels=prep.from_pixels) if steps else None
    protected = set(settings["defended_clients"])
    plain = fl.plain_gradient()

    def grad_fn_for(k: int):
        return gfn if (gfn is not None and k in protected) else plain

    init_seed = derive_seed(base, "cs_fl_init", dataset=d, model=m, seed=seed)
    net = build_model(m, prep.num_classes, prep.shape, init_seed, **dict(cs(cfg).get("models", {}).get(m, {})))
    run_seed = derive_seed(base, "cs_fl_run", **wc)
    tag = f"cs_fl {d}/{m}/{cohort}/{defense}/seed{seed}"   # on every line: parallel runs interleave
    say(f"{tag}: {len(shards)} clients, {n_train} training / {len(test_pos)} test, "
        f"{len(public)} public (proxy) images; {source}")

    def on_round(row: dict) -> None:
        say(f"{tag} round {row['round']}: test acc {100 * row['test_acc']:.2f}%, protected acc {100 * row['protected_acc']:.2f}%")

    result = fl.run_fedavg(net, pool, shards, test_local, settings, seed=run_seed, device=device,
                           grad_fn_for=grad_fn_for, on_round=on_round)
    summary = fl.accuracy_summary(result)
    params = fl_params(cfg, d, m, cohort, defense)
    rec = make_record(rule="cs_fl", wildcards=wc, params=params, config=cfg, inputs=smk.input, outputs=smk.output,
                      seed=run_seed, device=device, extra={"fl": {"source": source, "public": int(len(public))}})
    curve = [{k: v for k, v in r.items() if k != "val_loss_per_client"} for r in result.curve]
    io.save_table(smk.output.curve, curve, rec)
    io.write_json(smk.output.accuracy, {"provenance": rec, "dataset": d, "model": m, "cohort": cohort,
                                        "defense": defense, "seed": seed, "report": params["report"], **summary})
    return {"rounds": result.last_round}


def fl_gather_job(smk: Any, device: torch.device) -> dict:
    rows = []
    for p in smk.input:
        obj = json.loads(Path(p).read_text())
        obj.pop("provenance", None)
        rows.append(obj)
    rec = make_record(rule="cs_fl_gather", wildcards={}, params={}, config=smk.config, inputs=smk.input,
                      outputs=smk.output)
    io.save_table(smk.output[0], rows if rows else {"dataset": []}, rec)
    return {"runs": len(rows)}


# ====================================================================== tables and figure

def table_job(smk: Any, device: torch.device) -> dict:
    from ..tables.concealed_samples import build_table
    from ..tables.render import table_formats

    acc = getattr(smk.input, "accuracy", None)
    doc = build_table(smk.wildcards.table, smk.input.metrics, acc, smk.config)
    doc.write(Path(smk.output.csv).parent, table_formats(smk.output))
    return {"rows": len(doc.body)}


def figure_job(smk: Any, device: torch.device) -> dict:
    from ..tables.concealed_samples import build_grid

    build_grid(smk.wildcards.figure, smk.input.recons, smk.input.secrets, smk.config, Path(smk.output.png).parent,
               metrics_path=smk.input.get("metrics"))
    return {}


def download_weights_job(smk: Any, device: torch.device) -> dict:
    from ..models.concealed import RESNET18_FILE, RESNET18_URL

    out = Path(smk.output[0])
    if out.name != RESNET18_FILE:
        raise ValueError(f"{out.name}: the only downloadable weights are torchvision's {RESNET18_FILE}")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(RESNET18_URL, str(out), hash_prefix=RESNET18_FILE.split("-")[1].split(".")[0])
    except Exception as e:  # noqa: BLE001 - network errors come in many types
        raise RuntimeError(f"could not download {RESNET18_URL} to {out}: {type(e).__name__}: {e}; run this rule on "
                           "a machine with internet") from e
    return {"file": str(out)}


# ====================================================================== rule input functions

def public_inputs(config: dict, wc) -> dict:
    """The victim pool (to exclude it) and the data files the public pool is read from."""
    vspec = _victim_spec(config, wc.dataset)
    pspec = {"source": vspec.get("source", "bundled"), "split": vspec.get("split", "test"),
             **dict(cs(config).get("public", {}).get(wc.dataset, {}))}
    out: dict = {}
    if wc.dataset in config["datasets"]:
        out["victims"] = f"{R}/data/{wc.dataset}/victims.parquet"
    if pspec["source"] == "hub":
        out["data"] = [f"{config['hub_dir']}/{wc.dataset}/{pspec['split']}/dataset_info.json"]
    else:
        from .targets import BUNDLED_FILES

        root = Path(config["resources_dir"]) / "data" / wc.dataset
        out["data"] = [str(root / f) for f in BUNDLED_FILES.get(wc.dataset, [])]
    return out


def fl_inputs(config: dict, wc) -> list[str]:
    """Data files of a FedAvg run: the bundled files, or the hub's train and test splits."""
    spec = config["datasets"][wc.dataset]
    if spec.get("source", "bundled") == "hub":
        ds = DATASETS.get(wc.dataset)
        test_split = "test" if "test" in ds.hub_splits else "val"
        return [f"{config['hub_dir']}/{wc.dataset}/{sp}/dataset_info.json" for sp in ("train", test_split)]
    from .targets import dataset_inputs

    return dataset_inputs(config, wc.dataset)


def gradient_inputs(config: dict, wc) -> dict:
    out = {"victims": f"{R}/data/{wc.dataset}/victims.parquet"}
    if wc.server == "honest":
        out["weights"] = CS_INIT.format(dataset=wc.dataset, model=wc.model)
    else:
        out["weights"] = CS_SERVER.format(dataset=wc.dataset, model=wc.model, server=wc.server)
    pd = proxy_dataset(config, wc.defense, wc.dataset)
    if pd is not None:
        out["public"] = CS_PUBLIC.format(dataset=pd)
    return out


def attack_inputs(config: dict, wc) -> dict:
    base = dict(dataset=wc.dataset, model=wc.model, server=wc.server, cohort=wc.cohort, defense=wc.defense, slot=wc.slot)
    out = {"gradient": CS_GRAD.format(**base), "knowledge": CS_KNOW.format(**base)}
    if wc.server == "honest":
        out["weights"] = CS_INIT.format(dataset=wc.dataset, model=wc.model)
    else:
        out["weights"] = CS_SERVER.format(dataset=wc.dataset, model=wc.model, server=wc.server)
    for need in attack_needs(config, wc.attack):       # what the attack declares it needs
        name, path = NEED_INPUTS[need]
        out[name] = path(wc)
    return out


def metrics_inputs(config: dict, wc) -> dict:
    out = {"recons": attack_files(config, wc.dataset, wc.model, wc.attack, wc.cohort, wc.defense),
           "secrets": secrets_files(config, wc.dataset, wc.model, wc.attack, wc.cohort, wc.defense)}
    ev = cs(config).get("evaluation", {})
    lp = ev.get("lpips", {})
    if wc.dataset in lp.get("datasets", ["tiny_imagenet"]):
        from .targets import lpips_backbone_path

        path = lpips_backbone_path(config, lp.get("backbone", "alex"))
        if path is not None:
            out["backbone"] = path
    return out


def attack_rule_params(config: dict, wc) -> dict:
    return {"type": attack_type(config, wc.attack), "params": attack_params(config, wc.attack, wc.dataset)}


def gradient_rule_params(config: dict, wc) -> dict:
    steps = defense_steps(config, wc.defense, wc.dataset)
    return {"defense": [{"name": s.name, **s.params()} for s in steps], "model_mode": cs(config).get("model_mode"),
            "victims": n_victims(config, wc.dataset), "non_iid": cs(config).get("non_iid"),
            "inputs": cs(config).get("inputs", {}).get(wc.dataset)}
