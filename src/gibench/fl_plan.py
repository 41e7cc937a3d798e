"""What a study's ``fl`` block asks for, read without torch: the FedAvg paths, runs, defense
combinations and their providers, the training jobs' params and inputs, the semantic check, the
targets, and the names and notes the tables print.

The DAG build (rules/fl.smk, rules/common.smk), gibench.config's check, the tables
(gibench.tables.stochastic_defenses) and the privacy budgets (gibench.privacy.configs) read the
``fl`` block through this module; the torch side -- data, models, the training, checkpoint,
gather, table and figure jobs -- is :mod:`gibench.pipeline.jobs_fl`, which re-exports these names.
A leaf of the pipeline: it imports no ``gibench.pipeline`` or ``gibench.tables`` module, and its
heavy imports (``gibench.defenses``, ``gibench.models``, torch) wait for the function that needs
them, so importing it at DAG build imports no torch.

Paths (one ``fl_train`` job per (study, dataset, model, defense combination, seed))::

    results/fl/<study>/<dataset>/<model>/<defense>/seed<k>/final.safetensors   global model after the last round
                                                          /best.safetensors    ... of the lowest mean validation loss
                                                          /curve.parquet       one row per round (0 = initialisation)
                                                          /accuracy.json       final accuracies (accuracy_summary)
                                                          /rounds/round0042.safetensors  kept round checkpoints
    results/models/<study>/<dataset>/<model>/fl/<defense>/seed<k>/round0042.safetensors   (rule fl_checkpoint)
    results/fl/<study>/accuracy.parquet   the gathered accuracies (one row per run)
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from . import io
from .datasets import DATASETS
from .registry import Registry

if TYPE_CHECKING:
    from .fl import GradFn

R = "results"
FL_DIR = R + "/fl/{study}/{dataset}/{model}/{defense}/seed{seed}"
FL_FINAL = FL_DIR + "/final.safetensors"
FL_BEST = FL_DIR + "/best.safetensors"
FL_CURVE = FL_DIR + "/curve.parquet"
FL_ACC = FL_DIR + "/accuracy.json"
FL_ROUNDS = FL_DIR + "/rounds"
FL_WORK = R + "/.fl_work/{study}/{dataset}/{model}/{defense}/seed{seed}"
FL_CHECKPOINT = R + "/models/{study}/{dataset}/{model}/fl/{defense}/seed{seed}/round{round}.safetensors"
FL_ALL_ACC = R + "/fl/{study}/accuracy.parquet"
FL_TABLE = R + "/tables/{study}/fl_accuracy.{ext}"
FL_FIGURE = R + "/figures/{study}/fl_curves.{ext}"

NO_DEFENSE = "none"
DEFENSE_PATTERN = "[a-z0-9_+.-]+"

BUNDLED_FILES = {   # what a bundled reader reads (same lists as pipeline.targets)
    "cifar100": ["test_first916", "meta", "PROVENANCE.jsonl"],
    "cifar10": ["test_batch_first1017", "batches.meta", "PROVENANCE.jsonl"],
    "mnist": ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "PROVENANCE.jsonl"],
    "tiny_imagenet": ["val_sample_labels.tsv", "wnids.txt", "words_200.txt", "PROVENANCE.jsonl"],
}


def fmt_round(r: int | str) -> str:
    return f"{int(r):04d}"


# ----------------------------------------------------------------- config access

def fl_block(config: dict, study: str) -> dict | None:
    return (config["studies"].get(study) or {}).get("fl")


def fl_studies(config: dict) -> list[str]:
    return [s for s in config["studies"] if fl_block(config, s)]


def fl_runs(config: dict, study: str) -> Iterator[tuple[str, str, str, int]]:
    """(dataset, model, defense, seed) of every training job of a study, config order."""
    block = fl_block(config, study)
    if not block:
        return
    for run in block["runs"]:
        for defense in run.get("defenses", [NO_DEFENSE]):
            for seed in block.get("seeds", [0]):
                yield run["dataset"], run["model"], defense, int(seed)


def dataset_spec(config: dict, dataset: str) -> dict:
    """The dataset's source entry (datasets.<name>); bundled when the config has none."""
    spec = dict(config.get("datasets", {}).get(dataset) or {})
    spec.setdefault("source", "bundled")
    spec.setdefault("split", DATASETS.get(dataset).bundled_splits[0] if dataset in DATASETS else "test")
    return spec


