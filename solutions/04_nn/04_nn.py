# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false}
# # 04 · `torch.nn`
#
# Notebooks 01 to 03 kept every weight in a variable of its own. `torch.nn` packages the
# usual pieces instead: layers that own their parameters (`nn.Linear`), containers that chain
# them (`nn.Sequential`), activations, loss functions and initialisers. This notebook builds
# networks from these pieces, looks at the same computation in the *functional* style, trains
# a regression and a classifier with a hand-written update, and hunts down the most famous bug
# of hand-written updates: the loss that never moves.
#
# **Learning goals**
# 1. Build networks with `nn.Linear`, activations and `nn.Sequential`; list and count `parameters()`.
# 2. Write the same network in the functional style (`F.linear`, `F.relu`) and know the weight layout of `nn.Linear`.
# 3. Pick the right loss: `nn.MSELoss(reduction="sum")` for the regression of notebook 01,
#    `nn.CrossEntropyLoss` on **raw scores** and **int64 labels** for classification.
# 4. Update a module's parameters in place (and find the bug when the loss stays flat).
# 5. Initialise weights with `nn.init`, walking the model with `modules()` (not just `children()`).
#
# Every exercise has a **self-check** you can run as often as you like, and a graded cell
# (with hidden tests on other shapes, seeds and models) that the autograder runs.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup-md", "locked": true, "schema_version": 3, "solution": false}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import copy

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from course_utils import budget, checks, setup

config = setup(seed=0)
device = config.device

# %% [markdown] nbgrader={"grade": false, "grade_id": "linear-md", "locked": true, "schema_version": 3, "solution": false}
# ## 1 · Layers, activations, `nn.Sequential`
#
# `nn.Linear(in_features, out_features)` computes $y = xW^\top + b$. It owns its parameters:
# `weight` of shape **`(out_features, in_features)`** (note the order: one row per output)
# and `bias` of shape `(out_features,)`, created with a sensible random initialisation and
# `requires_grad=True`. Parameters are tensors of the subclass `nn.Parameter`, which is how a
# module knows what to return from `parameters()`.
#
# Activations are modules too (`nn.ReLU()`, `nn.Tanh()`, ...) and `nn.Sequential(...)` chains
# modules: its output is the last module applied to ... the first module applied to the input.

# %% nbgrader={"grade": false, "grade_id": "linear-demo", "locked": true, "schema_version": 3, "solution": false}
layer = nn.Linear(3, 2)
print("weight:", tuple(layer.weight.shape), "| bias:", tuple(layer.bias.shape),
      "| requires_grad:", layer.weight.requires_grad, "| type:", type(layer.weight).__name__)
x_demo = torch.randn(4, 3)
print("layer(x) == x @ W.T + b:", torch.allclose(layer(x_demo), x_demo @ layer.weight.T + layer.bias))

net = nn.Sequential(nn.Linear(1000, 100), nn.ReLU(), nn.Linear(100, 10))  # the net of notebook 01
print(net)
for name, p in net.named_parameters():
    print(f"  {name:10s} {str(tuple(p.shape)):12s} {p.numel():7d} numbers")
print("parameters in total:", sum(p.numel() for p in net.parameters()))

grid = torch.linspace(-4, 4, 200)
fig, ax = plt.subplots(figsize=(6, 3.5))
for act in [nn.ReLU(), nn.LeakyReLU(0.1), nn.Tanh(), nn.Sigmoid(), nn.GELU()]:
    ax.plot(grid, act(grid), label=type(act).__name__)
ax.set(xlabel="x", ylabel="activation(x)", ylim=(-1.5, 4), title="Activation modules")
ax.legend()
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "mlp-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 1 · A multi-layer perceptron from a list of sizes (2 points)
#
# Write `build_mlp(sizes, activation=nn.ReLU)`. For `sizes = [d0, d1, ..., dk]` it returns an
# `nn.Sequential` of `k` linear layers, `Linear(d0, d1)`, ..., `Linear(d(k-1), dk)`, with a
# **new** instance of `activation` (a class, so call it: `activation()`) between consecutive
# linear layers, and **nothing after the last one**: the last layer's outputs are the
# network's outputs, and clipping them with a ReLU would make negative targets unreachable.

# %% nbgrader={"grade": false, "grade_id": "mlp", "locked": false, "schema_version": 3, "solution": true}
def build_mlp(sizes, activation=nn.ReLU):
    """nn.Sequential of Linear layers sized by `sizes`, `activation()` between them."""
    ### BEGIN SOLUTION
    layers = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            layers.append(activation())
        layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "mlp-check", "locked": true, "schema_version": 3, "solution": false}
def structure(model):
    """A model's layers as short strings, e.g. ['Linear(4->8)', 'ReLU']."""
    return [f"Linear({m.in_features}->{m.out_features})" if isinstance(m, nn.Linear) else type(m).__name__
            for m in model.children()]


with checks.explain_errors("build_mlp"):
    mlp = build_mlp([4, 8, 8, 3])
    mlp_tanh = build_mlp([2, 5, 1], activation=nn.Tanh)
checks.check_true("build_mlp returns an nn.Sequential", isinstance(mlp, nn.Sequential),
                  f"got {type(mlp).__name__}.")
checks.check_true("a new activation instance per position", len({id(m) for m in mlp}) == len(mlp),
                  "the same activation object appears twice: create a new one with `activation()` each time.")
got = structure(mlp)
expected_structure = ["Linear(4->8)", "ReLU", "Linear(8->8)", "ReLU", "Linear(8->3)"]
n_linear = sum(layer.startswith("Linear") for layer in got)
if got and not got[-1].startswith("Linear"):
    why = ("There is an activation after the last layer: it clips the outputs (a ReLU makes every "
           "output >= 0). Put activations only *between* linear layers.")
