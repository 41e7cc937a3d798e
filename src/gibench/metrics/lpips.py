"""LPIPS, the learned perceptual image patch similarity of Zhang et al. (CVPR 2018),
implemented here without torchvision or the ``lpips`` package.

Definition (v0.1, the authors' default).  Both images, given in [0, 1], are mapped to
[-1, 1], then shifted and scaled per channel by the LPIPS "scaling layer"
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

The linear heads are the authors' released weights (bundled in
``resources/lpips/weights/v{0.0,0.1}/{alex,squeeze,vgg}.pth``, keys
``lin{k}.model.1.weight`` of shape (1, C_k, 1, 1); index 1 because the authors' head is
Sequential(Dropout, Conv2d), and Dropout is inactive in evaluation).  The backbone weights
are torchvision's ImageNet checkpoints (:data:`BACKBONE_URLS`); they are not bundled and
are fetched by :func:`download_backbone` (the pipeline's download rule) on a machine with
internet.  Without them :func:`load_lpips` raises :class:`LPIPSUnavailable` and the
metrics report LPIPS as unavailable with that reason, never a number.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

__all__ = [
    "BACKBONES", "BACKBONE_URLS", "BACKBONE_FILES", "BACKBONE_SHA256_PREFIX", "BACKBONE_TAPS",
    "BACKBONE_CHANNELS", "BACKBONE_NAMES", "SCALING_SHIFT", "SCALING_SCALE", "NORM_EPS",
    "VERSIONS", "DOWNLOAD_RULE", "LPIPS", "LPIPSUnavailable", "BackboneDownloadError",
    "Fire", "Backbone", "build_backbone", "load_lpips", "lpips_from_state",
    "download_backbone", "default_heads_dir", "default_backbone_path", "sha256_of",
]

BACKBONES = ("alex", "squeeze", "vgg")
VERSIONS = ("0.0", "0.1")

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
    so it can serve as a loss).  ``status`` is the human-readable ``'ok (alex, v0.1)'``."""

    def __init__(self, backbone: str = "alex", version: str = "0.1") -> None:
        super().__init__()
        if version not in VERSIONS:
            raise ValueError(f"unknown LPIPS version {version!r}; known: {', '.join(VERSIONS)}")
        self.backbone_name = backbone
        self.version = version
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
        return f"ok ({self.backbone_name}, v{self.version})"

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
        x = x01.to(p) * 2 - 1  # [0, 1] -> [-1, 1]
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


def default_backbone_path(backbone: str, hub_dir: str | os.PathLike = DEFAULT_HUB_DIR) -> Path:
    """Where the pipeline keeps a backbone checkpoint: ``<hub_dir>/torch/<file>``."""
    return Path(hub_dir) / "torch" / BACKBONE_FILES[_check_backbone(backbone)]


def _check_backbone(backbone: str) -> str:
    if backbone not in BACKBONES:
        raise ValueError(f"unknown LPIPS backbone {backbone!r}; known: {', '.join(BACKBONES)}")
    return backbone


def _missing_backbone_message(backbone: str, path: Path) -> str:
    return (f"{BACKBONE_NAMES[backbone]} backbone weights not found at {path}; run the download rule "
            f"({DOWNLOAD_RULE}: `snakemake --cores 1 {path}`, or "
            f"`python -c \"from gibench.metrics.lpips import download_backbone; "
            f"download_backbone('{backbone}', '{path.parent}')\"`) on a machine with internet "
            f"(source: {BACKBONE_URLS[backbone]})")


def _load_heads(model: LPIPS, heads: Mapping[str, torch.Tensor]) -> None:
    expected = {f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate(model.net.channels)}
    missing = [k for k in expected if k not in heads]
    if missing:
        raise ValueError(f"LPIPS heads for {model.backbone_name} lack {', '.join(missing)}")
    for k, shape in expected.items():
        if tuple(heads[k].shape) != shape:
            raise ValueError(f"LPIPS head {k} has shape {tuple(heads[k].shape)}, expected {shape}")
    model.load_state_dict({k: heads[k] for k in expected}, strict=False)


