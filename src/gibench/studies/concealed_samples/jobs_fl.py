"""The FedAvg accuracy jobs of the concealed-samples study (rules ``cs_fl``, ``cs_fl_gather``):
the accuracy columns of the tables, a run of :func:`gibench.fl.run_fedavg` per (dataset, model,
cohort, defense, seed) with the protected client's updates defended."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import io
from ...models import build_model
from ...pipeline.runner import say
from ...provenance import make_record
from ...seeds import derive_seed
from .prep import prep_for
from .spec import defense_steps, fl_settings, proxy_dataset, spec
from .targets import fl_params


def fl_job(smk: Any, device: torch.device) -> dict:
    from ... import fl
    from ...defenses.concealed import fl_gradient_fn

    wc = dict(smk.wildcards)
    cfg = smk.config
    d, m, cohort, defense, seed = wc["dataset"], wc["model"], wc["cohort"], wc["defense"], int(wc["seed"])
    s = spec(cfg)
    u = s.utility
    prep = prep_for(cfg, d)
    ds = prep.ds
    dspec = cfg["datasets"][d]
    base = cfg["seed"]
    settings = fl_settings(cfg, d, cohort)
    if dspec.get("source", "bundled") == "hub":
        test_split = "test" if "test" in ds.hub_splits else "val"     # TinyImageNet has no labelled test split
        train = ds.load("hub", "train", cfg["resources_dir"], cfg["hub_dir"])
        test = ds.load("hub", test_split, cfg["resources_dir"], cfg["hub_dir"])
        images = np.concatenate([train.images, test.images])
        labels = np.concatenate([train.labels, test.labels])
        train_pos, test_pos = np.arange(len(train.labels)), np.arange(len(train.labels), len(labels))
        source = f"{train.source} / {test.source}"
    else:
        split = ds.load("bundled", dspec.get("split") or ds.bundled_splits[0], cfg["resources_dir"], cfg["hub_dir"])
        images, labels = split.images, split.labels
        perm = np.random.default_rng(derive_seed(base, "cs_fl_holdout", dataset=d)).permutation(len(labels))
        n_test = int(round(float(u.holdout_fraction) * len(labels)))
        test_pos, train_pos = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        source = f"{split.source}: {n_test} held out as the test set"
    if u.max_test is not None and len(test_pos) > u.max_test:
        test_pos = np.sort(np.random.default_rng(derive_seed(base, "cs_fl_max_test", dataset=d)).choice(
            test_pos, size=int(u.max_test), replace=False))
    used = np.concatenate([train_pos, test_pos])
    pool = fl.Pool.from_images(images[used], labels[used], prep.normalize)
    n_train = len(train_pos)
    shards = fl.make_clients(labels[train_pos], settings,
                             seed=derive_seed(base, "cs_fl_clients", dataset=d, cohort=cohort, seed=seed))
    test_local = np.arange(n_train, n_train + len(test_pos))
    taken = set(np.concatenate([np.concatenate([c.train, c.val]) for c in shards]).tolist())
    public = np.asarray([i for i in range(n_train) if i not in taken], np.int64)
    steps = defense_steps(cfg, defense, d, u.defense_overrides)
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
    net = build_model(m, prep.num_classes, prep.shape, init_seed, **s.model_options(m))
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