elif n_linear != 3:
    why = (f"{n_linear} linear layers for 4 sizes: there is one per pair of consecutive sizes, so 3. "
           "An off-by-one in the loop over the sizes?")
elif n_linear == len(got):
    why = ("There is no activation between the linear layers: without one, consecutive linear layers "
           "collapse into a single linear map.")
else:
    why = ""
checks.check_true("layers of build_mlp([4, 8, 8, 3])", got == expected_structure,
                  f"expected {expected_structure}, got {got}. {why}")
got = structure(mlp_tanh)
checks.check_true(
    "build_mlp([2, 5, 1], activation=nn.Tanh)", got == ["Linear(2->5)", "Tanh", "Linear(5->1)"],
    f"expected ['Linear(2->5)', 'Tanh', 'Linear(5->1)'], got {got}. "
    + ("The `activation` argument is ignored: create the activations from the class passed in "
       "(`activation()`), not a fixed `nn.ReLU()`." if "ReLU" in got else ""),
)
n_params = sum(p.numel() for p in mlp.parameters())
checks.check_close("number of parameters", n_params, (4 * 8 + 8) + (8 * 8 + 8) + (8 * 3 + 3))
checks.check_shape("output", mlp(torch.randn(5, 4)), (5, 3))

# %% nbgrader={"grade": true, "grade_id": "test-mlp", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: build_mlp (hidden tests: a single layer, other activations, deeper nets, and the
# outputs against the same layers computed from the network's own parameters).
def _structure(model):
    # Runs where the model lives (in your kernel when graded): its layers as short strings.
    return [f"Linear({m.in_features}->{m.out_features})" if isinstance(m, nn.Linear) else type(m).__name__
            for m in model.children()]


_mlp = build_mlp([4, 8, 8, 3])
assert checks.run_in_kernel(_structure, _mlp) == ["Linear(4->8)", "ReLU", "Linear(8->8)", "ReLU", "Linear(8->3)"], \
    "build_mlp([4, 8, 8, 3]) has the wrong layers (see the self-check above)"
### BEGIN HIDDEN TESTS
def _tanh_class():
    # Runs in the kernel: its own nn.Tanh class (the grader cannot send a class there).
    return nn.Tanh


def _seeded(seed, fn, *args):
    # Runs in the kernel: fn(*args) with the kernel's random generator seeded first.
    torch.manual_seed(seed)
    return fn(*args)


def _count_parameters(model):
    # Runs in the kernel: the number of entries of all the model's parameters.
    return sum(p.numel() for p in model.parameters())


def _linear_params(model):
    # Runs in the kernel: (weight, bias) of each Linear layer, in order, as data.
    return [(m.weight.detach().clone(), m.bias.detach().clone()) for m in model.children() if isinstance(m, nn.Linear)]


def _reference_mlp(x, params, activation):
    for i, (w, b) in enumerate(params):
        if i > 0:
            x = activation(x)
        x = x @ w.T + b
    return x


assert checks.run_in_kernel(_structure, build_mlp([5, 2])) == ["Linear(5->2)"], "one linear layer, no activation"
_m = build_mlp([3, 7, 6, 5, 1], activation=checks.run_in_kernel(_tanh_class))
assert checks.run_in_kernel(_structure, _m) == [
    "Linear(3->7)", "Tanh", "Linear(7->6)", "Tanh", "Linear(6->5)", "Tanh", "Linear(5->1)"], \
    "wrong layers for five sizes and activation=nn.Tanh"
# checks.is_instance reads the class names your kernel reports; the outputs are checked below.
assert len({id(_a) for _a in _m if checks.is_instance(_a, torch.nn.Tanh)}) == 3, "each activation must be a new instance"
assert checks.run_in_kernel(_count_parameters, _m) == 3 * 7 + 7 + 7 * 6 + 6 + 6 * 5 + 5 + 5 + 1, \
    "wrong number of parameters"
torch.manual_seed(3)
_x = torch.randn(50, 3)
checks.check_close("hidden outputs with Tanh", _m(_x), _reference_mlp(_x, checks.run_in_kernel(_linear_params, _m), torch.tanh),
                   rtol=1e-5, atol=1e-6, quiet=True)
_x = torch.randn(200, 2)
_net = checks.run_in_kernel(_seeded, 3, build_mlp, [2, 16, 1])
_out = _net(_x)
assert (_out < 0).any(), "the outputs can never be negative: is there an activation after the last layer?"
checks.check_close("hidden outputs", _out, _reference_mlp(_x, checks.run_in_kernel(_linear_params, _net), torch.relu),
                   rtol=1e-5, atol=1e-6, quiet=True)
### END HIDDEN TESTS
checks.passed("build_mlp")

# %% [markdown] nbgrader={"grade": false, "grade_id": "functional-md", "locked": true, "schema_version": 3, "solution": false}
# ## 2 · Functional style versus module style
#
# Everything a module does exists as a plain function in `torch.nn.functional` (imported as
# `F`): `F.linear(x, weight, bias)`, `F.relu(x)`, `F.cross_entropy(logits, labels)`, ...
# The module style keeps the parameters inside the modules (convenient: `model.parameters()`,
# `model.to(device)`, saving and loading); the functional style passes them explicitly (useful
# when the weights come from elsewhere, e.g. a hypernetwork, or for a quick experiment).
# Activations and losses without parameters are often written functionally even inside modules.
#
# ## Exercise 2 · The MLP in the functional style (2 points)
#
# Write `mlp_functional(x, params)`: `params` is a list of `(weight, bias)` pairs laid out like
# `nn.Linear`'s (`weight` has shape `(out, in)`). Apply the layers in order with a ReLU between
# consecutive layers and none after the last: the same function as `build_mlp(sizes)`.

