# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false}
# # 06 · Custom modules: subclassing `nn.Module`
#
# `nn.Sequential` covers a straight chain of layers. As soon as a model needs its own
# logic (a flatten step, a skip connection, a loop), you write a class. This notebook
# builds two classic models as `nn.Module` subclasses, counts what they learn, and saves
# and reloads them.
#
# **Learning goals**
# 1. Write an `nn.Module`: layers created in `__init__`, computation in `forward`.
# 2. Know what *registration* means, and why layers kept in a plain Python list are
#    invisible to `parameters()`, the optimizer, `.to(device)` and `state_dict()`.
# 3. Get the flatten size before a fully connected layer right, and flatten safely
#    (`torch.flatten`, not `view` on a non-contiguous tensor).
# 4. Initialise weights with `nn.init.kaiming_normal_`, and see why it matters.
# 5. Count parameters by hand and with code.
# 6. Save a `state_dict` and load it back so that the model gives exactly the same outputs.
#
# Every exercise has a **self-check** you can run as often as you like, and a graded
# cell (with hidden tests on other sizes and seeds) that the autograder runs.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup-md", "locked": true, "schema_version": 3, "solution": false}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np  # noqa: F401 - the test cells may use np
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import budget, checks, setup

config = setup(seed=0)
device = config.device

# %% [markdown] nbgrader={"grade": false, "grade_id": "module-md", "locked": true, "schema_version": 3, "solution": false}
# ## Anatomy of a module
#
# ```python
# class MyNet(nn.Module):
#     def __init__(self, ...):
#         super().__init__()             # always first: sets up the registries
#         self.fc1 = nn.Linear(...)      # assigning a module registers it
#     def forward(self, x):              # what happens to one batch
#         return self.fc1(x)
# ```
#
# `nn.Module.__setattr__` watches attribute assignments: an `nn.Module` or
# `nn.Parameter` assigned to `self.something` is recorded in the module's registry. That
# registry is what `parameters()`, `named_parameters()`, `state_dict()`, `.to(device)`,
# `.train()`/`.eval()` and `zero_grad()` walk. A layer the registry does not know about
# still computes, but nothing trains it, moves it, or saves it.
#
# The trap: `self.layers = [nn.Linear(...), nn.Linear(...)]` stores a plain Python list,
# and `nn.Module` does not look inside lists. Use `nn.ModuleList([...])` (or
# `nn.Sequential`, `nn.ModuleDict`) instead. Call the model as `model(x)`, never
# `model.forward(x)`: the call also runs the hooks that PyTorch and libraries attach.
#
# ## Exercise 1 · `TwoLayerNet` (2 points)
#
# `TwoLayerNet(input_size, hidden_size, num_classes)` computes
# `flatten -> Linear(input_size, hidden_size) -> ReLU -> Linear(hidden_size, num_classes)`.
# It flattens every input to shape `(N, input_size)` first, so a batch of images
# `(N, C, H, W)` works as well as a batch of vectors. Use `torch.flatten(x, 1)` (keep
# dimension 0, the batch). Keep the default PyTorch initialisation.

# %% nbgrader={"grade": false, "grade_id": "two-layer", "locked": false, "schema_version": 3, "solution": true}
class TwoLayerNet(nn.Module):
    """flatten -> Linear -> ReLU -> Linear."""

    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        ### BEGIN SOLUTION
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, num_classes)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))
        ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "two-layer-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** A net for 3×4×4 "images" with 5 hidden units and 2 classes has
# $48 \cdot 5 + 5 + 5 \cdot 2 + 2 = 257$ parameters. We also recompute the output from the
# net's own two `nn.Linear` layers (found through `modules()`, so your attribute names
# do not matter).

# %% nbgrader={"grade": false, "grade_id": "two-layer-check", "locked": true, "schema_version": 3, "solution": false}
torch.manual_seed(0)
with checks.explain_errors("TwoLayerNet"):
    two = TwoLayerNet(48, 5, 2).to(device)
checks.check_registered("TwoLayerNet", two)
linears = [m for m in two.modules() if isinstance(m, nn.Linear)]
checks.check_true("two nn.Linear layers", len(linears) == 2,
                  f"expected 2 registered nn.Linear layers, found {len(linears)}.", quiet=True)
sizes = [(m.in_features, m.out_features) for m in linears]
checks.check_true("layer sizes", sizes == [(48, 5), (5, 2)],
                  f"the layers map {' and '.join(f'{i} -> {o}' for i, o in sizes)}, expected 48 -> 5 and 5 -> 2"
                  + (": in and out are swapped. nn.Linear(in_features, out_features) takes the input size first "
                     "(only its weight is stored as (out, in))." if sizes == [(5, 48), (2, 5)] else "."), quiet=True)
