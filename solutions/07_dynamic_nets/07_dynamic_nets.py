# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false}
# # 07 · Dynamic networks: control flow and weight sharing
#
# PyTorch builds the computation graph *while* your code runs ("define by run"). So a
# `forward` can use ordinary Python: an `if`, a loop whose length changes from call to
# call, one layer used several times. Autograd records whatever actually happened in
# that call and differentiates exactly that.
#
# You will build `DynamicNet`, whose depth is drawn at random on every forward pass and
# whose hidden layers are all **one shared** `nn.Linear`, then look inside its gradient.
#
# **Learning goals**
# 1. Write a `forward` with data-independent control flow (a random number of layers)
#    and reuse one module several times (weight sharing).
# 2. Make randomness inside a model reproducible with a `torch.Generator`, and controllable
#    with an explicit argument, so that tests and experiments can replay it.
# 3. Explain and verify that a shared parameter's gradient is the **sum** of the
#    contributions of its uses, using forward hooks and `torch.autograd.grad`.
# 4. Train such a model and read its loss curve.
#
# Every exercise has a **self-check** you can run as often as you like, and a graded
# cell (with hidden tests on other sizes, seeds and depths) that the autograder runs.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup-md", "locked": true, "schema_version": 3, "solution": false}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from course_utils import budget, checks, setup

config = setup(seed=0)
device = config.device

# %% [markdown] nbgrader={"grade": false, "grade_id": "dynamic-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 1 · `DynamicNet` (2 + 1 points)
#
# `DynamicNet(D_in, H, D_out, max_depth=3, seed=0)` has exactly three layers, with these
# attribute names (the tests use them):
#
# * `input_linear = nn.Linear(D_in, H)`,
# * `middle_linear = nn.Linear(H, H)`, the **shared** hidden layer,
# * `output_linear = nn.Linear(H, D_out)`.
#
# `forward(x, depth=None)` computes
# `h = relu(input_linear(x))`, then `depth` times `h = relu(middle_linear(h))`, and returns
# `output_linear(h)`. With `depth=0` the middle layer is skipped altogether.
#
# When `depth` is `None`, draw it uniformly from $\{0, 1, \dots, \text{max\_depth}\}$ with
# the model's own generator: `torch.randint(low, high, (1,), generator=self.generator)`
# (note that `high` is *exclusive*). A private generator makes the depths reproducible:
# two models built with the same `seed` draw the same sequence, whatever else uses the
# global random state in between. `random.randint` or a `torch.randint` without
# `generator=` would tie the depths to the global state. Store the depth used (drawn or
# given) in `self.last_depth`, as a Python `int`.
#
# The same `nn.Linear` object is called up to `max_depth` times: that is weight sharing.
# A `ModuleList` of `max_depth` separate layers would be a different model with 3× the
# hidden parameters.

# %% nbgrader={"grade": false, "grade_id": "dynamic", "locked": false, "schema_version": 3, "solution": true}
class DynamicNet(nn.Module):
    """input_linear -> ReLU -> (shared middle_linear -> ReLU) x depth -> output_linear."""

    def __init__(self, D_in, H, D_out, max_depth=3, seed=0):
        super().__init__()
        self.max_depth = max_depth
        self.generator = torch.Generator().manual_seed(seed)  # the model's own source of depths
        self.last_depth = None
        ### BEGIN SOLUTION
        self.input_linear = nn.Linear(D_in, H)
        self.middle_linear = nn.Linear(H, H)
        self.output_linear = nn.Linear(H, D_out)
        ### END SOLUTION

    def forward(self, x, depth=None):
        ### BEGIN SOLUTION
        if depth is None:
            depth = int(torch.randint(0, self.max_depth + 1, (1,), generator=self.generator))
        self.last_depth = depth
        h = F.relu(self.input_linear(x))
        for _ in range(depth):
            h = F.relu(self.middle_linear(h))
        return self.output_linear(h)
        ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "dynamic-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check: the forward pass.** The parameter count must be that of three layers, and the
# output for each explicit depth is recomputed from the net's own layers.

# %% nbgrader={"grade": false, "grade_id": "dynamic-check", "locked": true, "schema_version": 3, "solution": false}
torch.manual_seed(0)
with checks.explain_errors("DynamicNet"):
    net = DynamicNet(5, 8, 2, seed=3).to(device)
x_demo = torch.randn(4, 5, device=device)
n_params = sum(p.numel() for p in net.parameters())
checks.check_true("parameter count", n_params == 5 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2,
                  f"expected {5 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2} parameters (three layers), got {n_params}. "
                  "One shared middle_linear, not one layer per depth.")


