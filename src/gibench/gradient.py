"""The client's shared update: the gradient of the training loss on its private batch."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": lambda logits, y: F.cross_entropy(logits, y, reduction="mean"),
}


def set_mode(model: nn.Module, mode: str) -> nn.Module:
    if mode == "eval":
        return model.eval()
    if mode == "train":
        return model.train()
    raise ValueError(f"model mode must be 'eval' or 'train', not {mode!r}")


def client_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy",
                    mode: str = "eval", create_graph: bool = False) -> dict[str, torch.Tensor]:
    """∇θ L(f(x; θ), y) for every named parameter, in ``named_parameters()`` order.

    The loss is averaged over the batch (as in IG and breaching)."""
    set_mode(model, mode)
    try:
        loss_fn = LOSSES[loss]
    except KeyError:
        raise ValueError(f"unknown loss {loss!r}; known: {sorted(LOSSES)}") from None
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
    value = loss_fn(model(x), y)
    grads = torch.autograd.grad(value, params, create_graph=create_graph)
    return dict(zip(names, grads))