n_two = sum(p.numel() for p in two.parameters())
checks.check_true("parameter count", n_two == 257,
                  f"expected 257 parameters (48*5 + 5 + 5*2 + 2), model.parameters() holds {n_two}.")
images = torch.randn(6, 3, 4, 4, device=device)
with checks.explain_errors("TwoLayerNet forward"):
    out_two = checks.check_forward_shape("TwoLayerNet on images", two, images, (6, 2))
lin1, lin2 = linears
flat = images.reshape(6, 48)
checks.check_close("TwoLayerNet output", out_two, lin2(F.relu(lin1(flat))), rtol=1e-5, atol=1e-6,
                   mistakes={"the ReLU is missing between the two layers": lin2(lin1(flat)),
                             "the ReLU is applied to the output too": F.relu(lin2(F.relu(lin1(flat))))})

# %% nbgrader={"grade": true, "grade_id": "test-two-layer", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: TwoLayerNet (hidden tests: other sizes, vector and image inputs, registration).
# checks.unregistered reads the model's attributes where the model lives.
_missing = sum(checks.run_in_kernel(checks.unregistered, two), [])
checks.check_true("registration", not _missing,
                  f"{_missing} hold layers in a plain list/tuple/dict or are plain tensors that require grad: "
                  "model.parameters() misses them. Use nn.ModuleList (or nn.Parameter).", quiet=True)
checks.check_shape("output", out_two, (6, 2), quiet=True)
### BEGIN HIDDEN TESTS
def _build(cls, torch_seed, *args):
    """cls(*args), built after torch.manual_seed(torch_seed) where the student's code runs."""
    torch.manual_seed(torch_seed)
    return cls(*args)


def _numels(net):
    """The number of scalars of each tensor in net.parameters()."""
    return [p.numel() for p in net.parameters()]


def _linear_layers(net):
    """(weight, bias) of every registered nn.Linear, in the order of registration."""
    return [(m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
            for m in net.modules() if isinstance(m, nn.Linear)]


def _dtypes_after_double(net):
    """net.to(torch.float64), then the dtype of every parameter."""
    net.to(torch.float64)
    return [p.dtype for p in net.parameters()]


for _seed, (_d, _h, _c), _shape in [(1, (12, 7, 3), (5, 12)), (2, (27, 4, 6), (2, 3, 3, 3)), (3, (1, 1, 1), (4, 1))]:
    _net = checks.run_in_kernel(_build, TwoLayerNet, _seed, _d, _h, _c)
    assert not any(checks.run_in_kernel(checks.unregistered, _net)), "layers or tensors are not registered"
    assert sum(checks.run_in_kernel(_numels, _net)) == _d * _h + _h + _h * _c + _c, "wrong parameter count"
    _lins = checks.run_in_kernel(_linear_layers, _net)
    assert len(_lins) == 2, "expected 2 registered nn.Linear layers"
    (_w1, _b1), (_w2, _b2) = _lins
    torch.manual_seed(_seed)
    _x = torch.randn(*_shape)
    _flat = _x.reshape(_x.shape[0], -1)
    _ref = torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(_flat, _w1, _b1)), _w2, _b2)
    checks.check_close("hidden output", _net(_x), _ref, rtol=1e-5, atol=1e-6, quiet=True)
    _dtypes = checks.run_in_kernel(_dtypes_after_double, _net)
    assert all(_t == torch.float64 for _t in _dtypes), ".to() did not reach every layer"
### END HIDDEN TESTS
checks.passed("TwoLayerNet")

# %% [markdown] nbgrader={"grade": false, "grade_id": "convnet-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 2 · `ThreeLayerConvNet` (2 + 1 points)
#
# `ThreeLayerConvNet(in_channel, channel_1, channel_2, num_classes, image_size=32)`:
#
# 1. `nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)`, then ReLU;
# 2. `nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)`, then ReLU;
# 3. flatten, then `nn.Linear(?, num_classes)` producing the class scores.
#
# **The flatten size.** A convolution with kernel $k$ and padding $p$ (stride 1) turns
# height $H$ into $H + 2p - k + 1$. Here $5 \times 5$ with padding 2 and $3 \times 3$ with
# padding 1 both keep the size, so the last feature map is
# `channel_2 × image_size × image_size`, and that product is what the fc layer takes.
# A wrong flatten size shows up as "mat1 and mat2 shapes cannot be multiplied".
#
# **Flatten safely.** `x.view(N, -1)` only reinterprets the existing memory, so it fails
# when the tensor is not contiguous: after `permute`/`transpose`, or for a batch in
# `channels_last` memory format (common on GPUs with mixed precision). `torch.flatten(x, 1)`
# (or `reshape`) copies when it must. The self-check feeds a `channels_last` batch.
#
# **Kaiming initialisation.** Initialise the weight of all three layers with
# `nn.init.kaiming_normal_` (its defaults suit ReLU networks: a normal distribution with
# standard deviation $\sqrt{2/\text{fan\_in}}$, where fan_in is the number of inputs to
# one output unit) and set every bias to zero with `nn.init.zeros_`. PyTorch's default
# initialisation is smaller, so signals shrink layer by layer; Kaiming's keeps their scale
# through ReLU layers (see the plot after exercise 3).

