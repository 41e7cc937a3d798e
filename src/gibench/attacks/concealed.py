"""Attacks of the concealed-samples study (DCS², paper §4.1): ``gs``, ``adaptive`` (here),
``imprint`` (:mod:`.imprint`) and ``ggl`` (:mod:`.ggl`).

``gs`` is the "GS attack" of Geiping et al. as DCS-2 runs it (``dlg/attacks/attacks.py``,
``reference/ig_and_image_defenses.md`` §6.2): IG's optimisation loop (:func:`.ig.invert`)
with DCS-2's settings as defaults -- global cosine distance over all layers + 1e-4·TV,
Adam lr 0.1, 10,000 iterations, MultiStepLR at 3/8, 5/8, 7/8 (γ 0.1), **no box constraint
and no signed gradient** (both off in DCS-2's code), N(0, 1) initialisation, ground-truth
labels.  Under DCS² the attacker optimises as many dummies as there are sensitive images and
does not know the concealed samples exist.

``adaptive`` (paper §4.3, Table 4/11; DCS-2 ``--prior``): the same attack initialised from
the average image of the victim's class (``class_means``: computed from public data by the
``cs_class_means`` rule), so the attacker starts with prior knowledge about the sensitive data.

Both accept every IG option (:data:`.ig.DEFAULTS`).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .base import ATTACKS, AttackResult
from . import ggl as _ggl  # noqa: F401  (registers ggl)
from . import imprint as _imprint  # noqa: F401  (registers imprint)
from ..params import ParamSpec
from .ig import (SCHEMA as IG_SCHEMA, attack_labels, initial_input, invert, nothing_to_match, prepare_model, resolve_cfg,
                 result_from)
from .objectives import GradientMatch

#: DCS-2's GS settings (IG options); a config entry overrides any of them
GS_DEFAULTS: dict[str, Any] = {
    "iterations": 10000, "lr": 0.1, "optimizer": "adam", "lr_schedule": "multistep", "signed": False,
    "boxed": False, "tv": 1e-4, "init": "randn", "cost": "masked_cosine", "labels": "known",
    "model_mode": "eval", "keep": "last",
}


def gs_cfg(cfg: dict | None) -> dict:
    return resolve_cfg({**GS_DEFAULTS, **dict(cfg or {})})


def _params(kind: str) -> ParamSpec:
    from .ig import DEFAULTS

    return ParamSpec(kind, IG_SCHEMA, {**DEFAULTS, **GS_DEFAULTS}, gs_cfg)


def _run(model: nn.Module, shared, visible, *, input_shape, mean, std, labels, cfg, seed, device, progress,
         init_x: Callable[[torch.Tensor], torch.Tensor] | None, kind: str) -> AttackResult:
    c = gs_cfg(cfg)
    device = torch.device(device)
    model = prepare_model(model, c, device)
    match = GradientMatch(list(model.named_parameters()), shared, visible, c["cost"])
    y, labels_from = attack_labels(model, shared, visible, labels, int(input_shape[0]), c["labels"], device)
    info: dict[str, Any] = {"objective": match.describe(), "settings": c, "labels_from": labels_from, "attack": kind}
    x0, box = initial_input(input_shape, c, mean, std, seed, device)
    if init_x is not None:
        x0 = init_x(y).to(device=device, dtype=x0.dtype).reshape(x0.shape)
        if box is not None:
            x0 = torch.max(torch.min(x0, box[1]), box[0])
        info["init"] = "class average image"
    if match.empty:
        return AttackResult(x=x0, labels=y, status="nothing_visible", message=nothing_to_match(match),
                            final_loss=float("nan"), trace=[], info={**info, "iterations": 0})
    loop = invert(model, match, y, x0, c, box=box, progress=progress)
    return result_from(loop, y, info)


@ATTACKS.register("gs", params=_params("gs"), display="GS", studies=("concealed_samples",))
def gs_attack(model: nn.Module, shared: dict[str, torch.Tensor], visible: dict[str, torch.Tensor] | None, *,
              input_shape: tuple[int, ...], mean, std, labels: torch.Tensor | None, cfg: dict | None, seed: int,
              device: torch.device | str = "cpu", progress: Callable[[int, float], None] | None = None,
              **_: Any) -> AttackResult:
    return _run(model, shared, visible, input_shape=input_shape, mean=mean, std=std, labels=labels, cfg=cfg,
                seed=seed, device=device, progress=progress, init_x=None, kind="gs")


@ATTACKS.register("adaptive", params=_params("adaptive"), display="adaptive GS (class-average init)",
                  studies=("concealed_samples",), needs=("class_means",))
def adaptive_attack(model: nn.Module, shared: dict[str, torch.Tensor], visible: dict[str, torch.Tensor] | None, *,
                    input_shape: tuple[int, ...], mean, std, labels: torch.Tensor | None, cfg: dict | None,
                    seed: int, device: torch.device | str = "cpu",
                    progress: Callable[[int, float], None] | None = None,
                    class_means: torch.Tensor | None = None, **_: Any) -> AttackResult:
    """GS initialised from ``class_means[y]`` ((classes, C, H, W) in model space)."""
    if class_means is None:
        raise ValueError("adaptive: the attack needs the class-average images (class_means=...) computed "
                         "from public data (rule cs_class_means)")

    def init(y: torch.Tensor) -> torch.Tensor:
        if int(y.max()) >= class_means.shape[0]:
            raise ValueError(f"adaptive: label {int(y.max())} has no class-average image "
                             f"({class_means.shape[0]} classes)")
        return class_means[y.cpu()]

    return _run(model, shared, visible, input_shape=input_shape, mean=mean, std=std, labels=labels, cfg=cfg,
                seed=seed, device=device, progress=progress, init_x=init, kind="adaptive")
