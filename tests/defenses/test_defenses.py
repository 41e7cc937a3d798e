"""Defenses of the stochastic-defenses study (paper B, section 3.4) and its models.

Every test checks a definition or an independently derived number: parameter counts
derived from the reference configs, the pruning rule, per-sample clipping against a
gradient computed sample by sample, the Gaussian KL in closed form, replay of secrets."""
import math

import pytest
import torch
from torch.nn import functional as F

from gibench.defenses import (DEFENSES, DefenseChain, DefenseSpecError, ablation_combinations, prune_mask,
                              pruned_count)
from gibench.defenses.chain import _per_sample_loop, _per_sample_vmap
from gibench.gradient import LOSSES
from gibench.models import MODELS, build_model, count_parameters
from gibench.models.defended import NoiseSource, StochasticDropout, bottlenecks, dropout_layers, use_noise

SHAPE = (3, 32, 32)


# ---------------------------------------------------------------- models: parameter counts

def test_cnn_parameter_count_from_the_reference_config():
    # CVB repo configs/models/CNN.yaml: channels [16, 32, 64], kernels 5, stride 2, 'valid', RGB 32x32,
    # no hidden MLP: conv 3*16*25+16 = 1,216; 16*32*25+32 = 12,832; 32*64*25+64 = 51,264;
    # spatial 32 -> 14 -> 5 -> 1, so Linear(64, 10) = 650.  Total 65,962.
    assert count_parameters(build_model("sd_cnn", 10, SHAPE, seed=0)) == 1216 + 12832 + 51264 + 650 == 65_962
    # paper B section 4.2: at p_prune = 0.99 "660 non-zero gradient values remain" for the CNN
    assert round(0.01 * 65_962) == 660


def test_vit_parameter_count_from_the_reference_config():
    # CVB repo configs/models/ViT.yaml: patch 4 (64 patches + CLS), hidden 256, 4 blocks, MLP 256,
    # no bias except LayerNorm.  Embedding Linear(4*4*3, 256) = 12,288; CLS 256; position 65*256 =
    # 16,640.  Per block: 2 LayerNorms 1,024 + q, k, v, out 4*65,536 + 2 MLP linears 2*65,536 =
    # 394,240.  Final LayerNorm 512, classifier Linear(256, 10, no bias) 2,560.
    expected = 12288 + 256 + 16640 + 4 * 394240 + 512 + 2560
    assert count_parameters(build_model("sd_vit", 10, SHAPE, seed=0)) == expected == 1_609_216
    # paper B section 4.2: at p_prune = 0.99 "16,092 non-zero gradient values remain" for the ViT
    assert round(0.01 * expected) == 16_092


def test_resnet18_gn_parameter_count():
    # torchvision resnet18 has 11,689,512 parameters with 1,000 classes; GroupNorm has the same
    # affine parameters as BatchNorm (running stats are buffers).  With 10 classes fc loses
    # 990 * 512 weights and 990 biases: 11,689,512 - 506,880 - 990 = 11,181,642.
    assert count_parameters(build_model("resnet18_gn", 10, SHAPE, seed=0)) == 11_689_512 - 990 * 512 - 990


@pytest.mark.parametrize("model,extra", [
    # CVB after conv block 0: in 16x14x14, K = 16 // 2 = 8, kernel 5: 2 * 16*8*25 + 8*16 = 6,528
    ("sd_cnn", 2 * 16 * 8 * 25 + 8 * 16),
    # after transformer block 0: in (65, 16, 16), K = 32, kernel 3: 2 * 65*32*9 + 32*65 = 39,520
    ("sd_vit", 2 * 65 * 32 * 9 + 32 * 65),
    # after layer1: in (64, 8, 8), K = 32, kernel 5: 2 * 64*32*25 + 32*64 = 104,448
    ("resnet18_gn", 2 * 64 * 32 * 25 + 32 * 64),
])
def test_cvb_parameter_counts(model, extra):
    base = count_parameters(build_model(model, 10, SHAPE, seed=0))
    assert count_parameters(build_model(model, 10, SHAPE, seed=0, bottleneck="cvb")) - base == extra


@pytest.mark.parametrize("model,d", [("sd_cnn", 64), ("sd_vit", 256), ("resnet18_gn", 512)])
def test_precode_parameter_counts(model, d):
    # PRECODE before the classifier on d features, K = 256: Linear(d, 512) + Linear(256, d)
    base = count_parameters(build_model(model, 10, SHAPE, seed=0))
    extra = (d * 512 + 512) + (256 * d + d)
    assert count_parameters(build_model(model, 10, SHAPE, seed=0, bottleneck="precode")) - base == extra


