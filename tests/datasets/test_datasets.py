"""Bundled data read with the original-format readers; hub path exercised on local files."""
import numpy as np
import pytest

from gibench.datasets import DATASETS, DatasetUnavailable, choose_victims


def test_cifar100_bundled_slice_facts(resources):
    s = DATASETS.get("cifar100").load("bundled", "test", resources)
    # the first CIFAR-100 test labels are 49 (mountain), 33 (forest), 72 (seal), 51 (mushroom), 71 (sea)
    assert s.labels[:5].tolist() == [49, 33, 72, 51, 71]
    assert s.class_names[49] == "mountain" and s.class_names[71] == "sea"
    assert s.images.dtype == np.uint8 and s.images.shape == (916, 32, 32, 3)


def test_cifar10_and_mnist_first_labels(resources):
    c10 = DATASETS.get("cifar10").load("bundled", "test", resources)
    assert c10.labels[:5].tolist() == [3, 8, 8, 0, 6]          # cat, ship, ship, airplane, frog
    assert c10.class_names[3] == "cat"
    mn = DATASETS.get("mnist").load("bundled", "test", resources)
    assert mn.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert mn.images.shape == (10000, 28, 28, 1) and mn.images.max() == 255


def test_tiny_imagenet_sample(resources):
    t = DATASETS.get("tiny_imagenet").load("bundled", "val", resources)
    assert t.images.shape == (200, 64, 64, 3) and len(set(t.labels.tolist())) == 200


def test_tampered_bundled_file_is_detected(tmp_path, resources):
    import shutil
    d = tmp_path / "data" / "cifar100"
    shutil.copytree(resources / "data" / "cifar100", d)
    raw = bytearray((d / "meta").read_bytes())
    raw[-5] ^= 0xFF
    (d / "meta").write_bytes(bytes(raw))
    with pytest.raises(DatasetUnavailable, match="sha256"):
        DATASETS.get("cifar100").load("bundled", "test", tmp_path)


def test_normalize_roundtrip(resources):
    ds = DATASETS.get("cifar100")
    s = ds.load("bundled", "test", resources)
    x = ds.normalize(s.images[:3])
    assert x.shape == (3, 3, 32, 32)
    back = ds.denormalize(x).permute(0, 2, 3, 1).numpy() * 255
    assert np.abs(back - s.images[:3]).max() < 1e-3


def test_victims_are_seeded_prefix_stable(resources):
    s = DATASETS.get("cifar100").load("bundled", "test", resources)
    a, b = choose_victims(s, 10, seed=5), choose_victims(s, 4, seed=5)
    assert a[:4].tolist() == b.tolist() and len(set(a.tolist())) == 10
    assert choose_victims(s, 10, seed=6).tolist() != a.tolist()


def test_hub_path_on_local_files(tmp_path, resources):
    """The hub reader on a local directory in the hub's layout (image + label columns)."""
    datasets = pytest.importorskip("datasets")
    from gibench.datasets.hub import hub_split_dir, load_hub_split
    from PIL import Image

    src = DATASETS.get("cifar100").load("bundled", "test", resources)
    feats = datasets.Features({"img": datasets.Image(), "fine_label": datasets.ClassLabel(names=src.class_names)})
    d = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(im) for im in src.images[:6]], "fine_label": src.labels[:6].tolist()}, features=feats)
    out = hub_split_dir(tmp_path, DATASETS.get("cifar100"), "test")
    d.save_to_disk(str(out))
    got = load_hub_split(DATASETS.get("cifar100"), "test", tmp_path)
    assert got.labels.tolist() == src.labels[:6].tolist()
    assert np.array_equal(got.images, src.images[:6])          # PNG round trip is lossless
    assert got.class_names[49] == "mountain"


def test_hub_download_rule_from_local_dir(tmp_path, resources):
    """fetch_to_disk takes a hub id; a local data directory stands in for the hub here."""
    datasets = pytest.importorskip("datasets")
    from gibench.datasets.hub import fetch_to_disk, load_hub_split
    from PIL import Image

    src = DATASETS.get("mnist").load("bundled", "test", resources)
    repo = tmp_path / "fake_hub_repo"
    repo.mkdir()
    d = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(im[..., 0]) for im in src.images[:4]], "label": src.labels[:4].tolist()},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}))
    d.to_parquet(str(repo / "test.parquet"))
    fetch_to_disk(DATASETS.get("mnist"), "test", tmp_path / "hub", hub_id=str(repo))
    got = load_hub_split(DATASETS.get("mnist"), "test", tmp_path / "hub")
    assert got.labels.tolist() == [7, 2, 1, 0, 4][:4]
    assert np.array_equal(got.images, src.images[:4])


def test_missing_hub_copy_is_actionable(tmp_path):
    with pytest.raises(DatasetUnavailable, match="download rule"):
        DATASETS.get("cifar10").load("hub", "test", "resources", tmp_path)


def test_unreachable_hub_is_actionable(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from gibench.datasets.hub import fetch_to_disk
    with pytest.raises(DatasetUnavailable, match="machine with internet"):
        fetch_to_disk(DATASETS.get("cifar10"), "test", tmp_path, hub_id="no-such-org/no-such-dataset")
