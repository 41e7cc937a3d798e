"""Models of the stochastic-defenses study (paper B, *Combining Stochastic Defenses to
Resist Gradient Inversion*, sections 5 and 6.2) with the model-side defenses as build options.

Architectures follow the CVB repository (dAI-SY-Group/ConvolutionalVariationalBottleneck,
``configs/models/*.yaml`` and ``src/models/*.py``; facts in
``reference/ig_and_image_defenses.md`` §4.2), whose configs match paper B's models:

* ``sd_cnn`` -- 3 convolutions 5x5, channels [16, 32, 64], stride 2, 'valid' padding, ReLU,
  then ``Linear(64, classes)`` (32 -> 14 -> 5 -> 1 pixels): 65,962 parameters for 10 classes.
* ``sd_vit`` -- patch 4 (64 patches + CLS token), hidden 256, 4 pre-norm transformer blocks
  with 16 heads, MLP width 256 (Linear -> dropout -> GELU, twice), LayerNorm eps 1e-6, learned
  CLS token and position embedding drawn from N(0, 1), **no bias** outside the LayerNorms, a
  final LayerNorm and a bias-free classifier on the CLS token: 1,609,216 parameters.
* ``resnet18_gn`` -- torchvision's ResNet-18 (BasicBlock, [2, 2, 2, 2], ImageNet stem: 7x7
  stride-2 convolution and 3x3 stride-2 max-pool, also on 32x32 inputs) with every BatchNorm
  replaced by GroupNorm with 2 groups, torchvision's initialisation: 11,181,642 parameters.

Model-side defenses (build options ``dropout``, ``bottleneck``, ``bottleneck_params``; the
:class:`gibench.defenses.DefenseChain` produces them):

* **Dropout** (rate ``dropout``) where the reference code puts ``MaskDropout``: in every
  convolution block of the CNN (the CVB ``CNNBlock`` regularisation slot, conv -> dropout ->
  ReLU), after both MLP linears of every ViT block, before ResNet-18's ``fc``.
* **PRECODE** (Scheliga et al. 2022, ``bottleneck: precode``): a variational bottleneck on the
  flattened features **immediately before the classifier** (the PRECODE repository's
  placement; on the CNN, ``position: <conv block index>`` puts it after that block instead, where
  the CVB repository puts its bottleneck -- paper B names no placement, docs/regimes_precode.md):
  encoder ``Linear(d, 2K)`` (mu = first K outputs, sigma = softplus of the last K),
  z = mu + sigma * eps, decoder ``Linear(K, d)``; K = 256, beta = 1e-3.  Its loss term is
  beta * (-1/2 mean_batch sum_k (1 + 2 log sigma_k - mu_k^2 - sigma_k^2)) / ln 2 (the KL in
  bits, as the reference computes it).
* **CVB** (Scheliga et al. 2024, ``bottleneck: cvb``): ``mu_encoder`` and ``std_encoder`` =
  Conv2d(C, K, k, 'same', no bias), std = softplus(clip(std_encoder(x), -5, 5)),
  z = mu + std * eps, decoder Conv2d(K, C, 1, no bias); K = C // 2 if C >= 8 else 8.  Its loss
  term is beta * mean(-1/2 sum_channels (1 + std - mu^2 - exp(std))) -- the reference treats
  "std" as a log-variance here, reproduced as is.  Placement and beta per model (CVB repo
  configs): CNN after conv block 0 (16x14x14, k 5, beta 0.1), ResNet-18 after ``layer1``
  (64x8x8, k 5, beta 5e-5), ViT after transformer block 0 on the tokens reshaped to
  (65, 16, 16) (k 3, beta 0.1).

Both bottlenecks draw eps in training *and* evaluation mode, as the reference code does.

**The randomness is explicit.**  Every stochastic layer (dropout masks Psi, bottleneck eps)
asks the :class:`NoiseSource` installed with :func:`use_noise` for its draw, keyed by the
layer's module name: a source draws from a seeded ``torch.Generator`` (on the CPU, so every
device sees the same numbers) and records what it drew, or returns given values -- the
client's saved draws (replay, WIIG) or the attacker's optimised variables (DIA, VBIA; they may
be continuous and require grad).  Without a source installed the layers behave like
``nn.Dropout`` / the reference bottlenecks (global RNG; dropout only in training mode).

The privacy module's weights are drawn *after* the base model's, so a model with PRECODE or
CVB has the same base weights as the plain model built with the same seed.

Length: paper B's three architectures (CNN, ViT, ResNet-18) and the stochastic layers they are
built from, each model a page read against the CVB configs; the layers serve only these models.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from .registry import MODELS

LN2 = math.log(2.0)
BOTTLENECKS = ("precode", "cvb")


# ---------------------------------------------------------------- explicit randomness

class NoiseSource:
    """Where the stochastic layers take their random draws from.

    ``values``: key -> tensor used as is (shape checked); other keys are drawn from
    ``generator`` (a CPU ``torch.Generator``; ``None``: the global RNG on the layer's device)
    and recorded in :attr:`drawn`.  Draws happen in forward order, so a seeded generator
    reproduces them."""

    def __init__(self, generator: torch.Generator | None = None,
                 values: Mapping[str, torch.Tensor] | None = None):
        self.generator = generator
        self.values = dict(values or {})
        self.drawn: dict[str, torch.Tensor] = {}

    def has(self, key: str) -> bool:
        return key in self.values

    def _given(self, key: str, shape: torch.Size, like: torch.Tensor) -> torch.Tensor | None:
        if key not in self.values:
            return None
        v = self.values[key]
        if tuple(v.shape) != tuple(shape):
            raise ValueError(f"noise {key!r}: given tensor has shape {tuple(v.shape)}, the layer needs {tuple(shape)}")
        return v.to(device=like.device, dtype=like.dtype)

    def keep_mask(self, key: str, shape: torch.Size, p: float, like: torch.Tensor) -> torch.Tensor:
        """A dropout keep mask psi ~ Bernoulli(1 - p) (1 = kept)."""
        v = self._given(key, shape, like)
        if v is not None:
            return v
        if self.generator is not None:
            m = torch.bernoulli(torch.full(tuple(shape), 1.0 - p), generator=self.generator)
        else:
            m = torch.bernoulli(torch.full(tuple(shape), 1.0 - p, device=like.device))
        m = m.to(device=like.device, dtype=like.dtype)
        self.drawn[key] = m
        return m

    def normal(self, key: str, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
        """A reparameterisation eps ~ N(0, I)."""
        v = self._given(key, shape, like)
        if v is not None:
            return v
        if self.generator is not None:
            e = torch.randn(tuple(shape), generator=self.generator)
        else:
            e = torch.randn(tuple(shape), device=like.device)
        e = e.to(device=like.device, dtype=like.dtype)
        self.drawn[key] = e
        return e


class Stochastic(nn.Module):
    """Base of the layers whose forward pass draws random numbers."""

    def __init__(self):
        super().__init__()
        self.noise_key = ""                       # the module's name in the model (set at build)
        self.source: NoiseSource | None = None    # installed by use_noise()


class StochasticDropout(Stochastic):
    """Dropout x * psi / (1 - p) with psi ~ Bernoulli(1 - p) (the reference ``MaskDropout``)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return x
        if self.source is None:
            return F.dropout(x, self.p, self.training)
        return x * self.source.keep_mask(self.noise_key, x.shape, self.p, x) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _Bottleneck(Stochastic):
    kind = ""

    def __init__(self, beta: float):
        super().__init__()
        self.beta = float(beta)
        self.last_kl: torch.Tensor | None = None   # the loss term of the last forward pass

    def _eps(self, mu: torch.Tensor) -> torch.Tensor:
        if self.source is None:
            return torch.randn_like(mu)
        return self.source.normal(self.noise_key, mu.shape, mu)


class PrecodeBottleneck(_Bottleneck):
    """PRECODE's variational bottleneck on flattened features (see the module docstring)."""

    kind = "precode"

    def __init__(self, features: int, K: int = 256, beta: float = 1e-3):
        super().__init__(beta)
        self.K = int(K)
        self.encoder = nn.Linear(features, 2 * self.K)
        self.decoder = nn.Linear(self.K, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        h = self.encoder(x.flatten(1))
        mu, sigma = h[:, :self.K], F.softplus(h[:, self.K:])
        z = mu + sigma * self._eps(mu)
        kl = -0.5 * (1 + 2 * torch.log(sigma) - mu.pow(2) - sigma.pow(2)).sum(dim=1).mean()
        self.last_kl = self.beta * kl / LN2
        return self.decoder(z).view(shape)


class ConvBottleneck(_Bottleneck):
    """The convolutional variational bottleneck (CVB; see the module docstring)."""

    kind = "cvb"

    def __init__(self, in_shape: tuple[int, int, int], K: int | str = "adaptive", beta: float = 0.1,
                 kernel_size: int = 5):
        super().__init__(beta)
        c = int(in_shape[0])
        self.K = (c // 2 if c >= 8 else 8) if K == "adaptive" else int(K)
        self.mu_encoder = nn.Conv2d(c, self.K, kernel_size, padding="same", bias=False)
        self.std_encoder = nn.Conv2d(c, self.K, kernel_size, padding="same", bias=False)
        self.decoder = nn.Conv2d(self.K, c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = self.mu_encoder(x)
        std = F.softplus(torch.clamp(self.std_encoder(x), -5.0, 5.0))
        z = mu + self._eps(mu) * std
        self.last_kl = self.beta * torch.mean(-0.5 * torch.sum(1 + std - mu.pow(2) - std.exp(), dim=1))
        return self.decoder(z)


# ---------------------------------------------------------------- helpers on any defended model

def stochastic_layers(model: nn.Module) -> list[tuple[str, Stochastic]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Stochastic)]


def dropout_layers(model: nn.Module) -> list[tuple[str, StochasticDropout]]:
    return [(n, m) for n, m in stochastic_layers(model) if isinstance(m, StochasticDropout) and m.p > 0]


def bottlenecks(model: nn.Module) -> list[tuple[str, _Bottleneck]]:
    return [(n, m) for n, m in stochastic_layers(model) if isinstance(m, _Bottleneck)]


@contextlib.contextmanager
def use_noise(model: nn.Module, source: NoiseSource | None) -> Iterator[NoiseSource | None]:
    """Install ``source`` in every stochastic layer of ``model`` for the duration."""
    layers = [m for _, m in stochastic_layers(model)]
    before = [m.source for m in layers]
    for m in layers:
        m.source = source
    try:
        yield source
    finally:
        for m, b in zip(layers, before):
            m.source = b


def extra_loss(model: nn.Module) -> torch.Tensor | float:
    """The privacy modules' loss terms (KL) of the last forward pass; 0.0 without any.

    The reference code adds them to the training loss (``VBLoss`` = CE + model.loss()) and
    computes both the client's and the attacker's gradients with that loss."""
    terms = [m.last_kl for _, m in bottlenecks(model) if m.last_kl is not None]
    return sum(terms) if terms else 0.0


def _finalise(model: nn.Module) -> nn.Module:
    for name, m in model.named_modules():
        if isinstance(m, Stochastic):
            m.noise_key = name
    return model


def _bottleneck_settings(kind: str | None, params: Mapping[str, Any] | None, recommended: dict) -> dict:
    params = dict(params or {})
    if kind is None:
        if params:
            raise ValueError(f"bottleneck_params {sorted(params)} given without a bottleneck")
        return {}
    if kind not in BOTTLENECKS:
        raise ValueError(f"unknown bottleneck {kind!r}; known: {', '.join(BOTTLENECKS)}")
    base = dict(recommended[kind])
    unknown = sorted(set(params) - set(base))
    if unknown:
        raise ValueError(f"{kind}: unknown option(s) {unknown}; known: {sorted(base)}")
    base.update({k: v for k, v in params.items() if v is not None})
    return base


class DefendedModel(nn.Module):
    """Common attributes: ``dropout``, ``bottleneck_kind``, ``bottleneck_settings``."""

    supports_defenses = True

    def pig_ignored(self) -> list[str]:
        """Parameters the "ignore" attack (PIG, CVB repo ``ignore_gradient_layers``) leaves out
        of the gradient distance: the bottleneck's decoder and every layer after it."""
        return []


# ---------------------------------------------------------------- the CNN

class DefendedCNN(DefendedModel):
    CHANNELS = (16, 32, 64)
    KERNEL = 5
    STRIDE = 2
    RECOMMENDED = {"precode": {"K": 256, "beta": 1e-3, "position": "classifier"},
                   "cvb": {"K": "adaptive", "beta": 0.1, "kernel_size": 5, "position": 0}}

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], dropout: float = 0.0,
                 bottleneck: str | None = None, bottleneck_params: Mapping[str, Any] | None = None):
        super().__init__()
        c, h, w = in_shape
        settings = _bottleneck_settings(bottleneck, bottleneck_params, self.RECOMMENDED)
        convs, shapes = [], []
        for out in self.CHANNELS:
            convs.append(nn.Conv2d(c, out, self.KERNEL, stride=self.STRIDE))
            c, h, w = out, (h - self.KERNEL) // self.STRIDE + 1, (w - self.KERNEL) // self.STRIDE + 1
            if h < 1 or w < 1:
                raise ValueError(f"sd_cnn: input {tuple(in_shape)} too small for three 5x5 stride-2 convolutions")
            shapes.append((c, h, w))
        features = c * h * w
        classifier = nn.Linear(features, num_classes)
        # the privacy module's weights are drawn after the base model's
        bn = None
        if bottleneck == "cvb":
            pos = int(settings["position"])
            if not 0 <= pos < len(self.CHANNELS):
                raise ValueError(f"sd_cnn: cvb position must be a conv block index 0-{len(self.CHANNELS) - 1}, got {pos}")
            bn = ConvBottleneck(shapes[pos], settings["K"], settings["beta"], settings["kernel_size"])
        elif bottleneck == "precode":
            pos = settings["position"]
            if pos == "classifier":
                bn = PrecodeBottleneck(features, settings["K"], settings["beta"])
            elif isinstance(pos, int) and not isinstance(pos, bool) and 0 <= pos < len(self.CHANNELS):
                bn = PrecodeBottleneck(math.prod(shapes[pos]), settings["K"], settings["beta"])
            else:
                raise ValueError(f"sd_cnn: precode position must be 'classifier' or a conv block index "
                                 f"0-{len(self.CHANNELS) - 1}, got {pos!r}")
        self.convs = nn.ModuleList(convs)
        self.drops = nn.ModuleList([StochasticDropout(dropout) for _ in self.CHANNELS])
        if bn is not None:
            self.bottleneck = bn
        self.classifier = classifier
        self.dropout = float(dropout)
        self.bottleneck_kind = bottleneck
        self.bottleneck_settings = settings
        # the conv block the bottleneck follows (-1: none, or PRECODE before the classifier)
        pos = settings.get("position", -1) if bottleneck else -1
        self._bn_pos = pos if isinstance(pos, int) and not isinstance(pos, bool) else -1
        _finalise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (conv, drop) in enumerate(zip(self.convs, self.drops)):
            x = torch.relu(drop(conv(x)))
            if i == self._bn_pos:
                x = self.bottleneck(x)
        x = x.flatten(1)
        if self.bottleneck_kind == "precode" and self._bn_pos < 0:
            x = self.bottleneck(x)
        return self.classifier(x)

    def pig_ignored(self) -> list[str]:
        """The bottleneck's decoder and every layer after it (CVB repo ``ignore_gradient_layers``
        of ``CNNCVB.yaml``: ``decoder``, the later conv blocks, the classifier)."""
        if not self.bottleneck_kind:
            return []
        names = [n for n, _ in self.named_parameters()]
        later = tuple(f"convs.{i}." for i in range(self._bn_pos + 1, len(self.CHANNELS))) if self._bn_pos >= 0 else ()
        return [n for n in names if n.startswith(("bottleneck.decoder", "classifier.") + later)]


# ---------------------------------------------------------------- the ViT

class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, bias: bool):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden, bias=False)
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.value = nn.Linear(hidden, hidden, bias=False)
        self.out = nn.Linear(hidden, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t):
            return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
        return self.out((att @ v).transpose(1, 2).reshape(b, n, d))


