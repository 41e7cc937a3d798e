"""Imprint / "Robbing the Fed" (Fowl et al., ICLR 2022): a malicious server inserts an
imprint block in front of the model and reads the clients' images out of its gradient in
closed form.  Facts from breaching's ``ImprintBlock``/``ImprintAttacker`` and DCS-2's copy
(``reference/ig_and_image_defenses.md`` §8 and §6.2); no code copied.

Block (``linfunc: fourier``, ``mode: 0``, ``connection: linear``): ``linear0 = Linear(N, K)``
on the flattened input (N = C·H·W) whose K rows all hold the same query vector
w_n = 4·max(mode, 0.33)·cos(π/N·(n + ½)·mode)/N (mode 0: 1.32/N, a brightness), biases
−bin_i with bin_0 = −10 and bin_i = Laplace(0, 1/√2).ppf(i/K) for i ≥ 1, both multiplied by
``gain``; then ReLU; then ``linear2 = Linear(K, N)`` with all weights 1/gain and its (default
initialised) bias shifted by −mean(bins); the output is reshaped to the image and fed to
the original model.  Row i is active for every sample whose brightness h(x) exceeds bin_i
("cumulative" bins).

Read-out: with δ_{b,i} the loss derivative at row i for sample b (the same for every active
row of a sample, because linear2's weights are constant), the gradients are
dW[i] = Σ_{b: h(x_b) > bin_i} δ_b x_b and db[i] = Σ_{b: h(x_b) > bin_i} δ_b.  Differencing
neighbouring rows (row i − row i+1, the top row kept) leaves in row i exactly the samples
with bin_i < h(x_b) ≤ bin_{i+1}; a sample alone in its bin is recovered exactly as
x̂ = dW[i] / db[i] (the fully connected inversion of paper §3.2, Eq. 3).

The attacker returns as many images as the batch it believes the client has: when more
bins are hit it keeps them by ``select`` -- ``weight_largest`` (DCS-2: top-k of
|row mean of dW|, largest first), ``weight_smallest`` or ``bias_smallest`` (breaching's
"weight" and "bias" rules); when fewer, it pads with zeros.  Reconstructions are clamped to
the image box.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..params import ParamSpec
from .base import ATTACKS, AttackResult

BLOCK_PREFIX = "imprint."
BASE_PREFIX = "base."
DEFAULTS: dict[str, Any] = {"bins": 10, "gain": 1e-3, "mode": 0, "select": "weight_largest", "boxed": True}
SELECT_RULES = ("weight_largest", "weight_smallest", "bias_smallest")


def laplace_ppf(p: float, scale: float) -> float:
    """Inverse CDF of Laplace(0, scale)."""
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    return scale * math.log(2 * p) if p < 0.5 else -scale * math.log(2 * (1 - p))


def fourier_bins(k: int) -> list[float]:
    return [-10.0] + [laplace_ppf(i / k, 1 / math.sqrt(2)) for i in range(1, k)]


class ImprintBlock(nn.Module):
    def __init__(self, n_inputs: int, bins: int = 10, gain: float = 1e-3, mode: int = 0):
        super().__init__()
        if bins < 1:
            raise ValueError(f"imprint: bins must be >= 1, got {bins}")
        self.n, self.k, self.gain = int(n_inputs), int(bins), float(gain)
        self.linear0 = nn.Linear(self.n, self.k)
        self.linear2 = nn.Linear(self.k, self.n)
        self.bins = fourier_bins(self.k)
        n = torch.arange(self.n, dtype=torch.float64)
        query = torch.cos(math.pi / self.n * (n + 0.5) * mode) / self.n * max(mode, 0.33) * 4
        with torch.no_grad():
            self.linear0.weight.copy_((query.unsqueeze(0).expand(self.k, -1) * self.gain).float())
            self.linear0.bias.copy_((-torch.tensor(self.bins, dtype=torch.float64) * self.gain).float())
            self.linear2.weight.fill_(1.0 / self.gain)
            self.linear2.bias.sub_(float(sum(self.bins) / len(self.bins)))

    def query(self, x_flat: torch.Tensor) -> torch.Tensor:
        """h(x): the brightness the bins sort by (before gain)."""
        return x_flat @ (self.linear0.weight[0] / self.gain)

    def forward(self, x_flat: torch.Tensor) -> torch.Tensor:
        return self.linear2(torch.relu(self.linear0(x_flat)))


class ImprintedModel(nn.Module):
    """The server's modified model: imprint block on the flattened input, then the original."""

    def __init__(self, base: nn.Module, input_shape: tuple[int, int, int], bins: int = 10, gain: float = 1e-3,
                 mode: int = 0):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.imprint = ImprintBlock(math.prod(self.input_shape), bins, gain, mode)
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(self.imprint(x.flatten(1)).view(x.shape[0], *self.input_shape))