# %% nbgrader={"grade": false, "grade_id": "functional", "locked": false, "schema_version": 3, "solution": true}
def mlp_functional(x, params):
    """The MLP of build_mlp, computed from explicit (weight, bias) pairs."""
    ### BEGIN SOLUTION
    for i, (weight, bias) in enumerate(params):
        if i > 0:
            x = F.relu(x)
        x = F.linear(x, weight, bias)
    return x
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "functional-check", "locked": true, "schema_version": 3, "solution": false}
torch.manual_seed(1)
reference_model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
ref_params = [(m.weight, m.bias) for m in reference_model if isinstance(m, nn.Linear)]
x_f = torch.randn(7, 6)
with checks.explain_errors("mlp_functional"):
    out_f = mlp_functional(x_f, ref_params)
linears_only = nn.Sequential(*[m for m in reference_model if isinstance(m, nn.Linear)])
without_bias = copy.deepcopy(reference_model)
for m in without_bias:
    if isinstance(m, nn.Linear):
        nn.init.zeros_(m.bias)
checks.check_close("mlp_functional against the module", out_f, reference_model(x_f), rtol=1e-5, atol=1e-6,
                   mistakes={"a ReLU after the last layer": reference_model(x_f).relu(),
                             "no ReLU between the layers: the layers collapse into one linear map":
                                 linears_only(x_f),
                             "the bias is missing: each layer adds its bias after the product":
                                 without_bias(x_f)})
checks.check_true("gradients flow to the parameters", out_f.requires_grad,
                  "the output does not require grad: did you detach the weights or use NumPy?")

# %% nbgrader={"grade": true, "grade_id": "test-functional", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: mlp_functional (hidden tests: square weights, where a missing transpose raises no
# error; a single layer; float64; gradients).
torch.manual_seed(1)
_model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
_params = [(m.weight, m.bias) for m in _model if isinstance(m, nn.Linear)]
_x = torch.randn(7, 6)
checks.check_close("functional", mlp_functional(_x, _params), _model(_x), rtol=1e-5, atol=1e-6, quiet=True)
### BEGIN HIDDEN TESTS
def _weight_grads(out, params):
    # Runs where `out` was computed (in your kernel when graded): backward through your graph.
    out.sum().backward()
    return [w.grad for w, _ in params]


torch.manual_seed(12)
for _sizes, _dt in [([4, 4, 4, 4], torch.float32), ([3, 2], torch.float64), ([5, 5, 3], torch.float64)]:
    _mod = nn.Sequential(*[_l for _i, (_a, _b) in enumerate(zip(_sizes[:-1], _sizes[1:]))
                           for _l in ([nn.ReLU()] if _i else []) + [nn.Linear(_a, _b)]]).to(_dt)
    _ps = [(_l.weight, _l.bias) for _l in _mod if isinstance(_l, nn.Linear)]
    _x = torch.randn(6, _sizes[0], dtype=_dt)
    _o = mlp_functional(_x, _ps)
    checks.check_close("hidden functional", _o, _mod(_x), rtol=1e-5, atol=1e-6, quiet=True)
    assert _o.requires_grad, "the output does not require grad: gradients cannot reach the weights"
    _expected = torch.autograd.grad(_mod(_x).sum(), [_w for _w, _ in _ps])
    _got = checks.run_in_kernel(_weight_grads, _o, _ps)
    assert all(_g is not None for _g in _got), "gradients must reach every weight"
    for _g, _e in zip(_got, _expected):
        checks.check_close("hidden weight gradients", _g, _e, rtol=1e-5, atol=1e-6, quiet=True)
### END HIDDEN TESTS
checks.passed("mlp_functional")

# %% [markdown] nbgrader={"grade": false, "grade_id": "loss-md", "locked": true, "schema_version": 3, "solution": false}
# ## 3 · Loss functions
#
# Losses are modules too. Notebook 01's sum of squared errors is
# `nn.MSELoss(reduction="sum")` (the default `reduction="mean"` divides by the number of
# entries, which changes the scale of the gradients and so the learning rate you need; the old
# `size_average=False` argument of older tutorials is gone, use `reduction=`).
#
# For classification, `nn.CrossEntropyLoss` takes **raw scores** ("logits", any real numbers)
# of shape `(N, C)` and **class indices** of dtype `int64` and shape `(N,)`. It applies
# `log_softmax` itself and picks the log-probability of the true class:
# $L = -\frac1N\sum_i \log \operatorname{softmax}(z_i)_{y_i}$.

# %% nbgrader={"grade": false, "grade_id": "loss-demo", "locked": true, "schema_version": 3, "solution": false}
y_pred, y_true = torch.randn(64, 10), torch.randn(64, 10)
print("MSELoss(sum):", nn.MSELoss(reduction="sum")(y_pred, y_true).item(),
      "| by hand:", (y_pred - y_true).pow(2).sum().item())
print("MSELoss(mean):", nn.MSELoss()(y_pred, y_true).item(),
      "| by hand:", (y_pred - y_true).pow(2).mean().item())

logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
labels = torch.tensor([0, 2])
by_hand = -logits.log_softmax(dim=1)[torch.arange(2), labels].mean()
print("CrossEntropyLoss:", nn.CrossEntropyLoss()(logits, labels).item(), "| by hand:", by_hand.item())
try:
    nn.CrossEntropyLoss()(logits, labels.float())
except RuntimeError as err:
    print("float labels:", err)

# %% [markdown] nbgrader={"grade": false, "grade_id": "sgd-md", "locked": true, "schema_version": 3, "solution": false}
# ## 4 · Training a module by hand, and the flat loss
#
# A training step with a module is the loop of notebook 03 with `model.parameters()` in place
# of the named tensors. Here is a colleague's update function. It runs without an error ...