# %% nbgrader={"grade": false, "grade_id": "convnet", "locked": false, "schema_version": 3, "solution": true}
class ThreeLayerConvNet(nn.Module):
    """conv 5x5 (pad 2) -> ReLU -> conv 3x3 (pad 1) -> ReLU -> fc, Kaiming-initialised."""

    def __init__(self, in_channel, channel_1, channel_2, num_classes, image_size=32):
        super().__init__()
        ### BEGIN SOLUTION
        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)
        self.fc = nn.Linear(channel_2 * image_size * image_size, num_classes)
        for layer in (self.conv1, self.conv2, self.fc):
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))
        ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "convnet-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** CIFAR-10-sized inputs (3×32×32, 10 classes), a contiguous batch and a
# `channels_last` one. The output is compared with the same computation written with
# `F.conv2d` and the net's own layers.

# %% nbgrader={"grade": false, "grade_id": "convnet-check", "locked": true, "schema_version": 3, "solution": false}
torch.manual_seed(0)
with checks.explain_errors("ThreeLayerConvNet"):
    conv_net = ThreeLayerConvNet(3, 12, 8, 10).to(device)
checks.check_registered("ThreeLayerConvNet", conv_net)
batch = torch.randn(4, 3, 32, 32, device=device)
with checks.explain_errors("ThreeLayerConvNet forward"):
    out_conv = checks.check_forward_shape("ThreeLayerConvNet", conv_net, batch, (4, 10))
    checks.check_forward_shape("ThreeLayerConvNet on a channels_last batch", conv_net,
                               batch.to(memory_format=torch.channels_last), (4, 10))
c1, c2 = [m for m in conv_net.modules() if isinstance(m, nn.Conv2d)]
fc = next(m for m in conv_net.modules() if isinstance(m, nn.Linear))
checks.check_true("kernel sizes and padding",
                  (c1.kernel_size, c1.padding, c2.kernel_size, c2.padding) == ((5, 5), (2, 2), (3, 3), (1, 1)),
                  f"expected conv 5x5 with padding 2, then 3x3 with padding 1; got {c1} and {c2}.")
first_map = F.conv2d(batch, c1.weight, c1.bias, padding=2)
hidden_map = F.relu(F.conv2d(F.relu(first_map), c2.weight, c2.bias, padding=1))
checks.check_close(
    "ThreeLayerConvNet output", out_conv, fc(hidden_map.flatten(1)), rtol=1e-4, atol=1e-5,
    mistakes={"the ReLU after the second convolution is missing":
                  fc(F.conv2d(F.relu(first_map), c2.weight, c2.bias, padding=1).flatten(1)),
              "the ReLU after the first convolution is missing":
                  fc(F.relu(F.conv2d(first_map, c2.weight, c2.bias, padding=1)).flatten(1)),
              "a ReLU is applied to the class scores: the last layer's output must stay raw":
                  F.relu(fc(hidden_map.flatten(1)))})

# %% nbgrader={"grade": true, "grade_id": "test-convnet", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: ThreeLayerConvNet architecture and forward pass (hidden tests: other channel
# counts, image sizes, channels_last batches).
checks.check_shape("output", out_conv, (4, 10), quiet=True)
### BEGIN HIDDEN TESTS
def _build(cls, torch_seed, *args, **kwargs):
    """cls(*args, **kwargs), built after torch.manual_seed(torch_seed) where the student's code runs."""
    torch.manual_seed(torch_seed)
    return cls(*args, **kwargs)


def _layers(net):
    """The registered Conv2d layers (weight, bias, kernel_size, padding), Linear layers (weight, bias), and the
    number of scalars of each parameter."""
    def copy(t):
        return None if t is None else t.detach().clone()

    convs = [(copy(m.weight), copy(m.bias), m.kernel_size, m.padding) for m in net.modules() if isinstance(m, nn.Conv2d)]
    fcs = [(copy(m.weight), copy(m.bias)) for m in net.modules() if isinstance(m, nn.Linear)]
    return convs, fcs, [p.numel() for p in net.parameters()]


def _on_channels_last(net, x):
    """net(x) on a channels_last copy of x, made where the net lives (a tensor's memory layout does not travel)."""
    return net(x.to(memory_format=torch.channels_last))


