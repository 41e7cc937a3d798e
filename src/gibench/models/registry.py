"""The model registry object, in a module of its own: the builder modules (:mod:`.vision`,
:mod:`.text`, ...) register into it without importing the package that imports them."""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..registry import Registry

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")