# %% nbgrader={"grade": false, "grade_id": "buggy-sgd", "locked": true, "schema_version": 3, "solution": false}
def buggy_sgd_step(model, lr):
    """A colleague's gradient-descent step. Something is wrong with it."""
    with torch.no_grad():
        for param in model.parameters():
            if param.grad is None:
                continue
            param = param - lr * param.grad
            param.grad = None


# %% [markdown] nbgrader={"grade": false, "grade_id": "sgd-ex-md", "locked": true, "schema_version": 3, "solution": false}
# ... but a network trained with it does not learn (the plot below compares it with your fixed
# version). Find the bug.
#
# ## Exercise 3 · Fix the update step (3 points)
#
# Write `sgd_step(model, lr)`: one gradient-descent step on every parameter of `model`,
# $p \leftarrow p - \eta\,\nabla_p L$, changing the parameters the model holds (so that the
# model, not just a local name, sees the new values), not recorded by autograd, followed by
# clearing each gradient. Skip parameters whose `.grad` is `None` (frozen or unused ones).

# %% nbgrader={"grade": false, "grade_id": "sgd", "locked": false, "schema_version": 3, "solution": true}
def sgd_step(model, lr):
    """In-place gradient descent on model.parameters(), then clear the gradients."""
    ### BEGIN SOLUTION
    with torch.no_grad():
        for param in model.parameters():
            if param.grad is None:
                continue
            param -= lr * param.grad
            param.grad = None
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "sgd-check", "locked": true, "schema_version": 3, "solution": false}
torch.manual_seed(2)
small = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
nn.MSELoss(reduction="sum")(small(torch.randn(5, 3)), torch.randn(5, 2)).backward()
before = checks.param_snapshot(small)
ids_before = {name: id(p) for name, p in small.named_parameters()}
grads_before = {name: p.grad.clone() for name, p in small.named_parameters()}
with checks.explain_errors("sgd_step"):
    sgd_step(small, lr=0.1)
checks.check_updated_in_place("sgd_step", small, before)
checks.check_true(
    "the model keeps its parameter objects", {name: id(p) for name, p in small.named_parameters()} == ids_before,
    "the model now holds new Parameter objects: an optimizer (or anything else holding the old ones) "
    "would keep updating tensors the model no longer uses. Change the existing parameters in place.",
)
checks.check_close("the step is p - lr * grad", small[0].weight, before["0.weight"] - 0.1 * grads_before["0.weight"],
                   mistakes={"the step goes uphill: subtract the gradient":
                                 before["0.weight"] + 0.1 * grads_before["0.weight"]})
checks.check_grads_cleared("sgd_step", small)

torch.manual_seed(3)
partly_frozen = nn.Linear(3, 2)
partly_frozen.bias.requires_grad_(False)  # frozen: backward leaves its .grad None
partly_frozen(torch.randn(4, 3)).sum().backward()
frozen_before = partly_frozen.bias.detach().clone()
try:
    sgd_step(partly_frozen, lr=0.1)
    problem = None
except (TypeError, AttributeError, RuntimeError) as err:
    problem = f"{type(err).__name__}: {err}"
checks.check_true(
    "a frozen parameter is skipped", problem is None and torch.equal(partly_frozen.bias, frozen_before),
    (f"sgd_step raised {problem} " if problem else "sgd_step changed the frozen bias ")
    + "on a layer whose bias is frozen (`requires_grad=False`), so its `.grad` is None: skip parameters "
    "whose `.grad` is None.",
)

# %% [markdown] nbgrader={"grade": false, "grade_id": "flat-md", "locked": true, "schema_version": 3, "solution": false}
# The network of notebook 01 (`Linear(1000, 100) → ReLU → Linear(100, 10)`), trained twice from
# the same start on the same random data with `nn.MSELoss(reduction="sum")`: once with the
# colleague's step, once with yours.

# %% nbgrader={"grade": false, "grade_id": "flat-run", "locked": true, "schema_version": 3, "solution": false}
num_steps = budget(full=500, fast=150)
gen = torch.Generator().manual_seed(0)
x_reg = torch.randn(64, 1000, generator=gen).to(device)
y_reg = torch.randn(64, 10, generator=gen).to(device)
loss_fn = nn.MSELoss(reduction="sum")


def train_regression(model, step_fn, lr=1e-4):
    losses = []
    for _ in tqdm(range(num_steps), desc=step_fn.__name__, leave=False):
        loss = loss_fn(model(x_reg), y_reg)
        losses.append(loss.item())
        loss.backward()
        step_fn(model, lr)
    return losses


