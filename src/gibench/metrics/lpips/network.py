"""The LPIPS network of :mod:`gibench.metrics.lpips`: the three ImageNet backbones in
torchvision's module layout (AlexNet, SqueezeNet 1.1, VGG16 ``features``), their taps and
channels, and the :class:`LPIPS` module (scaling layer, unit-normalised features, linear
heads, spatial mean, sum over taps)."""
from __future__ import annotations


import torch
import torch.nn as nn


BACKBONES = ("alex", "squeeze", "vgg")
VERSIONS = ("0.0", "0.1")
#: input conventions (:mod:`gibench.metrics.lpips`): how [0, 1] images enter the network
INPUTS: dict[str, str] = {
    "pm1": "[0, 1] images mapped to [-1, 1] (the LPIPS authors' convention)",
    "raw01": "[0, 1] images fed unmapped (DCS-2's code: lpips.LPIPS(net)(x, y) on [0, 1] images)",
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