def test_precode_at_a_conv_block_of_the_cnn():
    # after conv block 0 the features are (16, 14, 14) = 3,136: Linear(3136, 512) + Linear(256, 3136)
    base = count_parameters(build_model("sd_cnn", 10, SHAPE, seed=0))
    early = build_model("sd_cnn", 10, SHAPE, seed=0, bottleneck="precode", bottleneck_params={"position": 0})
    assert count_parameters(early) - base == (3136 * 512 + 512) + (256 * 3136 + 3136)
    # the bottleneck sits between conv blocks 0 and 1: the decoder's output feeds conv 1
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.append(n))
             for n, m in early.named_modules() if n in ("convs.0", "bottleneck", "convs.1", "classifier")]
    early(torch.randn(1, *SHAPE))
    for h in hooks:
        h.remove()
    assert seen == ["convs.0", "bottleneck", "convs.1", "classifier"]
    # PIG leaves out the decoder and every layer after the bottleneck (CVB repo CNNCVB.yaml's rule)
    assert sorted(early.pig_ignored()) == sorted(
        ["bottleneck.decoder.weight", "bottleneck.decoder.bias", "convs.1.weight", "convs.1.bias",
         "convs.2.weight", "convs.2.bias", "classifier.weight", "classifier.bias"])
    # the default placement (before the classifier) is unchanged, and so is its canonical spec
    late = build_model("sd_cnn", 10, SHAPE, seed=0, bottleneck="precode")
    same = build_model("sd_cnn", 10, SHAPE, seed=0, bottleneck="precode", bottleneck_params={"position": "classifier"})
    assert all(torch.equal(a, b) for a, b in zip(late.state_dict().values(), same.state_dict().values()))
    assert sorted(late.pig_ignored()) == sorted(["bottleneck.decoder.weight", "bottleneck.decoder.bias",
                                                 "classifier.weight", "classifier.bias"])
    assert DefenseChain(["precode"]).spec() == [{"name": "precode", "K": None, "beta": None}]
    assert DefenseChain([{"name": "precode", "position": 0}]).model_options()["bottleneck_params"] == {"position": 0}
    with pytest.raises(ValueError, match="position"):
        build_model("sd_cnn", 10, SHAPE, seed=0, bottleneck="precode", bottleneck_params={"position": 3})
    with pytest.raises(DefenseSpecError, match="position"):
        DefenseChain([{"name": "precode", "position": -1}])


def test_privacy_module_keeps_the_base_weights():
    plain = build_model("sd_cnn", 10, SHAPE, seed=3).state_dict()
    for kind in ("precode", "cvb"):
        with_pm = build_model("sd_cnn", 10, SHAPE, seed=3, bottleneck=kind).state_dict()
        assert all(torch.equal(plain[k], with_pm[k]) for k in plain)


def test_dropout_layer_positions():
    # CNN: one per conv block; ViT: after both MLP linears of 4 blocks; ResNet-18: one before fc
    counts = {"sd_cnn": 3, "sd_vit": 8, "resnet18_gn": 1}
    for name, n in counts.items():
        assert len(dropout_layers(build_model(name, 10, SHAPE, seed=0, dropout=0.25))) == n
        assert dropout_layers(build_model(name, 10, SHAPE, seed=0)) == []


def test_dropout_formula_and_mask_distribution():
    layer = StochasticDropout(0.25)
    layer.noise_key = "d"
    x = torch.randn(4, 1000)
    src = NoiseSource(torch.Generator().manual_seed(0))
    layer.source = src
    out = layer(x)
    mask = src.drawn["d"]
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(out, x * mask / 0.75)
    assert abs(float(mask.mean()) - 0.75) < 0.02          # Bernoulli(1 - p), 4,000 draws
    # given values are used as they are (continuous masks of DIA included)
    layer.source = NoiseSource(values={"d": torch.full((4, 1000), 0.5)})
    assert torch.allclose(layer(x), x * 0.5 / 0.75)
    with pytest.raises(ValueError, match="shape"):
        layer.source = NoiseSource(values={"d": torch.ones(2, 2)})
        layer(x)


