"""Checks on nn.Module objects and optimizers: each diagnosis names its mistake."""

import pytest
import torch
from torch import nn

from course_utils import checks


class ListNet(nn.Module):
    """Layers kept in a plain Python list: parameters() misses them."""

    def __init__(self):
        super().__init__()
        self.layers = [nn.Linear(3, 4), nn.Linear(4, 2)]

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class TensorNet(nn.Module):
    """A trainable plain tensor instead of an nn.Parameter."""

    def __init__(self):
        super().__init__()
        self.w = torch.randn(3, 2, requires_grad=True)

    def forward(self, x):
        return x @ self.w


class ConvNet(nn.Module):
    def __init__(self, fc_in, use_view=False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(fc_in, 5)
        self.use_view = use_view

    def forward(self, x):
        x = self.conv(x)
        x = x.view(x.shape[0], -1) if self.use_view else torch.flatten(x, 1)
        return self.fc(x)


def test_check_registered_passes_module_list():
    model = nn.Sequential(nn.Linear(3, 4), nn.ModuleList([nn.Linear(4, 4)]))
    checks.check_registered("net", model, quiet=True)


def test_check_registered_names_plain_python_list():
    expected = r"plain Python list/tuple/dict are not registered: layers \(list\)\..*parameters\(\) misses"
    with pytest.raises(checks.CheckError, match=expected):
        checks.check_registered("net", ListNet())


def test_check_registered_finds_nested_list_and_plain_tensor():
    with pytest.raises(checks.CheckError, match="inner.layers"):
        checks.check_registered("net", _outer())
    with pytest.raises(checks.CheckError, match="not registered parameters.*nn.Parameter"):
        checks.check_registered("net", TensorNet())


def _outer():
    outer = nn.Module()
    outer.inner = ListNet()
    return outer


def test_check_forward_shape_returns_output():
    out = checks.check_forward_shape("net", ConvNet(4 * 8 * 8), torch.randn(2, 3, 8, 8), (2, 5), quiet=True)
    assert out.shape == (2, 5)


def test_check_forward_shape_names_wrong_flatten_size():
    with pytest.raises(checks.CheckError, match="expects 64 input features but the flattened tensor "
                                                "has 256: wrong flatten size before the fc layer"):
        checks.check_forward_shape("net", ConvNet(4 * 4 * 4), torch.randn(2, 3, 8, 8), (2, 5))


def test_check_forward_shape_names_view_on_non_contiguous_tensor():
    x = torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)
    with pytest.raises(checks.CheckError, match="`view` on a non-contiguous tensor"):
        checks.check_forward_shape("net", ConvNet(4 * 8 * 8, use_view=True), x, (2, 5))


def test_check_forward_shape_wrong_shape_and_other_errors():
    with pytest.raises(checks.CheckError, match="expected shape \\(2, 6\\), got \\(2, 5\\)"):
        checks.check_forward_shape("net", ConvNet(4 * 8 * 8), torch.randn(2, 3, 8, 8), (2, 6))
    with pytest.raises(checks.CheckError, match="forward pass raised RuntimeError"):
        checks.check_forward_shape("net", ConvNet(4 * 8 * 8), torch.randn(2, 5, 8, 8), (2, 5))


def test_check_optimizer_tracks_model_passes():
    model = nn.Linear(3, 2)
    checks.check_optimizer_tracks_model("opt", model, torch.optim.SGD(model.parameters(), lr=0.1), quiet=True)


def test_check_optimizer_tracks_model_names_optimizer_built_before_move():
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    previous = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        model.to(torch.float64)  # with this flag, conversion makes new Parameter objects
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(previous)
    with pytest.raises(checks.CheckError, match="optimizer built before the model was moved"):
        checks.check_optimizer_tracks_model("opt", model, optimizer)


def test_check_optimizer_tracks_model_names_missing_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model[0].parameters(), lr=0.1)
    with pytest.raises(checks.CheckError, match="does not update these trainable parameters: 1.weight, 1.bias"):
        checks.check_optimizer_tracks_model("opt", model, optimizer)


def test_check_optimizer_tracks_model_names_state_on_other_device():
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    buffer = optimizer.state[model.weight]["momentum_buffer"]
    optimizer.state[model.weight]["momentum_buffer"] = buffer.to("meta")  # stands in for another device
    with pytest.raises(checks.CheckError, match="'momentum_buffer' is on meta.*took steps before the model was moved"):
        checks.check_optimizer_tracks_model("opt", model, optimizer)
