"""Inverting Gradients: the masked objective, label recovery, the attack itself."""
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from gibench.attacks import ATTACKS
from gibench.attacks.ig import milestones, resolve_cfg, total_variation
from gibench.attacks.labels import LabelRecoveryRefused, recover_labels
from gibench.attacks.objectives import GradientMatch
from gibench.datasets import DATASETS
from gibench.gradient import client_gradient
from gibench.metrics.image import psnr_per_image
from gibench.models import build_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cifar():
    ds = DATASETS.get("cifar100")
    split = ds.load("bundled", "test", "resources", "resources/hub")
    return ds, split


def _case(cifar, model="lenet", idx=0, seed=3):
    ds, split = cifar
    net = build_model(model, 100, ds.shape, seed, init="torch_default")
    x = ds.normalize(split.images[idx:idx + 1])
    y = torch.as_tensor(split.labels[idx:idx + 1])
    return ds, net, x, y, client_gradient(net, x, y)


def _random_visible(grads, frac, seed):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(t.shape, generator=g) >= frac for n, t in grads.items()}


def _dummy(net, names, seed=0):
    """Gradients of some other input: what an attacker's iterate produces."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, 32, 32, generator=g)
    grads = client_gradient(net, x, torch.tensor([5]))
    return [grads[n] for n in names]


def test_masked_cosine_equals_plain_cosine_when_nothing_is_encrypted(cifar):
    _, net, _, _, grads = _case(cifar)
    match = GradientMatch(list(net.named_parameters()), grads, None, "masked_cosine")
    dummy = _dummy(net, match.names)
    flat_d = torch.cat([d.flatten() for d in dummy])
    flat_g = torch.cat([grads[n].flatten() for n in match.names])
    expected = 1 - F.cosine_similarity(flat_d.double(), flat_g.double(), dim=0)
    assert float(match(dummy)) == pytest.approx(float(expected), rel=1e-5, abs=1e-7)
    all_visible = {n: torch.ones_like(t, dtype=torch.bool) for n, t in grads.items()}
    match2 = GradientMatch(list(net.named_parameters()), grads, all_visible, "masked_cosine")
    assert float(match2(dummy)) == float(match(dummy))


def test_masked_distance_ignores_encrypted_entries(cifar):
    _, net, _, _, grads = _case(cifar)
    visible = _random_visible(grads, 0.4, seed=1)
    tampered = {n: torch.where(visible[n], g, torch.randn_like(g) * 100) for n, g in grads.items()}
    for cost in ("masked_cosine", "masked_cosine_layerwise", "masked_l2"):
        a = GradientMatch(list(net.named_parameters()), grads, visible, cost)
        b = GradientMatch(list(net.named_parameters()), tampered, visible, cost)
        dummy_a = _dummy(net, a.names)
        # the dummy's own encrypted entries do not matter either
        dummy_b = [torch.where(visible[n], d, torch.randn_like(d)) for n, d in zip(b.names, dummy_a)]
        assert float(a(dummy_a)) == pytest.approx(float(b(dummy_b)), rel=1e-6), cost
    # the independent formula: cosine over the visible entries only
    a = GradientMatch(list(net.named_parameters()), grads, visible, "masked_cosine")
    dummy = _dummy(net, a.names)
    vd = torch.cat([d[visible[n]] for n, d in zip(a.names, dummy)]).double()
    vg = torch.cat([grads[n][visible[n]] for n in a.names]).double()
    assert float(a(dummy)) == pytest.approx(float(1 - F.cosine_similarity(vd, vg, dim=0)), rel=1e-5)


def test_fully_encrypted_tensor_drops_out(cifar):
    _, net, _, _, grads = _case(cifar)
    names = list(grads)
    visible = {n: torch.ones_like(t, dtype=torch.bool) for n, t in grads.items()}
    visible[names[0]] = torch.zeros_like(grads[names[0]], dtype=torch.bool)
    match = GradientMatch(list(net.named_parameters()), grads, visible, "masked_cosine")
    assert match.dropped == [names[0]] and names[0] not in match.names
    subset = [(n, p) for n, p in net.named_parameters() if n != names[0]]
    plain = GradientMatch(subset, grads, None, "masked_cosine")
    dummy = _dummy(net, match.names)
    assert float(match(dummy)) == float(plain(dummy))
    # per-tensor average: the dropped tensor is not counted in the mean either
    lw = GradientMatch(list(net.named_parameters()), grads, visible, "masked_cosine_layerwise")
    lw_plain = GradientMatch(subset, grads, None, "masked_cosine_layerwise")
    assert float(lw(dummy)) == pytest.approx(float(lw_plain(dummy)))


def test_zero_fill_is_a_different_attacker(cifar):
    _, net, _, _, grads = _case(cifar)
    visible = _random_visible(grads, 0.5, seed=2)
    zf = GradientMatch(list(net.named_parameters()), grads, visible, "zero_fill_cosine")
    mk = GradientMatch(list(net.named_parameters()), grads, visible, "masked_cosine")
    assert zf.names == list(grads)            # keeps every tensor
    # the true gradient is a perfect match for the masked attacker, not for zero-fill
    true = [grads[n] for n in mk.names]
    assert float(mk(true)) == pytest.approx(0.0, abs=1e-6)
    assert float(zf([grads[n] for n in zf.names])) > 0.1


def test_unknown_cost_and_option_are_rejected():
    with pytest.raises(ValueError, match="unknown gradient-matching cost"):
        GradientMatch([], {}, None, "cosine")
    with pytest.raises(ValueError, match="unknown option"):
        resolve_cfg({"iterationz": 3})
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        resolve_cfg({"lr_schedule": "cosine"})


def test_milestones_and_tv_match_the_reference():
    # reference/ig_and_image_defenses.md §1.3: for 24k iterations 8998, 14999, 21015
    assert milestones(24000) == [8998, 14999, 21015]
    x = torch.zeros(1, 1, 2, 3)
    x[0, 0, 0, 1] = 1.0
    # |dx| entries: row0: |0-1|,|1-0| ; row1: 0,0 -> mean 2/4; |dy|: col1 |1-0| -> mean 1/3
    assert float(total_variation(x)) == pytest.approx(0.5 + 1 / 3)


@pytest.mark.parametrize("model", ["lenet", "cnn"])
def test_label_recovery_from_visible_last_layer(cifar, model):
    for idx in range(4):
        _, net, _, y, grads = _case(cifar, model, idx)
        labels, how = recover_labels(net, grads, None, 1)
        assert int(labels[0]) == int(y[0]), (model, idx, how)
        # bias encrypted, weight visible: still exact for one sample (row sums of W)
        bias = list(grads)[-1]
        vis = {bias: torch.zeros_like(grads[bias], dtype=torch.bool)}
        labels, how = recover_labels(net, grads, vis, 1)
        assert int(labels[0]) == int(y[0]) and "weight" in how


def test_label_recovery_refused_when_last_layer_encrypted(cifar):
    _, net, _, _, grads = _case(cifar)
    w, b = list(grads)[-2:]
    vis = {w: torch.rand(grads[w].shape) > 0.5, b: torch.rand(grads[b].shape) > 0.5}
    with pytest.raises(LabelRecoveryRefused, match="encrypted"):
        recover_labels(net, grads, vis, 1)


def test_ig_with_everything_encrypted_says_so(cifar):
    ds, net, x, y, grads = _case(cifar)
    visible = {n: torch.zeros_like(g, dtype=torch.bool) for n, g in grads.items()}
    shared = {n: torch.zeros_like(g) for n, g in grads.items()}
    r = ATTACKS.get("ig")(net, shared, visible, input_shape=tuple(x.shape), mean=ds.mean, std=ds.std,
                          labels=y, cfg={"iterations": 50}, seed=1)
    assert r.status == "nothing_visible" and "encrypted" in r.message
    assert r.x.shape == x.shape and torch.isfinite(r.x).all() and math.isnan(r.final_loss)


def test_ig_is_deterministic_and_keeps_the_box(cifar):
    ds, net, x, y, grads = _case(cifar)
    kw = dict(input_shape=tuple(x.shape), mean=ds.mean, std=ds.std, labels=y, cfg={"iterations": 30}, seed=7)
    a = ATTACKS.get("ig")(net, grads, None, **kw)
    b = ATTACKS.get("ig")(net, grads, None, **kw)
    assert torch.equal(a.x, b.x) and a.final_loss == b.final_loss
    pix = ds.denormalize(a.x)
    assert float(pix.min()) >= -1e-5 and float(pix.max()) <= 1 + 1e-5
    assert len(a.trace) > 0 and a.trace[0]["iteration"] == 0


@pytest.mark.slow
def test_ig_reconstructs_an_undefended_lenet_victim(cifar):
    """DESIGN.md: IG on an undefended LeNet recovers the image (PyTorch-default init, the
    demo's settings)."""
    ds, net, x, y, grads = _case(cifar, "lenet", 0, seed=11)
    r = ATTACKS.get("ig")(net, grads, None, input_shape=tuple(x.shape), mean=ds.mean, std=ds.std, labels=y,
                          cfg={"iterations": 2000, "tv": 0.0}, seed=1)
    psnr = psnr_per_image(ds.denormalize(r.x).clamp(0, 1), ds.denormalize(x).clamp(0, 1))[0]
    assert psnr >= 25.0, psnr
    # the same attack with the last layer and most of the rest encrypted cannot do that
    visible = _random_visible(grads, 0.95, seed=3)
    shared = {n: torch.where(visible[n], g, torch.zeros_like(g)) for n, g in grads.items()}
    r2 = ATTACKS.get("ig")(net, shared, visible, input_shape=tuple(x.shape), mean=ds.mean, std=ds.std, labels=y,
                           cfg={"iterations": 300, "tv": 0.0}, seed=1)
    psnr2 = psnr_per_image(ds.denormalize(r2.x).clamp(0, 1), ds.denormalize(x).clamp(0, 1))[0]
    assert psnr2 < psnr - 5