def test_precode_kl_is_the_gaussian_kl_in_bits():
    model = build_model("sd_cnn", 10, SHAPE, seed=0, bottleneck="precode")
    (_, vb), = bottlenecks(model)
    feats = {}
    vb.encoder.register_forward_hook(lambda m, i, o: feats.setdefault("h", o.detach()))
    model(torch.randn(3, *SHAPE))
    mu, sigma = feats["h"][:, :256], F.softplus(feats["h"][:, 256:])
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mu, sigma),
                                           torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    expected = 1e-3 * kl.sum(dim=1).mean() / math.log(2.0)
    assert torch.allclose(vb.last_kl, expected, rtol=1e-5)


def test_cvb_kl_reference_formula():
    # CVB repo: beta * mean(-0.5 * sum_channels(1 + std - mu^2 - exp(std))), "std" used as a log-variance
    model = build_model("sd_cnn", 10, SHAPE, seed=0, bottleneck="cvb")
    (_, vb), = bottlenecks(model)
    x = torch.randn(2, *SHAPE)
    h = torch.relu(model.convs[0](x))
    mu = vb.mu_encoder(h)
    std = F.softplus(vb.std_encoder(h).clamp(-5, 5))
    model(x)
    expected = 0.1 * (-0.5 * (1 + std - mu ** 2 - std.exp()).sum(dim=1)).mean()
    assert torch.allclose(vb.last_kl, expected, rtol=1e-5)


# ---------------------------------------------------------------- configuration

def test_all_24_ablation_combinations_are_expressible():
    combos = ablation_combinations()
    labels = {DefenseChain(c).label for c in combos}
    assert len(combos) == 24 and len(labels) == 24
    for c in combos:
        chain = DefenseChain(c)
        opts = chain.model_options()
        model = build_model("sd_cnn", 10, SHAPE, seed=0, **opts)
        assert (len(dropout_layers(model)) > 0) == chain.uses("dropout")
        assert getattr(model, "bottleneck_kind") == chain.privacy_module


def test_chain_order_defaults_and_spec():
    chain = DefenseChain([{"name": "prune", "rate": 0.9}, "dp", "dropout"], defaults={"dp": {"sigma": 1e-3}})
    assert chain.names == ["dropout", "dp", "prune"]          # the paper's order: GP(DP(...))
    assert chain.label == "DO+DP+GP"
    assert chain.spec() == [{"name": "dropout", "rate": 0.25}, {"name": "dp", "clip": 20.0, "sigma": 1e-3},
                            {"name": "prune", "rate": 0.9}]
    assert DefenseChain(chain.spec()) == chain
    assert DefenseChain([]).model_options() == {"dropout": 0.0, "bottleneck": None, "bottleneck_params": {}}
    assert DefenseChain(["cvb"]).model_options()["bottleneck"] == "cvb"
    assert sorted(DEFENSES.of("stochastic_defenses").names()) == ["cvb", "dp", "dropout", "precode", "prune"]


@pytest.mark.parametrize("specs,message", [
    (["dropuot"], "unknown defense 'dropuot'"),
    (["precode", "cvb"], "impossible combination"),
    (["dp", "dp"], "listed twice"),
    ([{"name": "dp", "noise": 1}], "unknown option"),
    ([{"name": "prune", "rate": 1.0}], "rate"),
    ([{"name": "dropout", "rate": -0.1}], "rate"),
    ([{"rate": 0.1}], "needs a 'name'"),
    ([{"name": "cvb", "K": "half"}], "adaptive"),
])
def test_bad_defense_lists_fail_with_a_clear_message(specs, message):
    with pytest.raises(DefenseSpecError, match=message):
        DefenseChain(specs)


def test_model_must_match_the_chain():
    chain = DefenseChain(["cvb"])
    with pytest.raises(DefenseSpecError, match="model_options"):
        chain.client_gradient(build_model("sd_cnn", 10, SHAPE, seed=0), torch.randn(1, *SHAPE), torch.tensor([1]))


# ---------------------------------------------------------------- gradient pruning

def test_pruned_count_is_robust_to_float_rounding():
    assert pruned_count(20, 0.95) == 19        # 0.95 * 20 = 18.999999999999996 in floating point
    assert pruned_count(16, 0.99) == 15 and pruned_count(100, 0.9) == 90 and pruned_count(7, 0.5) == 3


