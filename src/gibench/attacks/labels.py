"""Analytic label recovery from the last layer's gradient (iDLG, Zhao et al. 2020).

For cross-entropy on one sample the last linear layer's bias gradient is
``softmax(z) - onehot(y)``: negative at the true class only, positive elsewhere.  Its
weight gradient is ``(softmax(z) - onehot(y)) hᵀ``; with non-negative features ``h``
(after sigmoid or ReLU, as in LeNet and the CNN) the true class's row sum is the only
negative one.  A batch of B samples with distinct labels has exactly those B classes
negative in the (mean) bias gradient.

Recovery needs the whole tensor it reads: a partially or fully encrypted last layer gives
:class:`LabelRecoveryRefused` (the attack then needs the labels from the threat model).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


class LabelRecoveryRefused(RuntimeError):
    """The last layer's gradient is not (fully) visible, or the model has no linear head."""


def last_linear(model: nn.Module) -> tuple[str, str]:
    """Names of the last linear layer's (weight, bias): the final two parameters."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if len(named) < 2:
        raise LabelRecoveryRefused("model has fewer than two parameter tensors")
    (wn, w), (bn, b) = named[-2], named[-1]
    if w.dim() != 2 or b.dim() != 1 or w.shape[0] != b.shape[0]:
        raise LabelRecoveryRefused(f"last parameters {wn} {tuple(w.shape)} / {bn} {tuple(b.shape)} "
                                   "are not a linear layer's weight and bias")
    return wn, bn


def recover_labels(model: nn.Module, shared: Mapping[str, torch.Tensor],
                   visible: Mapping[str, torch.Tensor | None] | None, batch_size: int) -> tuple[torch.Tensor, str]:
    """(labels, how): from the bias gradient when it is fully visible, else from the weight
    gradient's row sums (batch size 1 only); refused when neither is fully visible."""
    wn, bn = last_linear(model)
    visible = visible or {}

    def fully_visible(name: str) -> bool:
        v = visible.get(name)
        return v is None or bool(v.all())

    if fully_visible(bn):
        g = shared[bn].detach().flatten()
        order = torch.argsort(g, stable=True)
        return order[:batch_size].clone(), f"bias gradient {bn} (most negative entries)"
    if batch_size == 1 and fully_visible(wn):
        rows = shared[wn].detach().sum(dim=1)
        return torch.argmin(rows).reshape(1), f"weight gradient {wn} (most negative row sum)"
    raise LabelRecoveryRefused(
        f"label recovery needs the last layer's gradient in plaintext, but {bn}"
        + ("" if batch_size > 1 else f" and {wn}") + " are (partly) encrypted; "
        "grant labels in the threat model (threat_model.labels_known: true)")