def recomputed(depth, relu_in=True, relu_middle=True):
    """The output at `depth`, from the net's own layers (optionally without one of the ReLUs)."""
    h = net.input_linear(x_demo)
    h = F.relu(h) if relu_in else h
    for _ in range(depth):
        h = net.middle_linear(h)
        h = F.relu(h) if relu_middle else h
    return net.output_linear(h)


for depth in range(4):
    with checks.explain_errors(f"DynamicNet forward at depth {depth}"):
        out = net(x_demo, depth=depth)
    checks.check_true(
        f"last_depth at depth {depth}", net.last_depth == depth,
        f"after net(x, depth={depth}) last_depth should be {depth}, got {net.last_depth!r}."
        + (" `if not depth:` (or `depth or ...`) treats depth=0 like None and draws a depth: test "
           "`if depth is None:`." if depth == 0 and net.last_depth not in (None, 0) else ""), quiet=True)
    wrong = {"the ReLU after input_linear is missing": recomputed(depth, relu_in=False),
             "the ReLU after middle_linear is missing": recomputed(depth, relu_middle=False),
             "off by one: the shared layer ran depth + 1 times": recomputed(depth + 1)}
    if depth > 0:
        wrong["off by one: the shared layer ran depth - 1 times"] = recomputed(depth - 1)
    checks.check_close(f"output at depth {depth}", out, recomputed(depth), rtol=1e-5, atol=1e-6, quiet=True,
                       mistakes=wrong)
checks.passed("forward at depths 0-3")

# %% nbgrader={"grade": true, "grade_id": "test-dynamic-forward", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: DynamicNet's layers and forward pass at explicit depths (hidden tests: other
# sizes, max_depth, depths beyond 3).
checks.check_close("depth 0", net(x_demo, depth=0), net.output_linear(torch.relu(net.input_linear(x_demo))),
                   rtol=1e-5, atol=1e-6, quiet=True)