for _args, _n in [((1, 4, 6, 3, 8), 2), ((5, 2, 3, 7, 12), 3), ((3, 6, 4, 2, 1), 1)]:
    _ci, _c1, _c2, _k, _s = _args
    _net = checks.run_in_kernel(_build, ThreeLayerConvNet, sum(_args), _ci, _c1, _c2, _k, image_size=_s)
    assert not any(checks.run_in_kernel(checks.unregistered, _net)), "layers or tensors are not registered"
    _convs, _fcs, _numels = checks.run_in_kernel(_layers, _net)
    assert len(_convs) == 2 and len(_fcs) == 1, "expected two registered Conv2d layers and one Linear"
    (_wa, _ba, _ka, _pa), (_wb, _bb, _kb, _pb) = _convs
    assert (_ka, _pa, _kb, _pb) == ((5, 5), (2, 2), (3, 3), (1, 1)), "wrong kernel sizes or padding"
    _expected = _c1 * _ci * 25 + _c1 + _c2 * _c1 * 9 + _c2 + _k * _c2 * _s * _s + _k
    assert sum(_numels) == _expected, "wrong parameter count"
    torch.manual_seed(sum(_args))
    _x = torch.randn(_n, _ci, _s, _s)
    _h = torch.relu(torch.nn.functional.conv2d(torch.relu(torch.nn.functional.conv2d(
        _x, _wa, _ba, padding=2)), _wb, _bb, padding=1))
    _ref = torch.nn.functional.linear(_h.reshape(_n, -1), *_fcs[0])
    checks.check_close("hidden output", _net(_x), _ref, rtol=1e-4, atol=1e-5, quiet=True)
    checks.check_close("hidden channels_last output", checks.run_in_kernel(_on_channels_last, _net, _x),
                       _ref, rtol=1e-4, atol=1e-5, quiet=True)
### END HIDDEN TESTS
checks.passed("ThreeLayerConvNet forward")

# %% [markdown] nbgrader={"grade": false, "grade_id": "init-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check: the initialisation.** The standard deviation of each weight tensor is
# compared with Kaiming's $\sqrt{2/\text{fan\_in}}$; PyTorch's default would give about
# $\sqrt{1/(3\,\text{fan\_in})}$, 2.4 times smaller.

# %% nbgrader={"grade": false, "grade_id": "init-check", "locked": true, "schema_version": 3, "solution": false}
torch.manual_seed(1)
with checks.explain_errors("ThreeLayerConvNet initialisation"):
    init_net = ThreeLayerConvNet(3, 12, 8, 10)