def test_pruning_keeps_exactly_the_top_fraction_per_layer():
    torch.manual_seed(0)
    chain = DefenseChain([{"name": "prune", "rate": 0.9}])
    model = build_model("sd_cnn", 10, SHAPE, seed=0)
    x, y = torch.rand(1, *SHAPE), torch.tensor([4])
    plain, _ = DefenseChain([]).client_gradient(model, x, y)
    pruned, secrets = chain.client_gradient(model, x, y)
    assert secrets == {}                                   # pruning is deterministic: no secret
    for name, g in plain.items():
        n = g.numel()
        keep = n - math.floor(round(0.9 * n, 9))
        kept = pruned[name] != 0
        assert int(kept.sum()) == min(keep, int((g != 0).sum())), name
        # the kept entries are unchanged and are the largest in magnitude
        assert torch.equal(pruned[name][kept], g[kept])
        if kept.any() and (~kept).any():
            assert float(g[kept].abs().min()) >= float(g[~kept].abs().max())


def test_prune_mask_ties_and_ratio():
    g = torch.tensor([1.0, -1.0, 1.0, 1.0, 0.5, 2.0])
    m = prune_mask(g, 0.5)                                 # prune floor(3) smallest: 0.5, then ties by index
    assert m.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 1.0]


# ---------------------------------------------------------------- differential privacy

def _sample_by_sample(model, x, y, clip):
    """Independent reference: each sample's gradient by plain autograd, clipped, averaged."""
    params = list(model.parameters())
    out = [torch.zeros_like(p) for p in params]
    norms = []
    for i in range(x.shape[0]):
        g = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), params)
        norm = torch.sqrt(sum(t.pow(2).sum() for t in g))
        norms.append(float(norm))
        scale = 1.0 / max(1.0, float(norm) / clip)
        out = [o + t * scale for o, t in zip(out, g)]
    return [o / x.shape[0] for o in out], norms


def test_dp_clips_each_sample_to_tau_before_the_noise():
    torch.manual_seed(1)
    model = build_model("sd_cnn", 10, SHAPE, seed=1)
    x, y = torch.randn(4, *SHAPE) * 3, torch.tensor([0, 1, 2, 3])
    tau = 0.05                                            # far below the per-sample norms: all clipped
    expected, norms = _sample_by_sample(model, x, y, tau)
    assert min(norms) > tau
    chain = DefenseChain([{"name": "dp", "clip": tau, "sigma": 0.0}])
    grads, secrets = chain.client_gradient(model, x, y, generator=torch.Generator().manual_seed(0))
    for (name, g), e in zip(grads.items(), expected):
        assert torch.allclose(g, e, atol=1e-7), name
    # the batch mean of clipped gradients has norm <= tau
    assert float(torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))) <= tau * (1 + 1e-5)
    # a large tau clips nothing: the released gradient is the plain batch-mean gradient
    plain, _ = DefenseChain([]).client_gradient(model, x, y)
    unclipped, _ = DefenseChain([{"name": "dp", "clip": 1e6, "sigma": 0.0}]).client_gradient(model, x, y)
    assert all(torch.allclose(plain[k], unclipped[k], atol=1e-6) for k in plain)


def test_dp_noise_is_sigma_tau_gaussian_divided_by_the_batch():
    model = build_model("sd_cnn", 10, SHAPE, seed=2)
    x, y = torch.randn(2, *SHAPE), torch.tensor([5, 6])
    tau, sigma = 20.0, 1e-3
    chain = DefenseChain([{"name": "dp", "clip": tau, "sigma": sigma}])
    noisy, secrets = chain.client_gradient(model, x, y, generator=torch.Generator().manual_seed(7))
    clean, _ = DefenseChain([{"name": "dp", "clip": tau, "sigma": 0.0}]).client_gradient(model, x, y)
    xi = torch.cat([secrets[f"dp/{n}"].flatten() for n in noisy])
    assert xi.numel() == 65_962
    assert abs(float(xi.std()) / (sigma * tau) - 1) < 0.02 and abs(float(xi.mean())) < 3 * sigma * tau / 256
    for n in noisy:
        assert torch.allclose(noisy[n], clean[n] + secrets[f"dp/{n}"] / 2, atol=1e-6)


