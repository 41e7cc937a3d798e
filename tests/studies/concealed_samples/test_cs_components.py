"""Concealed-samples study components against independent facts: parameter counts derived from
the layer shapes, the DCS² synthesis objective's purpose (gradient closer, pixels far), the
projection's constraint, exact imprint read-out, Soteria's pruned fraction, the baselines'
definitions."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from gibench.attacks import ATTACKS
from gibench.attacks.imprint import ImprintedModel, fourier_bins, read_out
from gibench.datasets import DATASETS
from gibench.defenses.concealed import (CSDefenseError, DCS2, Soteria, ats_transform, dcs2_gradient, dcs2_start,
                                        defend, flat_dot, parse_policy, parse_steps, project_gradient,
                                        prune_percentile, soteria, soteria_scores, synthesise_concealed)
from gibench.metrics.concealed import ssim_dcs2
from gibench.models import build_model, count_parameters

RES = str(Path(__file__).resolve().parents[3] / "resources")


@pytest.fixture(scope="module")
def mnist():
    ds = DATASETS.get("mnist")
    return ds, ds.load("bundled", "test", RES)


@pytest.fixture(scope="module")
def cifar():
    ds = DATASETS.get("cifar10")
    return ds, ds.load("bundled", "test", RES)


# ----------------------------------------------------------------- models

def test_parameter_counts_match_the_layer_arithmetic():
    # LeNet_MNIST: 1*12*25+12 + 2*(12*12*25+12) + 588*10+10 = 13,426 (reference §3.2)
    assert count_parameters(build_model("lenet_mnist", 10, (1, 28, 28), 0)) == 13426
    # ConvNet: 8 convolutions (the duplicate 'conv6' key collapses), width 32 -> 733,642; width 64 -> 2,904,970
    assert count_parameters(build_model("convnet", 10, (3, 32, 32), 0, width=32)) == 733642
    assert count_parameters(build_model("convnet", 10, (3, 32, 32), 0, width=64)) == 2904970
    net = build_model("convnet", 10, (3, 32, 32), 0, width=32)
    assert [n for n, _ in net.named_parameters()].index("fc.weight") == 32   # DCS-2's Soteria layer_num 32
    # ResNet-18: torchvision's 11,689,512 for 1000 classes minus fc (513,000) plus fc for 200 (102,600)
    assert count_parameters(build_model("resnet18", 200, (3, 64, 64), 0)) == 11689512 - 513000 + 102600
    assert count_parameters(build_model("resnet18", 1000, (3, 224, 224), 0)) == 11689512


def test_lenet_mnist_uses_dlg_uniform_init():
    net = build_model("lenet_mnist", 10, (1, 28, 28), 0)
    for p in net.parameters():
        assert float(p.detach().min()) >= -0.5 and float(p.detach().max()) <= 0.5
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_resnet18_pretrained_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="cs_download_weights"):
        build_model("resnet18", 200, (3, 64, 64), 0, pretrained=str(tmp_path / "resnet18-f37072fd.pth"))


# ----------------------------------------------------------------- DCS²

def _grad(model, x, y):
    ps = [p for p in model.parameters()]
    return torch.cat([g.flatten() for g in torch.autograd.grad(F.cross_entropy(model(x), y), ps)])


def test_concealed_sample_mimics_the_gradient_but_not_the_pixels(mnist):
    ds, sp = mnist
    torch.manual_seed(0)
    model = build_model("lenet_mnist", 10, ds.shape, 7).eval()
    x_s, y_s = ds.normalize(sp.images[:1]), torch.as_tensor(sp.labels[:1])
    d = DCS2(iterations=200, start={"proxy": True, "noise": False, "mixup": True})
    proxy = (ds.normalize(sp.images[50:51]), torch.as_tensor(sp.labels[50:51]))
    x0, y0 = dcs2_start(x_s, y_s, d, 10, torch.Generator().manual_seed(0), proxy)
    # mixup start: 0.7 proxy + 0.3 sensitive (lambda_g = 0.7)
    assert torch.allclose(x0, 0.7 * proxy[0] + 0.3 * x_s)
    xc, info = synthesise_concealed(model, x_s, y_s, x0, y0, d)
    g_s = _grad(model, x_s, y_s)
    cos = lambda a, b: float(a @ b / (a.norm() * b.norm()))  # noqa: E731
    cos0, cos1 = cos(_grad(model, x0, y0), g_s), cos(_grad(model, xc, y0), g_s)
    assert cos1 > cos0 + 0.1, (cos0, cos1)
    dist0, dist1 = float((x0 - x_s).norm()), float((xc - x_s).norm())
    assert dist1 > dist0, (dist0, dist1)                        # pushed away by exp(-lambda_x |x_c - x_s|)
    assert dist1 > 0.5 * float(x_s.norm())                      # far from the sensitive image in pixel space
    assert info["after"]["grad_cosine"] == pytest.approx(cos1, abs=1e-3)


def test_projection_satisfies_the_constraint_and_leaves_aligned_gradients_alone():
    gen = torch.Generator().manual_seed(1)
    g = {"a": torch.randn(50, generator=gen), "b": torch.randn(3, 4, generator=gen)}
    gc_neg = {k: -v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in g.items()}
    assert float(flat_dot(g, gc_neg)) < 0
    for margin in (0.0, 0.5):
        out, info = project_gradient(g, gc_neg, margin=margin, eps=0.0)
        assert info["projected"] and float(flat_dot(g, out)) >= -1e-6 * float(flat_dot(g, g))
        # the result is g_c + v g with v >= margin
        v = info["v"]
        assert v >= margin
        for k in g:
            assert torch.allclose(out[k], gc_neg[k] + v * g[k], atol=1e-6)
    # margin 0: the closest point of the half-space, on its boundary
    out0, _ = project_gradient(g, gc_neg, margin=0.0, eps=0.0)
    assert abs(float(flat_dot(g, out0))) < 1e-4
    gc_pos = {k: v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in g.items()}
    out, info = project_gradient(g, gc_pos, margin=0.5)
    assert not info["projected"]
    assert all(torch.equal(out[k], gc_pos[k]) for k in g)


def test_dcs2_gradient_is_eq10_over_three_then_projected(mnist):
    ds, sp = mnist
    model = build_model("lenet_mnist", 10, ds.shape, 3).eval()
    x_s, y_s = ds.normalize(sp.images[:1]), torch.as_tensor(sp.labels[:1])
    x_c, y_c = ds.normalize(sp.images[9:10]), torch.as_tensor([(int(sp.labels[0]) + 1) % 10])
    d = DCS2(lambda_g=0.7, project=False)
    shared, g, _ = dcs2_gradient(model, x_s, y_s, x_c, y_c, d)
    ps = list(model.parameters())
    loss = (F.cross_entropy(model(x_s), y_s) + 0.7 * F.cross_entropy(model(x_c), y_c)
            + 0.3 * F.cross_entropy(model(x_c), y_s)) / 3
    want = torch.autograd.grad(loss, ps)
    for (n, _), w in zip(model.named_parameters(), want):
        assert torch.allclose(shared[n], w, atol=1e-6)
    projected, _, info = dcs2_gradient(model, x_s, y_s, x_c, y_c, DCS2(lambda_g=0.7))
    assert float(flat_dot(g, projected)) >= -1e-8


def test_defend_is_deterministic_for_a_seed_and_dp_noise_has_its_std(mnist):
    ds, sp = mnist
    model = build_model("lenet_mnist", 10, ds.shape, 3)
    x, y = ds.normalize(sp.images[:1]), torch.as_tensor(sp.labels[:1])
    steps = parse_steps([{"name": "dp_gaussian", "std": 0.01}])
    a = defend(model, x, y, steps, num_classes=10, generator=torch.Generator().manual_seed(5))
    b = defend(model, x, y, steps, num_classes=10, generator=torch.Generator().manual_seed(5))
    clean = defend(model, x, y, [], num_classes=10, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(a.shared[n], b.shared[n]) for n in a.shared)
    noise = torch.cat([(a.shared[n] - clean.shared[n]).flatten() for n in a.shared])
    assert float(noise.std()) == pytest.approx(0.01, rel=0.05)


def test_prune_zeroes_the_rate_percentile_per_tensor():
    g = {"w": torch.arange(1, 101, dtype=torch.float32).view(10, 10) * torch.tensor([1.0, -1.0]).repeat(50).view(10, 10)}
    out = prune_percentile(g, 0.7)
    # |g| = 1..100; the 70th percentile (linear) is 70.3 -> 1..70 are zeroed, 71..100 kept
    assert int((out["w"] == 0).sum()) == 70
    assert torch.equal(out["w"][g["w"].abs() > 70.3], g["w"][g["w"].abs() > 70.3])


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.9])
def test_soteria_zeroes_exactly_the_configured_fraction_of_columns(mnist, rate):
    ds, sp = mnist
    model = build_model("lenet_mnist", 10, ds.shape, 3).eval()
    x, y = ds.normalize(sp.images[:2]), torch.as_tensor(sp.labels[:2])
    grads = {n: g for n, g in zip([n for n, _ in model.named_parameters()],
                                  torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters())))}
    out, info = soteria(grads, model, x, Soteria(rate=rate))
    w0, w1 = grads["fc.weight"], out["fc.weight"]
    zero_cols = [j for j in range(w1.shape[1]) if bool((w1[:, j] == 0).all()) and not bool((w0[:, j] == 0).all())]
    assert len(zero_cols) == round(rate * 588) == info["soteria_pruned_columns"]
    kept = [j for j in range(w1.shape[1]) if j not in zero_cols]
    assert torch.equal(w1[:, kept], w0[:, kept])
    for n in grads:
        if n != "fc.weight":
            assert torch.equal(out[n], grads[n])                 # bias and other layers untouched


def test_soteria_scores_match_a_per_feature_loop(mnist):
    ds, sp = mnist
    model = build_model("lenet_mnist", 10, ds.shape, 3).eval()
    x = ds.normalize(sp.images[:2])
    got = soteria_scores(model, x, offset=0.1, chunk=100)
    xx = x.clone().requires_grad_(True)
    r = model.body(xx).flatten(1)
    want = []
    for f in (0, 17, 300, 587):
        (gx,) = torch.autograd.grad(r[:, f].sum(), xx, retain_graph=True)
        want.append(float((gx.flatten(1).norm(dim=1) / (r[:, f] + 0.1)).sum()))
    assert np.allclose([float(got[f]) for f in (0, 17, 300, 587)], want, rtol=1e-5)


def test_ats_policy_parsing_and_determinism(cifar):
    _, sp = cifar
    assert parse_policy("21-13-3+7-4-15+1-2-5-8-10") == [[21, 13, 3], [7, 4, 15], [1, 2, 5, 8, 10]]
    with pytest.raises(CSDefenseError, match="outside"):
        parse_policy("1-99")
    a, ca = ats_transform(sp.images[:4], "21-13-3+7-4-15", np.random.default_rng(0))
    b, cb = ats_transform(sp.images[:4], "21-13-3+7-4-15", np.random.default_rng(0))
    assert np.array_equal(a, b) and ca == cb and a.shape == sp.images[:4].shape
    assert not np.array_equal(a, sp.images[:4])
    # id 29 is 'invert': 255 - x exactly
    inv, _ = ats_transform(sp.images[:2], "29", np.random.default_rng(0))
    assert np.array_equal(inv, 255 - sp.images[:2])


def test_unknown_or_duplicate_steps_fail_with_the_name():
    with pytest.raises(CSDefenseError, match="unknown defense 'nope'"):
        parse_steps(["nope"])
    with pytest.raises(CSDefenseError, match="unknown option"):
        parse_steps([{"name": "dcs2", "lambda": 1}])
    with pytest.raises(CSDefenseError, match="listed twice"):
        parse_steps(["prune", "prune"])


# ----------------------------------------------------------------- attacks

def test_imprint_reads_out_an_image_alone_in_its_bin_exactly(cifar):
    ds, sp = cifar
    base = build_model("convnet", 10, ds.shape, 0, width=4).double().eval()
    model = ImprintedModel(base, ds.shape, bins=10).double().eval()
    x_all = ds.normalize(sp.images[:64]).double()
    h = model.imprint.query(x_all.flatten(1))
    bins = fourier_bins(10) + [math.inf]
    which = [max(i for i in range(10) if float(v) > bins[i]) for v in h]
    # a batch of 4 bundled images in 4 different bins -> each is alone in its bin
    chosen, seen = [], set()
    for i, b in enumerate(which):
        if b not in seen:
            chosen.append(i)
            seen.add(b)
        if len(chosen) == 4:
            break
    x = x_all[chosen]
    y = torch.as_tensor(sp.labels[chosen])
    ps = list(model.parameters())
    grads = dict(zip([n for n, _ in model.named_parameters()],
                     torch.autograd.grad(F.cross_entropy(model(x), y), ps)))
    rec, hits = read_out(grads["imprint.linear0.weight"], grads["imprint.linear0.bias"], 4)
    assert len(hits) == 4
    for i in range(4):
        err = min(float((rec[j] - x[i].flatten()).abs().max()) for j in range(4))
        assert err < 1e-8
    # the registered attack returns them in the image box as float32
    res = ATTACKS.get("imprint")(model, grads, None, input_shape=(4, *ds.shape), mean=ds.mean, std=ds.std,
                                 labels=y, cfg={}, seed=0, server={"weight": "imprint.linear0.weight",
                                                                   "bias": "imprint.linear0.bias", "bins": 10})
    assert res.x.shape == (4, *ds.shape)


@pytest.mark.slow
def test_gs_recovers_an_undefended_mnist_image(mnist):
    # paper Table 1: GS against the undefended LeNet on MNIST reaches PSNR ~59 (near-exact)
    ds, sp = mnist
    model = build_model("lenet_mnist", 10, ds.shape, 1)
    x, y = ds.normalize(sp.images[:1]), torch.as_tensor(sp.labels[:1])
    upd = defend(model, x, y, [], num_classes=10, generator=torch.Generator().manual_seed(0))
    res = ATTACKS.get("gs")(model, upd.shared, None, input_shape=(1, *ds.shape), mean=ds.mean, std=ds.std,
                            labels=y, cfg={"iterations": 1000}, seed=0)
    rec, gt = ds.denormalize(res.x).clamp(0, 1), ds.denormalize(x).clamp(0, 1)
    assert ssim_dcs2(rec, gt) > 0.9
    assert res.info["settings"]["boxed"] is False and res.info["settings"]["signed"] is False


def test_adaptive_starts_from_the_class_average(mnist):
    ds, sp = mnist
    model = build_model("lenet_mnist", 10, ds.shape, 11)
    x, y = ds.normalize(sp.images[3:4]), torch.as_tensor(sp.labels[3:4])
    upd = defend(model, x, y, [], num_classes=10, generator=torch.Generator().manual_seed(0))
    means = torch.stack([ds.normalize(sp.images[100:400][sp.labels[100:400] == k]).mean(0) for k in range(10)])
    res = ATTACKS.get("adaptive")(model, upd.shared, None, input_shape=(1, *ds.shape), mean=ds.mean, std=ds.std,
                                  labels=y, cfg={"iterations": 0}, seed=0, class_means=means)
    assert torch.allclose(res.x[0], means[int(y)])
    with pytest.raises(ValueError, match="class-average"):
        ATTACKS.get("adaptive")(model, upd.shared, None, input_shape=(1, *ds.shape), mean=ds.mean, std=ds.std,
                                labels=y, cfg={}, seed=0)


@pytest.mark.parametrize("optimizer", ["adam", "cma"])
def test_ggl_latent_search_lowers_the_gradient_distance(cifar, optimizer):
    from gibench.attacks.ggl import Generator

    ds, sp = cifar
    torch.manual_seed(0)
    gen = Generator(3, dim=8).eval()
    model = build_model("convnet", 10, ds.shape, 0, width=4).eval()
    mt, st = torch.tensor(ds.mean).view(1, -1, 1, 1), torch.tensor(ds.std).view(1, -1, 1, 1)
    with torch.no_grad():
        x = ((gen(torch.randn(1, 128, generator=torch.Generator().manual_seed(9))) + 1) / 2 - mt) / st
    y = torch.tensor([3])
    shared = dict(zip([n for n, _ in model.named_parameters()],
                      torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))))
    cfg = {"optimizer": optimizer, "iterations": 30, "budget": 6, "population": 8}
    res = ATTACKS.get("ggl")(model, shared, None, input_shape=(1, 3, 32, 32), mean=ds.mean, std=ds.std, labels=y,
                             cfg=cfg, seed=0, generator=gen)
    first = res.trace[0]["loss"]
    assert res.x.shape == (1, 3, 32, 32) and res.final_loss <= first + 1e-9


def test_wgan_gp_training_runs_and_rejects_other_sizes(cifar):
    from gibench.attacks.ggl import train_wgan_gp

    ds, sp = cifar
    x = torch.as_tensor(sp.images[:16]).permute(0, 3, 1, 2).float() / 127.5 - 1
    g, log = train_wgan_gp(x, generator_steps=2, seed=0, dim=8, batch_size=8, n_critic=2)
    assert len(log) == 2 and all(math.isfinite(r["critic_loss"]) for r in log)
    assert g(torch.randn(3, 128)).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="32x32"):
        train_wgan_gp(torch.zeros(4, 1, 28, 28), generator_steps=1, seed=0)


def test_ssim_dcs2_identity_and_zero_padding():
    a = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert ssim_dcs2(a, a) == pytest.approx(1.0, abs=1e-12)
    b = (a + 0.2).clamp(0, 1)
    assert ssim_dcs2(a, b) == pytest.approx(ssim_dcs2(b, a), abs=1e-12) and ssim_dcs2(a, b) < 1


# ----------------------------------------------------------------- config and pipeline jobs

def _cfg(**study):
    base = {"cases": {"mnist": "lenet_mnist"}, "tables": ["table7"], "victims": 1,
            "defenses": {"none": [], "prune": ["prune"], "dcs2": ["dcs2"], "prune+dcs2": ["dcs2", "prune"]},
            "attacks": {"gs": {"type": "gs", "params": {"iterations": 1}}}}
    base.update(study)
    return {"seed": 0, "resources_dir": RES, "datasets": {"mnist": {"victims": 4}},
            "studies": {"concealed_samples": base}}


def test_config_errors_name_the_key():
    from gibench.config import ConfigError, validate

    validate(_cfg())
    with pytest.raises(ConfigError, match="table7 needs defense 'prune\\+dcs2'"):
        validate(_cfg(defenses={"none": [], "prune": ["prune"], "dcs2": ["dcs2"]}))
    with pytest.raises(ConfigError, match="unknown defense 'dcs3'"):
        validate(_cfg(defenses={"none": [], "prune": ["prune"], "dcs2": ["dcs3"], "prune+dcs2": ["dcs2", "prune"]}))
    with pytest.raises(ConfigError, match="cases.mnist: unknown model 'lenet9'"):
        validate(_cfg(cases={"mnist": "lenet9"}))
    with pytest.raises(ConfigError, match="unknown key"):
        validate(_cfg(victim=3))
    with pytest.raises(ConfigError, match="victims"):
        validate(_cfg(victims=9))


def test_generator_and_ggl_attack_jobs(tmp_path, cifar):
    """The pipeline's generator rule and a GGL attack job on its output (CelebA is unavailable
    offline, so the micro workflow cannot reach them)."""
    from gibench import io
    from gibench.config import validate
    from gibench.studies.concealed_samples import jobs as CS
    from gibench.studies.concealed_samples.needs import load_generator
    from gibench.studies.concealed_samples.prep import build_cs_model

    ds, sp = cifar
    cfg = validate({"seed": 0, "resources_dir": RES, "datasets": {"cifar10": {"victims": 4}},
                    "studies": {"concealed_samples": {
                        "cases": {"cifar10": "convnet"}, "tables": ["table9"], "victims": 1,
                        "models": {"convnet": {"width": 4}},
                        "defenses": {"ats": ["ats"], "dcs2": ["dcs2"]},
                        "attacks": {"gs": {"type": "gs"}, "ggl": {"type": "ggl", "params": {"iterations": 3}}},
                        "generator": {"generator_steps": 2, "batch_size": 4, "n_critic": 1, "dim": 8}}}})
    imgs = sp.images[:12]
    import pyarrow as pa

    pub = tmp_path / "public.parquet"
    io.save_table(pub, pa.table({"index": list(range(12)), "source_index": list(range(12)),
                                 "label": sp.labels[:12].tolist(), "height": [32] * 12, "width": [32] * 12,
                                 "channels": [3] * 12, "image": [im.tobytes() for im in imgs]}), {"rule": "test"})
    smk = _Smk(cfg, {"dataset": "cifar10"}, {"public": str(pub)},
               {"generator": str(tmp_path / "g.safetensors"), "log": str(tmp_path / "g.parquet")})
    CS.generator_job(smk, torch.device("cpu"))
    g = load_generator(str(tmp_path / "g.safetensors"), "cpu")
    assert g(torch.randn(2, 128)).shape == (2, 3, 32, 32)
    # a shared update of the ConvNet and the knowledge file, as cs_gradient writes them
    net = build_cs_model(cfg, "cifar10", "convnet", None, "cpu").eval()
    wpath = tmp_path / "init.safetensors"
    io.save_tensors(wpath, dict(net.state_dict()), {"rule": "test"})
    x, y = ds.normalize(sp.images[:1]), torch.as_tensor(sp.labels[:1])
    grads = dict(zip([n for n, _ in net.named_parameters()],
                     torch.autograd.grad(F.cross_entropy(net(x), y), list(net.parameters()))))
    gpath = tmp_path / "grad.safetensors"
    io.save_tensors(gpath, grads, {"rule": "test"})
    kpath = tmp_path / "k.json"
    io.write_json(kpath, {"batch_size": 1, "input_shape": [3, 32, 32], "dataset": "cifar10", "labels": y.tolist(),
                          "server": "honest"})
    wc = {"dataset": "cifar10", "model": "convnet", "server": "honest", "cohort": "iid", "defense": "none",
          "slot": "s000", "attack": "ggl", "rep": "0"}
    smk = _Smk(cfg, wc, {"weights": str(wpath), "gradient": str(gpath), "knowledge": str(kpath),
                         "generator": str(tmp_path / "g.safetensors")},
               {"recon": str(tmp_path / "r.safetensors")})
    out = CS.attack_job(smk, torch.device("cpu"))
    assert out["attack_status"] == "ok"
    rec, prov = io.load_tensors(tmp_path / "r.safetensors")
    assert rec["x"].shape == (1, 3, 32, 32) and prov["params"]["type"] == "ggl"
    assert io.load_trace(tmp_path / "r.safetensors").num_rows >= 1       # the trace rides in the artifact


class _NS(dict):
    """A mapping whose keys are also attributes (like Snakemake's named lists)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


class _Smk:
    def __init__(self, config, wildcards, inputs, outputs):
        self.config, self.wildcards, self.input, self.output = config, _NS(wildcards), _NS(inputs), _NS(outputs)
        self.rule = "test"


def test_noniid_victims_are_the_protected_clients_dirichlet_shard(tmp_path):
    import pyarrow as pa

    from gibench import io
    from gibench.config import validate
    from gibench.fl import partition_dirichlet
    from gibench.studies.concealed_samples import jobs as CS
    from gibench.seeds import derive_seed

    labels = np.repeat(np.arange(10), 20)
    p = tmp_path / "victims.parquet"
    io.save_table(p, pa.table({"label": labels.tolist()}), {"rule": "test"})
    cfg = validate(_cfg(victims=3, non_iid={"clients": 4, "alpha": 0.3, "protected_client": 2}))
    cfg["datasets"]["mnist"]["victims"] = 200
    rows = CS.victim_rows(cfg, "mnist", "noniid", str(p))
    parts = partition_dirichlet(labels, 4, 0.3, np.random.default_rng(derive_seed(0, "cs_noniid", dataset="mnist")),
                                min_samples=1)
    assert rows == [int(i) for i in parts[2][:3]]
    assert CS.victim_rows(cfg, "mnist", "iid", str(p)) == [0, 1, 2]


def test_table_cells_take_the_best_restart_per_victim_and_say_what_is_missing():
    from gibench.config import validate
    from gibench.tables.concealed_samples import cells, table_doc

    cfg = validate(_cfg(restarts=2, unavailable={"cifar10": "not in this test"}, tables=["table1"],
                        defenses={"none": [], "dp_gaussian": ["dp_gaussian"], "prune": ["prune"],
                                  "soteria": ["soteria"], "dcs2": ["dcs2"]}))
    rows = []
    for slot, (good, bad) in {"s000": (20.0, 5.0), "s001": (30.0, 6.0)}.items():
        rows.append({"dataset": "mnist", "attack": "gs", "cohort": "iid", "defense": "none", "slot": slot,
                     "status": "ok", "attacker_loss": 0.01, "psnr": good, "ssim": 0.9})
        rows.append({"dataset": "mnist", "attack": "gs", "cohort": "iid", "defense": "none", "slot": slot,
                     "status": "ok", "attacker_loss": 0.5, "psnr": bad, "ssim": 0.1})
    cl = cells("table1", rows, [], cfg)
    psnr = next(c for c in cl if c["dataset"] == "mnist" and c["defense"] == "none" and c["column"] == "psnr")
    assert (psnr["mean"], psnr["std"], psnr["n"]) == (25.0, 5.0, 2)          # lower attacker loss wins per victim
    assert psnr["paper"] == 59.20
    acc = next(c for c in cl if c["defense"] == "none" and c["column"] == "acc_test" and c["dataset"] == "mnist")
    assert acc["status"] == "not computed"
    assert all(c["status"] == "not run" for c in cl if c["dataset"] == "cifar10")
    dcs = next(c for c in cl if c["dataset"] == "mnist" and c["defense"] == "dcs2" and c["column"] == "psnr")
    assert dcs["status"] == "missing"
    md = table_doc("table1", rows, [], cfg).to_markdown()
    assert "25.00 ± 5.00" in md and "not in this test" in md
