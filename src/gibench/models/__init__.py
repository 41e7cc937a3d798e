"""Model registry: a name in the config maps to a builder ``f(num_classes, in_shape, **opts)``.

Every model's ``named_parameters()`` order is the order of the shared gradient: masks,
gradients and attacks all key by parameter name and follow that order.
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import MODELS, ModelBuilder  # noqa: F401  (ModelBuilder: re-exported)
from . import vision as _vision  # noqa: E402,F401


def build_model(name: str, num_classes: int, in_shape: tuple[int, int, int], seed: int,
                **opts) -> nn.Module:
    """Build ``name`` with weights drawn from a generator seeded by ``seed``."""
    builder = MODELS.get(name)
    fork_devices: list = []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(int(seed))
        model = builder(num_classes=num_classes, in_shape=in_shape, **opts)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "build_model", "count_parameters"]
from . import text as _text  # noqa: E402,F401  (registers bert, gpt2)
from . import defended as _defended  # noqa: E402,F401  (registers sd_cnn, sd_vit, resnet18_gn)
from . import concealed as _concealed  # noqa: E402,F401  (registers lenet_mnist, convnet, resnet18)
