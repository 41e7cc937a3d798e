"""FedAvg utility runs in the pipeline, the torch side: the data and initial model of a run, the
training jobs, round checkpoints for attacks on trained models, the gathered accuracies, the
accuracy table and the training-curves figure.

A study opts in with an ``fl`` block (schema ``$defs/fedavg`` in config/schema/fedavg.defs.yaml);
what the block asks for (paths, runs, defense combinations, params, inputs, the check, the
targets) is :mod:`gibench.fl_plan`, which the DAG build reads without importing torch; its
names are re-exported here.  Tables read ``results/fl/<study>/accuracy.parquet`` (one row per
run); :func:`accuracy_rows` gives the accuracy cells (mean ± std over seeds) of a (dataset,
model, defense).

Data: with ``source: hub`` the clients share the train split and accuracy is measured on the
test split.  The bundled slices hold a single split (the first ~1000 CIFAR test images, the
MNIST test split): a fixed seeded ``holdout_fraction`` of it is the test set and the rest is
divided among the clients — accuracy is then measured on held-out test images, but with far
less training data than the papers (captions say so).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from .. import fl, io
from ..fl_plan import (  # noqa: F401  (re-exported: the DAG helpers' old home, for callers and tests)
    BUNDLED_FILES, DEFAULT_PROVIDER, DEFENSE_PATTERN, FL_ACC, FL_ALL_ACC, FL_BEST, FL_CHECKPOINT, FL_CURVE, FL_DEFENSE_PROVIDERS,
    FL_DIR, FL_FIGURE, FL_FINAL, FL_ROUNDS, FL_TABLE, FL_WORK, NAME_ORDER, NO_DEFENSE, ChainDefenses, FLDefense,
    accuracy_file, check_fl, checkpoint_path, combination_name, data_inputs, data_note, dataset_spec, defense_chain,
    defense_defaults, defense_label, defense_provider, defense_specs, fl_block, fl_dataset, fl_runs, fl_studies,
    fl_targets, fmt_round, load_accuracy_rows, model_build_options, run_files, run_params, weights_for)
from ..models import build_model, count_parameters
from ..provenance import make_record
from ..seeds import derive_seed
from ..tables import figures     # its drawing helpers, called through the module (tests patch save_figure)
from ..tables.paper import model_name      # the papers' model names (sd_cnn: CNN)
from ..tables.render import TableDoc, display, fmt_mean_std, table_formats
from .runner import say

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


def accuracy_rows(path_or_rows: Any, dataset: str | None = None, model: str | None = None,
                  defense: str | None = None, report: str = "best_val") -> list[dict]:
    """Accuracy cells for tables: mean ± std (in %) over seeds of the test accuracy (and the
    protected clients' accuracy) of a (dataset, model, defense), from the gathered
    ``results/fl/<study>/accuracy.parquet`` (a path) or its rows.  See
    :func:`gibench.fl.accuracy_rows` for the fields; an empty list when nothing matches."""
    rows = load_accuracy_rows(path_or_rows) if isinstance(path_or_rows, (str, os.PathLike)) else list(path_or_rows)
    return fl.accuracy_rows(rows, dataset=dataset, model=model, defense=defense, report=report)


# ----------------------------------------------------------------- table and figure


# ----------------------------------------------------------------- table and figure

def fl_table_doc(rows: list[dict], block: dict, study: str, data_note: str):
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


def fl_table_job(smk: Any, device: torch.device) -> dict:
    study = smk.wildcards.study
    rows = load_accuracy_rows(smk.input.accuracy)
    doc = fl_table_doc(rows, fl.settings_from(fl_block(smk.config, study)), study, data_note(smk.config, study))
    written = doc.write(Path(smk.output.csv).parent, table_formats(smk.output))
    say(f"fl table {study}: {', '.join(map(str, written))}")
    return {"written": [str(p) for p in written]}


def plot_fl_curves(curves: list[dict], out_dir: str | Path, name: str = "fl_curves",
                   title: str | None = None, labels: dict[str, str] | None = None) -> list[Path]:
    """One column per (dataset, model); top: test accuracy [%] of the global model per round,
    bottom: mean validation loss; one line per defense (``labels``: its display name), the mean
    over seeds with a band of ± std where a defense has more than one seed (its legend entry
    says how many seeds; "1 seed": no band)."""
    from matplotlib.ticker import MaxNLocator   # deferred: matplotlib only for the figure (as tables.figures)

    groups: dict[tuple, dict[str, list[dict]]] = {}
    for rows in curves:
        if not rows:
            continue
        key = (rows[0]["dataset"], rows[0]["model"])
        groups.setdefault(key, {}).setdefault(rows[0]["defense"], []).append(rows)
    keys = list(groups)
    ncol = max(1, len(keys))
    fig = figures._figure(4.2 * ncol, 6.0)
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
        fig.suptitle(figures.wrap_title(title, 4.2 * ncol, 8), fontsize=8)
    return figures.save_figure(fig, out_dir, name)


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