class _Block(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp: int, bias: bool, dropout: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.attention = _Attention(hidden, heads, bias)
        self.mlp_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.mlp1 = nn.Linear(hidden, mlp, bias=bias)
        self.drop1 = StochasticDropout(dropout)
        self.mlp2 = nn.Linear(mlp, hidden, bias=bias)
        self.drop2 = StochasticDropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        h = F.gelu(self.drop1(self.mlp1(self.mlp_norm(x))))
        return x + F.gelu(self.drop2(self.mlp2(h)))


class DefendedViT(DefendedModel):
    PATCH, HIDDEN, DEPTH, HEADS, MLP = 4, 256, 4, 16, 256
    RECOMMENDED = {"precode": {"K": 256, "beta": 1e-3},
                   "cvb": {"K": "adaptive", "beta": 0.1, "kernel_size": 3, "position": 0}}

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], dropout: float = 0.0,
                 bottleneck: str | None = None, bottleneck_params: Mapping[str, Any] | None = None):
        super().__init__()
        c, h, w = in_shape
        p, d = self.PATCH, self.HIDDEN
        if h % p or w % p:
            raise ValueError(f"sd_vit: image size {h}x{w} is not divisible by the patch size {p}")
        settings = _bottleneck_settings(bottleneck, bottleneck_params, self.RECOMMENDED)
        self.patches = (h // p) * (w // p)
        self.embedding = nn.Linear(c * p * p, d, bias=False)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d))
        self.position = nn.Parameter(torch.randn(1, self.patches + 1, d))
        self.blocks = nn.ModuleList([_Block(d, self.HEADS, self.MLP, False, dropout) for _ in range(self.DEPTH)])
        self.final_norm = nn.LayerNorm(d, eps=1e-6)
        classifier = nn.Linear(d, num_classes, bias=False)
        bn = None
        side = int(math.isqrt(d))
        if bottleneck == "cvb":
            pos = int(settings["position"])
            if not 0 <= pos < self.DEPTH - 1:
                raise ValueError(f"sd_vit: cvb position must be a block index 0-{self.DEPTH - 2}, got {pos}")
            bn = ConvBottleneck((self.patches + 1, side, side), settings["K"], settings["beta"], settings["kernel_size"])
        elif bottleneck == "precode":
            bn = PrecodeBottleneck(d, settings["K"], settings["beta"])
        if bn is not None:
            self.bottleneck = bn
        self.classifier = classifier
        self.dropout = float(dropout)
        self.bottleneck_kind = bottleneck
        self.bottleneck_settings = settings
        self._cvb_pos = int(settings["position"]) if bottleneck == "cvb" else -1
        self._side = side
        _finalise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.PATCH
        # 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'
        x = x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, p * p * c)
        x = self.embedding(x)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1) + self.position
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self._cvb_pos:
                n = x.shape[1]
                x = self.bottleneck(x.reshape(b, n, self._side, self._side)).reshape(b, n, -1)
        x = self.final_norm(x)[:, 0]
        if self.bottleneck_kind == "precode":
            x = self.bottleneck(x)
        return self.classifier(x)

    def pig_ignored(self) -> list[str]:
        names = [n for n, _ in self.named_parameters()]
        if self.bottleneck_kind == "cvb":
            later = tuple(f"blocks.{i}." for i in range(self._cvb_pos + 1, self.DEPTH))
            return [n for n in names if n.startswith(("bottleneck.decoder", "final_norm.", "classifier.") + later)]
        if self.bottleneck_kind == "precode":
            return [n for n in names if n.startswith(("bottleneck.decoder", "classifier."))]
        return []