torch.manual_seed(0)
start = nn.Sequential(nn.Linear(1000, 100), nn.ReLU(), nn.Linear(100, 10)).to(device)
buggy_losses = train_regression(copy.deepcopy(start), buggy_sgd_step)
with checks.explain_errors("training with sgd_step"):
    fixed_losses = train_regression(copy.deepcopy(start), sgd_step)

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(buggy_losses, label="buggy_sgd_step: param = param - lr * grad")
ax.semilogy(fixed_losses, label="sgd_step (yours)")
ax.set(xlabel="step", ylabel="sum of squared errors (log scale)", title="The flat-loss bug")
ax.legend()
plt.show()
print(f"buggy: {buggy_losses[0]:.3g} -> {buggy_losses[-1]:.3g} | fixed: {fixed_losses[0]:.3g} -> {fixed_losses[-1]:.3g}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "flat-explain-md", "locked": true, "schema_version": 3, "solution": false}
# **What went wrong.** `param = param - lr * param.grad` computes a new tensor and binds the
# loop variable `param` to it; the model still holds the old `nn.Parameter`, untouched.
# `param -= lr * param.grad` (or `param.sub_(lr * param.grad)`) changes the tensor itself.
# Inside `torch.no_grad()` nothing complains, so the only symptom is a loss that never moves:
# when a loss is perfectly flat, first check that the parameters change at all.

# %% nbgrader={"grade": true, "grade_id": "test-sgd", "locked": true, "points": 3, "schema_version": 3, "solution": false}
# Graded: sgd_step (hidden tests: nested models, frozen parameters, float64, parameter identity).
def _linear_with_grads():
    # Runs in the kernel when graded: a small layer whose parameters have gradients.
    torch.manual_seed(0)
    layer = nn.Linear(2, 1)
    layer(torch.ones(1, 2)).sum().backward()
    return layer


def _parameters(model):
    # Runs where the model lives: its parameters by name (as data when graded: values, .grad, identity).
    return dict(model.named_parameters())


_m = checks.run_in_kernel(_linear_with_grads)
_w0 = checks.run_in_kernel(_parameters, _m)["weight"].detach().clone()
sgd_step(_m, 0.5)
assert not torch.equal(checks.run_in_kernel(_parameters, _m)["weight"].detach(), _w0), "the parameters did not change"
### BEGIN HIDDEN TESTS
def _nested_with_grads():
    # Runs in the kernel: a nested float64 model with gradients, one parameter frozen.
    torch.manual_seed(21)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Sequential(nn.Linear(6, 6), nn.ReLU()), nn.Linear(6, 3))
    model = model.double()
    model[0].bias.requires_grad_(False)  # frozen: its .grad stays None
    model(torch.randn(8, 4, dtype=torch.float64)).pow(2).sum().backward()
    return model


_m = checks.run_in_kernel(_nested_with_grads)
_params_before = checks.run_in_kernel(_parameters, _m)
_ids = {_n: id(_p) for _n, _p in _params_before.items()}
_before = {_n: _p.detach().clone() for _n, _p in _params_before.items()}
_grads = {_n: None if _p.grad is None else _p.grad.clone() for _n, _p in _params_before.items()}
sgd_step(_m, 0.01)  # what it returns is not part of the exercise
_params_after = checks.run_in_kernel(_parameters, _m)
assert {_n: id(_p) for _n, _p in _params_after.items()} == _ids, "sgd_step replaced parameters instead of updating them"
for _n, _p in _params_after.items():
    assert _p.is_leaf and (_p.requires_grad == (_n != "0.bias")), "a parameter is no longer the same kind of leaf"
    _exp = _before[_n] if _grads[_n] is None else _before[_n] - 0.01 * _grads[_n]
    checks.check_close("hidden parameter after the step", _p, _exp, quiet=True)
    assert _p.grad is None or not _p.grad.any(), "a gradient was not cleared"
### END HIDDEN TESTS
checks.passed("sgd_step")

# %% [markdown] nbgrader={"grade": false, "grade_id": "classify-md", "locked": true, "schema_version": 3, "solution": false}
# ## 5 · A classifier, and what goes into `CrossEntropyLoss`
#
# Three interleaved spirals in the plane, 100 points each. The data comes as NumPy arrays,
# and the labels were read from a text file, so they are **floats** (`0.0`, `1.0`, `2.0`).

# %% nbgrader={"grade": false, "grade_id": "spiral-data", "locked": true, "schema_version": 3, "solution": false}
def make_spirals(n_per_class=100, n_classes=3, noise=0.2, seed=0):
    """Points on `n_classes` interleaved spiral arms; labels as float64, as if read from a file."""
    rng = np.random.default_rng(seed)
    features, labels = [], []
    for c in range(n_classes):
        radius = np.linspace(0.1, 1.0, n_per_class)
        angle = np.linspace(4 * c, 4 * (c + 1), n_per_class) + noise * rng.standard_normal(n_per_class)
        features.append(np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1))
        labels.append(np.full(n_per_class, float(c)))
    return np.concatenate(features), np.concatenate(labels)


features_np, labels_np = make_spirals()
print("features:", features_np.shape, features_np.dtype, "| labels:", labels_np.shape, labels_np.dtype, labels_np[:3])

# %% [markdown] nbgrader={"grade": false, "grade_id": "classifier-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 4 · Data and model for `CrossEntropyLoss` (3 points)
#
# * `to_tensors(features, labels, device)` turns the NumPy arrays into a float32 feature tensor
#   of shape `(N, D)` and a label tensor of the dtype `CrossEntropyLoss` needs, shape `(N,)`,
#   both on `device`.
# * `build_classifier(n_features, hidden, n_classes)` returns an `nn.Sequential`
#   `Linear → ReLU → Linear → ReLU → Linear` (two hidden layers of width `hidden`) whose output
#   goes straight into `nn.CrossEntropyLoss`.

# %% nbgrader={"grade": false, "grade_id": "classifier", "locked": false, "schema_version": 3, "solution": true}
def to_tensors(features, labels, device):
    """NumPy features and labels -> (float32 features, int64 labels) on device."""
    ### BEGIN SOLUTION
    x = torch.as_tensor(features, dtype=torch.float32, device=device)
    y = torch.as_tensor(labels, device=device).long()
    return x, y
    ### END SOLUTION


def build_classifier(n_features, hidden, n_classes):
    """Two hidden ReLU layers; outputs ready for nn.CrossEntropyLoss."""
    ### BEGIN SOLUTION
    return nn.Sequential(
        nn.Linear(n_features, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, n_classes),
    )
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "classifier-check", "locked": true, "schema_version": 3, "solution": false}
with checks.explain_errors("to_tensors / build_classifier"):
    x_cls, y_cls = to_tensors(features_np, labels_np, device)
    torch.manual_seed(0)
    classifier = build_classifier(2, 64, 3).to(device)