init_layers = {name: m for name, m in init_net.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
init_std, fans = {}, {}
for name, layer in init_layers.items():
    weight = layer.weight.detach()
    fans[name] = (weight[0].numel(), weight.shape[0] * weight[0, 0].numel())  # (fan_in, fan_out)
    init_std[name] = (weight.std().item(), (2 / fans[name][0]) ** 0.5)  # (measured, Kaiming normal)
other_inits = {  # the weight std other initialisations give, from (fan_in, fan_out)
    "PyTorch's default init: call nn.init.kaiming_normal_ on every layer's weight": lambda fi, fo: (1 / (3 * fi)) ** 0.5,
    "Kaiming with mode='fan_out' (sqrt(2 / fan_out)): the default mode='fan_in' keeps the scale of the "
    "forward signal": lambda fi, fo: (2 / fo) ** 0.5,
    "Xavier/Glorot (sqrt(2 / (fan_in + fan_out))): kaiming_normal_ is the one made for ReLU networks":
        lambda fi, fo: (2 / (fi + fo)) ** 0.5,
    "a gain of 1 (sqrt(1 / fan_in), e.g. nonlinearity='linear'): ReLU needs the gain sqrt(2), kaiming_normal_'s "
    "default": lambda fi, fo: (1 / fi) ** 0.5,
}
off = [name for name, (got, kaiming) in init_std.items() if abs(got / kaiming - 1) > 0.25]
if off:
    like = next((what for what, std in other_inits.items()
                 if all(abs(got / std(*fans[n]) - 1) < 0.15 for n, (got, _) in init_std.items())), None)
    got, kaiming = init_std[off[0]]
    layer_default = abs(got / other_inits[next(iter(other_inits))](*fans[off[0]]) - 1) < 0.15
    checks.check_true(
        f"{off[0]} initialisation", False,
        f"the weight std is {got:.4f}, Kaiming normal gives sqrt(2 / fan_in) = {kaiming:.4f}. "
        + (f"Every layer looks like {like}." if like else
           "That is PyTorch's default init: call nn.init.kaiming_normal_ on this layer's weight too."
           if layer_default else "Did you use another mode or gain?"))
for name, layer in init_layers.items():
    checks.check_true(f"{name} bias", layer.bias is not None and bool((layer.bias == 0).all()),
                      "every bias should start at zero: nn.init.zeros_(layer.bias).", quiet=True)
largest = max(init_layers, key=lambda n: init_layers[n].weight.numel())
flat_w = init_layers[largest].weight.detach().double().flatten()
kurtosis = (((flat_w - flat_w.mean()) / flat_w.std()) ** 4).mean().item()
checks.check_true("normal distribution", kurtosis > 2.5,
                  f"the weights of {largest} have the right std but look uniform, not normal (kurtosis "
                  f"{kurtosis:.2f}; a normal distribution has 3, a uniform one 1.8): kaiming_uniform_ instead of "
                  "kaiming_normal_.", quiet=True)
checks.passed("Kaiming initialisation", "weight std / sqrt(2 / fan_in): "
              + ", ".join(f"{n} {g / k:.2f}" for n, (g, k) in init_std.items()))

# %% nbgrader={"grade": true, "grade_id": "test-convnet-init", "locked": true, "points": 1, "schema_version": 3, "solution": false}
# Graded: Kaiming normal weights, zero biases (hidden tests: larger layers, where the
# standard deviation and the shape of the distribution can be measured precisely).
checks.check_true("init", len(init_std) == 3 and all(abs(g / k - 1) < 0.25 for g, k in init_std.values()),
                  "the weights are not Kaiming-initialised", quiet=True)
### BEGIN HIDDEN TESTS
def _new_weights(cls, torch_seed, *args, **kwargs):
    """(weight, bias) of each Conv2d and Linear layer of a cls(*args, **kwargs) built after torch.manual_seed(torch_seed)."""
    torch.manual_seed(torch_seed)
    net = cls(*args, **kwargs)
    return [(m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
            for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


for _weight, _bias in checks.run_in_kernel(_new_weights, ThreeLayerConvNet, 123, 3, 64, 32, 10, image_size=8):
    _w = _weight.double().flatten()
    _std = (2.0 / _weight[0].numel()) ** 0.5  # Kaiming normal: sqrt(2 / fan_in)
    assert abs(_w.std().item() / _std - 1) < 0.1, "the weight std is not sqrt(2 / fan_in)"
    assert abs(_w.mean().item()) < 0.1 * _std, "the weights should have mean 0"
    _kurtosis = (((_w - _w.mean()) / _w.std()) ** 4).mean().item()
    assert _kurtosis > 2.5, "the weights look uniform, not normal: use kaiming_normal_"
    assert _bias is not None and bool((_bias == 0).all()), "every bias should be zero"
### END HIDDEN TESTS
checks.passed("Kaiming initialisation")

# %% [markdown] nbgrader={"grade": false, "grade_id": "count-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 3 · Counting parameters (2 points)
#
# Where do a model's parameters sit? A `Conv2d(c_in, c_out, k)` has a weight of shape
# `(c_out, c_in, k, k)` and a bias of `c_out`; a `Linear(n_in, n_out)` a weight of shape
# `(n_out, n_in)` and a bias of `n_out`.
#
# 1. `convnet_param_count(in_channel, channel_1, channel_2, num_classes, image_size=32)`:
#    the number of parameters of a `ThreeLayerConvNet`, **by formula** (do not build one).
# 2. `count_parameters(model, trainable_only=True)`: the number of scalar parameters of any
#    model, counting only those with `requires_grad=True` unless `trainable_only=False`.
#    Count numbers, not tensors (`p.numel()`). `model.parameters()` lists a shared layer
#    once, which is what you want.

# %% nbgrader={"grade": false, "grade_id": "count", "locked": false, "schema_version": 3, "solution": true}
def convnet_param_count(in_channel, channel_1, channel_2, num_classes, image_size=32):
    """Parameters of ThreeLayerConvNet(in_channel, channel_1, channel_2, num_classes, image_size)."""
    ### BEGIN SOLUTION
    conv1 = channel_1 * in_channel * 5 * 5 + channel_1
    conv2 = channel_2 * channel_1 * 3 * 3 + channel_2
    fc = num_classes * channel_2 * image_size * image_size + num_classes
    return conv1 + conv2 + fc
    ### END SOLUTION


def count_parameters(model, trainable_only=True):
    """Number of scalar parameters of model (only trainable ones unless trainable_only=False)."""
    ### BEGIN SOLUTION
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
    ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "count-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** For `ThreeLayerConvNet(3, 12, 8, 10)`: conv1 has $12 \cdot 3 \cdot 25 + 12 = 912$,
# conv2 $8 \cdot 12 \cdot 9 + 8 = 872$, fc $10 \cdot 8 \cdot 32 \cdot 32 + 10 = 81\,930$:
# 83 714 in all. For 8×8 images, `ThreeLayerConvNet(1, 2, 3, 4, image_size=8)` has
# $52 + 57 + 4 \cdot 3 \cdot 8 \cdot 8 + 4 = 881$. `count_parameters` is checked on a small
# `nn.Sequential` with a frozen layer.

# %% nbgrader={"grade": false, "grade_id": "count-check", "locked": true, "schema_version": 3, "solution": false}
with checks.explain_errors("convnet_param_count"):
    formula_count = convnet_param_count(3, 12, 8, 10)
checks.check_close("convnet_param_count(3, 12, 8, 10)", formula_count, 83714,
                   mistakes={"the biases are not counted": 83684,
                             "the fc layer's input is channel_2, not channel_2 * image_size * image_size": 912 + 872 + 90,
                             "the fc input uses the size a conv without padding would leave (26 x 26 after 5x5 "
                             "and 3x3), but the padding keeps 32 x 32": 912 + 872 + 10 * 8 * 26 * 26 + 10})
with checks.explain_errors("convnet_param_count"):
    small_count = convnet_param_count(1, 2, 3, 4, image_size=8)
checks.check_close("convnet_param_count(1, 2, 3, 4, image_size=8)", small_count, 881,
                   mistakes={"image_size is ignored: the count uses 32 x 32 whatever image_size says":
                                 52 + 57 + 4 * 3 * 32 * 32 + 4,
                             "the fc input uses image_size instead of image_size * image_size": 52 + 57 + 4 * 3 * 8 + 4})
frozen_demo = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
frozen_demo[0].requires_grad_(False)
with checks.explain_errors("count_parameters"):
    count_all, count_trainable = count_parameters(frozen_demo, trainable_only=False), count_parameters(frozen_demo)
checks.check_close("count_parameters(all)", count_all, 23,
                   mistakes={"you counted tensors, not numbers: use p.numel()": 4})
checks.check_close("count_parameters(trainable)", count_trainable, 8,
                   mistakes={"frozen parameters (requires_grad=False) were counted": 23,
                             "the condition is the wrong way round: only the frozen parameters were counted": 15})

# %% nbgrader={"grade": true, "grade_id": "test-count", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: parameter counting (hidden tests: other configurations, shared layers, frozen layers).
assert convnet_param_count(3, 12, 8, 10) == 83714, "wrong count for ThreeLayerConvNet(3, 12, 8, 10)"
### BEGIN HIDDEN TESTS
for _ci, _c1, _c2, _k, _s in [(1, 4, 6, 3, 8), (5, 2, 3, 7, 12), (3, 32, 16, 10, 32)]:
    _ref = _c1 * _ci * 25 + _c1 + _c2 * _c1 * 9 + _c2 + _k * _c2 * _s * _s + _k
    assert convnet_param_count(_ci, _c1, _c2, _k, image_size=_s) == _ref, "wrong count for another configuration"
assert convnet_param_count(3, 32, 16, 10) == 170_906, "image_size should default to 32"


def _model_with_a_shared_layer():
    """A model that uses one Linear twice (its parameters count once), built where the student's code runs."""
    shared = nn.Linear(5, 5)
    return nn.Sequential(nn.Linear(2, 5), shared, nn.ReLU(), shared, nn.Conv1d(5, 3, 2), nn.BatchNorm1d(3))


def _freeze_some(model):
    """Freeze the first layer and the BatchNorm weight (its bias stays trainable)."""
    model[0].requires_grad_(False)
    model[5].weight.requires_grad_(False)


_model = checks.run_in_kernel(_model_with_a_shared_layer)
assert count_parameters(_model, trainable_only=False) == 15 + 30 + 33 + 6, "wrong total count"
checks.run_in_kernel(_freeze_some, _model)
assert count_parameters(_model) == 30 + 33 + 3, "wrong trainable count"
assert count_parameters(_model, trainable_only=False) == 84, "wrong total count with frozen layers"
### END HIDDEN TESTS
checks.passed("parameter counting")

# %% [markdown] nbgrader={"grade": false, "grade_id": "inspect-md", "locked": true, "schema_version": 3, "solution": false}
# ## Where the parameters are, and what Kaiming init buys
#
# Left: the parameters of each layer of a CIFAR-10-sized `ThreeLayerConvNet(3, 32, 16, 10)`.
# The convolutions share their small kernels across every position of the image; the fully
# connected layer has a weight for every (position, channel, class), and holds almost all
# parameters.
#
# Right: the standard deviation of the activations after each layer, for one batch of
# random images, with your Kaiming initialisation and with PyTorch's default one. With the
# default, the signal shrinks at every layer; a deep net initialised that way starts with
# almost nothing reaching the output, and learns slowly.

# %% nbgrader={"grade": false, "grade_id": "inspect", "locked": true, "schema_version": 3, "solution": false}
torch.manual_seed(0)
cifar_net = ThreeLayerConvNet(3, 32, 16, 10).to(device)


def weight_layers(net):
    """The (name, layer) pairs of the conv and linear layers, in order."""
    return [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


layer_counts = {name: count_parameters(layer) for name, layer in weight_layers(cifar_net)}
print(f"{count_parameters(cifar_net):,} parameters; by formula {convnet_param_count(3, 32, 16, 10):,}")

default_net = ThreeLayerConvNet(3, 32, 16, 10).to(device)
for _, layer in weight_layers(default_net):
    layer.reset_parameters()  # back to PyTorch's default initialisation


def activation_stds(net, x):
    stds, h = [x.std().item()], x
    with torch.no_grad():
        for _, layer in weight_layers(net):
            h = layer(torch.flatten(h, 1)) if isinstance(layer, nn.Linear) else F.relu(layer(h))
            stds.append(h.std().item())
    return stds


probe = torch.randn(budget(full=64, fast=16), 3, 32, 32, device=device)
fig, (ax_count, ax_std) = plt.subplots(1, 2, figsize=(10, 3.5))
ax_count.bar(list(layer_counts), list(layer_counts.values()))
ax_count.set(yscale="log", ylabel="parameters (log scale)", title="Parameters per layer")
labels = ["input"] + list(layer_counts)
ax_std.plot(labels, activation_stds(cifar_net, probe), "o-", label="Kaiming normal")
ax_std.plot(labels, activation_stds(default_net, probe), "o-", label="PyTorch default")
ax_std.set(ylabel="std of activations", title="Signal scale through the net")
ax_std.legend()
plt.tight_layout()
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "save-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 4 · Save and load a `state_dict` (2 points)
#
# `model.state_dict()` is an ordered dict from names (`"conv1.weight"`, ...) to tensors:
# every parameter **and every buffer**. Buffers are state that is not trained by the
# optimizer, such as BatchNorm's running mean and variance; they are not in `parameters()`
# but the model needs them to give the same outputs in `eval()` mode.
#
# The recommended way to save a model is its `state_dict`, not the model object:
# `torch.save(model, path)` pickles the class by reference, so the file breaks when the
# code moves, and loading it requires running arbitrary pickled code. A state dict loads
# with `torch.load(path, weights_only=True)`, which only reads tensors.
#
# * `save_weights(model, path)` writes the model's `state_dict` to `path`.
# * `load_weights(model, path)` reads it back into an existing model of the same
#   architecture and returns the model. Load onto the model's own device
#   (`map_location=...`, so a file written on a GPU machine loads on a laptop), with
#   `weights_only=True`, and keep `load_state_dict` strict: a missing or unexpected key
#   should be an error, not silently ignored.

# %% nbgrader={"grade": false, "grade_id": "save-load", "locked": false, "schema_version": 3, "solution": true}
def save_weights(model, path):
    """Write model.state_dict() to path."""
    ### BEGIN SOLUTION
    torch.save(model.state_dict(), path)
    ### END SOLUTION


def load_weights(model, path):
    """Load a state dict saved by save_weights into model (on model's device); return model."""
    ### BEGIN SOLUTION
    device = next(model.parameters()).device
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model
    ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "save-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** A small net with a BatchNorm layer runs a few batches in training mode
# (which updates its running statistics), is saved to a fresh temporary folder, and is
# loaded into a second net built from another seed. In `eval()` mode both must give
# *exactly* the same outputs (`torch.equal`, not just close). Last, a file that lacks the
# running statistics must be refused.

# %% nbgrader={"grade": false, "grade_id": "save-check", "locked": true, "schema_version": 3, "solution": false}
def make_bn_net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).to(device)


original = make_bn_net(seed=1)
for _ in range(3):
    original(torch.randn(8, 3, 6, 6, device=device) * 2 + 1)  # training mode: BatchNorm statistics move
original.eval()
copy_net = make_bn_net(seed=2).eval()
probe_batch = torch.randn(5, 3, 6, 6, device=device)
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "weights.pt"
    with checks.explain_errors("save_weights"):
        save_weights(original, path)
    checks.check_true("file written", path.exists(), f"save_weights wrote nothing to {path}.")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here is the diagnosis
        needs = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))  # read, not run
        raise checks.CheckError(
            f"the file does not load with weights_only=True ({type(err).__name__}). "
            + ("It holds the method `model.state_dict` itself, not its result: call it, "
               "`torch.save(model.state_dict(), path)`." if "builtins.getattr" in needs else
               "It holds the pickled model object (`torch.save(model, path)`): save the state_dict, "
               "`torch.save(model.state_dict(), path)`." if any(".modules." in n for n in needs) else
               "Save the state_dict, `torch.save(model.state_dict(), path)`, not the model object.")
        ) from None
    missing = sorted(set(original.state_dict()) - set(saved))
    checks.check_true("every entry saved", not missing,
                      f"the file lacks {missing}. Buffers such as BatchNorm's running_mean/running_var "
                      "are in state_dict() but not in parameters(): save model.state_dict().")
    with checks.explain_errors("load_weights"):
        returned = load_weights(copy_net, path)
checks.check_true("load_weights returns the model", returned is copy_net,
                  "load_weights should return the model it loaded into"
                  + (": it returned None (`return model` is missing)." if returned is None else
                     ": it returned what load_state_dict returns (the missing and unexpected keys), not the model."
                     if type(returned).__name__ == "_IncompatibleKeys" else f", not a {type(returned).__name__}."))
with torch.no_grad():
    same = torch.equal(original(probe_batch), copy_net(probe_batch))
checks.check_true("outputs after the round trip", same,
                  "the reloaded model gives different outputs. Did load_state_dict run (and strictly)?")
strict_net = make_bn_net(seed=3)
with tempfile.TemporaryDirectory() as folder:
    partial = Path(folder) / "partial.pt"
    torch.save({k: v for k, v in original.state_dict().items() if "running" not in k}, partial)
    try:
        load_weights(strict_net, partial)
        refused = False
    except RuntimeError:
        refused = True
checks.check_true("strict loading", refused,
                  "a file without BatchNorm's running statistics loaded without an error: "
                  "load_state_dict(..., strict=False) hides missing and unexpected keys. Keep the default "
                  "strict=True, so a file that does not fit the model fails loudly.")

# %% nbgrader={"grade": true, "grade_id": "test-save-load", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: the state_dict round trip (hidden tests: other architectures, buffers, strict
# loading, a fresh temporary file each time).
checks.check_true("round trip", same, "outputs differ", quiet=True)
### BEGIN HIDDEN TESTS
def _bn_net(seed, batches):
    """A net with BatchNorm built from a seed; `batches` training batches move its running statistics; eval mode."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(7, 9), nn.BatchNorm1d(9), nn.Tanh(), nn.Linear(9, 2))
    for _ in range(batches):
        net(torch.randn(16, 7) * 3 - 1)
    return net.eval()


def _fresh_file(name):
    """A path in a new temporary folder, made where the student's code runs (and can write)."""
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="graded-")) / name


