"""The attacker variants the papers leave open, each run and labelled (docs/regimes_variants.md).

Independent facts checked:

* WIIG under DP: ``subtract`` with the client's exact noise leaves the clean (clipped) gradient
  as the target, ``add`` keeps the released update; both are exact at the true input, and they
  are different objectives elsewhere (the cosine distance is not translation invariant);
* DPIA: in units of sigma*tau the initial dummy noise is N(0, I) and the same draw as the
  absolute parametrisation divided by sigma*tau; both give the same dummy gradient; Adam's first
  step moves every entry of the optimised variable by at most the learning rate (exactly lr
  where the gradient is not ~0), i.e. lr noise-stds in sigma-tau units and lr/(sigma tau)
  noise-stds in absolute units;
* the TV weight per model resolves to the CVB repository's model configs (CNN 0.1, ResNet-18
  0.1, ViT 1e-4; configs/models/*.yaml at f15b4720), and ``attack_model_params: {}`` to paper
  B's 0.01;
* DAGER under encryption: on a real CoLA sentence and a Grad top-k mask, visible_rows recovers
  the sentence token-exactly where zero_fill does not;
* bad variant values fail at DAG build naming the key; tables label every variant.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from gibench.attacks.ig import invert
from gibench.attacks.stochastic import OPTIONS, prepare
from gibench.config import ConfigError, validate
from gibench.defenses import DP_PREFIX, DefenseChain
from gibench.models import build_model
from gibench.studies.stochastic_defenses.spec import spec

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (3, 32, 32)
SENTENCE = 0          # the first bundled CoLA dev sentence (see the DAGER test)
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
FAST = {"iterations": 3, "lr": 0.1, "lr_schedule": "plateau", "tv": 0.01, "model_mode": "train", "keep": "best"}


def _client(spec, seed=0):
    chain = DefenseChain(spec)
    model = build_model("sd_cnn", 10, SHAPE, seed=seed, **chain.model_options())
    x = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(seed + 100)) * 2 - 1
    y = torch.tensor([3])
    grads, secrets = chain.client_gradient(model, x, y, generator=torch.Generator().manual_seed(seed))
    return chain, model, x, y, grads, secrets


def _prep(kind, chain, model, y, grads, secrets=None, **cfg):
    return prepare(kind, model, grads, None, input_shape=(1, *SHAPE), mean=MEAN, std=STD, labels=y,
                   cfg={**FAST, **cfg}, seed=5, defenses=chain, secrets=secrets)


def _distance(p, x, ex=None):
    ex = ex if ex is not None else {k: e.value for k, e in p.extras.items()}
    return float(p.match(p.dummy_gradient(x, ex)).detach())


# ---------------------------------------------------------------- WIIG: add vs subtract

def test_wiig_subtract_with_the_exact_noise_leaves_the_clean_gradient():
    chain, model, x, y, grads, secrets = _client([{"name": "dp", "clip": 20, "sigma": 1e-2}])
    clean, _ = DefenseChain([]).client_gradient(model, x, y)            # no clipping, no noise
    assert float(torch.sqrt(sum(g.pow(2).sum() for g in clean.values()))) < 20   # so clipping at 20 is the identity
    assert OPTIONS["secret_noise"] == "add"                               # the default is the paper's text
    sub = _prep("wiig", chain, model, y, grads, secrets, secret_noise="subtract")
    add = _prep("wiig", chain, model, y, grads, secrets, secret_noise="add")
    for n, t_sub, t_add in zip(sub.match.names, sub.match.targets, add.match.targets):
        assert torch.allclose(t_sub, clean[n], atol=1e-6, rtol=1e-5), n    # the clean gradient, exactly
        assert torch.equal(t_add, grads[n])                                # the released (noisy) update
    # the noise dominates the update here: the two targets point in different directions
    noisy = torch.cat([t.reshape(-1) for t in add.match.targets])
    flat = torch.cat([t.reshape(-1) for t in sub.match.targets])
    assert float(torch.nn.functional.cosine_similarity(noisy, flat, dim=0)) < 0.9
    # both are exact at the true input ...
    assert _distance(sub, x) < 1e-5 and _distance(add, x) < 1e-5
    # ... and different objectives elsewhere
    x_other = torch.zeros_like(x)
    assert abs(_distance(sub, x_other) - _distance(add, x_other)) > 1e-3


# ---------------------------------------------------------------- DPIA: noise in units of sigma tau

def test_dpia_noise_in_units_of_sigma_tau_is_the_same_draw_and_objective():
    chain, model, x, y, grads, secrets = _client([{"name": "dp", "clip": 20, "sigma": 1e-3}])
    st = 20 * 1e-3
    z = _prep("dpia", chain, model, y, grads)                             # default: sigma_tau
    a = _prep("dpia", chain, model, y, grads, noise_units="absolute")
    assert OPTIONS["noise_units"] == "sigma_tau" and z.info["dp_noise"]["scale"] == pytest.approx(st)
    assert a.info["dp_noise"]["scale"] == 1.0
    big = max(z.extras, key=lambda k: z.extras[k].value.numel())
    assert z.extras[big].value.numel() > 10_000
    assert abs(float(z.extras[big].value.std()) - 1.0) < 0.02 and abs(float(z.extras[big].value.mean())) < 0.02
    for k in z.extras:                                                    # Xi_A = sigma tau * z, the same draw
        assert torch.equal(a.extras[k].value, z.extras[k].value * st)
    ez = {k: e.value for k, e in z.extras.items()}
    ea = {k: e.value for k, e in a.extras.items()}
    for gz, ga in zip(z.dummy_gradient(x, ez), a.dummy_gradient(x, ea)):
        assert torch.allclose(gz, ga, atol=1e-7, rtol=1e-5)
    # at the client's own noise (in each parametrisation's units) both reproduce the update
    assert _distance(z, x, {k: secrets[k] / st for k in ez}) < 1e-5
    assert _distance(a, x, {k: secrets[k] for k in ea}) < 1e-5
    # the regulariser is zero at a draw with mean 0 and std s (1 for z, sigma tau for Xi_A)
    unit = {k: (v - v.mean()) / v.std() if v.numel() > 1 else v.sign() for k, v in ez.items()}
    assert float(z.penalty(x, unit)) == pytest.approx(0.0, abs=1e-4)
    assert float(a.penalty(x, {k: v * st for k, v in unit.items()})) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("units,noise_stds", [("sigma_tau", 0.1), ("absolute", 0.1 / 0.02)])
def test_dpia_first_adam_step_in_noise_stds(units, noise_stds):
    """Adam's first step moves an entry by lr * g / (|g| + eps): lr where |g| >> eps.  With
    lr 0.1 that is 0.1 noise-stds for z, but 0.1 / (sigma tau) = 5 noise-stds for Xi_A itself."""
    chain, model, x, y, grads, _ = _client([{"name": "dp", "clip": 20, "sigma": 1e-3}])
    p = _prep("dpia", chain, model, y, grads, noise_units=units, iterations=1, lr_schedule="none", keep="last")
    loop = invert(p.model, p.match, p.y, p.x0, p.cfg, box=p.box, dummy_gradient=p.dummy_gradient, extras=p.extras,
                  penalty=p.penalty)
    scale = p.info["dp_noise"]["scale"]
    steps = torch.cat([((loop["extras"][k] - e.value) * scale / 0.02).abs().reshape(-1) for k, e in p.extras.items()])
    assert float(steps.max()) <= noise_stds * (1 + 1e-4)
    assert float(steps.median()) == pytest.approx(noise_stds, rel=1e-3)


# ---------------------------------------------------------------- TV weight per model

def _sd(path):
    return validate(yaml.safe_load((ROOT / path).read_text()))


@pytest.mark.parametrize("path", ["config/config.yaml", "config/studies/stochastic_defenses.yaml"])
def test_tv_weight_per_model_follows_the_cvb_configs_and_one_line_restores_the_paper(path):
    cfg = _sd(path)
    st = cfg["studies"]["stochastic_defenses"]
    cvb = {"sd_cnn": 0.1, "resnet18_gn": 0.1, "sd_vit": 1e-4}      # CVB repo configs/models/*.yaml
    models = {m for spec in st["tables"].values() for m in spec["models"]}
    for m in models:
        for a in st["attacks"]:
            assert spec(cfg).attack_settings(a, m)[1]["tv"] == cvb[m], (a, m)
    st["attack_model_params"] = {}                                   # the one-line override
    for m in models:
        assert spec(cfg).attack_settings("ig", m)[1]["tv"] == 0.01      # paper B, section 5.2
    from gibench.tables.stochastic_defenses import tv_source

    assert "CNN.yaml" in tv_source("sd_cnn", 0.1) and "ViT.yaml" in tv_source("sd_vit", 1e-4)
    assert "paper B" in tv_source("sd_cnn", 0.01) and "neither" in tv_source("sd_cnn", 0.3)


def test_attack_settings_precedence():
    cfg = {"studies": {"stochastic_defenses": {
        "victims": 1, "tables": {},              # the block's required keys (the rest: the schema's defaults)
        "attack_params": {"tv": 0.01, "lr": 1.0},
        "attack_model_params": {"sd_cnn": {"tv": 0.1, "lr": 0.5}},
        "attacks": {"a": {"params": {"lr": 0.2}}, "b": {"model_params": {"sd_cnn": {"tv": 0.3}}}}}}}
    assert spec(cfg).attack_settings("a", "sd_cnn")[1] == {"tv": 0.1, "lr": 0.2}      # entry params beat the model's
    assert spec(cfg).attack_settings("b", "sd_cnn")[1] == {"tv": 0.3, "lr": 0.5}      # entry model_params beat all
    assert spec(cfg).attack_settings("a", "sd_vit")[1] == {"tv": 0.01, "lr": 0.2}


# ---------------------------------------------------------------- config errors name the key

@pytest.mark.parametrize("where,value,words", [
    (("stochastic_defenses", "attacks", "wiig_subtract", "params", "secret_noise"), "minus",
     ["attacks.wiig_subtract.params", "secret_noise", "'minus'", "'subtract'"]),
    (("stochastic_defenses", "attacks", "dpia", "params", "noise_units"), "raw",
     ["attacks.dpia.params", "noise_units", "'raw'", "'sigma_tau'"]),
    (("stochastic_defenses", "attack_model_params", "sd_cnn", "noise_units"), "raw",
     ["attack_model_params.sd_cnn", "noise_units", "'raw'"]),
    (("stochastic_defenses", "attack_model_params", "sd_cnn", "tv"), -0.1, ["attack_model_params.sd_cnn.tv", "-0.1"]),
    (("stochastic_defenses", "attack_model_params", "lenet5"), {"tv": 0.1},
     ["attack_model_params.lenet5", "unknown model 'lenet5'"]),
    (("selective_encryption", "attacks", "dager_zero_fill", "params", "variant"), "oracle",
     ["attacks.dager_zero_fill.params", "variant", "'oracle'", "zero_fill"]),
])
def test_bad_variant_values_fail_with_the_key(where, value, words):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    node = cfg["studies"]
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    line = next((ln for ln in str(err.value).splitlines() if words[0] in ln), str(err.value))
    assert all(w in line for w in words), (words, str(err.value))


# ---------------------------------------------------------------- tables label the variants

def test_stochastic_table1_shows_both_wiig_rows_labelled():
    from gibench.tables.stochastic_defenses import table_doc

    cfg = copy.deepcopy(_sd("config/config.yaml"))
    st = cfg["studies"]["stochastic_defenses"]
    st["attacks"]["dpia_absolute"] = {"type": "dpia", "params": {"noise_units": "absolute"}}
    st["tables"]["table1"]["attacks"].append("dpia_absolute")
    rows = [{"dataset": d, "model": "sd_cnn", "defense": dfn, "attack": a, "slot": "s000", "restart": 0,
             "status": "ok", "ssim": 0.5}
            for d in ("mnist", "cifar10") for dfn, a in [("none", "ig"), ("dp_1e-3", "ig"), ("dp_1e-3", "wiig"),
                                                        ("dp_1e-3", "wiig_subtract"), ("dp_1e-3", "dpia"),
                                                        ("dp_1e-3", "dpia_absolute"), ("cvb", "wiig")]]
    doc = table_doc("table1", rows, cfg)
    labels = [line[3] for line in doc.body]
    assert labels[:6] == ["IG", "IG", "WIIG (add)", "WIIG (subtract)", "DPIA", "DPIA (absolute)"]
    assert {(r["attack"], r["attack_label"]) for r in doc.tidy} >= {("wiig", "WIIG (add)"),
                                                                   ("wiig_subtract", "WIIG (subtract)")}
    md = doc.to_markdown()
    assert "paper B's text (section 4.1)" in md and "CVB repository configs/models/CNN.yaml" in md
    assert "z = Ξ_A/(στ)" in md
    t3 = table_doc("table3", rows, cfg)                                   # no DP: the variant changes nothing
    cvb_rows = {line[3] for line in t3.body if line[2] == "CVB"}
    assert "WIIG" in cvb_rows and not any(label.startswith("WIIG (") for label in cvb_rows)


def test_selective_table4_labels_the_dager_attacker():
    from gibench.tables.selective_encryption import table4

    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    se = cfg["studies"]["selective_encryption"]
    recovered = {("dager", 0.0): 1.0, ("dager", 0.01): 1.0, ("dager", 0.1): 0.0, ("dager", 1.0): 0.0,
                 ("dager_zero_fill", 0.01): 0.0, ("dager_zero_fill", 0.1): 0.0}
    rows = [{"study": "selective_encryption", "dataset": "cola", "model": "gpt2", "slot": s,
             "metric": "any" if r in (0.0, 1.0) else "grad", "ratio": r, "attack": a, "restart": 0,
             "status": "ok", "attacker_loss": 0.0, "encrypted_fraction": r, "rouge1": v, "rouge2": v, "rougeL": v,
             "embed_dist": 0.0, "token_accuracy": v} for (a, r), v in recovered.items() for s in ("s000", "s001")]
    doc = table4(rows, se)
    body = {line[0]: line for line in doc.body}
    assert body["DAGER (visible_rows)"][3] == "0.1" and body["DAGER (zero_fill)"][3] == "0.01"
    md = doc.to_markdown()
    assert "DAGER (zero_fill): encrypted entries are replaced by 0" in md


# ---------------------------------------------------------------- DAGER: visible_rows vs zero_fill

@pytest.mark.slow
def test_dager_visible_rows_recovers_where_zero_fill_does_not():
    """The demo's reduced GPT-2 (random weights, 3 blocks of width 128, the real vocabulary),
    one CoLA sentence, the Grad top-k mask at 1 %: the naive attacker's zero-filled matrices
    leave the span and it recovers nothing; the rows it can still see in full span it exactly."""
    pytest.importorskip("transformers")
    from gibench.attacks import dager as D
    from gibench.datasets import DATASETS
    from gibench.datasets.text import load_tokenizer
    from gibench.masks import make_mask

    tok = load_tokenizer("gpt2", "bundled", ROOT / "resources")
    model = build_model("gpt2", 2, None, seed=0, size="demo")
    text = DATASETS.get("cola").load("bundled", "in_domain_dev", ROOT / "resources").texts[SENTENCE]
    ids = tok(text)["input_ids"][:10]
    x = torch.tensor([ids])
    loss = torch.nn.functional.cross_entropy(model(input_ids=x, attention_mask=torch.ones_like(x)), torch.tensor([1]))
    names, params = zip(*model.named_parameters())
    grads = dict(zip(names, torch.autograd.grad(loss, params)))
    mask = make_mask({n: g.abs() for n, g in grads.items()}, 0.01, "global", list(names))    # Grad, 1 %
    vis = {n: ~mask.bits[n].to(torch.bool) for n in names}
    shared = {n: torch.where(vis[n], g, torch.zeros_like(g)) for n, g in grads.items()}     # the server's view
    cfg = {"batch_size": 1, "time_limit": 600}
    rows = D.run(model, shared, vis, tokenizer=tok, cfg={**cfg, "variant": "visible_rows"}, seed=0)
    naive = D.run(model, shared, vis, tokenizer=tok, cfg={**cfg, "variant": "zero_fill"}, seed=0)
    assert rows.status == "ok" and rows.sequences == [ids], rows.message
    assert naive.status == "failed" and naive.sequences != [ids] and "time limit" not in naive.message
