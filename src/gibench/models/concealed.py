"""Models of the concealed-samples study (DCS², Wu et al. AAAI 2024, appendix Table 8).

Facts from the DCS-2 code as summarised in ``reference/ig_and_image_defenses.md`` §3 and §6.1
(no code copied):

* ``lenet_mnist`` -- DCS-2's ``LeNet_MNIST``: three 5x5 convolutions with 12 channels and
  padding 2 (strides 2, 2, 1), each followed by a Sigmoid, then ``Linear(12*7*7 = 588, classes)``;
  every weight and bias drawn from U(-0.5, 0.5) (``init: dlg_uniform``, the DCS-2/DLG init):
  **13,426** parameters for 10 classes.
* ``convnet`` -- the ``ConvNet`` of inversefed as DCS-2 builds it (``width`` 32): eight 3x3
  convolutions with padding 1, each followed by BatchNorm and ReLU, channels
  w, 2w, 2w, 4w, 4w, 4w | MaxPool(3) | 4w, 4w | MaxPool(3), then ``Linear(36w, classes)``
  (32 -> 10 -> 3 pixels).  The inversefed source lists ``conv6`` twice in an OrderedDict; the
  second entry overwrites the first, so the real network has 8 convolutions, not the 9 of the
  paper's Table 8 (and 3x3 kernels, not the table's 5x5): **733,642** parameters for width 32
  and 10 classes (2,904,970 for width 64, Soteria's/IG's ConvNet).  PyTorch's default init.
* ``resnet18`` -- torchvision's ResNet-18 (ImageNet stem: 7x7 stride-2 convolution, BatchNorm,
  3x3 stride-2 max-pool; BasicBlocks [2, 2, 2, 2]; adaptive average pool; ``fc``) with
  torchvision's parameter names and initialisation: **11,279,112** parameters for 200 classes
  (TinyImageNet).  ``pretrained``: path of torchvision's ImageNet ``resnet18-f37072fd.pth``;
  every tensor but ``fc`` is loaded from it (the paper uses a pre-trained ResNet-18 on
  TinyImageNet; the file is fetched by the ``cs_download_weights`` rule, it cannot be
  downloaded offline).

Every model here keeps the classifier as its **last** ``nn.Linear`` module: Soteria's
"representation" is the input of that layer (:func:`classifier_layer`).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from .registry import MODELS
from .vision import LeNet

#: torchvision's ImageNet ResNet-18 checkpoint (the file name carries its hash prefix)
RESNET18_FILE = "resnet18-f37072fd.pth"
RESNET18_URL = "https://download.pytorch.org/models/" + RESNET18_FILE


class LeNetMNIST(LeNet):
    """The three-convolution LeNet of the DLG/DCS-2 code (see :class:`~.vision.LeNet`)."""

    name = "lenet_mnist"

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], init: str = "dlg_uniform"):
        super().__init__(num_classes, in_shape, init=init, convs=3)


class ConvNet(nn.Module):
    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], width: int = 32):
        super().__init__()
        c, h, w = in_shape
        if int(width) < 1:
            raise ValueError(f"convnet: width must be >= 1, got {width}")
        wd = int(width)
        chans = [(c, wd), (wd, 2 * wd), (2 * wd, 2 * wd), (2 * wd, 4 * wd), (4 * wd, 4 * wd), (4 * wd, 4 * wd)]
        layers: list[tuple[str, nn.Module]] = []
        for i, (ci, co) in enumerate(chans):
            layers += [(f"conv{i}", nn.Conv2d(ci, co, 3, padding=1)), (f"bn{i}", nn.BatchNorm2d(co)),
                       (f"relu{i}", nn.ReLU())]
        layers.append(("pool0", nn.MaxPool2d(3)))
        for i in (6, 7):
            layers += [(f"conv{i}", nn.Conv2d(4 * wd, 4 * wd, 3, padding=1)), (f"bn{i}", nn.BatchNorm2d(4 * wd)),
                       (f"relu{i}", nn.ReLU())]
        layers.append(("pool1", nn.MaxPool2d(3)))
        self.model = nn.Sequential(OrderedDict(layers))
        side_h, side_w = (h // 3) // 3, (w // 3) // 3
        if side_h < 1 or side_w < 1:
            raise ValueError(f"convnet: input {h}x{w} is too small for two 3x3 max-pools")
        self.fc = nn.Linear(4 * wd * side_h * side_w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.model(x).flatten(1))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class ResNet18(nn.Module):
    """torchvision.models.resnet18 re-built (same module names, same init)."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], pretrained: str | None = None):
        super().__init__()
        c = in_shape[0]
        self.conv1 = nn.Conv2d(c, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=False)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (cout, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        # torchvision's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if pretrained:
            self.load_torchvision(pretrained)

    def load_torchvision(self, path: str | Path) -> None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"resnet18: pretrained weights {path} are not on disk; fetch them on a machine with internet "
                f"(snakemake --cores 1 {path}, rule cs_download_weights, from {RESNET18_URL}) "
                "or drop models.resnet18.pretrained")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"resnet18: {path} does not fit torchvision's ResNet-18 "
                             f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def classifier_layer(model: nn.Module) -> tuple[str, nn.Linear]:
    """(module name, module) of the model's last ``nn.Linear``: the classifier whose input
    is Soteria's representation r (the flattened features)."""
    last = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = (name, m)
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer (Soteria needs a representation layer)")
    return last


MODELS.add("lenet_mnist", LeNetMNIST)
MODELS.add("convnet", ConvNet)
MODELS.add("resnet18", ResNet18)
