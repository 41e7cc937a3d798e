"""Vectorised IG restarts (issue 23): several restarts in one ``torch.func.vmap`` call give,
restart by restart, what the sequential code gives from the same seed.

The independent fact checked is agreement with :func:`gibench.attacks.ig.inverting_gradients`
called once per seed (the code every earlier result came from): in float64 to ~1e-9, so
only summation order differs; in float32 the per-step gradients agree to float32 rounding,
and Adam (like ``signed: true``) turns a near-zero gradient entry into a step of about
``lr`` whatever its size, so a rounding difference there becomes a visible one; the float32
check is therefore on plain gradient steps (SGD, unsigned), linear in the gradient."""
import pytest
import torch

from gibench.attacks import ATTACKS
from gibench.attacks.ig import _Run, resolve_cfg
from gibench.attacks.ig_many import _lockstep_loop, invert_many, lockstep, vectorisable
from gibench.attacks.objectives import GradientMatch
from gibench.gradient import client_gradient
from gibench.models import build_model

torch.set_num_threads(1)
SHAPE = (3, 16, 16)
SEEDS = [11, 12, 13]


def _case(batch=1, seed=0):
    net = build_model("lenet", 10, SHAPE, seed, init="torch_default")
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, *SHAPE, generator=g)
    y = torch.arange(batch) % 10
    grads = client_gradient(net, x, y)
    vis = {n: torch.rand(t.shape, generator=g) >= 0.3 for n, t in grads.items()}
    shared = {n: torch.where(vis[n], t, torch.zeros_like(t)) for n, t in grads.items()}
    return net, shared, vis, y


def _both(cfg, batch=1, seeds=SEEDS):
    net, shared, vis, y = _case(batch)
    kw = dict(input_shape=(batch, *SHAPE), mean=[0.5] * 3, std=[0.25] * 3, labels=y, cfg=cfg)
    seq = [ATTACKS.get("ig")(net, shared, vis, seed=s, **kw) for s in seeds]
    many = ATTACKS.entry("ig").many(net, shared, vis, seeds=seeds, **kw)
    return seq, many


def _agree(seq, many, atol):
    assert len(seq) == len(many)
    for a, b in zip(seq, many):
        assert a.status == b.status and a.info["iterations"] == b.info["iterations"]
        assert torch.allclose(a.x.double(), b.x.double(), atol=atol, rtol=0), (a.x - b.x).abs().max()
        assert b.final_loss == pytest.approx(a.final_loss, rel=atol * 100, abs=atol)
        assert len(a.trace) == len(b.trace)
        for ra, rb in zip(a.trace, b.trace):
            assert ra["iteration"] == rb["iteration"] and ra["lr"] == rb["lr"]
            assert rb["loss"] == pytest.approx(ra["loss"], rel=atol * 100, abs=atol)


def test_vectorised_restarts_equal_sequential_float64_signed_keep_best():
    cfg = {"iterations": 30, "dtype": "float64", "keep": "best", "trace_every": 1}
    seq, many = _both(cfg, batch=2)
    _agree(seq, many, atol=1e-9)
    # the restarts really differ (seeds per restart unchanged), so the check is not vacuous
    assert (seq[0].x - seq[1].x).abs().max() > 0.1


def test_vectorised_restarts_equal_sequential_float32_sgd():
    cfg = {"iterations": 25, "optimizer": "sgd", "signed": False, "lr": 1000.0, "trace_every": 5}
    seq, many = _both(cfg)
    _agree(seq, many, atol=1e-5)
    assert (seq[0].x - seq[1].x).abs().max() > 0.1


def test_restarts_that_stop_early_leave_the_batch_with_their_own_counts():
    # plateau schedule + stop_patience: each restart stops when its own objective stalls
    cfg = {"iterations": 400, "dtype": "float64", "lr_schedule": "plateau", "plateau_patience": 2,
           "stop_patience": 6, "lr": 0.3, "trace_every": 7}
    seq, many = _both(cfg, seeds=[1, 2, 3, 4])
    _agree(seq, many, atol=1e-8)
    counts = {r.info["iterations"] for r in seq}
    assert len(counts) > 1 and min(counts) < 400, counts     # some stopped early, at their own iteration


def test_nothing_visible_gives_every_restart_its_start():
    net, shared, vis, y = _case()
    none = {n: torch.zeros_like(v) for n, v in vis.items()}
    kw = dict(input_shape=(1, *SHAPE), mean=[0.5] * 3, std=[0.25] * 3, labels=y, cfg={"iterations": 5})
    many = ATTACKS.entry("ig").many(net, shared, none, seeds=SEEDS, **kw)
    seq = [ATTACKS.get("ig")(net, shared, none, seed=s, **kw) for s in SEEDS]
    for a, b in zip(seq, many):
        assert b.status == "nothing_visible" and torch.equal(a.x, b.x)