def _load_features(model: LPIPS, state: Mapping[str, torch.Tensor]) -> None:
    """Load the ``features.*`` entries of a torchvision checkpoint (classifier keys and a
    ``net.`` prefix are ignored); every backbone parameter must be present."""
    feats = {}
    for k, v in state.items():
        k = k[4:] if k.startswith("net.") else k
        if k.startswith("features."):
            feats[k] = v
    want = model.net.state_dict()
    missing = sorted(set(want) - set(feats))
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} of the {model.backbone_name} feature "
                         f"weights (e.g. {', '.join(missing[:3])})")
    for k, t in want.items():
        if tuple(feats[k].shape) != tuple(t.shape):
            raise ValueError(f"checkpoint entry {k} has shape {tuple(feats[k].shape)}, "
                             f"expected {tuple(t.shape)}")
    result = model.net.load_state_dict(feats, strict=False)
    assert not result.missing_keys, result.missing_keys


def lpips_from_state(backbone_state_dict: Mapping[str, torch.Tensor],
                     heads_state_dict: Mapping[str, torch.Tensor], *,
                     backbone: str | None = None, version: str = "0.1") -> LPIPS:
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
    model = LPIPS(_check_backbone(backbone), version)
    _load_features(model, backbone_state_dict)
    _load_heads(model, heads_state_dict)
    return model


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def load_lpips(backbone: str = "alex", version: str = "0.1", heads_dir: str | os.PathLike | None = None,
               backbone_path: str | os.PathLike | None = None, *, hub_dir: str | os.PathLike = DEFAULT_HUB_DIR,
               check_hash: bool = False, map_location: str | torch.device = "cpu") -> LPIPS:
    """The LPIPS model with the authors' heads and torchvision's ImageNet backbone.

    ``heads_dir`` holds ``<backbone>.pth`` (default: the bundled
    ``resources/lpips/weights/v<version>``); ``backbone_path`` is the torchvision
    checkpoint (default ``<hub_dir>/torch/<BACKBONE_FILES[backbone]>``).  Raises
    :class:`LPIPSUnavailable` with an actionable reason when a file is missing or is not
    what it should be; ``check_hash`` also compares the file's SHA-256 with the prefix in
    its torchvision name."""
    _check_backbone(backbone)
    if version not in VERSIONS:
        raise ValueError(f"unknown LPIPS version {version!r}; known: {', '.join(VERSIONS)}")
    heads_file = Path(heads_dir if heads_dir is not None else default_heads_dir(version)) / f"{backbone}.pth"
    path = Path(backbone_path) if backbone_path is not None else default_backbone_path(backbone, hub_dir)
    if not heads_file.is_file():
        raise LPIPSUnavailable(f"LPIPS v{version} linear heads not found at {heads_file}; they are bundled "
                               f"with gibench under resources/lpips/weights (restore them from git: "
                               f"`git checkout -- {heads_file}`)")
    if not path.is_file():
        raise LPIPSUnavailable(_missing_backbone_message(backbone, path))
    if check_hash:
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
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise LPIPSUnavailable(f"cannot read {BACKBONE_NAMES[backbone]} backbone weights {path} ({e}); "
                               f"delete it and run the download rule ({DOWNLOAD_RULE}) again") from e
    if not isinstance(state, Mapping):
        raise LPIPSUnavailable(f"{path} is not a state dict; expected torchvision's {BACKBONE_FILES[backbone]}")
    try:
        return lpips_from_state(state, heads, backbone=backbone, version=version)
    except ValueError as e:
        raise LPIPSUnavailable(f"{path} does not hold torchvision {BACKBONE_NAMES[backbone]} weights: {e}; "
                               f"expected {BACKBONE_FILES[backbone]} from {BACKBONE_URLS[backbone]}") from e


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