### BEGIN HIDDEN TESTS
def _named_layers(net):
    """(weight, bias) of input_linear, middle_linear and output_linear (None where one is not an nn.Linear)."""
    layers = [getattr(net, name, None) for name in ("input_linear", "middle_linear", "output_linear")]
    return [(m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
            if isinstance(m, nn.Linear) else None for m in layers]


def _build(cls, torch_seed, *args, **kwargs):
    """cls(*args, **kwargs), built after torch.manual_seed(torch_seed) where the student's code runs."""
    torch.manual_seed(torch_seed)
    return cls(*args, **kwargs)


def _linear_shapes(net):
    """The weight shape of every registered nn.Linear, and the number of scalars of each parameter."""
    return [tuple(m.weight.shape) for m in net.modules() if isinstance(m, nn.Linear)], \
        [p.numel() for p in net.parameters()]


for _sizes, _max in [((3, 6, 1), 3), ((7, 4, 5), 5)]:
    _d_in, _h, _d_out = _sizes
    _net = checks.run_in_kernel(_build, DynamicNet, sum(_sizes), *_sizes, max_depth=_max, seed=3)
    _shapes, _numels = checks.run_in_kernel(_linear_shapes, _net)
    assert len(_shapes) == 3, "expected exactly 3 nn.Linear layers"
    _layers = checks.run_in_kernel(_named_layers, _net)
    assert None not in _layers, "input_linear, middle_linear and output_linear should be nn.Linear layers"
    (_w_in, _b_in), (_w_mid, _b_mid), (_w_out, _b_out) = _layers
    assert tuple(_w_mid.shape) == (_h, _h), "middle_linear should be Linear(H, H)"
    assert sum(_numels) == _d_in * _h + _h + _h * _h + _h + _h * _d_out + _d_out, "wrong parameter count"
    torch.manual_seed(sum(_sizes))
    _x = torch.randn(6, _d_in)
    _linear = torch.nn.functional.linear
    for _depth in range(_max + 2):
        _hh = torch.relu(_linear(_x, _w_in, _b_in))
        for _ in range(_depth):
            _hh = torch.relu(_linear(_hh, _w_mid, _b_mid))
        checks.check_close("hidden output at an explicit depth", _net(_x, depth=_depth), _linear(_hh, _w_out, _b_out),
                           rtol=1e-5, atol=1e-6, quiet=True)
        assert _net.last_depth == _depth, "last_depth should record the depth used"
### END HIDDEN TESTS
checks.passed("DynamicNet forward")

# %% [markdown] nbgrader={"grade": false, "grade_id": "depth-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check: random depths.** 400 draws must cover 0 to 3 about equally often, and a
# second net with the same seed must replay them exactly, although the global random
# state has changed in between.

# %% nbgrader={"grade": false, "grade_id": "depth-check", "locked": true, "schema_version": 3, "solution": false}
draws = []
with checks.explain_errors("DynamicNet forward at a random depth"):
    for _ in range(400):
        net(x_demo)
        draws.append(net.last_depth)
checks.check_true("last_depth is an int", all(isinstance(d, int) for d in draws),
                  f"last_depth is a {type(draws[-1]).__name__}, not a Python int: convert the drawn tensor "
                  "with int(...) or .item() before storing it.")
counts = np.bincount(draws, minlength=4)
checks.check_true("depth range", set(draws) <= {0, 1, 2, 3} and len(counts) == 4,
                  f"depths must lie in 0..3, got values {sorted(set(draws))}.")
checks.check_true("every depth occurs", counts.min() > 50,
                  f"depth counts over 400 draws: {counts.tolist()}. Each of 0..3 should occur about 100 "
                  "times. Is the upper bound of torch.randint exclusive in your call (max_depth + 1)?")
torch.manual_seed(12345)  # the global state changes: the model's own generator must not care
replayed = []
with checks.explain_errors("DynamicNet forward at a random depth"):
    replay = DynamicNet(5, 8, 2, seed=3).to(device)
    for _ in range(400):
        replay(x_demo)
        replayed.append(replay.last_depth)
checks.check_true("reproducible depths", replayed == draws,
                  "a second net with the same seed drew different depths. Draw with "
                  "generator=self.generator, not random.randint or the global torch RNG.")

# %% nbgrader={"grade": true, "grade_id": "test-dynamic-depth", "locked": true, "points": 1, "schema_version": 3, "solution": false}
# Graded: random depths: range 0..max_depth, reproducible from the seed alone (hidden
# tests: other seeds and max_depth values).
_n1, _n2, _x1 = DynamicNet(2, 3, 1, seed=4), DynamicNet(2, 3, 1, seed=4), torch.zeros(1, 2)
_d1 = [(_n1(_x1), _n1.last_depth)[1] for _ in range(50)]
assert _d1 == [(_n2(_x1), _n2.last_depth)[1] for _ in range(50)], "depths not reproducible"
### BEGIN HIDDEN TESTS
def _depths_after_global_seed(cls, global_seed, x, calls, *args, **kwargs):
    """Seed every global random state, build cls(*args, **kwargs), then its last_depth after each call."""
    import random

    torch.manual_seed(global_seed)
    np.random.seed(global_seed)
    random.seed(global_seed)
    net = cls(*args, **kwargs)
    seen = []
    for _ in range(calls):
        net(x)
        seen.append(net.last_depth)
    return seen


for _seed, _max in [(7, 3), (99, 1), (5, 6)]:
    _x = torch.randn(2, 3)
    _seqs = [checks.run_in_kernel(_depths_after_global_seed, DynamicNet, _global, _x, 300, 3, 4, 1,
                                  max_depth=_max, seed=_seed) for _global in (0, 4242)]
    assert all(isinstance(_d, int) for _seq in _seqs for _d in _seq), "last_depth should be a Python int"
    assert _seqs[0] == _seqs[1], "the depths depend on the global random state, not only on the seed"
    assert set(_seqs[0]) == set(range(_max + 1)), "the depths should cover 0..max_depth"
### END HIDDEN TESTS
checks.passed("random depth")

# %% [markdown] nbgrader={"grade": false, "grade_id": "grad-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 2 · The gradient of a shared layer is a sum (3 points)
#
# At depth 3 the graph holds three *uses* of `middle_linear`, three separate nodes that all
# point to the same `weight` tensor $W$. During `backward()` each node computes its own
# contribution to $\partial L/\partial W$, and autograd **adds** them into `W.grad`, just
# as it adds the gradients of successive `backward()` calls (the reason for `zero_grad`).
#
# What is the contribution of one use? Use $k$ computes $z_k = a_k W^\top + b$ from its
# input $a_k$ (shape $N \times H$). If $g_k = \partial L / \partial z_k$ is the gradient
# that reaches its output, the contribution to the weight's gradient is
#
# $$\frac{\partial L}{\partial W}\Big|_{\text{use } k} = g_k^\top a_k ,
# \qquad\text{and}\qquad \frac{\partial L}{\partial W} = \sum_k g_k^\top a_k .$$
#
# Implement `per_use_grads(model, x, y, loss_fn, depth)`: the list of the `depth`
# contributions, in the order of use (an empty list for depth 0). A recipe:
#
# 1. register a **forward hook** on `model.middle_linear`:
#    `handle = model.middle_linear.register_forward_hook(hook)`, where
#    `hook(module, args, output)` runs after every call of the layer and can append its
#    input `args[0]` and its `output` to lists;
# 2. compute the loss with `model(x, depth=depth)`, then remove the hook (`handle.remove()`,
#    best in a `finally:` so that a failure does not leave it attached);
# 3. `torch.autograd.grad(loss, outputs)` returns the $g_k$ for all outputs at once,
#    without touching any `.grad`;
# 4. return $g_k^\top a_k$ for each use, detached from the graph.

# %% nbgrader={"grade": false, "grade_id": "per-use", "locked": false, "schema_version": 3, "solution": true}
def per_use_grads(model, x, y, loss_fn, depth):
    """Contribution of each use of model.middle_linear to the gradient of its weight."""
    ### BEGIN SOLUTION
    inputs, outputs = [], []

    def save(module, args, output):
        inputs.append(args[0])
        outputs.append(output)

    handle = model.middle_linear.register_forward_hook(save)
    try:
        loss = loss_fn(model(x, depth=depth), y)
    finally:
        handle.remove()
    if not outputs:
        return []
    grad_outputs = torch.autograd.grad(loss, outputs)
    with torch.no_grad():
        return [g.T @ a for g, a in zip(grad_outputs, inputs, strict=True)]
    ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "grad-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** First a stand-in model whose gradients can be worked out by hand: its
# forward applies `middle_linear` `depth` times to `x` and nothing else, and the loss is
# `(out * y).sum()`, so the gradient reaching the last output is $y$. At depth 1 the only
# contribution is $y^\top x$. At depth 2 the second use sees $a_2 = z_1 = x W^\top + b$ and
# $g_2 = y$, the first sees $a_1 = x$ and $g_1 = y W$.
#
# Then `DynamicNet` at depths 0 to 3: the number of contributions, their sum against the
# `.grad` that an ordinary `backward()` leaves on the shared weight, and that the
# contributions really differ from use to use. The hook must be gone afterwards.

# %% nbgrader={"grade": false, "grade_id": "grad-check", "locked": true, "schema_version": 3, "solution": false}
class Chain(nn.Module):
    """A stand-in with one shared layer: forward applies middle_linear `depth` times to x."""

    def __init__(self):
        super().__init__()
        self.middle_linear = nn.Linear(3, 3)

    def forward(self, x, depth):
        for _ in range(depth):
            x = self.middle_linear(x)
        return x


def dot_loss(out, y):
    """sum(out * y): its gradient with respect to out is y."""
    return (out * y).sum()


def count_of(parts):
    return None if parts is None else len(parts)


torch.manual_seed(2)
chain = Chain().to(device)
x_c, y_c = torch.randn(4, 3, device=device), torch.randn(4, 3, device=device)
W_c, b_c = chain.middle_linear.weight.detach(), chain.middle_linear.bias.detach()
z_c = x_c @ W_c.T + b_c  # the output of the first use
with checks.explain_errors("per_use_grads on the stand-in, depth 1"):
    one = per_use_grads(chain, x_c, y_c, dot_loss, 1)
checks.check_true("hook removed", not chain.middle_linear._forward_hooks,
                  "the forward hook is still attached to middle_linear: keep the handle that "
                  "register_forward_hook returns and call handle.remove() (in a `finally:`).", quiet=True)
checks.check_true("one contribution at depth 1", count_of(one) == 1,
                  f"expected a list of 1 contribution, got {count_of(one)!r} (a `return` missing?).", quiet=True)
checks.check_close("contribution at depth 1: y^T x", one[0], y_c.T @ x_c, rtol=1e-4, atol=1e-6,
                   mistakes={"the use's OUTPUT instead of its input: g^T z, not g^T a": y_c.T @ z_c,
                             "transposed: a^T g instead of g^T a (the weight has shape (out, in))": x_c.T @ y_c})
with checks.explain_errors("per_use_grads on the stand-in, depth 2"):
    two = per_use_grads(chain, x_c, y_c, dot_loss, 2)
checks.check_true("two contributions at depth 2", count_of(two) == 2,
                  f"expected a list of 2 contributions, got {count_of(two)!r}.", quiet=True)
first_use, second_use = (y_c @ W_c).T @ x_c, y_c.T @ z_c
checks.check_close(
    "contributions at depth 2, in the order of use", torch.stack(list(two)), torch.stack([first_use, second_use]),
    rtol=1e-4, atol=1e-6,
    mistakes={"the contributions are in reverse order: the first use comes first":
                  torch.stack([second_use, first_use]),
              "all contributions are the total gradient divided by the depth: each use sees its own input "
              "a_k and its own output gradient g_k": torch.stack([(first_use + second_use) / 2] * 2),
              "the uses' OUTPUTS instead of their inputs: g^T z, not g^T a":
                  torch.stack([(y_c @ W_c).T @ z_c, y_c.T @ (z_c @ W_c.T + b_c)])})

torch.manual_seed(1)
with checks.explain_errors("DynamicNet"):
    grad_net = DynamicNet(5, 8, 2).to(device)
x_g, y_g = torch.randn(16, 5, device=device), torch.randn(16, 2, device=device)
mse = nn.MSELoss()
for depth in range(4):
    grad_net.zero_grad()
    mse(grad_net(x_g, depth=depth), y_g).backward()
    total = grad_net.middle_linear.weight.grad
    total = None if total is None else total.clone()  # per_use_grads may call backward() too
    try:
        with checks.explain_errors(f"per_use_grads at depth {depth}"):
            parts = per_use_grads(grad_net, x_g, y_g, mse, depth)
    except RuntimeError as err:
        if depth == 0 and "cannot be empty" in str(err):
            raise checks.CheckError(
                "per_use_grads at depth 0: torch.autograd.grad was called with no outputs to differentiate. "
                "At depth 0 the shared layer is never used: return an empty list when the hook saw no call."
            ) from None
        raise
    checks.check_true(f"number of contributions at depth {depth}", count_of(parts) == depth,
                      f"expected {depth} contributions (one per use), got {count_of(parts)!r}.", quiet=True)
    checks.check_true("hook removed", not grad_net.middle_linear._forward_hooks,
                      "the forward hook is still attached to middle_linear: call handle.remove().",
                      quiet=True)
    if depth == 0:
        checks.check_true("no use, no gradient", total is None,
                          "at depth 0 the shared layer is never used, so backward leaves its .grad as None.")
        continue
    checks.check_close(f"sum of the contributions at depth {depth}", sum(parts), total, rtol=1e-4, atol=1e-6,
                       hint="each contribution is g_k^T a_k, with a_k the INPUT of use k (not its output) "
                            "and g_k the gradient that reaches the output of use k.")
    if depth > 1:
        spread = max(float((p - parts[0]).abs().max()) for p in parts[1:])
        checks.check_true(f"contributions differ at depth {depth}", spread > 1e-6,
                          "all contributions are identical: did you divide the total gradient by the depth? "
                          "Each use sees a different input a_k and a different output gradient g_k.")
checks.passed("the shared gradient is the sum of its uses")

# %% nbgrader={"grade": true, "grade_id": "test-per-use", "locked": true, "points": 3, "schema_version": 3, "solution": false}
# Graded: per_use_grads, tested on a reference DynamicNet (so a mistake in exercise 1
# costs points only there) against an independent method: one separate copy of the
# weight per use (hidden tests: other sizes, depths up to 5, a bias-free check).
assert callable(per_use_grads), "per_use_grads should be a function"
### BEGIN HIDDEN TESTS
def _reference_net(seed, d_in, h, d_out):
    """A reference DynamicNet in float64 built from a seed, and a loss, where the student's code runs."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_linear = nn.Linear(d_in, h)
            self.middle_linear = nn.Linear(h, h)
            self.output_linear = nn.Linear(h, d_out)

        def forward(self, x, depth):
            a = torch.relu(self.input_linear(x))
            for _ in range(depth):
                a = torch.relu(self.middle_linear(a))
            return self.output_linear(a)

    torch.manual_seed(seed)
    return Net().double(), nn.SmoothL1Loss()


def _weights_and_hooks(net):
    """The net's parameters by name, and the number of forward hooks left on middle_linear."""
    return ({name: p.detach().clone() for name, p in net.named_parameters()},
            len(net.middle_linear._forward_hooks))


def _copies_per_use(weights, x, y, loss_fn, depth):
    """The per-use gradients, computed with one separate copy of the shared weight per use."""
    linear = torch.nn.functional.linear
    copies = [weights["middle_linear.weight"].clone().requires_grad_() for _ in range(depth)]
    a = torch.relu(linear(x, weights["input_linear.weight"], weights["input_linear.bias"]))
    for w in copies:
        a = torch.relu(linear(a, w, weights["middle_linear.bias"]))
    loss = loss_fn(linear(a, weights["output_linear.weight"], weights["output_linear.bias"]), y)
    return list(torch.autograd.grad(loss, copies)) if depth else []


for _seed, (_d_in, _h, _d_out, _n) in [(3, (4, 6, 3, 10)), (4, (2, 9, 1, 7))]:
    _net, _lf = checks.run_in_kernel(_reference_net, _seed, _d_in, _h, _d_out)
    torch.manual_seed(_seed)
    _x, _y = torch.randn(_n, _d_in, dtype=torch.float64), torch.randn(_n, _d_out, dtype=torch.float64)
    for _depth in range(6):
        _got = per_use_grads(_net, _x, _y, _lf, _depth)
        _weights, _hooks = checks.run_in_kernel(_weights_and_hooks, _net)
        _want = _copies_per_use(_weights, _x, _y, torch.nn.SmoothL1Loss(), _depth)
        assert len(_got) == _depth, "expected one contribution per use of the shared layer"
        assert _hooks == 0, "the forward hook was not removed"
        for _g, _w in zip(_got, _want):
            checks.check_close("hidden contribution", _g, _w, rtol=1e-7, atol=1e-10, quiet=True)
### END HIDDEN TESTS
checks.passed("per-use gradients")

# %% [markdown] nbgrader={"grade": false, "grade_id": "train-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 3 · Training with a random depth (2 points)
#
# The task: learn $y = \sin(2x_1)\cos(x_2)$ on the square $[-2, 2]^2$ from 256 points. The
# net draws a new depth on every step, so the shared layer has to be useful whether it is
# applied zero, one, two or three times.
#
# Implement `train_dynamic(model, x, y, loss_fn, optimizer, num_steps)`: `num_steps`
# ordinary optimisation steps on the whole batch (`zero_grad -> forward -> backward -> step`,
# as in notebook 05: clear the gradients at the start of every step, since the model may
# hold leftover gradients from earlier code), each with a fresh random depth (call
# `model(x)` without `depth`). Return two lists: the loss of each step (a float) and the
# depth each step used (`model.last_depth`, read after the forward pass). Wrap the range in
# `tqdm(...)` for a progress bar.

# %% nbgrader={"grade": false, "grade_id": "train", "locked": false, "schema_version": 3, "solution": true}
def train_dynamic(model, x, y, loss_fn, optimizer, num_steps):
    """Train with a random depth per step; returns (losses, depths)."""
    losses, depths = [], []
    ### BEGIN SOLUTION
    for _ in tqdm(range(num_steps), desc="training", leave=False):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        depths.append(model.last_depth)
    ### END SOLUTION
    return losses, depths


# %% nbgrader={"grade": false, "grade_id": "train-run", "locked": true, "schema_version": 3, "solution": false}
data_gen = torch.Generator().manual_seed(0)
x_train = (torch.rand(256, 2, generator=data_gen) * 4 - 2).to(device)
y_train = torch.sin(2 * x_train[:, :1]) * torch.cos(x_train[:, 1:])
torch.manual_seed(config.seed)
with checks.explain_errors("train_dynamic"):
    model = DynamicNet(2, 32, 1, seed=config.seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)  # after the move (notebook 05)
    num_steps = budget(full=1500, fast=100)
    losses, depths = train_dynamic(model, x_train, y_train, nn.MSELoss(), optimizer, num_steps)

model.eval()
with torch.no_grad():
    loss_at_depth = [F.mse_loss(model(x_train, depth=d), y_train).item() for d in range(4)]

fig, (ax_loss, ax_hist, ax_depth) = plt.subplots(1, 3, figsize=(13, 3.5))
steps = np.arange(len(losses))
points = ax_loss.scatter(steps, losses, c=depths, cmap="viridis", s=6, vmin=0, vmax=3)
ax_loss.set(yscale="log", xlabel="step", ylabel="training MSE (log scale)", title="Loss per step, coloured by depth")
fig.colorbar(points, ax=ax_loss, ticks=range(4), label="depth")
ax_hist.bar(range(4), np.bincount(depths, minlength=4))
ax_hist.set(xticks=range(4), xlabel="depth", ylabel="steps", title="Depth drawn per step")
ax_depth.bar(range(4), loss_at_depth, color="tab:green")
ax_depth.set(xticks=range(4), xlabel="depth (fixed)", ylabel="MSE after training", title="Trained net at each depth")
plt.tight_layout()
plt.show()
print(f"loss {losses[0]:.3f} -> {losses[-1]:.4f} (target variance {y_train.var().item():.3f}); "
      f"depths drawn: {np.bincount(depths, minlength=4).tolist()}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "train-read-md", "locked": true, "schema_version": 3, "solution": false}
# **Reading the plots.** The loss is not one curve but a band per depth: every step is
# scored at the depth it drew. Depth 0 is a net with a single hidden layer and cannot fit
# the target as well, so its points stay above the others; depths 1 to 3 all use the same
# shared layer, and they end up close together. The depths are drawn uniformly, so the
# histogram is flat up to chance.

# %% [markdown] nbgrader={"grade": false, "grade_id": "train-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** First on a stand-in model whose steps we can predict: one linear layer
# that reports the depths 0, 1, 2, ... call after call, trained with plain SGD. As in
# notebook 05, the gradient before each step is computed on a copy, so we know where the
# weights must land; the third step starts with leftover gradients in `.grad`. Then the
# run above: one loss and one depth per step, depths that vary, a loss that fell.

# %% nbgrader={"grade": false, "grade_id": "train-check", "locked": true, "schema_version": 3, "solution": false}
torch.manual_seed(0)
x_p, y_p = torch.randn(8, 3, device=device), torch.randn(8, 2, device=device)
counting = checks.CountingLinear(3, 2).to(device)  # a linear layer whose last_depth is 0, 1, 2, ... call after call
with checks.explain_errors("train_dynamic"):
    probe_losses, probe_depths = train_dynamic(counting, x_p, y_p, nn.MSELoss(),
                                               torch.optim.SGD(counting.parameters(), lr=0.1), 3)
checks.check_true("one loss and one depth per step (stand-in)", len(probe_losses) == 3 and len(probe_depths) == 3,
                  f"3 steps gave {len(probe_losses)} losses and {len(probe_depths)} depths.")
checks.check_true("losses are Python floats", all(isinstance(v, float) for v in probe_losses),
                  f"the losses are {type(probe_losses[0]).__name__}s: record loss.item(), a Python float "
                  "(a loss tensor keeps its whole graph alive).")
checks.check_true(
    "depths the model used", list(probe_depths) == [0, 1, 2],
    f"the stand-in used the depths 0, 1, 2, but train_dynamic returned {list(probe_depths)}"
    + (": model.last_depth was recorded before the forward pass, so every step reports the previous "
       "step's depth. Read it after calling model(x)." if list(probe_depths) == [None, 0, 1] else
       ": call model(x) without depth and record model.last_depth."))

stepper = checks.CountingLinear(3, 2).to(device)
stepper_opt = torch.optim.SGD(stepper.parameters(), lr=0.1)
w0, g1 = stepper.weight.detach().clone(), checks.grad_on_copy(stepper, F.mse_loss, x_p, y_p).grad
with checks.explain_errors("train_dynamic"):
    train_dynamic(stepper, x_p, y_p, nn.MSELoss(), stepper_opt, 1)
    w1, g2 = stepper.weight.detach().clone(), checks.grad_on_copy(stepper, F.mse_loss, x_p, y_p).grad
    train_dynamic(stepper, x_p, y_p, nn.MSELoss(), stepper_opt, 1)
checks.check_close("weight after step 1", w1, w0 - 0.1 * g1, quiet=True,
                   mistakes={"the weights did not move: optimizer.step() is missing, runs before backward(), "
                             "or the gradients were cleared between backward() and step()": w0})
checks.check_close("weight after step 2", stepper.weight, w1 - 0.1 * g2, quiet=True,
                   mistakes={"gradients never zeroed: backward() adds to .grad, so step 2 used g1 + g2. "
                             "Call optimizer.zero_grad() at the start of every step": w1 - 0.1 * (g1 + g2)})
w2, g3 = stepper.weight.detach().clone(), checks.grad_on_copy(stepper, F.mse_loss, x_p, y_p).grad
for leftover in stepper.parameters():
    leftover.grad = torch.full_like(leftover, 5.0)  # gradients left in .grad by earlier code
with checks.explain_errors("train_dynamic"):
    train_dynamic(stepper, x_p, y_p, nn.MSELoss(), stepper_opt, 1)
checks.check_close("weight after a step that starts with leftover gradients", stepper.weight, w2 - 0.1 * g3,
                   quiet=True,
                   mistakes={"the leftover gradients in .grad were added to the first step: clear them at the "
                             "START of each step (optimizer.zero_grad() before backward()), not at the end":
                                 w2 - 0.1 * (g3 + 5.0)})
checks.passed("train_dynamic on the stand-in", "floats, the model's depths, exact SGD steps")

checks.check_true("one loss and one depth per step", len(losses) == num_steps and len(depths) == num_steps,
                  f"expected {num_steps} losses and depths, got {len(losses)} and {len(depths)}.")
checks.check_true("depths vary", len(set(depths)) > 1,
                  f"every step used depth {depths[0]}: call model(x) without depth, and record model.last_depth.")
checks.check_true(
    "the loss fell", np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]),
    f"mean loss of the first 10 steps {np.mean(losses[:10]):.3f}, of the last 10 {np.mean(losses[-10:]):.3f}; "
    "it should at least halve. Gradients never zeroed accumulate across steps and make training erratic.")

