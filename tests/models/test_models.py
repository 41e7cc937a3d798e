"""Model facts from paper A (section 5.1) and the gradient against finite differences."""
import torch
from torch import nn

from gibench.gradient import client_gradient
from gibench.models import MODELS, build_model, count_parameters


def test_paper_parameter_counts():
    # Paper A, section 5.1: LeNet 88,648 and CNN 2,202,660 parameters (CIFAR-100, 100 classes)
    assert count_parameters(build_model("lenet", 100, (3, 32, 32), seed=0)) == 88_648
    assert count_parameters(build_model("cnn", 100, (3, 32, 32), seed=0)) == 2_202_660


def test_parameter_tensor_counts_match_table6():
    # Table 6 "Layer Num.": LeNet 10, CNN 8 parameter tensors
    assert len(list(build_model("lenet", 100, (3, 32, 32), seed=0).parameters())) == 10
    assert len(list(build_model("cnn", 100, (3, 32, 32), seed=0).parameters())) == 8


def test_seeded_init_is_reproducible_and_seed_dependent():
    a = build_model("lenet", 100, (3, 32, 32), seed=1).state_dict()
    b = build_model("lenet", 100, (3, 32, 32), seed=1).state_dict()
    c = build_model("lenet", 100, (3, 32, 32), seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_dlg_uniform_init_range():
    m = build_model("lenet", 100, (3, 32, 32), seed=0, init="dlg_uniform")
    for p in m.parameters():
        assert p.min() >= -0.5 and p.max() <= 0.5


def test_unknown_model_names_known_ones():
    try:
        MODELS.get("resnet999")
    except KeyError as e:
        assert "resnet999" in str(e) and "lenet" in str(e)
    else:
        raise AssertionError("expected an error")


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.sigmoid(self.conv(x)).flatten(1))


def test_gradient_equals_central_finite_difference():
    torch.manual_seed(0)
    net = Tiny().double()
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    y = torch.tensor([0, 2])
    grads = client_gradient(net, x, y)
    assert list(grads) == [n for n, _ in net.named_parameters()]
    loss = nn.CrossEntropyLoss()
    h = 1e-6
    for name, p in net.named_parameters():
        flat = p.data.view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 7)):
            old = flat[i].item()
            flat[i] = old + h
            lp = loss(net(x), y).item()
            flat[i] = old - h
            lm = loss(net(x), y).item()
            flat[i] = old
            fd = (lp - lm) / (2 * h)
            assert abs(fd - grads[name].view(-1)[i].item()) < 1e-7, (name, i)