def defense_specs(config: dict, study: str, defense: str) -> list:
    """The DefenseChain specs of a combination name: its entry under ``fl.defenses``; else
    'none' = no defense; else a '+'-joined list of defense names (``dropout+dp+cvb``) whose
    parameters come from the study's ``defense_defaults`` (then the paper's values)."""
    block = fl_block(config, study) or {}
    table = block.get("defenses", {}) or {}
    if defense in table:
        return list(table[defense])
    if defense == NO_DEFENSE:
        return []
    parts = defense.split("+")
    try:
        from .defenses import CHAIN, DEFENSES as _ALL      # deferred: gibench.defenses imports torch

        DEFENSES = _ALL.of(CHAIN)       # FedAvg runs apply paper B's defenses (DefenseChain)
    except ImportError:
        DEFENSES = None
    if DEFENSES is not None and all(p in DEFENSES for p in parts):
        return parts
    known = ", ".join(DEFENSES.names()) if DEFENSES is not None else "gibench.defenses not available"
    raise KeyError(f"studies.{study}.fl: defense combination {defense!r} is neither an entry of fl.defenses "
                   f"({', '.join(sorted(table)) or 'none defined'}), 'none', nor defense names joined by '+' "
                   f"(known defenses: {known})")


def defense_defaults(config: dict, study: str) -> dict:
    return dict((config["studies"].get(study) or {}).get("defense_defaults") or {})


def defense_chain(specs: list, defaults: dict | None = None):
    """A gibench.defenses.DefenseChain for ``specs`` (None when there are none)."""
    if not specs:
        return None
    try:
        from .defenses import DefenseChain      # deferred: gibench.defenses imports torch
    except ImportError as e:
        raise RuntimeError(f"FedAvg run with defenses {specs}: gibench.defenses is not available ({e})") from e
    return DefenseChain(specs, defaults=defaults)


@dataclass
class FLDefense:
    """What a defense combination means for a FedAvg run."""
    grad_fn: GradFn | None          # the defended clients' minibatch gradient (None: no defense)
    model_options: dict                # extra model build options (dropout layers, bottlenecks, ...)
    description: Any                   # JSON-able: goes into the records


class ChainDefenses:
    """The default provider: combinations are gibench.defenses.DefenseChain specs (paper B's
    Dropout, DP, pruning, PRECODE, CVB), applied through ``chain.client_gradient`` -- the call
    the gradient rule makes -- in every local step."""

    def params(self, config: dict, study: str, defense: str) -> Any:
        return {"specs": defense_specs(config, study, defense), "defaults": defense_defaults(config, study)}

    def check(self, config: dict, study: str, defense: str) -> list[str]:
        specs = defense_specs(config, study, defense)          # KeyError: unknown name
        if specs:
            defense_chain(specs, defense_defaults(config, study))
        return []

    def build(self, config: dict, study: str, dataset: str, model: str, defense: str, loss: str) -> FLDefense:
        chain = defense_chain(defense_specs(config, study, defense), defense_defaults(config, study))
        if chain is None:
            return FLDefense(None, {}, [])

        def grad_fn(net, x, y, generator):
            grads, _secrets = chain.client_gradient(net, x, y, generator=generator, loss=loss)
            return grads

        return FLDefense(grad_fn, chain.model_options(), chain.spec())


#: study name -> its defense provider (an object with params/check/build like
#: :class:`ChainDefenses`, the default); a study whose defenses are not DefenseChain specs
#: (e.g. concealed_samples' DCS²) registers its own here.
FL_DEFENSE_PROVIDERS: Registry[Any] = Registry("FedAvg defense provider")
DEFAULT_PROVIDER = ChainDefenses()


def defense_provider(study: str) -> Any:
    return FL_DEFENSE_PROVIDERS.get(study) if study in FL_DEFENSE_PROVIDERS else DEFAULT_PROVIDER


def model_build_options(config: dict, study: str, model: str, defense: FLDefense | None) -> dict:
    block = fl_block(config, study) or {}
    st = config["studies"][study]
    opts = dict((block.get("models") or st.get("models") or {}).get(model, {}))
    if defense is not None:
        opts.update(defense.model_options)
    return opts


def run_params(config: dict, study: str, dataset: str, model: str, defense: str) -> dict:
    """Everything a training job depends on in the config (Snakemake params: a change
    re-runs only the affected jobs; also the resume fingerprint)."""
    block = dict(fl_block(config, study))
    block.pop("runs", None)
    block.pop("seeds", None)
    block.pop("defenses", None)
    block.pop("models", None)
    block.pop("report", None)          # tables only
    st = config["studies"][study]
    return {"fedavg": block, "defense": defense_provider(study).params(config, study, defense),
            "model_options": dict(((fl_block(config, study).get("models") or st.get("models") or {}).get(model, {}))),
            "data": dataset_spec(config, dataset), "seed": config.get("seed", 0)}