# %% nbgrader={"grade": true, "grade_id": "test-train", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: the training loop, run on a reference DynamicNet (hidden tests: a replay of the
# same steps with the same depths, another optimizer and loss).
assert len(losses) == num_steps, f"train_dynamic returned {len(losses)} losses for {num_steps} steps"
### BEGIN HIDDEN TESTS
def _reference_setup(depth_seed):
    """A reference DynamicNet with leftover gradients (as earlier code could leave them), SGD with momentum and an
    L1 loss. Run where the student's code runs, and in the test for the replay."""
    class Net(nn.Module):
        def __init__(self, d_in, h, d_out, max_depth=3, seed=0):
            super().__init__()
            self.max_depth = max_depth
            self.generator = torch.Generator().manual_seed(seed)
            self.last_depth = None
            self.input_linear = nn.Linear(d_in, h)
            self.middle_linear = nn.Linear(h, h)
            self.output_linear = nn.Linear(h, d_out)

        def forward(self, x, depth=None):
            if depth is None:
                depth = int(torch.randint(0, self.max_depth + 1, (1,), generator=self.generator))
            self.last_depth = depth
            a = torch.relu(self.input_linear(x))
            for _ in range(depth):
                a = torch.relu(self.middle_linear(a))
            return self.output_linear(a)

    torch.manual_seed(31)
    net = Net(3, 5, 2, seed=depth_seed)
    net.middle_linear.weight.sum().backward()
    return net, torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9), nn.L1Loss()


