"""How the concealed-samples study feeds a dataset to its model (:class:`Prep`) and builds its
models: the initial model of rule ``model`` and the model the server sends.  Imports torch:
read by the jobs and the figure, never at DAG build."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch.nn import functional as F

from ... import io
from ...datasets import DATASETS
from ...models import build_model
from ...seeds import derive_seed
from . import STUDY
from .spec import input_size, spec


@dataclasses.dataclass
class Prep:
    """How this study feeds a dataset to its model (the dataset's normalisation; optional
    resize of the shorter side + centre crop, DCS-2's TinyImageNet 256/224)."""
    ds: Any
    shape: tuple[int, int, int]
    resize: int | None = None

    @property
    def name(self) -> str:
        return self.ds.name

    @property
    def num_classes(self) -> int:
        return self.ds.num_classes

    @property
    def mean(self):
        return self.ds.mean

    @property
    def std(self):
        return self.ds.std

    def mean_t(self) -> torch.Tensor:
        return torch.tensor(self.ds.mean, dtype=torch.float32).view(1, -1, 1, 1).expand(1, self.shape[0], 1, 1)

    def std_t(self) -> torch.Tensor:
        return torch.tensor(self.ds.std, dtype=torch.float32).view(1, -1, 1, 1).expand(1, self.shape[0], 1, 1)

    def to_pixels01(self, images_u8: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(images_u8), dtype=torch.float32).div(255.0).permute(0, 3, 1, 2)
        c = self.shape[0]
        if x.shape[1] == 1 and c == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != c:
            raise ValueError(f"{self.name}: images have {x.shape[1]} channels, the model takes {c}")
        h, w = x.shape[2:]
        if self.resize is not None:
            s = self.resize / min(h, w)
            x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", align_corners=False,
                              antialias=True)
            top = (x.shape[2] - self.shape[1]) // 2
            left = (x.shape[3] - self.shape[2]) // 2
            x = x[:, :, top:top + self.shape[1], left:left + self.shape[2]]
        elif (h, w) != tuple(self.shape[1:]):
            x = F.interpolate(x, size=self.shape[1:], mode="bilinear", align_corners=False, antialias=True)
        return x.contiguous()

    def from_pixels(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean_t().to(x01)) / self.std_t().to(x01)

    def normalize(self, images_u8: np.ndarray) -> torch.Tensor:
        return self.from_pixels(self.to_pixels01(images_u8))

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std_t().to(x) + self.mean_t().to(x)


def prep_for(config: Mapping[str, Any], dataset: str) -> Prep:
    shape, resize = input_size(config, dataset)
    return Prep(DATASETS.get(dataset), shape, resize)


def build_cs_model(config: Mapping[str, Any], dataset: str, model: str, weights: str | Path | None,
                   device) -> torch.nn.Module:
    """The study's model (options from ``models``) with the rule ``model``'s initial weights."""
    prep = prep_for(config, dataset)
    seed = derive_seed(config["seed"], "model", study=STUDY, dataset=dataset, model=model)
    net = build_model(model, prep.num_classes, prep.shape, seed, **spec(config).model_options(model))
    if weights is not None:
        state, _ = io.load_tensors(weights)
        net.load_state_dict(state, strict=True)
    return net.to(device)


def load_server_model(config: Mapping[str, Any], dataset: str, model: str, server: str, weights: str,
                      device) -> torch.nn.Module:
    """The model the server sends: the initial model (honest) or its imprinted model."""
    if server == "honest":
        return build_cs_model(config, dataset, model, weights, device)
    from ...attacks.imprint import ImprintedModel

    state, rec = io.load_tensors(weights)
    base = build_cs_model(config, dataset, model, None, "cpu")
    b = rec["server"]
    net = ImprintedModel(base, prep_for(config, dataset).shape, bins=b["bins"], gain=b["gain"], mode=b["mode"])
    net.load_state_dict(state, strict=True)
    return net.to(device)