def test_per_sample_gradients_vmap_equals_loop():
    for name in ("sd_cnn", "sd_vit"):
        chain = DefenseChain(["dropout", "dp", "cvb"])
        model = build_model(name, 10, SHAPE, seed=0, **chain.model_options()).train()
        x, y = torch.randn(3, *SHAPE), torch.tensor([1, 2, 3])
        src = NoiseSource(torch.Generator().manual_seed(0))
        with torch.no_grad(), use_noise(model, src):
            model(x)
        names = [n for n, _ in model.named_parameters()]
        a = _per_sample_vmap(model, x, y, src.drawn, LOSSES["cross_entropy"], chain, names)
        b = _per_sample_loop(model, x, y, src.drawn, LOSSES["cross_entropy"], chain, names)
        for u, v in zip(a, b):
            assert torch.allclose(u, v, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- secrets

@pytest.mark.parametrize("spec", [["dropout"], ["cvb"], ["precode"], ["dp"], ["dropout", "dp", "prune", "cvb"],
                                  ["dropout", "dp", "prune", "precode"]])
def test_same_secrets_give_the_same_gradient(spec):
    chain = DefenseChain(spec)
    model = build_model("sd_cnn", 10, SHAPE, seed=0, **chain.model_options())
    x, y = torch.randn(2, *SHAPE), torch.tensor([3, 8])
    g1, s1 = chain.client_gradient(model, x, y, generator=torch.Generator().manual_seed(1))
    g2, s2 = chain.client_gradient(model, x, y, generator=torch.Generator().manual_seed(2))
    g3, s3 = chain.client_gradient(model, x, y, generator=torch.Generator().manual_seed(99), secrets=s1)
    assert s1 and s1.keys() == s3.keys() and all(torch.equal(s1[k], s3[k]) for k in s1)
    assert all(torch.equal(g1[k], g3[k]) for k in g1)                 # same secrets -> same gradient
    assert not all(torch.equal(g1[k], g2[k]) for k in g1)             # other draws -> other gradient
    # the recorded draws are what the definitions say
    for key, v in s1.items():
        if key.startswith("model/drops"):
            assert set(v.unique().tolist()) <= {0.0, 1.0} and v.shape[0] == 2
        elif key.startswith("model/bottleneck"):
            assert v.shape[0] == 2


def test_seeded_generator_reproduces_the_client():
    chain = DefenseChain(["dropout", "dp", "cvb"])
    model = build_model("sd_cnn", 10, SHAPE, seed=0, **chain.model_options())
    x, y = torch.randn(1, *SHAPE), torch.tensor([3])
    g1, _ = chain.client_gradient(model, x, y, generator=torch.Generator().manual_seed(5))
    g2, _ = chain.client_gradient(model, x, y, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(g1[k], g2[k]) for k in g1)


def test_kl_term_is_part_of_the_client_gradient():
    # the encoder's gradient is that of CE + KL (reference VBLoss), not CE alone
    chain = DefenseChain(["cvb"])
    model = build_model("sd_cnn", 10, SHAPE, seed=0, **chain.model_options())
    x, y = torch.randn(1, *SHAPE), torch.tensor([2])
    grads, secrets = chain.client_gradient(model, x, y, generator=torch.Generator().manual_seed(0))
    eps = {k[len("model/"):]: v for k, v in secrets.items()}
    params = dict(model.named_parameters())
    with use_noise(model, NoiseSource(values=eps)):
        ce = F.cross_entropy(model(x), y)
        kl = model.bottleneck.last_kl
    g_ce = torch.autograd.grad(ce, [params["bottleneck.std_encoder.weight"]], retain_graph=True)[0]
    g_kl = torch.autograd.grad(kl, [params["bottleneck.std_encoder.weight"]])[0]
    assert float(g_kl.abs().max()) > 0
    assert torch.allclose(grads["bottleneck.std_encoder.weight"], g_ce + g_kl, atol=1e-6)


def test_registered_models_are_defended_models():
    for name in ("sd_cnn", "sd_vit", "resnet18_gn"):
        assert getattr(MODELS.get(name), "supports_defenses", False)


def test_one_defense_namespace_keeps_each_papers_prune():
    # both papers define a "prune" with different semantics (paper B: DGC layer-wise top-k at
    # p_prune = 0.5, its tables call it GP; DCS-2: numpy percentile per tensor, "Prune" in its tables)
    from gibench.defenses import CHAIN, CONCEALED
    from gibench.registry import UnknownName

    assert DEFENSES.families() == [CONCEALED, CHAIN]
    assert sorted(DEFENSES.of(CONCEALED).names()) == ["ats", "dcs2", "dp_gaussian", "prune", "soteria"]
    b, cs = DEFENSES.get(CHAIN, "prune"), DEFENSES.get(CONCEALED, "prune")
    assert b is not cs and b.build().rate == 0.5
    assert (DEFENSES.label(CHAIN, "prune"), DEFENSES.label(CONCEALED, "prune")) == ("GP", "Prune")
    assert len(DEFENSES.entries()) == 10
    with pytest.raises(UnknownName, match="unknown concealed-samples defense 'dropout'"):
        DEFENSES.get(CONCEALED, "dropout")
    with pytest.raises(KeyError, match="unknown defense family"):
        DEFENSES.of("selective_encryption")