checks.check_tensor("features", x_cls, shape=(300, 2), dtype=torch.float32, device=device)
with checks.explain_errors("the classifier's forward pass"):
    scores_cls = classifier(x_cls)
checks.check_cross_entropy_inputs("classifier output and labels", scores_cls, y_cls)
checks.check_tensor("labels", y_cls, shape=(300,), dtype=torch.int64, device=device)
checks.check_close("label values", y_cls, labels_np)
kinds = [type(m).__name__ for m in classifier.children()]
checks.check_true(
    "Linear -> ReLU -> Linear -> ReLU -> Linear", kinds == ["Linear", "ReLU", "Linear", "ReLU", "Linear"],
    f"got {kinds}. " + ("A ReLU is missing between two linear layers: without it they collapse into one "
                        "linear map, and the network has one hidden layer less." if kinds.count("Linear") == 3
                        and kinds.count("ReLU") < 2 else ""),
)

# %% nbgrader={"grade": true, "grade_id": "test-classifier", "locked": true, "points": 3, "schema_version": 3, "solution": false}
# Graded: to_tensors and build_classifier (hidden tests: other label dtypes, other sizes, raw outputs,
# compared with Linear -> ReLU -> Linear -> ReLU -> Linear computed from the model's own parameters).
_x, _y = to_tensors(np.zeros((2, 3)), np.array([1.0, 0.0]), torch.device("cpu"))
assert _x.dtype == torch.float32 and _y.dtype == torch.int64, "features float32, labels int64"
### BEGIN HIDDEN TESTS
for _lab in [np.array([2.0, 0.0, 1.0, 4.0]), np.array([2, 0, 1, 4], dtype=np.int32), np.array([2, 0, 1, 4])]:
    _x, _y = to_tensors(np.arange(8.0).reshape(4, 2), _lab, torch.device("cpu"))
    checks.check_tensor("hidden features", _x, shape=(4, 2), dtype=torch.float32, device="cpu", quiet=True)
    checks.check_tensor("hidden labels", _y, shape=(4,), dtype=torch.int64, device="cpu", quiet=True)
    assert _y.tolist() == [2, 0, 1, 4] and _x[3, 1].item() == 7.0, "the values changed in the conversion"
_x, _ = to_tensors(np.zeros((2, 2)), np.zeros(2), torch.device("meta"))
assert _x.device.type == "meta", "to_tensors must put the tensors on device"


def _seeded(seed, fn, *args):
    # Runs in the kernel: fn(*args) with the kernel's random generator seeded first.
    torch.manual_seed(seed)
    return fn(*args)


def _linear_layers(model):
    # Runs in the kernel: in and out features, weight and bias of every Linear inside the model, in order.
    return [(m.in_features, m.out_features, m.weight.detach().clone(), m.bias.detach().clone())
            for m in model.modules() if isinstance(m, nn.Linear)]


def _modules(model):
    # Runs in the kernel: the model and all its submodules (handles to them when graded).
    return list(model.modules())


_c = checks.run_in_kernel(_seeded, 5, build_classifier, 5, 16, 7)
# checks.is_instance reads the class names your kernel reports; the outputs are checked below.
assert checks.is_instance(_c, nn.Sequential), "build_classifier must return an nn.Sequential"
_lin = checks.run_in_kernel(_linear_layers, _c)
assert [(_i, _o) for _i, _o, _, _ in _lin] == [(5, 16), (16, 16), (16, 7)], "the Linear layers have the wrong sizes"
assert not any(checks.is_instance(_l, (nn.Softmax, nn.LogSoftmax, nn.Sigmoid)) for _l in checks.run_in_kernel(_modules, _c)), \
    "no softmax before the loss"
torch.manual_seed(5)
_xin = torch.randn(40, 5) * 3
_out = _c(_xin)
checks.check_cross_entropy_inputs("hidden classifier", _out, torch.randint(0, 7, (40,)), quiet=True)
assert (_out < 0).any(), "raw scores can be negative"
_h = _xin
for _k, (_, _, _w, _b) in enumerate(_lin):
    _h = (_h.relu() if _k > 0 else _h) @ _w.T + _b
checks.check_close("hidden raw scores of Linear -> ReLU -> Linear -> ReLU -> Linear", _out, _h,
                   rtol=1e-5, atol=1e-6, quiet=True)
### END HIDDEN TESTS
checks.passed("data and model for CrossEntropyLoss")

# %% [markdown] nbgrader={"grade": false, "grade_id": "classify-run-md", "locked": true, "schema_version": 3, "solution": false}
# Training your classifier with your `sgd_step` (full batch, `lr = 0.5`). Next to it, a copy of
# it, from the same start, trained with **softmax applied before the loss**: it still runs, no error,
# but the loss cannot go below a floor (the loss applies its own softmax to probabilities in
# $[0, 1]$, so the best it can reach is $-\log\frac{e^1}{e^1 + 2e^0} \approx 0.55$) and the
# gradients are squashed, so it learns more slowly. The right panel shows the regions your classifier assigns to each class.

# %% nbgrader={"grade": false, "grade_id": "classify-run", "locked": true, "schema_version": 3, "solution": false}
cls_steps = budget(full=1000, fast=200)
ce_loss = nn.CrossEntropyLoss()


def train_classifier(model, softmax_first=False, lr=0.5):
    losses, accs = [], []
    for _ in tqdm(range(cls_steps), desc="softmax first" if softmax_first else "logits", leave=False):
        scores = model(x_cls)
        loss = ce_loss(scores.softmax(dim=1) if softmax_first else scores, y_cls)
        losses.append(loss.item())
        accs.append((scores.argmax(dim=1) == y_cls).float().mean().item())
        loss.backward()
        sgd_step(model, lr)
    return losses, accs