@dataclass
class ImprintSecrets:
    """What the malicious server knows about its own block."""
    weight: str = BLOCK_PREFIX + "linear0.weight"
    bias: str = BLOCK_PREFIX + "linear0.bias"
    bins: int = 10

    def to_dict(self) -> dict:
        return {"weight": self.weight, "bias": self.bias, "bins": self.bins}


def resolve_cfg(cfg: dict | None) -> dict:
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"imprint: unknown option(s) {unknown}; known: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **cfg}
    if out["select"] not in SELECT_RULES:
        raise ValueError(f"imprint: select must be one of {', '.join(SELECT_RULES)}, not {out['select']!r}")
    return out


def read_out(dw: torch.Tensor, db: torch.Tensor, n_images: int, select: str = "weight_largest",
             tol: float = 0.0) -> tuple[torch.Tensor, list[int]]:
    """Images (n_images, N) from the cumulative-bin gradients (K, N) and (K,); see module doc."""
    dw = dw.double().clone()
    db = db.double().clone()
    k = dw.shape[0]
    for i in range(k - 1):                      # row i -= row i+1 (rows i+1.. hold a subset of row i's samples)
        dw[i] -= dw[i + 1]
        db[i] -= db[i + 1]
    scale = float(db.abs().max()) if db.numel() else 0.0
    hits = [i for i in range(k) if abs(float(db[i])) > tol * max(scale, 1e-300) and float(db[i]) != 0.0]
    if len(hits) > n_images:
        if select == "bias_smallest":
            key = lambda i: abs(float(db[i]))  # noqa: E731
            hits = sorted(hits, key=key)[:n_images]
        else:
            key = lambda i: abs(float(dw[i].mean()))  # noqa: E731
            hits = sorted(hits, key=key, reverse=(select == "weight_largest"))[:n_images]
    xs = [dw[i] / db[i] for i in hits]
    while len(xs) < n_images:
        xs.append(torch.zeros(dw.shape[1], dtype=torch.float64, device=dw.device))
    return torch.stack(xs[:n_images]), hits


#: JSON schema of each option (gibench.params); bins, gain and mode also build the server's block
SCHEMA: dict[str, dict] = {
    "bins": {"type": "integer", "minimum": 1},
    "gain": {"type": "number", "exclusiveMinimum": 0},
    "mode": {"type": "integer", "minimum": 0},
    "select": {"enum": list(SELECT_RULES)},
    "boxed": {"type": "boolean"},
}


@ATTACKS.register("imprint", params=ParamSpec("imprint", SCHEMA, DEFAULTS, resolve_cfg), display="Imprint",
                  studies=("concealed_samples",), needs=("imprinted_server",))
def imprint_attack(model: nn.Module, shared: dict[str, torch.Tensor], visible: dict[str, torch.Tensor] | None, *,
                   input_shape: tuple[int, ...], mean, std, labels: torch.Tensor | None, cfg: dict | None, seed: int,
                   device: torch.device | str = "cpu", progress=None, server: ImprintSecrets | dict | None = None,
                   **_: Any) -> AttackResult:
    """Closed-form read-out of the imprint block's gradient (needs ``server``: the block's
    tensor names, which the malicious server chose itself)."""
    from .ig import box_bounds

    c = resolve_cfg(cfg)
    if server is None:
        raise ValueError("imprint: the attack needs the server's own secrets (server=ImprintSecrets); the "
                         "client must have computed its update on the imprinted model")
    sec = server if isinstance(server, ImprintSecrets) else ImprintSecrets(**server)
    for name in (sec.weight, sec.bias):
        if name not in shared:
            raise KeyError(f"imprint: the shared update lacks the imprint tensor {name!r}")
        if visible is not None and name in visible and not bool(visible[name].all()):
            raise ValueError(f"imprint: {name!r} is (partly) encrypted; the read-out needs it in plaintext")
    b = int(input_shape[0])
    dw, db = shared[sec.weight].to(device), shared[sec.bias].to(device)
    flat, hits = read_out(dw, db, b, c["select"])
    x = flat.float().view(b, *input_shape[1:])
    if c["boxed"]:
        lo, hi = box_bounds(mean, std, input_shape[1], x.device)
        x = torch.max(torch.min(x, hi), lo)
    y = torch.as_tensor(labels, device=x.device).long().reshape(b) if labels is not None else torch.zeros(b, dtype=torch.long)
    return AttackResult(x=x.detach(), labels=y, status="ok",
                        message=f"closed-form read-out: {len(hits)} of {sec.bins} bins used ({c['select']})",
                        final_loss=float("nan"), trace=[], info={"bins_hit": hits, "settings": c})