def data_inputs(config: dict, study: str, dataset: str) -> list[str]:
    spec = dataset_spec(config, dataset)
    if spec["source"] == "hub":
        d = fl_block(config, study).get("data", {})
        return [f"{config['hub_dir']}/{dataset}/{split}/dataset_info.json"
                for split in (d.get("train_split", "train"), d.get("test_split", "test"))]
    root = Path(config["resources_dir"]) / "data" / dataset
    return [str(root / f) for f in BUNDLED_FILES.get(dataset, [])]


# ----------------------------------------------------------------- checks (DAG build)

def check_fl(config: dict, study: str) -> list[str]:
    """Semantic errors of a study's fl block, each naming its key."""
    block = fl_block(config, study)
    if not block:
        return []
    from .models import MODELS          # deferred: the model registry imports torch (the builders)

    pre = f"studies.{study}.fl"
    errs: list[str] = []
    for i, run in enumerate(block["runs"]):
        d, m = run["dataset"], run["model"]
        if d not in DATASETS:
            errs.append(f"config error at {pre}.runs[{i}].dataset: unknown dataset {d!r}; known: {', '.join(DATASETS.names())}")
        if m not in MODELS:
            errs.append(f"config error at {pre}.runs[{i}].model: unknown model {m!r}; known: {', '.join(MODELS.names())}")
        elif d in DATASETS:
            err = _model_takes_input(config, study, d, m)
            if err:
                errs.append(f"config error at {pre}.runs[{i}]: model {m!r} cannot take {d!r} inputs of shape "
                            f"{fl_dataset(config, study, d).shape} ({err}); set {pre}.inputs.{d}.shape")
        for j, name in enumerate(run.get("defenses", [NO_DEFENSE])):
            try:
                errs += defense_provider(study).check(config, study, name)
            except KeyError as e:
                errs.append(f"config error at {pre}.runs[{i}].defenses[{j}]: {e.args[0]}")
            except Exception as e:  # the defense module's own message names the bad spec
                errs.append(f"config error at {pre}.runs[{i}].defenses[{j}] ({name!r}): {e}")
    n = block.get("clients", 10)
    for key in ("protected_clients",):
        for k in block.get(key, []):
            if k >= n:
                errs.append(f"config error at {pre}.{key}: client {k} does not exist (fl.clients = {n}, ids 0..{n - 1})")
    dc = block.get("defended_clients", "all")
    if dc != "all":
        for k in dc:
            if k >= n:
                errs.append(f"config error at {pre}.defended_clients: client {k} does not exist (fl.clients = {n})")
    if len(set(block.get("seeds", [0]))) != len(block.get("seeds", [0])):
        errs.append(f"config error at {pre}.seeds: duplicate seeds {block['seeds']}")
    ac = block.get("attack_checkpoint")
    if ac:
        runs = {(d, m, dfn, s) for d, m, dfn, s in fl_runs(config, study)}
        want_defense, want_seed = ac.get("defense", NO_DEFENSE), ac.get("seed", 0)
        keep_now = block.get("checkpoints", {}).get("keep", "all")
        if ac["round"] > block.get("rounds", 300):
            errs.append(f"config error at {pre}.attack_checkpoint.round: {ac['round']} > fl.rounds = {block.get('rounds')}")
        if keep_now == "none" or (isinstance(keep_now, list) and ac["round"] not in keep_now):
            errs.append(f"config error at {pre}.attack_checkpoint.round: round {ac['round']} is not kept "
                        f"(fl.checkpoints.keep = {keep_now})")
        st = config["studies"][study]
        for case in st.get("cases") or []:
            if not isinstance(case, dict):
                continue
            if (case["dataset"], case["model"], want_defense, want_seed) not in runs:
                errs.append(f"config error at {pre}.attack_checkpoint: the attacks target case "
                            f"{case['dataset']}/{case['model']} after round {ac['round']}, but fl.runs has no "
                            f"run ({case['dataset']}, {case['model']}, defense {want_defense!r}, seed {want_seed})")
    keep = block.get("checkpoints", {}).get("keep", "all")
    if isinstance(keep, list) and any(k > block.get("rounds", 300) for k in keep):
        errs.append(f"config error at {pre}.checkpoints.keep: rounds {[k for k in keep if k > block['rounds']]} "
                    f"exceed fl.rounds = {block['rounds']}")
    return errs


def _model_takes_input(config: dict, study: str, dataset: str, model: str) -> str | None:
    """An error message if the (undefended) model cannot run on the dataset's input shape
    (built and run on the meta device: no memory, no compute)."""
    import torch                        # deferred: the check builds the model (torch), the DAG build does not

    from .models import MODELS          # deferred: the model registry imports torch (the builders)

    ds = fl_dataset(config, study, dataset)
    opts = model_build_options(config, study, model, None)
    try:
        with torch.device("meta"):
            net = MODELS.get(model)(num_classes=ds.num_classes, in_shape=ds.shape, **opts)
            net(torch.zeros(1, *ds.shape))
    except (ValueError, RuntimeError) as e:
        return str(e).splitlines()[0][:200]
    except Exception:  # an op without meta support: leave it to the job
        return None
    return None