with checks.explain_errors("training the classifier"):
    softmax_copy = copy.deepcopy(classifier)  # same start, trained with the bug
    good_losses, good_accs = train_classifier(classifier)
    soft_losses, soft_accs = train_classifier(softmax_copy, softmax_first=True)

fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
axes[0].plot(good_losses, label="logits into the loss")
axes[0].plot(soft_losses, label="softmax first (bug)")
axes[0].set(xlabel="step", ylabel="cross-entropy", title="loss")
axes[0].legend()
axes[1].plot(good_accs, label="logits into the loss")
axes[1].plot(soft_accs, label="softmax first (bug)")
axes[1].set(xlabel="step", ylabel="training accuracy", title="accuracy", ylim=(0, 1.02))
axes[1].legend()
classifier.eval()
with torch.no_grad():
    gx, gy = torch.meshgrid(torch.linspace(-1.1, 1.1, 200), torch.linspace(-1.1, 1.1, 200), indexing="xy")
    grid_points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1).to(device)
    regions = classifier(grid_points).argmax(dim=1).reshape(200, 200).cpu()
axes[2].contourf(gx, gy, regions, levels=[-0.5, 0.5, 1.5, 2.5], cmap="Pastel1", alpha=0.9)
axes[2].scatter(features_np[:, 0], features_np[:, 1], c=labels_np, cmap="Set1", s=8, vmin=0, vmax=8)
axes[2].set(title=f"your classifier: training accuracy {good_accs[-1]:.0%}", aspect="equal", xticks=[], yticks=[])
plt.tight_layout()
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "init-md", "locked": true, "schema_version": 3, "solution": false}
# ## 6 · Weight initialisation, `children()` and `modules()`
#
# `nn.Linear` initialises itself with a uniform distribution scaled by $1/\sqrt{\text{fan\_in}}$.
# For deep ReLU networks, He (Kaiming) initialisation keeps the size of the activations
# constant from layer to layer: weights from $\mathcal N(0, 2/\text{fan\_in})$ (a ReLU zeroes half
# of its inputs, the factor 2 makes up for it). The functions in `nn.init` fill a tensor
# **in place** (their names end in `_`): `nn.init.kaiming_normal_(w, nonlinearity="relu")`,
# `nn.init.zeros_(b)`, `nn.init.xavier_uniform_(w)`, ...
#
# To reach every layer of a model, walk it: `model.children()` yields the **direct**
# submodules only, `model.modules()` yields the model itself and every submodule at every
# depth. `model.apply(fn)` calls `fn` on each of `modules()`.

# %% nbgrader={"grade": false, "grade_id": "init-demo", "locked": true, "schema_version": 3, "solution": false}
nested = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.ReLU()), nn.Linear(8, 1))
print("children():", [type(m).__name__ for m in nested.children()])
print("modules(): ", [type(m).__name__ for m in nested.modules()])

# %% [markdown] nbgrader={"grade": false, "grade_id": "init-ex-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 5 · Kaiming initialisation for every linear layer (2 points)
#
# Write `init_linear_layers(model)`: for **every** `nn.Linear` anywhere inside `model` (nested
# containers included), fill the weight with `nn.init.kaiming_normal_(..., nonlinearity="relu")`
# and set the bias, if the layer has one, to zero. Change the existing parameters in place
# (the model keeps the same `nn.Parameter` objects); leave other kinds of modules alone.

# %% nbgrader={"grade": false, "grade_id": "init", "locked": false, "schema_version": 3, "solution": true}
def init_linear_layers(model):
    """Kaiming-normal weights and zero biases for every nn.Linear inside model, in place."""
    ### BEGIN SOLUTION
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "init-check", "locked": true, "schema_version": 3, "solution": false}
torch.manual_seed(4)
wide = nn.Sequential(nn.Linear(400, 300), nn.ReLU(), nn.Sequential(nn.Linear(300, 300), nn.ReLU()),
                     nn.Linear(300, 10, bias=False))  # the last layer has no bias
ids_before = [id(p) for p in wide.parameters()]
with checks.explain_errors("init_linear_layers"):
    try:
        init_linear_layers(wide)
    except (AttributeError, TypeError) as err:
        if "NoneType" not in str(err):
            raise
        checks.check_true(
            "a layer without bias", False,
            f"init_linear_layers raised {type(err).__name__} ({err}) on a Linear layer made with bias=False, "
            "whose `.bias` is None: set the bias only where the layer has one.",
        )
inner = wide[2][0]
checks.check_true("biases zero", bool((wide[0].bias == 0).all()),
                  "the first Linear's bias is not zero: set every Linear's bias to zero (`nn.init.zeros_`).")
checks.check_true(
    "nested layer initialised", bool((inner.bias == 0).all()),
    "the Linear inside the nested nn.Sequential still has its default bias: `children()` only yields "
    "direct submodules. Walk the model with `modules()` (or `model.apply`).",
)
for label, lin in [("first layer", wide[0]), ("nested layer", inner)]:
    std = lin.weight.std().item()
    expected_std = (2 / lin.in_features) ** 0.5
    checks.check_close(
        f"weight std of the {label}", std, expected_std, rtol=0.05,
        mistakes={"Xavier/Glorot scaling instead of Kaiming: sqrt(2 / (fan_in + fan_out))":
                      (2 / (lin.in_features + lin.out_features)) ** 0.5,
                  "mode='fan_out': the std is scaled by the number of outputs, not of inputs":
                      (2 / lin.out_features) ** 0.5,
                  "PyTorch's default init: the layer was not initialised": lin.in_features ** -0.5 / 3 ** 0.5},
        hint="kaiming_normal_ with nonlinearity='relu' gives std sqrt(2 / fan_in).",
    )