def test_training_mode_with_dropout_is_refused_by_invert_many():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(12, 3)).train()
    assert vectorisable(net, {}) is not None
    assert vectorisable(net.eval(), {}) is None
    grads = client_gradient(net, torch.randn(1, 3, 2, 2), torch.tensor([1]))
    match = GradientMatch(list(net.named_parameters()), grads, None)
    with pytest.raises(ValueError, match="training mode"):
        invert_many(net.train(), match, torch.tensor([1]), [torch.randn(1, 3, 2, 2)] * 2,
                    resolve_cfg({"iterations": 1, "model_mode": "train"}))


@pytest.mark.parametrize("cost", ["masked_cosine", "masked_cosine_layerwise", "masked_l2",
                                  "zero_fill_cosine", "zero_fill_l2"])
def test_batched_distance_equals_the_distance_of_each_instance(cost):
    # GradientMatch.batched (the vectorised path's objective) against __call__ (the sequential
    # one) on independent random dummy gradients, one tensor entirely visible, one dropped
    net, shared, vis, _ = _case()
    net = net.double()
    shared = {n: t.double() for n, t in shared.items()}
    names = [n for n, _ in net.named_parameters()]
    vis = {**vis, names[1]: torch.ones_like(vis[names[1]]), names[3]: torch.zeros_like(vis[names[3]])}
    match = GradientMatch(list(net.named_parameters()), shared, vis, cost)
    g = torch.Generator().manual_seed(5)
    dummy = [torch.randn(4, *p.shape, generator=g, dtype=torch.float64) for p in match.params]
    got = match.batched(dummy)
    want = torch.stack([match([d[i] for d in dummy]) for i in range(4)])
    assert got.shape == (4,) and torch.allclose(got, want, rtol=1e-12, atol=1e-12), (got, want)
    assert len(set(want.tolist())) == 4                       # the instances really differ


@pytest.mark.parametrize("cost", ["masked_cosine_layerwise", "masked_l2", "zero_fill_cosine"])
def test_vectorised_restarts_equal_sequential_other_costs_without_tv(cost):
    cfg = {"iterations": 12, "dtype": "float64", "cost": cost, "tv": 0, "trace_every": 1}
    seq, many = _both(cfg, seeds=[1, 2])
    _agree(seq, many, atol=1e-9)
    assert (seq[0].x - seq[1].x).abs().max() > 0.1


def test_lockstep_loop_stops_a_restart_with_a_non_finite_objective_alone():
    # a synthetic objective (a quadratic per restart) that turns non-finite for restart i from
    # iteration 3 + 2i on: the lockstep loop (one optimiser for the stacked images) must give
    # every restart what its own _Run gives it (the per-restart loop of invert)
    c = resolve_cfg({"iterations": 12, "dtype": "float64", "keep": "best", "trace_every": 1})
    assert lockstep(c)
    box = (torch.full((1, 2, 1, 1), -1.5, dtype=torch.float64), torch.full((1, 2, 1, 1), 2.0, dtype=torch.float64))
    x0s = [torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in range(3)]
    target = torch.linspace(-2, 2, 18, dtype=torch.float64).reshape(1, 2, 3, 3)
    clock = {"it": 0}

    def objective(xs):          # xs: [n, 1, 2, 3, 3]; row i poisoned from iteration 3 + 2 i
        dist = (xs - target).pow(2).flatten(1).sum(1)
        bad = torch.tensor([clock["it"] >= 3 + 2 * i for i in range(xs.shape[0])])
        total = torch.where(bad, torch.full_like(dist, float("nan")), dist)
        clock["it"] += 1
        return total, dist, torch.zeros_like(dist)

    runs = [_Run(x0, c, {}, box, 0.0) for x0 in x0s]
    _lockstep_loop(runs, objective, c, box, None)
    for i, (x0, r) in enumerate(zip(x0s, runs)):
        ref, it = _Run(x0, c, {}, box, 0.0), 0
        while ref.active:
            x = ref.x
            total = (x - target).pow(2).sum()
            if it >= 3 + 2 * i:
                total = total * float("nan")
            grads = torch.autograd.grad(total, [x]) if torch.isfinite(total) else ()
            ref.step(it, total, total.detach(), torch.zeros(()), grads, None)
            it += 1
        assert ref.stopped == r.stopped == f"non-finite objective at iteration {3 + 2 * i}"
        assert ref.done == r.done == 3 + 2 * i
        assert torch.allclose(ref.x, r.x, rtol=0, atol=1e-12) and torch.allclose(ref.best[1], r.best[1], rtol=0, atol=1e-12)
        assert ref.trace == r.trace
    assert (runs[0].x - runs[2].x).abs().max() > 0.1          # stopped at different points