def _remove_folder(path):
    import shutil

    shutil.rmtree(path.parent, ignore_errors=True)


def _state_keys(model):
    return sorted(model.state_dict())


def _file_keys(path):
    """The keys of the dict in the file, read with weights_only=True (None if that fails)."""
    try:
        return sorted(torch.load(path, weights_only=True))
    except Exception:  # noqa: BLE001 - a pickled model, or no file at all
        return None


def _save_without_running_stats(model, path):
    """A state_dict file that lacks BatchNorm's running statistics."""
    torch.save({k: v for k, v in model.state_dict().items() if "running" not in k}, path)


for _seed in (5, 6):
    _a = checks.run_in_kernel(_bn_net, _seed, 2)
    _b = checks.run_in_kernel(_bn_net, _seed + 100, 0)
    _path = checks.run_in_kernel(_fresh_file, f"hidden-{_seed}.pt")
    save_weights(_a, _path)
    _saved = checks.run_in_kernel(_file_keys, _path)
    assert _saved is not None, "the file does not load with weights_only=True: save the state_dict"
    assert _saved == checks.run_in_kernel(_state_keys, _a), "the file should hold exactly the state_dict"
    assert load_weights(_b, _path) is _b, "load_weights should return the model"
    checks.run_in_kernel(_remove_folder, _path)
    _x = torch.randn(11, 7)
    assert torch.equal(_a(_x), _b(_x)), "outputs differ after the round trip"
    _c = checks.run_in_kernel(_bn_net, _seed + 200, 0)
    _path = checks.run_in_kernel(_fresh_file, "partial.pt")
    checks.run_in_kernel(_save_without_running_stats, _a, _path)
    _refused = False
    try:
        load_weights(_c, _path)
    except RuntimeError:
        _refused = True
    finally:
        checks.run_in_kernel(_remove_folder, _path)
    assert _refused, "a file with missing keys loaded silently: keep load_state_dict strict"
### END HIDDEN TESTS
checks.passed("state_dict round trip")

# %% [markdown] nbgrader={"grade": false, "grade_id": "recap", "locked": true, "schema_version": 3, "solution": false}
# ## Recap
#
# * An `nn.Module` creates its layers in `__init__` (after `super().__init__()`) and uses
#   them in `forward`; assigning a module or `nn.Parameter` to `self` registers it.
# * Layers in a plain Python list are not registered: use `nn.ModuleList`.
# * Before a fully connected layer, flatten with `torch.flatten(x, 1)` and size the layer
#   as channels × height × width of the last feature map.
# * `nn.init.kaiming_normal_` keeps the signal's scale through ReLU layers.
# * Save `model.state_dict()` (parameters and buffers) and load it with
#   `torch.load(..., map_location=..., weights_only=True)` and a strict `load_state_dict`.
#
# **Further exercises** (not graded): rewrite `TwoLayerNet` with an `nn.ModuleList` of any
# number of hidden layers; add `nn.BatchNorm2d` after each convolution and recount the
# parameters and buffers; try `torch.save(model, path)` and load it with `weights_only=True`.