# ---------------------------------------------------------------- ResNet-18 with GroupNorm

def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(2, channels)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _gn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _gn(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _gn(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + idt)


class DefendedResNet18(DefendedModel):
    RECOMMENDED = {"precode": {"K": 256, "beta": 1e-3},
                   "cvb": {"K": "adaptive", "beta": 5e-5, "kernel_size": 5, "position": 0}}

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], dropout: float = 0.0,
                 bottleneck: str | None = None, bottleneck_params: Mapping[str, Any] | None = None):
        super().__init__()
        c, h, w = in_shape
        settings = _bottleneck_settings(bottleneck, bottleneck_params, self.RECOMMENDED)
        self.conv1 = nn.Conv2d(c, 64, 7, 2, 3, bias=False)
        self.bn1 = _gn(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin = (64, 128, 256, 512), 64
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)))
            cin = cout
        fc = nn.Linear(512, num_classes)
        # torchvision's ResNet initialisation (kaiming normal, fan_out, for convolutions;
        # norm weight 1, bias 0); Linear keeps PyTorch's default
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        bn = None
        if bottleneck == "cvb":
            pos = int(settings["position"])
            if pos != 0:
                raise ValueError(f"resnet18_gn: only cvb position 0 (after layer1) is implemented, got {pos}")
            side_h, side_w = self._after_stem(h), self._after_stem(w)
            bn = ConvBottleneck((64, side_h, side_w), settings["K"], settings["beta"], settings["kernel_size"])
        elif bottleneck == "precode":
            bn = PrecodeBottleneck(512, settings["K"], settings["beta"])
        if bn is not None:
            self.bottleneck = bn
        self.drop = StochasticDropout(dropout)
        self.fc = fc
        self.dropout = float(dropout)
        self.bottleneck_kind = bottleneck
        self.bottleneck_settings = settings
        _finalise(self)

    @staticmethod
    def _after_stem(n: int) -> int:
        n = (n + 2 * 3 - 7) // 2 + 1       # 7x7 stride-2 convolution, padding 3
        return (n + 2 * 1 - 3) // 2 + 1    # 3x3 stride-2 max-pool, padding 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        if self.bottleneck_kind == "cvb":
            x = self.bottleneck(x)
        x = self.layer4(self.layer3(self.layer2(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        if self.bottleneck_kind == "precode":
            x = self.bottleneck(x)
        return self.fc(self.drop(x))

    def pig_ignored(self) -> list[str]:
        names = [n for n, _ in self.named_parameters()]
        if self.bottleneck_kind == "cvb":
            return [n for n in names if n.startswith(("bottleneck.decoder", "layer2.", "layer3.", "layer4.", "fc."))]
        if self.bottleneck_kind == "precode":
            return [n for n in names if n.startswith(("bottleneck.decoder", "fc."))]
        return []


MODELS.add("sd_cnn", DefendedCNN)
MODELS.add("sd_vit", DefendedViT)
MODELS.add("resnet18_gn", DefendedResNet18)

#: names of the models built with the model-side defenses (dropout, bottleneck options)
DEFENDED_MODELS = ("sd_cnn", "sd_vit", "resnet18_gn")
