"""FedAvg simulation (gibench.fl) and its pipeline (rules/fl.smk): independent facts.

* FedAvg of identical clients is centralised SGD on one client's data (one round);
  FedAvg with one full-batch local step is FedSGD: one full-batch gradient step on the union
  of the clients' data with sample weights (McMahan et al. 2017, §2).
* Early stopping stops `patience` rounds after the best round of a constructed curve and
  keeps the best round's model.
* A client's defended gradient is what its optimiser applies (DP: per-sample norm <= τ).
* Resuming from the state after round k continues the same curve bitwise (CPU).
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gibench import fl, io
from gibench.seeds import derive_seed


def tiny_model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(6, 12), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(12, 3))
    return nn.Sequential(*layers)


def toy_data(n: int = 120, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    w = torch.randn(6, 3, generator=g)
    y = (x @ w + 0.3 * torch.randn(n, 3, generator=g)).argmax(1)
    return x, y


SGD = {"type": "sgd", "lr": 0.1, "momentum": 0.0}


# ============================================================== FedAvg vs centralised training

def test_identical_clients_equal_centralised_sgd_for_one_round():
    x, y = toy_data(40)
    pool = fl.Pool(y.numpy(), x=x)
    everything = np.arange(40)
    clients = [fl.ClientShard(k, everything, np.zeros(0, np.int64)) for k in range(4)]
    settings = {"clients": 4, "rounds": 1, "local_epochs": 2, "batch_size": 8, "shuffle": False,
                "optimizer": SGD, "early_stopping": {"patience": None}}
    model = tiny_model()
    central = copy.deepcopy(model)
    res = fl.run_fedavg(model, pool, clients, np.arange(40), settings, seed=5,
                        evaluate=lambda m, r: {"mean_val_loss": 0.0})

    # centralised SGD written out independently: same data order, 2 epochs of batches of 8
    opt = torch.optim.SGD(central.parameters(), lr=0.1)
    for _ in range(2):
        for s in range(0, 40, 8):
            opt.zero_grad()
            F.cross_entropy(central(x[s:s + 8]), y[s:s + 8]).backward()
            opt.step()
    want = central.state_dict()
    init = tiny_model().state_dict()
    assert max((want[k] - init[k]).abs().max().item() for k in want) > 1e-3        # training moved the weights
    for k in want:
        torch.testing.assert_close(res.final_state[k], want[k], rtol=1e-6, atol=1e-7)
    assert res.curve[1]["local_steps"] == 4 * 2 * 5                               # 4 clients x 2 epochs x 5 batches


def test_one_full_batch_step_per_client_is_fedsgd_on_the_union():
    """Unequal shards, E = 1, B >= shard size, SGD lr η: Σ_k n_k/n (θ - η g_k) = θ - η ∇L_union."""
    x, y = toy_data(50, seed=1)
    pool = fl.Pool(y.numpy(), x=x)
    shards = [np.arange(0, 7), np.arange(7, 25), np.arange(25, 50)]
    clients = [fl.ClientShard(k, s, np.zeros(0, np.int64)) for k, s in enumerate(shards)]
    settings = {"clients": 3, "rounds": 1, "batch_size": 64, "optimizer": SGD, "weighting": "samples",
                "early_stopping": {"patience": None}}
    model = tiny_model(3)
    init = copy.deepcopy(model.state_dict())
    ref = copy.deepcopy(model)
    res = fl.run_fedavg(model, pool, clients, np.arange(50), settings, seed=0,
                        evaluate=lambda m, r: {"mean_val_loss": 0.0})
    loss = F.cross_entropy(ref(x), y)                    # mean over all 50 samples of the union
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    for (name, _), g in zip(ref.named_parameters(), grads):
        torch.testing.assert_close(res.final_state[name], init[name] - 0.1 * g, rtol=1e-5, atol=1e-6)


def test_fedavg_aggregate_is_the_weighted_mean():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([4.0, -2.0]), "n": torch.tensor(7)}
    out = fl.fedavg_aggregate([a, b], [1, 3])
    torch.testing.assert_close(out["w"], torch.tensor([(1 + 12) / 4, (2 - 6) / 4]))
    assert out["n"].item() == 3                           # integer buffers: the first client's
    with pytest.raises(ValueError):
        fl.fedavg_aggregate([a], [0])


# ============================================================== data splits

def test_iid_partition_covers_every_sample_once_in_near_equal_parts():
    parts = fl.partition_iid(103, 10, np.random.default_rng(0))
    allpos = np.concatenate(parts)
    assert sorted(allpos.tolist()) == list(range(103))
    assert {len(p) for p in parts} == {10, 11}


def test_dirichlet_partition_is_disjoint_complete_and_label_skewed():
    labels = np.repeat(np.arange(10), 60)
    parts = fl.partition_dirichlet(labels, 10, alpha=0.1, rng=np.random.default_rng(1), min_samples=5)
    allpos = np.concatenate(parts)
    assert sorted(allpos.tolist()) == list(range(600))
    assert min(len(p) for p in parts) >= 5
    # with alpha = 0.1 most clients are dominated by few classes; IID shards hold all 10 evenly
    top_share = [np.bincount(labels[p], minlength=10).max() / len(p) for p in parts]
    assert np.median(top_share) > 0.5
    iid_share = [np.bincount(labels[p], minlength=10).max() / len(p)
                 for p in fl.partition_iid(600, 10, np.random.default_rng(1))]
    assert np.median(iid_share) < 0.35


def test_make_clients_validation_split_and_sample_cap():
    labels = np.arange(500) % 10
    clients = fl.make_clients(labels, {"clients": 5, "val_fraction": 0.1}, seed=3)
    for c in clients:
        assert len(c.val) == 10 and len(c.train) == 90
        assert not set(c.train) & set(c.val)
    capped = fl.make_clients(labels, {"clients": 5, "val_fraction": 0.25, "samples_per_client": 40}, seed=3)
    assert all(len(c.train) == 30 and len(c.val) == 10 for c in capped)
    with pytest.raises(fl.FLConfigError, match="samples_per_client"):
        fl.make_clients(labels, {"clients": 5, "samples_per_client": 200}, seed=3)
    with pytest.raises(fl.FLConfigError, match="clients"):
        fl.make_clients(labels[:3], {"clients": 5}, seed=3)


# ============================================================== early stopping, schedules

def test_early_stopping_on_a_constructed_curve():
    #        round: 0    1    2    3    4     5    6    7    8
    curve = [5.0, 4.0, 3.0, 3.5, 2.9, 2.95, 3.0, 2.9, 3.3, 1.0, 1.0]
    es = fl.EarlyStopping(patience=3)
    stopped = None
    for r, v in enumerate(curve):
        es.update(r, v)
        if es.should_stop:
            stopped = r
            break
    # best 2.9 at round 4; rounds 5, 6, 7 do not improve (7 only equals it) -> stop after round 7
    assert (stopped, es.best_round, es.best) == (7, 4, 2.9)
    es = fl.EarlyStopping(patience=2, min_delta=0.2)
    for r, v in enumerate([1.0, 0.9, 0.85, 0.5]):
        es.update(r, v)
        if es.should_stop:
            break
    assert (r, es.best_round) == (2, 0)                   # 0.9 and 0.85 are within min_delta of 1.0


def test_fedavg_run_stops_early_and_keeps_the_best_round(tmp_path):
    curve = [5.0, 4.0, 3.0, 3.5, 2.9, 2.95, 3.0, 2.9, 3.3, 1.0, 1.0]
    x, y = toy_data(60)
    pool = fl.Pool(y.numpy(), x=x)
    clients = fl.make_clients(y.numpy()[:48], {"clients": 2}, seed=0)
    store = fl.CheckpointStore(tmp_path / "work", fingerprint="t")
    res = fl.run_fedavg(tiny_model(), pool, clients, np.arange(48, 60),
                        {"clients": 2, "rounds": 10, "batch_size": 8, "early_stopping": {"patience": 3}},
                        seed=1, store=store, evaluate=lambda m, r: {"mean_val_loss": curve[r]})
    assert (res.last_round, res.best_round, res.stop_reason) == (7, 4, "early_stopping")
    assert [r["round"] for r in res.curve] == list(range(8))
    assert [r["is_best"] for r in res.curve] == [True, True, True, False, True, False, False, False]
    best_ck, rec = io.load_tensors(store.round_path(4))
    last_ck, _ = io.load_tensors(store.round_path(7))
    assert rec["fl_round"] == 4
    for k in best_ck:
        assert torch.equal(res.best_state[k], best_ck[k])
        assert torch.equal(res.final_state[k], last_ck[k])
    assert not all(torch.equal(best_ck[k], last_ck[k]) for k in best_ck)


def test_plateau_schedule_matches_torch_reduce_lr_on_plateau():
    values = [1.0, 0.9, 0.9, 0.9, 0.95, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7]
    mine = fl.RoundSchedule(0.01, {"type": "plateau", "factor": 0.5, "patience": 2, "threshold": 1e-4})
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.01)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=2, threshold=1e-4)
    for t, v in enumerate(values, start=1):
        assert mine.lr_for(t) == pytest.approx(opt.param_groups[0]["lr"], rel=0, abs=1e-15)
        mine.step(v)
        ref.step(v)
    assert mine.lr < 0.01
    exp = fl.RoundSchedule(0.01, {"type": "exponential", "gamma": 0.99})
    assert exp.lr_for(1) == 0.01 and exp.lr_for(11) == pytest.approx(0.01 * 0.99 ** 10)


# ============================================================== defended local training

def clipped_mean_gradient(tau: float):
    """Per-sample clipping to norm tau, then the mean (DP-SGD without noise), written out."""

    def fn(model, x, y, generator):
        names = [n for n, _ in model.named_parameters()]
        acc = None
        for i in range(len(x)):
            g = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), list(model.parameters()))
            norm = torch.sqrt(sum((t ** 2).sum() for t in g))
            g = [t * min(1.0, tau / (norm.item() + 1e-12)) for t in g]
            acc = g if acc is None else [a + t for a, t in zip(acc, g)]
        return {n: a / len(x) for n, a in zip(names, acc)}

    return fn


def test_the_optimiser_applies_the_clients_gradient_function():
    """SGD step = -lr x what the client's gradient function returned (so a defense acting in
    the gradient function acts in training): per-sample clipping keeps ‖Δθ‖/lr <= τ."""
    x, y = toy_data(16, seed=4)
    pool = fl.Pool(y.numpy(), x=x)
    clients = [fl.ClientShard(0, np.arange(4), np.zeros(0, np.int64))]
    tau = 1e-3
    model = tiny_model(2)
    init = copy.deepcopy(model.state_dict())
    res = fl.run_fedavg(model, pool, clients, np.arange(16), {"clients": 1, "rounds": 1, "batch_size": 4,
                                                              "optimizer": SGD, "early_stopping": {"patience": None}},
                        seed=0, grad_fn_for=lambda k: clipped_mean_gradient(tau),
                        evaluate=lambda m, r: {"mean_val_loss": 0.0})
    delta = torch.sqrt(sum(((res.final_state[k] - init[k]) ** 2).sum() for k in init)) / 0.1
    ref = tiny_model(2)
    plain = torch.sqrt(sum((g ** 2).sum() for g in torch.autograd.grad(
        F.cross_entropy(ref(x[:4]), y[:4]), list(ref.parameters()))))
    assert plain > 100 * tau                              # clipping is active
    assert 0 < delta.item() <= tau * (1 + 1e-5)


def test_dp_client_clips_per_sample_during_training():
    """gibench.defenses' DP in the client's local steps: with σ = 0 the SGD step is -lr x the
    mean of per-sample gradients clipped to τ (norm <= τ); with σ > 0 the step differs from
    that by the noise Ξ/B, Ξ ~ N(0, σ²τ²) per entry (Abadi et al. 2016)."""
    defenses = pytest.importorskip("gibench.defenses", reason="gibench.defenses (issue 10) not built yet")
    from gibench.pipeline.jobs_fl import grad_fn_factory

    x, y = toy_data(16, seed=4)
    pool = fl.Pool(y.numpy(), x=x)
    clients = [fl.ClientShard(0, np.arange(4), np.zeros(0, np.int64))]
    tau, batch = 1e-3, 4
    lr = 10.0          # a large step keeps float32 rounding of θ small next to lr·g (|g| <= τ)
    settings = {"clients": 1, "rounds": 1, "batch_size": batch, "optimizer": {"type": "sgd", "lr": lr},
                "early_stopping": {"patience": None}}

    def applied_gradient(sigma: float, seed: int = 0) -> torch.Tensor:
        chain = defenses.DefenseChain([{"name": "dp", "clip": tau, "sigma": sigma}])
        model = tiny_model(2)
        init = copy.deepcopy(model.state_dict())
        res = fl.run_fedavg(model, pool, clients, np.arange(16), settings, seed=seed,
                            grad_fn_for=grad_fn_factory(chain, settings), evaluate=lambda m, r: {"mean_val_loss": 0.0})
        return torch.cat([(res.final_state[k] - init[k]).flatten() for k in init]) / -lr

    clipped = applied_gradient(0.0)
    assert 0 < clipped.norm().item() <= tau * (1 + 1e-5)
    want = clipped_mean_gradient(tau)(tiny_model(2), x[:batch], y[:batch], None)
    torch.testing.assert_close(clipped, torch.cat([g.flatten() for g in want.values()]), rtol=1e-3, atol=1e-8)
    sigma = 50.0
    noise = torch.cat([applied_gradient(sigma, seed=s) - clipped for s in range(4)])
    assert noise.mean().abs().item() < 0.2 * sigma * tau / batch
    assert noise.std().item() == pytest.approx(sigma * tau / batch, rel=0.15)


# ============================================================== checkpoints and resuming

def _resume_setup(tmp_path, name):
    x, y = toy_data(200, seed=7)
    pool = fl.Pool(y.numpy(), x=x)
    clients = fl.make_clients(y.numpy()[:160], {"clients": 4, "val_fraction": 0.2}, seed=2)
    settings = {"clients": 4, "rounds": 6, "batch_size": 16, "client_fraction": 0.75,
                "optimizer": {"type": "adam", "lr": 1e-2}, "early_stopping": {"patience": 10},
                "lr_schedule": {"type": "plateau", "patience": 1}}
    store = fl.CheckpointStore(tmp_path / name, fingerprint="same")
    return pool, clients, settings, store


def test_resume_continues_the_same_curve_bitwise(tmp_path):
    pool, clients, settings, store = _resume_setup(tmp_path, "straight")
    straight = fl.run_fedavg(tiny_model(9, dropout=0.3), pool, clients, np.arange(160, 200), settings,
                             seed=11, store=store)
    pool, clients, settings, store = _resume_setup(tmp_path, "interrupted")
    with pytest.raises(fl.Interrupted):
        fl.run_fedavg(tiny_model(9, dropout=0.3), pool, clients, np.arange(160, 200), settings,
                      seed=11, store=store, stop_after=3)
    # a fresh process would build the initial model again; the state overrides its weights
    resumed = fl.run_fedavg(tiny_model(9, dropout=0.3), pool, clients, np.arange(160, 200), settings,
                            seed=11, store=store)
    assert resumed.resumed_from == 3 and len(resumed.seconds_per_round) == 3
    assert len(straight.curve) == len(resumed.curve) == 7
    for a, b in zip(straight.curve, resumed.curve):
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    for k in straight.final_state:
        assert torch.equal(straight.final_state[k], resumed.final_state[k])
        assert torch.equal(straight.best_state[k], resumed.best_state[k])
    for r in range(7):
        a, _ = io.load_tensors(tmp_path / "straight" / "rounds" / f"round{r:04d}.safetensors")
        b, _ = io.load_tensors(tmp_path / "interrupted" / "rounds" / f"round{r:04d}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)
    # training did something and the runs are not trivially constant
    assert straight.curve[-1]["mean_val_loss"] < straight.curve[0]["mean_val_loss"]
    assert len({r["clients_trained"] for r in straight.curve[1:]}) == 1 and straight.curve[1]["clients_trained"] == 3


def test_a_state_of_another_configuration_is_not_resumed(tmp_path):
    pool, clients, settings, store = _resume_setup(tmp_path, "w")
    with pytest.raises(fl.Interrupted):
        fl.run_fedavg(tiny_model(9), pool, clients, np.arange(160, 200), settings, seed=11, store=store, stop_after=2)
    other = fl.CheckpointStore(tmp_path / "w", fingerprint="changed")
    res = fl.run_fedavg(tiny_model(9), pool, clients, np.arange(160, 200), {**settings, "rounds": 2}, seed=11,
                        store=other)
    assert res.resumed_from is None and res.last_round == 2


# ============================================================== summaries

def test_accuracy_rows_mean_and_population_std_over_seeds():
    rows = [{"dataset": "mnist", "model": "cnn", "defense": "dp", "seed": s, "last_round": 10 + s,
             "test_acc_best": a, "test_acc_final": a - 0.1, "protected_acc_best": float("nan"),
             "protected_acc_final": float("nan")} for s, a in enumerate([0.90, 0.92, 0.97])]
    rows.append({**rows[0], "defense": "none", "test_acc_best": 0.5})
    (cell,) = fl.accuracy_rows(rows, dataset="mnist", model="cnn", defense="dp")
    assert cell["seeds"] == 3
    assert cell["test_acc_mean"] == pytest.approx(93.0)
    assert cell["test_acc_std"] == pytest.approx(math.sqrt(((3) ** 2 + 1 ** 2 + 4 ** 2) / 3))
    assert math.isnan(cell["protected_acc_mean"])
    (final,) = fl.accuracy_rows(rows, defense="dp", report="final")
    assert final["test_acc_mean"] == pytest.approx(83.0)
    assert fl.accuracy_rows(rows, dataset="cifar10") == []


# ============================================================== config and pipeline

def _micro(fl_block: dict) -> dict:
    from workflow_helpers import MICRO

    cfg = copy.deepcopy(MICRO)
    cfg["studies"]["selective_encryption"]["fl"] = fl_block
    return cfg


def test_fl_config_errors_name_the_key(resources):
    from gibench import config as gconfig

    def err(block: dict) -> str:
        cfg = _micro(block)
        cfg["resources_dir"] = str(resources)
        with pytest.raises(gconfig.ConfigError) as e:
            gconfig.validate(cfg)
        return str(e.value)

    run = [{"dataset": "cifar10", "model": "sd_cnn"}]
    assert "fl.optimizer.type" in err({"runs": run, "optimizer": {"type": "rmsprop"}})
    assert "unknown key(s) 'roundz'" in err({"runs": run, "roundz": 3})
    assert "fl.protected_clients: client 12 does not exist" in err({"runs": run, "protected_clients": [12]})
    msg = err({"runs": [{"dataset": "cifar10", "model": "sd_cnn", "defenses": ["dp+bogus"]}]})
    assert "fl.runs[0].defenses[0]" in msg and "dp+bogus" in msg
    msg = err({"runs": [{"dataset": "cifar10", "model": "sd_cnn", "defenses": ["precode+cvb"]}]})
    assert "fl.runs[0].defenses[0]" in msg and "privacy modules" in msg
    assert "fl.runs[0].model: unknown model 'nope'" in err({"runs": [{"dataset": "cifar10", "model": "nope"}]})
    ok = _micro({"runs": [{"dataset": "cifar10", "model": "sd_cnn", "defenses": ["none", "dropout+dp"]}],
                 "defenses": {"strong_dp": [{"name": "dp", "clip": 1.0, "sigma": 0.1}]}})
    ok["resources_dir"] = str(resources)
    gconfig.validate(ok)
    assert ok["studies"]["selective_encryption"]["fl"]["early_stopping"]["patience"] == 40   # defaults filled


@pytest.mark.slow
def test_fl_workflow_trains_checkpoints_and_tables(tmp_path):
    """The real Snakefile on a micro config: training jobs with and without defenses, a round
    checkpoint, the gathered accuracies, the table and the figure; the best weights reproduce
    the recorded test accuracy when evaluated again on the held-out test set."""
    from workflow_helpers import run_snakemake, write_config

    from gibench import io
    from gibench.pipeline import jobs_fl

    block = {"runs": [{"dataset": "cifar10", "model": "sd_cnn", "defenses": ["none", "dropout+dp"]}],
             "seeds": [0], "clients": 3, "samples_per_client": 40, "rounds": 2, "batch_size": 16,
             "checkpoints": {"keep": [0, 1, 2]}}
    cfg_path = write_config(tmp_path, _micro(block))
    base = "results/fl/selective_encryption/cifar10/sd_cnn"
    ck = jobs_fl.checkpoint_path("selective_encryption", "cifar10", "sd_cnn", "none", 0, 1)
    run_snakemake(tmp_path, cfg_path, "results/tables/selective_encryption/fl_accuracy.md",
                  "results/figures/selective_encryption/fl_curves.png", ck)
    rows = list(__import__("csv").DictReader(open(tmp_path / "results/tables/selective_encryption/fl_accuracy.csv")))
    assert sorted(r["defense"] for r in rows) == ["dropout+dp", "none"]
    assert (tmp_path / "results/figures/selective_encryption/fl_curves.pdf").exists()
    # every progress line names its run (parallel runs interleave on the terminal); the job's
    # stdout/stderr is in its `out` log, its resource use in its benchmark file
    log = (tmp_path / "logs/fl_train/selective_encryption/cifar10/sd_cnn/dropout+dp/seed0.log").read_text()
    tag = "fl selective_encryption/cifar10/sd_cnn/dropout+dp/seed0"
    assert f"{tag} round    1:" in log and f"{tag} round    2:" in log and f"{tag} done: 2 rounds" in log
    assert (tmp_path / "logs/fl_train/selective_encryption/cifar10/sd_cnn/dropout+dp/seed0.benchmark.tsv").exists()

    import yaml

    from gibench import config as gconfig

    cfg = gconfig.validate(yaml.safe_load(cfg_path.read_text()))
    for defense in ("none", "dropout+dp"):
        d = tmp_path / base / defense / "seed0"
        acc = json.loads((d / "accuracy.json").read_text())
        assert acc["provenance"]["rule"] == "fl_train" and acc["last_round"] == 2
        curve, rec = io.load_table(d / "curve.parquet")
        assert curve.column("round").to_pylist() == [0, 1, 2]
        assert acc["test_acc_best"] == curve.column("test_acc").to_pylist()[acc["best_round"]]
        final, frec = io.load_tensors(d / "final.safetensors")
        last, _ = io.load_tensors(d / "rounds" / "round0002.safetensors")
        assert all(torch.equal(final[k], last[k]) for k in final) and frec["fl_round"] == 2
        # re-evaluate the best weights on the held-out test set: the recorded accuracy
        best, brec = io.load_tensors(d / "best.safetensors")
        fdef = jobs_fl.DEFAULT_PROVIDER.build(cfg, "selective_encryption", "cifar10", "sd_cnn", defense, "cross_entropy")
        net = jobs_fl.build_fl_model(cfg, "selective_encryption", "cifar10", "sd_cnn", 0,
                                     jobs_fl.model_build_options(cfg, "selective_encryption", "sd_cnn", fdef))
        net.load_state_dict(best)
        pool, shards, test_pos, _ = jobs_fl.load_fl_data(cfg, "selective_encryption", "cifar10", 0)
        with fl.seeded_rng(derive_seed(brec["seed"], "fl_eval", round=acc["best_round"]), torch.device("cpu")):
            _, correct = fl.per_sample_eval(net, pool, test_pos, 500, "cpu")
        assert correct.mean() == pytest.approx(acc["test_acc_best"], abs=1e-12)
        assert not (tmp_path / jobs_fl.FL_WORK.format(study="selective_encryption", dataset="cifar10",
                                                      model="sd_cnn", defense=defense, seed=0)).exists()
    ckt, ckrec = io.load_tensors(tmp_path / ck)
    r1, _ = io.load_tensors(tmp_path / base / "none/seed0/rounds/round0001.safetensors")
    assert ckrec["rule"] == "fl_checkpoint" and ckrec["fl_round"] == 1
    assert all(torch.equal(ckt[k], r1[k]) for k in r1)
    # a round the run never reached: a clear error naming the round
    proc = run_snakemake(tmp_path, cfg_path,
                         jobs_fl.checkpoint_path("selective_encryption", "cifar10", "sd_cnn", "none", 0, 5), check=False)
    assert proc.returncode != 0 and "no checkpoint after round 5" in proc.stderr


def test_attack_checkpoint_points_attacks_at_a_kept_trained_round(resources):
    from gibench import config as gconfig
    from gibench.pipeline import jobs_fl

    cfg = _micro({"runs": [{"dataset": "cifar100", "model": "lenet"}], "attack_checkpoint": {"round": 3},
                  "checkpoints": {"keep": [0, 3]}})
    cfg["resources_dir"] = str(resources)
    gconfig.validate(cfg)
    want = "results/models/selective_encryption/cifar100/lenet/fl/none/seed0/round0003.safetensors"
    assert jobs_fl.weights_for(cfg, "selective_encryption", "cifar100", "lenet", "init.safetensors") == want
    del cfg["studies"]["selective_encryption"]["fl"]["attack_checkpoint"]
    assert jobs_fl.weights_for(cfg, "selective_encryption", "cifar100", "lenet", "init.safetensors") == "init.safetensors"
    bad = _micro({"runs": [{"dataset": "cifar100", "model": "cnn"}], "attack_checkpoint": {"round": 2},
                  "checkpoints": {"keep": [0, 3]}})
    bad["resources_dir"] = str(resources)
    with pytest.raises(gconfig.ConfigError) as e:
        gconfig.validate(bad)
    assert "attack_checkpoint.round: round 2 is not kept" in str(e.value)
    assert "no run (cifar100, lenet" in str(e.value)


def test_without_validation_data_there_is_no_early_stopping_and_best_is_last():
    x, y = toy_data(60)
    pool = fl.Pool(y.numpy(), x=x)
    clients = fl.make_clients(y.numpy()[:48], {"clients": 2, "val_fraction": 0.0}, seed=0)
    assert all(len(c.val) == 0 for c in clients)
    res = fl.run_fedavg(tiny_model(), pool, clients, np.arange(48, 60),
                        {"clients": 2, "rounds": 4, "batch_size": 8, "early_stopping": {"patience": 1}}, seed=1)
    assert (res.last_round, res.best_round, res.stop_reason) == (4, 4, "max_rounds")
    assert all(math.isnan(r["mean_val_loss"]) for r in res.curve)
    assert fl.accuracy_summary(res)["test_acc_best"] == res.curve[-1]["test_acc"]


def test_combination_names_resolve_to_the_defense_chain():
    defenses = pytest.importorskip("gibench.defenses", reason="gibench.defenses (issue 10) not built yet")
    from gibench.pipeline import jobs_fl

    assert jobs_fl.combination_name(["cvb", "dropout", "dp"]) == "dropout+dp+cvb"
    assert jobs_fl.combination_name([]) == "none"
    names = {jobs_fl.combination_name(c) for c in defenses.ablation_combinations()}
    assert len(names) == 24
    cfg = {"studies": {"s": {"fl": {"runs": []}, "defense_defaults": {"dp": {"clip": 5.0}}}}}
    specs = jobs_fl.defense_specs(cfg, "s", "dropout+dp+prune+cvb")
    chain = jobs_fl.defense_chain(specs, jobs_fl.defense_defaults(cfg, "s"))
    assert set(chain.names) == {"dropout", "dp", "prune", "cvb"} and chain.get("dp").clip == 5.0
    with pytest.raises(KeyError, match="dp\\+nope"):
        jobs_fl.defense_specs(cfg, "s", "dp+nope")