# ----------------------------------------------------------------- data and model

def fl_dataset(config: dict, study: str, dataset: str):
    """The dataset as the study's models see it: ``fl.inputs.<dataset>.shape`` replaces the
    registry's input shape (e.g. paper B's MNIST at 3x32x32: the images are resized bilinearly
    and the grey channel repeated by ``ImageDataset.normalize``)."""
    ds = DATASETS.get(dataset)
    shape = ((fl_block(config, study) or {}).get("inputs") or {}).get(dataset, {}).get("shape")
    return dataclasses.replace(ds, shape=tuple(int(v) for v in shape)) if shape else ds




# ----------------------------------------------------------------- accuracies, names, notes (tables)

def accuracy_file(config: dict, study: str) -> str | None:
    """The gathered accuracies a table rule takes as input (None: the study trains nothing)."""
    return FL_ALL_ACC.format(study=study) if fl_block(config, study) else None


#: the order defense names appear in a combination name (paper B's tables: DO, DP, GP, PM)
NAME_ORDER = ("dropout", "dp", "prune", "precode", "cvb")


def combination_name(names: list[str]) -> str:
    """The canonical run name of a defense combination: its defense names in the order of
    paper B's tables (dropout, dp, prune, precode, cvb) joined by '+', 'none' if empty, e.g.
    ['cvb', 'dropout', 'dp'] -> 'dropout+dp+cvb' (what fl.runs[].defenses lists)."""
    rank = {n: i for i, n in enumerate(NAME_ORDER)}
    return "+".join(sorted(names, key=lambda n: (rank.get(n, len(rank)), n))) or NO_DEFENSE


def load_accuracy_rows(path: str | os.PathLike) -> list[dict]:
    table, _ = io.load_table(path)
    return table.to_pylist()


def data_note(config: dict, study: str) -> str:
    block = fl_block(config, study)
    bundled = sorted({r["dataset"] for r in block["runs"] if dataset_spec(config, r["dataset"])["source"] == "bundled"})
    if not bundled:
        return "Clients share the datasets' train splits; accuracy is on their test splits."
    frac = (block.get("data") or {}).get("holdout_fraction", 0.2)
    return (f"{', '.join(bundled)}: bundled slice of the test split only — {frac:.0%} of it is held out as the "
            f"test set and the rest is split among the clients, so the models see a small fraction of the "
            f"papers' training data and train for few rounds: these accuracies check the pipeline and mean "
            f"little next to the papers'.")


def defense_label(config: dict, study: str, defense: str) -> str:
    """A defense combination as the tables write it (the defense registry's notation, e.g.
    ``DO+DP`` for ``dropout+dp``); the config key itself when it names no known chain."""
    if defense == NO_DEFENSE:
        return "no defense"
    try:
        chain = defense_chain(defense_specs(config, study, defense), defense_defaults(config, study))
    except Exception:            # noqa: BLE001 - a provider of its own: its key is its name
        return defense
    return chain.label if chain is not None else defense



# ----------------------------------------------------------------- targets

def run_files(config: dict, study: str, pattern: str) -> list[str]:
    return [pattern.format(study=study, dataset=d, model=m, defense=dfn, seed=s)
            for d, m, dfn, s in fl_runs(config, study)]


def fl_targets(config: dict) -> list[str]:
    """What `rule all` asks for: per study with an fl block, the accuracy table and the curves."""
    out = []
    for study in fl_studies(config):
        out += [FL_TABLE.format(study=study, ext=e) for e in ("csv", "md")]
        out += [FL_FIGURE.format(study=study, ext=e) for e in ("png", "pdf")]
    return out


def weights_for(config: dict, study: str, dataset: str, model: str, default: str) -> str:
    """The weights file the study's gradient/attack rules use for (dataset, model):
    ``default`` (the initialisation) unless ``fl.attack_checkpoint`` names a trained round."""
    ac = (fl_block(config, study) or {}).get("attack_checkpoint")
    if not ac:
        return default
    return checkpoint_path(study, dataset, model, ac.get("defense", NO_DEFENSE), ac.get("seed", 0), ac["round"])


def checkpoint_path(study: str, dataset: str, model: str, defense: str, seed: int, round_: int) -> str:
    """The weights file of the global model after ``round_`` (rule fl_checkpoint makes it)."""
    return FL_CHECKPOINT.format(study=study, dataset=dataset, model=model, defense=defense, seed=int(seed),
                                round=fmt_round(round_))