checks.check_true("parameters changed in place", [id(p) for p in wide.parameters()] == ids_before,
                  "the model holds new parameter objects: fill the existing ones with the `nn.init.*_` functions.")

# %% [markdown] nbgrader={"grade": false, "grade_id": "init-plot-md", "locked": true, "schema_version": 3, "solution": false}
# Why it matters: the spread (standard deviation) of the activations through 20 ReLU layers
# of width 256, for a batch of standard-normal inputs. With weights that are too small the
# signal dies out layer by layer; too large and it explodes; Kaiming keeps it steady.

# %% nbgrader={"grade": false, "grade_id": "init-plot", "locked": true, "schema_version": 3, "solution": false}
def activation_stds(model, x):
    stds = []
    with torch.no_grad():
        for module in model:
            x = module(x)
            if isinstance(module, nn.ReLU):
                stds.append(x.std().item())
    return stds


torch.manual_seed(0)
deep = nn.Sequential(*[m for _ in range(20) for m in (nn.Linear(256, 256), nn.ReLU())]).to(device)
x_deep = torch.randn(512, 256, device=device)
curves = {}
for label, std in [("N(0, 0.01^2): too small", 0.01), ("N(0, 0.2^2): too large", 0.2)]:
    for m in deep.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            nn.init.zeros_(m.bias)
    curves[label] = activation_stds(deep, x_deep)
with checks.explain_errors("init_linear_layers"):
    init_linear_layers(deep)
curves["Kaiming (yours)"] = activation_stds(deep, x_deep)
fig, ax = plt.subplots(figsize=(6, 3.5))
for label, stds in curves.items():
    ax.semilogy(range(1, 21), stds, marker=".", label=label)
ax.set(xlabel="layer", ylabel="std of the activations (log scale)", title="Initialisation and signal size")
ax.legend()
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test-init", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: init_linear_layers (hidden tests: deeper nesting, layers without bias, other modules untouched).
def _nested_linear():
    # Runs in the kernel when graded: a Linear layer inside a nested nn.Sequential.
    torch.manual_seed(0)
    return nn.Sequential(nn.Sequential(nn.Linear(3, 3)))


def _parameters(model):
    # Runs where the model lives: its parameters by name (as data when graded: values and identity).
    return dict(model.named_parameters())


_m = checks.run_in_kernel(_nested_linear)
init_linear_layers(_m)
assert bool((checks.run_in_kernel(_parameters, _m)["0.0.bias"] == 0).all()), "nested Linear layers must be initialised too"
### BEGIN HIDDEN TESTS
def _mixed_model():
    # Runs in the kernel: Linear layers at several depths (one without bias) among other modules.
    torch.manual_seed(8)
    model = nn.Sequential(
        nn.Linear(500, 400, bias=False), nn.LayerNorm(400), nn.ReLU(),
        nn.ModuleList([nn.Sequential(nn.Linear(400, 200)), nn.Conv1d(2, 2, 3)]),
        nn.Sequential(nn.Sequential(nn.Linear(200, 600))),
    )
    nn.init.constant_(model[1].weight, 3.0)
    return model


_m = checks.run_in_kernel(_mixed_model)
_params_before = checks.run_in_kernel(_parameters, _m)
_ids = {_n: id(_p) for _n, _p in _params_before.items()}
_conv_before = _params_before["3.1.weight"].detach().clone()
init_linear_layers(_m)
_params = checks.run_in_kernel(_parameters, _m)
assert {_n: id(_p) for _n, _p in _params.items()} == _ids, "parameters must be changed in place"
for _name, _fan_in in [("0", 500), ("3.0.0", 400), ("4.0.0", 200)]:
    _w, _bias = _params[_name + ".weight"], _params.get(_name + ".bias")
    checks.check_close("hidden std", _w.std().item(), (2 / _fan_in) ** 0.5, rtol=0.05, quiet=True)
    assert abs(_w.mean().item()) < 0.01, "weights should have mean 0"
    assert _bias is None or bool((_bias == 0).all()), "biases must be zero"
assert bool((_params["1.weight"] == 3.0).all()), "other modules (LayerNorm) must be left alone"
assert torch.equal(_params["3.1.weight"].detach(), _conv_before), "other modules (Conv1d) must be left alone"
### END HIDDEN TESTS
checks.passed("init_linear_layers")

# %% [markdown] nbgrader={"grade": false, "grade_id": "recap", "locked": true, "schema_version": 3, "solution": false}
# ## Recap
#
# * `nn.Linear(in, out)` holds `weight` of shape `(out, in)` and `bias`; `nn.Sequential` chains
#   modules; `parameters()` / `named_parameters()` list what will be trained.
# * The functional style (`F.linear`, `F.relu`, `F.cross_entropy`) computes the same thing with
#   the parameters passed explicitly.
# * `nn.MSELoss(reduction="sum")` is notebook 01's loss; `nn.CrossEntropyLoss` wants raw scores
#   and int64 class indices, and applies log-softmax itself.
# * Update parameters in place (`param -= lr * param.grad` under `torch.no_grad()`), then clear
#   the gradients. A perfectly flat loss usually means the parameters never changed.
# * `nn.init.*_` functions initialise in place; `modules()` reaches nested layers, `children()` does not.
#
# **Classic mistakes met here:** `param = param - lr * param.grad` (the flat loss); softmax
# before `CrossEntropyLoss`; float labels for the loss; an activation after the output layer;
# `x @ weight` instead of `x @ weight.T` with `nn.Linear`'s layout; initialising only `children()`.
#
# **Further exercises** (not graded): replace `sgd_step` by `torch.optim.SGD` (notebook 05) and
# check that the losses are identical; train the spiral classifier with `nn.Tanh` and compare the
# decision regions; use `nn.NLLLoss` after `log_softmax` and check it equals `CrossEntropyLoss`.
