"""FedAvg utility runs in the pipeline: training jobs, round checkpoints for attacks on
trained models, the gathered accuracies, the accuracy table and the training-curves figure.

A study opts in with an ``fl`` block (schema ``$defs/fedavg`` in config/schema/fedavg.defs.yaml).
One ``fl_train`` job per (study, dataset, model, defense combination, seed) writes::

    results/fl/<study>/<dataset>/<model>/<defense>/seed<k>/final.safetensors   global model after the last round
                                                          /best.safetensors    ... of the lowest mean validation loss
                                                          /curve.parquet       one row per round (0 = initialisation)
                                                          /accuracy.json       final accuracies (accuracy_summary)
                                                          /rounds/round0042.safetensors  kept round checkpoints

``fl_checkpoint`` turns a kept round into ``results/models/<study>/<dataset>/<model>/fl/<defense>/seed<k>/round0042.safetensors``
(the global model after round 42) for gradient/attack rules that target a trained model.
Tables read ``results/fl/<study>/accuracy.parquet`` (one row per run); :func:`accuracy_rows`
gives the accuracy cells (mean ± std over seeds) of a (dataset, model, defense).

Data: with ``source: hub`` the clients share the train split and accuracy is measured on the
test split.  The bundled slices hold a single split (the first ~1000 CIFAR test images, the
MNIST test split): a fixed seeded ``holdout_fraction`` of it is the test set and the rest is
divided among the clients — accuracy is then measured on held-out test images, but with far
less training data than the papers (captions say so).
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import torch

from .. import fl, io
from ..datasets import DATASETS
from ..models import MODELS, build_model, count_parameters
from ..provenance import make_record
from ..registry import Registry
from ..seeds import derive_seed
from ..tables.render import table_formats
from .runner import say

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
        from ..defenses import CHAIN, DEFENSES as _ALL

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
        from ..defenses import DefenseChain
    except ImportError as e:
        raise RuntimeError(f"FedAvg run with defenses {specs}: gibench.defenses is not available ({e})") from e
    return DefenseChain(specs, defaults=defaults)


@dataclass
class FLDefense:
    """What a defense combination means for a FedAvg run."""
    grad_fn: fl.GradFn | None          # the defended clients' minibatch gradient (None: no defense)
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
    import dataclasses

    ds = DATASETS.get(dataset)
    shape = ((fl_block(config, study) or {}).get("inputs") or {}).get(dataset, {}).get("shape")
    return dataclasses.replace(ds, shape=tuple(int(v) for v in shape)) if shape else ds


def load_fl_data(config: dict, study: str, dataset: str, seed: int) -> tuple[fl.Pool, list[fl.ClientShard], np.ndarray, dict]:
    """(pool, client shards, test positions, info) of one run.  The test part is fixed per
    dataset (not per run seed); the client split depends on the run seed."""
    block = fl.settings_from(fl_block(config, study))
    dcfg = {"train_split": "train", "test_split": "test", "holdout_fraction": 0.2, "max_test": None,
            **(fl_block(config, study).get("data") or {})}
    ds = fl_dataset(config, study, dataset)
    spec = dataset_spec(config, dataset)
    base = config.get("seed", 0)
    if spec["source"] == "hub":
        train = ds.load("hub", dcfg["train_split"], config["resources_dir"], config["hub_dir"])
        test = ds.load("hub", dcfg["test_split"], config["resources_dir"], config["hub_dir"])
        images = np.concatenate([train.images, test.images])
        labels = np.concatenate([train.labels, test.labels])
        train_pos = np.arange(len(train.labels))
        test_pos = np.arange(len(train.labels), len(labels))
        source = f"{train.source} (clients) / {test.source} (test)"
    else:
        split = ds.load("bundled", spec["split"], config["resources_dir"], config["hub_dir"])
        images, labels = split.images, split.labels
        rng = np.random.default_rng(derive_seed(base, "fl_holdout", dataset=dataset))
        perm = rng.permutation(len(labels))
        n_test = int(round(dcfg["holdout_fraction"] * len(labels)))
        test_pos, train_pos = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        source = (f"{split.source}: {len(test_pos)} held out as the test set, {len(train_pos)} split among "
                  f"the clients")
    if dcfg.get("max_test") is not None and len(test_pos) > dcfg["max_test"]:
        rng = np.random.default_rng(derive_seed(base, "fl_max_test", dataset=dataset))
        test_pos = np.sort(rng.choice(test_pos, size=dcfg["max_test"], replace=False))
    used = np.concatenate([train_pos, test_pos])
    pool = fl.Pool.from_images(images[used], labels[used], ds.normalize)
    n_train = len(train_pos)
    shards = fl.make_clients(labels[train_pos], block,
                             seed=derive_seed(base, "fl_clients", study=study, dataset=dataset, seed=seed))
    test_local = np.arange(n_train, n_train + len(test_pos))
    info = {"source": source, "train_pool": int(n_train), "test": int(len(test_pos)),
            "clients": [{"client": c.client, "train": int(len(c.train)), "val": int(len(c.val)),
                         "classes": int(len(np.unique(labels[train_pos][c.train])))} for c in shards]}
    return pool, shards, test_local, info


def build_fl_model(config: dict, study: str, dataset: str, model: str, seed: int, options: dict) -> torch.nn.Module:
    """The initial global model θ_0 of a run (seeded by study, dataset, model and run seed;
    the same for every defense combination with the same architecture)."""
    ds = fl_dataset(config, study, dataset)
    init_seed = derive_seed(config.get("seed", 0), "fl_init", study=study, dataset=dataset, model=model, seed=seed)
    return build_model(model, ds.num_classes, ds.shape, init_seed, **options)


def per_client(defended: fl.GradFn | None, settings: dict, loss: str = "cross_entropy"):
    """client -> gradient function: ``defended`` for the defended clients (fl.defended_clients:
    all, or a list), the plain gradient for the others."""
    plain = fl.plain_gradient(loss)
    dc = settings.get("defended_clients", "all")
    chosen = None if dc == "all" else {int(k) for k in dc}

    def for_client(k: int) -> fl.GradFn:
        if defended is None or (chosen is not None and k not in chosen):
            return plain
        return defended

    return for_client


def grad_fn_factory(chain: Any, settings: dict, loss: str = "cross_entropy"):
    """client -> gradient function for a DefenseChain (None: no defense); see :func:`per_client`."""
    if chain is None:
        return per_client(None, settings, loss)

    def defended(model, x, y, generator):
        grads, _secrets = chain.client_gradient(model, x, y, generator=generator, loss=loss)
        return grads

    return per_client(defended, settings, loss)


# ----------------------------------------------------------------- jobs

def _wc(smk: Any) -> dict:
    wc = dict(smk.wildcards)
    wc["seed"] = int(wc["seed"])
    return wc


def curve_table(rows: list[dict], dataset: str, model: str, defense: str, seed: int) -> pa.Table:
    cols = ["round", "lr", "clients_trained", "local_steps", "mean_val_loss", "val_acc", "test_loss",
            "test_acc", "protected_loss", "protected_acc", "is_best"]
    data: dict[str, Any] = {c: [r[c] for r in rows] for c in cols}
    data["val_loss_per_client"] = [list(r["val_loss_per_client"]) for r in rows]
    n = len(rows)
    out = {"dataset": [dataset] * n, "model": [model] * n, "defense": [defense] * n, "seed": [seed] * n, **data}
    return pa.table(out)


def fl_train_job(smk: Any, device: torch.device) -> dict:
    wc = _wc(smk)
    cfg = smk.config
    study, dataset, model, defense, seed = wc["study"], wc["dataset"], wc["model"], wc["defense"], wc["seed"]
    block = fl.settings_from(fl_block(cfg, study))
    fdef = defense_provider(study).build(cfg, study, dataset, model, defense, block["loss"])
    options = model_build_options(cfg, study, model, fdef)
    params = run_params(cfg, study, dataset, model, defense)
    run_seed = derive_seed(cfg.get("seed", 0), "fl_run", study=study, dataset=dataset, model=model,
                           defense=defense, seed=seed)
    pool, shards, test_pos, info = load_fl_data(cfg, study, dataset, seed)
    net = build_fl_model(cfg, study, dataset, model, seed, options)
    tag = f"fl {study}/{dataset}/{model}/{defense}/seed{seed}"   # on every line: parallel runs interleave
    say(f"{tag}: {count_parameters(net):,} parameters, "
        f"{len(shards)} clients, {info['train_pool']} training / {info['test']} test samples; {info['source']}")

    wc_rec = {**dict(smk.wildcards)}
    base_extra = {"fl": {"model_options": options, "defense": fdef.description, "data": info}}

    def round_record(r: int, row: dict) -> dict:
        return make_record(rule="fl_train", wildcards=wc_rec, params=params, config=cfg, inputs=smk.input,
                           seed=run_seed, device=device, extra=base_extra)

    work = FL_WORK.format(**dict(smk.wildcards))
    ck = block.get("checkpoints", {})
    store = fl.CheckpointStore(work, fingerprint=fl.fingerprint(params=params, wildcards=wc_rec,
                                                                torch_threads=torch.get_num_threads(),
                                                                device=str(device)),
                               keep=ck.get("keep", "all"), record=round_record, state_every=ck.get("state_every", 1))

    def progress(row: dict) -> None:
        say(f"{tag} round {row['round']:4d}: mean val loss {row['mean_val_loss']:.4f}, test acc {100 * row['test_acc']:.2f}%"
            + (" (best)" if row.get("is_best") else ""))

    result = fl.run_fedavg(net, pool, shards, test_pos, block, seed=run_seed, device=device,
                           grad_fn_for=per_client(fdef.grad_fn, block, block["loss"]), store=store, on_round=progress)
    summary = fl.accuracy_summary(result)
    # strict JSON: an accuracy that was not measured (no protected client) is null, not NaN
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    extra = {**base_extra, "fl_result": clean}
    rec = make_record(rule="fl_train", wildcards=wc_rec, params=params, config=cfg, inputs=smk.input,
                      outputs=smk.output, seed=run_seed, device=device, extra=extra)
    io.save_tensors(smk.output.final, result.final_state, {**rec, "fl_round": result.last_round})
    io.save_tensors(smk.output.best, result.best_state, {**rec, "fl_round": result.best_round})
    io.save_table(smk.output.curve, curve_table(result.curve, dataset, model, defense, seed), rec)
    io.write_json(smk.output.accuracy, {"provenance": rec, "dataset": dataset, "model": model, "defense": defense,
                                        "seed": seed, "report": block.get("report", "best_val"), **clean})
    rounds_dir = Path(smk.output.rounds)
    rounds_dir.mkdir(parents=True, exist_ok=True)
    kept = 0
    for r in range(result.last_round + 1):
        src = store.round_path(r)
        if src.exists():
            dst = rounds_dir / src.name
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            kept += 1
    store.clear()          # the resume state is only for interrupted jobs
    # (its empty parent folders stay: removing them could race with a parallel job creating its own)
    secs = result.seconds_per_round
    say(f"{tag} done: {result.last_round} rounds ({result.stop_reason}), best round {result.best_round}: "
        f"test acc {100 * summary['test_acc_best']:.2f}% (final {100 * summary['test_acc_final']:.2f}%); "
        f"{kept} round checkpoints kept")
    return {"rounds": result.last_round, "best_round": result.best_round, "stop_reason": result.stop_reason,
            "resumed_from": result.resumed_from, "rounds_this_run": len(secs),
            "seconds_per_round": (sum(secs) / len(secs)) if secs else None}


def fl_checkpoint_job(smk: Any, device: torch.device) -> dict:
    """The global model after round r as a standalone weights file (for attacks)."""
    wc = dict(smk.wildcards)
    r = int(wc["round"])
    src = Path(smk.input.rounds) / f"{fl.round_name(r)}.safetensors"
    if not src.exists():
        import json

        summary = json.loads(Path(smk.input.accuracy).read_text())
        raise io.ArtifactError(
            f"{src}: no checkpoint after round {r}: training ran {summary.get('last_round')} rounds "
            f"({summary.get('stop_reason')}) and studies.{wc['study']}.fl.checkpoints.keep decides which rounds "
            f"are kept; ask for a kept round <= {summary.get('last_round')}")
    tensors, src_rec = io.load_tensors(src)
    # the directory input is named by the file taken from it (digests are of files)
    rec = make_record(rule="fl_checkpoint", wildcards=wc, params={"round": r}, config=smk.config,
                      inputs={"checkpoint": str(src), "accuracy": smk.input.accuracy},
                      outputs=smk.output, device="cpu",
                      extra={"fl": src_rec.get("fl"), "fl_round": r, "fl_row": src_rec.get("fl_row")})
    io.save_tensors(smk.output[0], tensors, rec)
    say(f"checkpoint after round {r}: {src}")
    return {"round": r}


ACC_COLUMNS = ["dataset", "model", "defense", "seed", "report", "best_round", "last_round", "stop_reason",
               "test_acc_best", "test_acc_final", "test_acc_max", "protected_acc_best", "protected_acc_final",
               "mean_val_loss_best", "mean_val_loss_final", "test_loss_best", "test_loss_final"]


def fl_gather_job(smk: Any, device: torch.device) -> dict:
    import json

    rows = []
    for p in smk.input:
        d = json.loads(Path(p).read_text())
        rows.append({c: d.get(c) for c in ACC_COLUMNS})
    table = pa.Table.from_pylist(rows) if rows else pa.table({c: [] for c in ACC_COLUMNS})
    rec = make_record(rule="fl_gather", wildcards=dict(smk.wildcards), config=smk.config, inputs=smk.input,
                      outputs=smk.output)
    io.save_table(smk.output[0], table, rec)
    say(f"fl accuracies of {smk.wildcards.study}: {len(rows)} runs")
    return {"runs": len(rows)}


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


def accuracy_rows(path_or_rows: Any, dataset: str | None = None, model: str | None = None,
                  defense: str | None = None, report: str = "best_val") -> list[dict]:
    """Accuracy cells for tables: mean ± std (in %) over seeds of the test accuracy (and the
    protected clients' accuracy) of a (dataset, model, defense), from the gathered
    ``results/fl/<study>/accuracy.parquet`` (a path) or its rows.  See
    :func:`gibench.fl.accuracy_rows` for the fields; an empty list when nothing matches."""
    rows = load_accuracy_rows(path_or_rows) if isinstance(path_or_rows, (str, os.PathLike)) else list(path_or_rows)
    return fl.accuracy_rows(rows, dataset=dataset, model=model, defense=defense, report=report)


# ----------------------------------------------------------------- table and figure

def fl_table_doc(rows: list[dict], block: dict, study: str, data_note: str):
    from ..tables.render import TableDoc, display, fmt_mean_std

    report = block.get("report", "best_val")
    cells = fl.accuracy_rows(rows, report=report)
    protected = bool(block.get("protected_clients"))
    header = ["Dataset", "Model", "Defense", "Accuracy [%] (test)"]
    if protected:
        header.append("Accuracy [%] (protected client)")
    header += ["Seeds", "Rounds"]
    body, tidy = [], []
    for c in cells:
        line = [display(c["dataset"]), display(c["model"]), c["defense"],
                fmt_mean_std(c["test_acc_mean"], c["test_acc_std"], min_decimals=2, max_decimals=2)]
        if protected:
            line.append(fmt_mean_std(c["protected_acc_mean"], c["protected_acc_std"], min_decimals=2, max_decimals=2))
        line += [str(c["seeds"]), f"{c['rounds']:.0f}"]
        body.append(line)
        tidy.append(dict(c))
    which = ("the round with the lowest mean validation loss (the model early stopping keeps)"
             if report == "best_val" else "the last round trained")
    es = block.get("early_stopping", {})
    opt = block.get("optimizer", {})
    title = (f"FedAvg utility ({study}): test accuracy of the global model at {which}, mean ± std "
             f"(population) over seeds")
    notes = [f"Settings: {block.get('clients')} clients ({block.get('partition', {}).get('type', 'iid')}), "
             f"{block.get('local_epochs')} local epoch(s), {opt.get('type')} lr {opt.get('lr')}, batch "
             f"{block.get('batch_size')}, at most {block.get('rounds')} rounds, early-stopping patience "
             f"{es.get('patience')} on the mean validation loss.", data_note]
    tidy_cols = ["dataset", "model", "defense", "report", "test_acc_mean", "test_acc_std", "protected_acc_mean",
                 "protected_acc_std", "seeds", "rounds"]
    return TableDoc(name="fl_accuracy", title=title, header=header, body=body, tidy_columns=tidy_cols, tidy=tidy,
                    notes=[n for n in notes if n], group_columns=2)


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


def fl_table_job(smk: Any, device: torch.device) -> dict:
    study = smk.wildcards.study
    rows = load_accuracy_rows(smk.input.accuracy)
    doc = fl_table_doc(rows, fl.settings_from(fl_block(smk.config, study)), study, data_note(smk.config, study))
    written = doc.write(Path(smk.output.csv).parent, table_formats(smk.output))
    say(f"fl table {study}: {', '.join(map(str, written))}")
    return {"written": [str(p) for p in written]}


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


def plot_fl_curves(curves: list[dict], out_dir: str | Path, name: str = "fl_curves",
                   title: str | None = None, labels: dict[str, str] | None = None) -> list[Path]:
    """One column per (dataset, model); top: test accuracy [%] of the global model per round,
    bottom: mean validation loss; one line per defense (``labels``: its display name), the mean
    over seeds with a band of ± std where a defense has more than one seed (its legend entry
    says how many seeds; "1 seed": no band)."""
    from matplotlib.ticker import MaxNLocator

    from ..tables.figures import _figure, save_figure, wrap_title
    from ..tables.render import display
    from ..tables.stochastic_defenses import model_name      # the papers' model names (sd_cnn: CNN)

    groups: dict[tuple, dict[str, list[dict]]] = {}
    for rows in curves:
        if not rows:
            continue
        key = (rows[0]["dataset"], rows[0]["model"])
        groups.setdefault(key, {}).setdefault(rows[0]["defense"], []).append(rows)
    keys = list(groups)
    ncol = max(1, len(keys))
    fig = _figure(4.2 * ncol, 6.0)
    axes = fig.subplots(2, ncol, squeeze=False)
    for j, key in enumerate(keys):
        ax_acc, ax_loss = axes[0][j], axes[1][j]
        for defense, runs in groups[key].items():
            n = max(len(r) for r in runs)
            rounds = np.arange(n)

            def stack(col: str, scale: float = 1.0) -> np.ndarray:
                out = np.full((len(runs), n), np.nan)
                for i, r in enumerate(runs):
                    vals = [scale * float(x[col]) for x in r]
                    out[i, :len(vals)] = vals
                return out

            for ax, col, scale in ((ax_acc, "test_acc", 100.0), (ax_loss, "mean_val_loss", 1.0)):
                m = stack(col, scale)
                with np.errstate(all="ignore"):
                    mu, sd = np.nanmean(m, 0), np.nanstd(m, 0)
                seeds = f"{len(runs)} seeds, ± std" if len(runs) > 1 else "1 seed"
                line, = ax.plot(rounds, mu, label=f"{(labels or {}).get(defense, defense)} ({seeds})", lw=1.2)
                if len(runs) > 1:
                    ax.fill_between(rounds, mu - sd, mu + sd, color=line.get_color(), alpha=0.15, lw=0)
        ax_acc.set_title(f"{display(key[0])} / {model_name(key[1])}")
        for ax in (ax_acc, ax_loss):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_acc.set_ylabel("test accuracy [%]")
        ax_loss.set_ylabel("mean validation loss")
        ax_loss.set_xlabel("communication round")
        ax_acc.grid(alpha=0.3)
        ax_loss.grid(alpha=0.3)
        ax_acc.legend(fontsize=7, ncol=1 if len(groups[key]) <= 4 else 2)
    if title:
        fig.suptitle(wrap_title(title, 4.2 * ncol, 8), fontsize=8)
    return save_figure(fig, out_dir, name)


def fl_figure_job(smk: Any, device: torch.device) -> dict:
    curves = [io.load_table(p)[0].to_pylist() for p in smk.input.curves]
    study = smk.wildcards.study
    defenses = list(dict.fromkeys(rows[0]["defense"] for rows in curves if rows))
    runs: dict[tuple, int] = {}
    for rows in curves:
        if rows:
            key = (rows[0]["dataset"], rows[0]["model"], rows[0]["defense"])
            runs[key] = runs.get(key, 0) + 1
    seeds = sorted(set(runs.values()))
    over = ("1 seed per run: no band" if seeds == [1] else
            "mean over seeds, band ± std" + (" (where a run has more than one seed)" if 1 in seeds else ""))
    written = plot_fl_curves(curves, Path(smk.output.png).parent,
                             title=f"FedAvg utility ({study}): global model per communication round; {over}",
                             labels={d: defense_label(smk.config, study, d) for d in defenses})
    say(f"fl figure {study}: {', '.join(map(str, written))}")
    return {"written": [str(p) for p in written]}


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