def _parameters(net):
    return [p.detach().clone() for p in net.parameters()]


_a, _opt_a, _lf_a = checks.run_in_kernel(_reference_setup, 8)
_start = checks.run_in_kernel(_parameters, _a)
torch.manual_seed(32)
_x, _y = torch.randn(12, 3), torch.randn(12, 2)
_losses, _depths = train_dynamic(_a, _x, _y, _lf_a, _opt_a, 12)
_trained = checks.run_in_kernel(_parameters, _a)


def _replay(set_to_none):
    """The same 12 steps here, from the same start. With set_to_none=True (zero_grad's default) the shared
    layer keeps .grad None at depth 0 and SGD skips it; with False its zero gradient still gets a momentum step.
    Both are ordinary steps, so both are accepted."""
    net, opt, loss_fn = _reference_setup(8)
    with torch.no_grad():
        for p, q in zip(net.parameters(), _start):
            p.copy_(q)
    losses, depths = [], []
    for _ in range(12):
        opt.zero_grad(set_to_none=set_to_none)
        loss = loss_fn(net(_x), _y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        depths.append(net.last_depth)
    return losses, depths, [p.detach().clone() for p in net.parameters()]


def _same_run(replay):
    """Whether the student's losses and final parameters are those of the replay."""
    try:
        checks.check_close("hidden losses", _losses, replay[0], rtol=1e-5, quiet=True)
        for p, q in zip(_trained, replay[2], strict=True):
            checks.check_close("hidden parameters after training", p, q, rtol=1e-5, atol=1e-7, quiet=True)
    except checks.CheckError:
        return False
    return True


_replays = [_replay(True), _replay(False)]
assert list(_depths) == _replays[0][1], "the depths returned differ from the model's draws (model.last_depth)"
assert all(isinstance(v, float) for v in _losses), "losses should be Python floats (loss.item())"
assert len(_losses) == 12, "expected one loss per step"
assert any(_same_run(r) for r in _replays), \
    "the losses or the parameters after training differ from ordinary steps (zero_grad, forward, backward, step)"
### END HIDDEN TESTS
checks.passed("training loop")

# %% [markdown] nbgrader={"grade": false, "grade_id": "recap", "locked": true, "schema_version": 3, "solution": false}
# ## Recap
#
# * The graph is built anew on every forward pass, so plain Python control flow (loops of
#   random length, `if`s) is allowed in `forward`, and autograd differentiates the path
#   that actually ran.
# * Calling one module several times shares its weights; its gradient is the **sum** of
#   the contributions $g_k^\top a_k$ of the uses, accumulated by autograd.
# * Randomness inside a model belongs to a `torch.Generator` of its own (and an explicit
#   argument to override it), so runs and tests can replay it.
# * Forward hooks see every call of a module; `torch.autograd.grad` returns gradients
#   for any intermediate tensors without touching `.grad`.
#
# **Further exercises** (not graded): make the depth depend on the input (e.g. more layers
# for larger $\|x\|$); give every use its own bias but keep $W$ shared; compare with a net
# of 3 unshared hidden layers trained at fixed depth 3.
