"""The selective-encryption study's vision models (paper A, section 5.1).

* ``lenet`` — the 4-convolution LeNet of the DLG/Soteria code: 5x5 kernels, 12 channels,
  padding 2, strides 2,2,1,1, sigmoid, one linear layer.  88,648 parameters for
  CIFAR-100, exactly paper A's count (the 3-convolution LeNetZhu would have 85,036).
  ``init: dlg_uniform`` (default) draws every weight and bias from U(-0.5, 0.5) as the
  DLG code does; ``init: torch_default`` keeps PyTorch's initialisation.
* ``cnn`` — the FedAvg CNN of McMahan et al. 2017 (FedML ``CNN_OriginalFedAvg``) adapted to
  3x32x32 inputs: conv5x5(32, pad 2)-ReLU-maxpool2, conv5x5(64, pad 2)-ReLU-maxpool2,
  Linear(4096, 512)-ReLU, Linear(512, classes): 2,202,660 parameters for CIFAR-100.
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import MODELS


class LeNet(nn.Module):
    """DLG-style LeNet: ``convs`` 5x5 convolutions with 12 channels and padding 2 (strides
    2, 2, then 1), each followed by a Sigmoid, then one linear layer.  ``lenet`` has four
    convolutions; ``lenet_mnist`` (the concealed-samples study, ``models/concealed.py``)
    is the same network with three."""

    name = "lenet"

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], init: str = "dlg_uniform",
                 convs: int = 4):
        super().__init__()
        c, h, w = in_shape
        layers: list[nn.Module] = []
        for i in range(convs):
            layers += [nn.Conv2d(c if i == 0 else 12, 12, 5, padding=2, stride=2 if i < 2 else 1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)
        feat = 12 * ((h + 3) // 4) * ((w + 3) // 4)
        self.fc = nn.Linear(feat, num_classes)
        if init == "dlg_uniform":
            for p in self.parameters():
                nn.init.uniform_(p, -0.5, 0.5)
        elif init != "torch_default":
            raise ValueError(f"{self.name}: unknown init {init!r} (dlg_uniform | torch_default)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


class FedAvgCNN(nn.Module):
    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], init: str = "torch_default"):
        super().__init__()
        c, h, w = in_shape
        self.conv1 = nn.Conv2d(c, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(64 * (h // 4) * (w // 4), 512)
        self.fc2 = nn.Linear(512, num_classes)
        if init == "dlg_uniform":
            for p in self.parameters():
                nn.init.uniform_(p, -0.5, 0.5)
        elif init != "torch_default":
            raise ValueError(f"cnn: unknown init {init!r} (dlg_uniform | torch_default)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


MODELS.add("lenet", LeNet)
MODELS.add("cnn", FedAvgCNN)
