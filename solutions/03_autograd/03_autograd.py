# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false}
# # 03 · Autograd
#
# In notebooks 01 and 02 you derived every gradient by hand. PyTorch can do it for you: a
# tensor created with `requires_grad=True` makes every operation on it leave a trace, a graph
# of *backward functions*, and `loss.backward()` walks that graph from the loss back to the
# inputs, applying the chain rule at every node. This notebook looks inside that machinery,
# shows its two famous traps, fits a line with it, and extends it with an operation of your own.
#
# **Learning goals**
# 1. Use `requires_grad`, `backward()` and `.grad`; tell leaf tensors from computed ones.
# 2. Walk the recorded graph through `grad_fn.next_functions` and find the leaves a result depends on.
# 3. Know that `backward()` **adds** to `.grad`, and clear gradients with `grad = None` or `grad.zero_()`.
# 4. Update parameters in place under `torch.no_grad()`, and fit a linear regression with autograd.
# 5. Write a custom `torch.autograd.Function` (forward + backward, `ctx.save_for_backward`) and
#    verify it with `torch.autograd.gradcheck` in double precision.
#
# Every exercise has a **self-check** you can run as often as you like, and a graded cell
# (with hidden tests on other shapes, seeds and edge cases) that the autograder runs.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup-md", "locked": true, "schema_version": 3, "solution": false}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from course_utils import budget, checks, setup

config = setup(seed=0)
device = config.device

# %% [markdown] nbgrader={"grade": false, "grade_id": "basics-md", "locked": true, "schema_version": 3, "solution": false}
# ## 1 · `requires_grad`, `backward`, `.grad`
#
# Take $y = (wx + b)^2$ with $w = 2$, $x = 3$, $b = 1$. By hand: $\partial y/\partial w = 2(wx+b)\,x = 42$
# and $\partial y/\partial b = 2(wx+b) = 14$. We ask for gradients with respect to `w` and `b`
# only, so only they get `requires_grad=True`.
#
# * Tensors you create yourself are **leaves**. After `backward()`, a leaf that requires grad
#   holds its gradient in `.grad`.
# * Tensors computed from something that requires grad require grad themselves and carry a
#   `grad_fn`, the backward function that made them. Their `.grad` is not kept (it is `None`).

# %% nbgrader={"grade": false, "grade_id": "basics-demo", "locked": true, "schema_version": 3, "solution": false}
w = torch.tensor(2.0, requires_grad=True)
b = torch.tensor(1.0, requires_grad=True)
x = torch.tensor(3.0)  # data: no gradient wanted
u = w * x + b
y = u**2
print(f"y = {y.item()} | y.grad_fn = {y.grad_fn} | u.requires_grad = {u.requires_grad}")
print(f"leaves? w: {w.is_leaf}, x: {x.is_leaf}, u: {u.is_leaf}")
y.backward()
print(f"dy/dw = {w.grad.item()}, dy/db = {b.grad.item()}, x.grad = {x.grad}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "graph-md", "locked": true, "schema_version": 3, "solution": false}
# ## 2 · The recorded graph
#
# Every `grad_fn` has a tuple `next_functions` of `(node, index)` pairs, one per input of the
# operation: the backward functions that produced those inputs. An input that needs no
# gradient (data) shows up as `None`. A leaf that requires grad shows up as an
# **`AccumulateGrad`** node: its job is to add the incoming gradient to the leaf's `.grad`,
# and it holds the leaf in its attribute `.variable`.
#
# `print_graph` walks the graph depth-first and prints it, for a small layer with a loss:

# %% nbgrader={"grade": false, "grade_id": "graph-demo", "locked": true, "schema_version": 3, "solution": false}
def print_graph(fn, depth=0):
    """Print the backward graph below the node `fn`, one node per line."""
    if fn is None:
        print("  " * depth + "None (needs no gradient)")
        return
    label = type(fn).__name__
    if hasattr(fn, "variable"):
        label += f"  -> leaf of shape {tuple(fn.variable.shape)}"
    print("  " * depth + label)
    for next_fn, _ in fn.next_functions:
        print_graph(next_fn, depth + 1)


gen = torch.Generator().manual_seed(0)
W = torch.randn(3, 2, generator=gen).requires_grad_()
bias = torch.zeros(2, requires_grad=True)
inputs, targets = torch.randn(4, 3, generator=gen), torch.randn(4, 2, generator=gen)
loss = ((inputs @ W + bias).relu() - targets).pow(2).sum()
print_graph(loss.grad_fn)

# %% [markdown] nbgrader={"grade": false, "grade_id": "leaves-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 1 · Which leaves does a result depend on? (2 points)
#
# Write `leaf_tensors(output)`: the list of leaf tensors that require grad and that `output`
# depends on, each **once**, in the order a depth-first walk (following `next_functions` in
# order, as `print_graph` does) first reaches them. A tensor used twice (as in `w * w`)
# appears once. If `output` is itself a leaf, return `[output]` when it requires grad and `[]`
# otherwise.
#
# Identify tensors by identity (`is`, `id(...)`): `==` on tensors compares values.

# %% nbgrader={"grade": false, "grade_id": "leaves", "locked": false, "schema_version": 3, "solution": true}
def leaf_tensors(output):
    """Leaf tensors (requiring grad) that `output` depends on, once each, in DFS order."""
    ### BEGIN SOLUTION
    if output.grad_fn is None:
        return [output] if output.requires_grad else []
    leaves, seen_nodes, seen_leaves = [], set(), set()

    def visit(fn):
        if fn is None or fn in seen_nodes:
            return
        seen_nodes.add(fn)
        if hasattr(fn, "variable"):
            if id(fn.variable) not in seen_leaves:
                seen_leaves.add(id(fn.variable))
                leaves.append(fn.variable)
            return
        for next_fn, _ in fn.next_functions:
            visit(next_fn)

    visit(output.grad_fn)
    return leaves
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "leaves-check", "locked": true, "schema_version": 3, "solution": false}
def names_of(tensors, known):
    """Names of the tensors in `tensors`, from the dict `known` (name -> tensor)."""
    return [next((n for n, t in known.items() if t is s), "<unknown tensor>") for s in tensors]


a = torch.ones(2, requires_grad=True)
c = torch.ones(2, requires_grad=True)  # the same values as a, but another tensor
twice = (a * a + c * a).sum()
with checks.explain_errors("leaf_tensors"):
    found = leaf_tensors(loss)
    found_twice = leaf_tensors(twice)
    found_alone = leaf_tensors(a)
    found_data = leaf_tensors(inputs)
checks.check_true("leaf_tensors returns a list", isinstance(found, list), f"got {type(found).__name__}.")
got = names_of(found, {"W": W, "bias": bias, "inputs": inputs, "targets": targets})
checks.check_true(
    "leaves of the layer's loss", got == ["W", "bias"],
    f"expected [W, bias] (data tensors `inputs`, `targets` need no gradient), got {got}. "
    + ("The right leaves in the wrong order: walk depth-first, following each node's `next_functions` "
       "in order and all the way down the first input before the second (a queue walks breadth-first, "
       "and a stack pops the last input first)." if sorted(got) == ["W", "bias"] else ""),
)
got = names_of(found_twice, {"a": a, "c": c})
checks.check_true(
    "a tensor used several times is listed once", got == ["a", "c"],
    f"expected [a, c], got {got}. " + (
        "A tensor reached along several paths must appear once: remember which ones you have already seen."
        if got.count("a") > 1 else
        "c is missing. a and c hold equal values (both are ones) but are two tensors: compare tensors by "
        "identity (`is`, `id(...)`), not with `==` or `torch.equal`." if got == ["a"] else
        "Walk every input of every node, in order, all the way down."),
)
checks.check_true("a leaf on its own", names_of(found_alone, {"a": a}) == ["a"],
                  "a leaf that requires grad depends only on itself: return [output].")
checks.check_true(
    "a data tensor", found_data == [],
    f"leaf_tensors(inputs) returned {len(found_data)} tensor(s): `inputs` is a leaf that does not require "
    "grad, so it depends on no leaf that requires grad: return [] for it.",
)

# %% nbgrader={"grade": true, "grade_id": "test-leaves", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: leaf_tensors (hidden tests: deeper graphs, shared subexpressions, data-only results).
assert [id(t) for t in leaf_tensors(loss)] == [id(W), id(bias)], "leaf_tensors(loss) should be [W, bias]"
### BEGIN HIDDEN TESTS
def _graphs():  # built where leaf_tensors runs: an autograd graph stays where it was built
    p, q, r = (torch.randn(3, generator=torch.Generator().manual_seed(i)).requires_grad_() for i in range(3))
    d = torch.randn(3)
    s = (q * d).exp()
    deep = ((s + p) * (s - r) + p.sin() * q).sum()
    chain = p
    for _ in range(20):
        chain = chain * 1.01 + p
    layer = torch.nn.Linear(4, 2)
    u, v = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)  # equal values, two tensors
    leaves = (p, q, r, d, layer.weight, layer.bias, u, v)
    return leaves, (deep, chain.sum(), layer(torch.randn(5, 4)).sum(), (u * v + u).sum())


(_p, _q, _r, _d, _weight, _bias, _u, _v), (_deep, _chain, _layer_out, _twins) = checks.run_in_kernel(_graphs)
assert [id(t) for t in leaf_tensors(_deep)] == [id(_q), id(_p), id(_r)], "wrong leaves or order on a deeper graph"
assert [id(t) for t in leaf_tensors(_chain)] == [id(_p)], "a tensor reached many times must appear once"
assert leaf_tensors(torch.ones(3) * 2) == [], "a result that needs no gradient depends on no leaf that requires grad"
assert leaf_tensors(_d) == [], "a leaf that does not require grad is not listed"
assert [id(t) for t in leaf_tensors(_p)] == [id(_p)], "a leaf that requires grad depends on itself: return [output]"
_leaves = leaf_tensors(_layer_out)
assert {id(t) for t in _leaves} == {id(_weight), id(_bias)} and len(_leaves) == 2, "the leaves of an nn.Linear are its weight and bias"
assert [id(t) for t in leaf_tensors(_twins)] == [id(_u), id(_v)], "two tensors with equal values are two leaves: compare by identity"
### END HIDDEN TESTS
checks.passed("leaf_tensors")

# %% [markdown] nbgrader={"grade": false, "grade_id": "accumulate-md", "locked": true, "schema_version": 3, "solution": false}
# ## 3 · `backward()` adds to `.grad`
#
# `AccumulateGrad` *adds*: a second `backward()` adds a second gradient on top of the first.
# That is a feature (a parameter used in two losses gets the sum, and you can accumulate over
# several small batches before one update), but in an ordinary training loop it is the most
# common autograd bug: **gradients never zeroed** grow step after step and the updates are wrong.

# %% nbgrader={"grade": false, "grade_id": "accumulate-demo", "locked": true, "schema_version": 3, "solution": false}
w = torch.tensor([1.0, -2.0], requires_grad=True)
for step in range(3):
    (3 * w).sum().backward()  # the gradient of this loss is always [3, 3]
    print(f"after backward #{step + 1}: w.grad = {w.grad.tolist()}")
w.grad = None  # clear it (what optimizer.zero_grad() does); w.grad.zero_() works too
(3 * w).sum().backward()
print(f"cleared, then one backward: w.grad = {w.grad.tolist()}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "per-batch-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 2 · One gradient per batch (2 points)
#
# Write `per_batch_grads(w, batches, loss_fn)`. `w` is a leaf tensor that requires grad;
# `loss_fn(w, batch)` returns a scalar loss. Return a list with, for each batch, the gradient
# of **that batch's loss alone** with respect to `w`, as a tensor of `w`'s shape.
#
# * `w` may arrive with a stale `.grad` left over from earlier work.
# * When the function returns, `w.grad` must be cleared (`None` or zeros).
# * Careful: `w.grad.zero_()` empties the tensor *in place*; whatever you stored that still
#   refers to it is emptied too. Store a copy (`.clone()`), or clear with `w.grad = None`.

# %% nbgrader={"grade": false, "grade_id": "per-batch", "locked": false, "schema_version": 3, "solution": true}
def per_batch_grads(w, batches, loss_fn):
    """The gradient of loss_fn(w, batch) with respect to w, for each batch separately."""
    grads = []
    ### BEGIN SOLUTION
    w.grad = None
    for batch in batches:
        loss_fn(w, batch).backward()
        grads.append(w.grad.clone())
        w.grad = None
    ### END SOLUTION
    return grads


# %% nbgrader={"grade": false, "grade_id": "per-batch-check", "locked": true, "schema_version": 3, "solution": false}
def squared_projection(w, batch):
    return (batch @ w).pow(2).sum()  # gradient: 2 * batch.T @ (batch @ w)


w = torch.tensor([1.0, -2.0], requires_grad=True)
w.grad = torch.full_like(w, 100.0)  # a stale gradient, left over from earlier work
batches = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 1.0]]), torch.tensor([[2.0, 0.5]])]
with checks.explain_errors("per_batch_grads"):
    grads = per_batch_grads(w, batches, squared_projection)
checks.check_true("one gradient per batch", isinstance(grads, list) and len(grads) == 3,
                  f"expected a list of 3 tensors, got {type(grads).__name__} of length {len(grads)}.")
expected = torch.stack([2 * bt.T @ (bt @ w.detach()) for bt in batches])
stale = torch.full((1, 2), 100.0)
checks.check_close(
    "per-batch gradients", torch.stack(grads), expected,
    mistakes={"the gradients were never zeroed (neither the stale one on entry nor between batches), so "
              "they accumulate": stale + expected.cumsum(dim=0),
              "the first gradient includes the stale `.grad` that w arrived with: clear it before the "
              "first backward": expected + torch.cat([stale, torch.zeros(2, 2)]),
              "every entry is the same tensor: you stored `w.grad` itself, and `zero_()` "
              "(or the next backward) changed it in place. Store `w.grad.clone()`":
                  expected[-1:].expand(3, 2),
              "every entry is the same tensor, emptied by `w.grad.zero_()`: store `w.grad.clone()`":
                  torch.zeros(3, 2)},
)
checks.check_grads_cleared("w after per_batch_grads", {"w": w})

# %% nbgrader={"grade": true, "grade_id": "test-accumulate", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: per_batch_grads (hidden tests: a stale gradient on entry, other shapes and losses).
_w = torch.tensor([0.5, 1.5], requires_grad=True)
_g = per_batch_grads(_w, [torch.ones(1, 2), torch.ones(1, 2)], squared_projection)
checks.check_close("two equal batches", torch.stack(_g), torch.full((2, 2), 4.0), quiet=True)
### BEGIN HIDDEN TESTS
def _make_loss():
    def loss(w, batch):
        return (batch @ w).tanh().sum() + (w**2).sum() * batch.shape[0]

    return loss


_loss = checks.run_in_kernel(_make_loss)  # defined where per_batch_grads runs, so backward reaches w there
_reference_loss = _make_loss()  # the same loss, here
_gen = torch.Generator().manual_seed(31)
_w = torch.randn(3, 2, generator=_gen, dtype=torch.float64).requires_grad_()
_w.grad = torch.full_like(_w, 100.0)  # stale gradient from earlier work
_batches = [torch.randn(_n, 3, generator=_gen, dtype=torch.float64) for _n in (4, 1, 6, 2)]
_got = per_batch_grads(_w, _batches, _loss)
assert len(_got) == 4, "one gradient per batch"
for _bt, _gg in zip(_batches, _got):
    _wd = _w.detach().clone().requires_grad_()
    (_ref,) = torch.autograd.grad(_reference_loss(_wd, _bt), _wd)
    checks.check_close("hidden per-batch gradient", _gg, _ref, quiet=True)
assert _w.grad is None or not bool(_w.grad.any()), "w.grad must be cleared on return"
assert per_batch_grads(_w, [], _loss) == [], "no batches, no gradients"
### END HIDDEN TESTS
checks.passed("per_batch_grads")

# %% [markdown] nbgrader={"grade": false, "grade_id": "nograd-md", "locked": true, "schema_version": 3, "solution": false}
# ## 4 · Updating parameters: in place, under `torch.no_grad()`
#
# The update $w \leftarrow w - \eta\,\nabla_w L$ is not part of the model: autograd must not
# record it. Two ways to get it wrong, both seen below:
#
# * `w -= lr * w.grad` **outside** `no_grad`: PyTorch refuses to change in place a leaf that
#   requires grad while recording (the error names "a leaf Variable").
# * `w = w - lr * w.grad` outside `no_grad` runs, but `w` is now a *computed* tensor with a
#   `grad_fn`, no longer a leaf: its `.grad` stays `None` and the graph grows with every step.
#
# The right way changes the leaf in place, inside `with torch.no_grad():`, and then clears
# the gradient for the next step.

# %% nbgrader={"grade": false, "grade_id": "nograd-demo", "locked": true, "schema_version": 3, "solution": false}
w = torch.tensor([1.0, 2.0], requires_grad=True)
(w**2).sum().backward()
try:
    w -= 0.1 * w.grad
except RuntimeError as err:
    print("outside no_grad, in place:", err)

w_rebound = w - 0.1 * w.grad
print("outside no_grad, rebound: is_leaf =", w_rebound.is_leaf, "| grad_fn =", w_rebound.grad_fn)

with torch.no_grad():
    w -= 0.1 * w.grad
w.grad = None
print("inside no_grad, in place: w =", w.tolist(), "| is_leaf =", w.is_leaf, "| requires_grad =", w.requires_grad)

# %% [markdown] nbgrader={"grade": false, "grade_id": "fit-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 3 · Fit a line with autograd (3 points)
#
# Write `fit_linear(x, y, lr, num_steps)` for 1-D data `x`, `y` (same length):
#
# * start from scalars `w = 0`, `b = 0`: leaf tensors that require grad, with `x`'s dtype, on `x`'s device;
# * each step: the mean squared error of `w * x + b` against `y`, `backward()`, the update
#   `param -= lr * param.grad` for both parameters **in place under `torch.no_grad()`**, and the
#   gradients cleared for the next step;
# * return `(w, b, history)` where `history` holds, for every step, the tuple
#   `(w, b, loss)` of Python floats **before** that step's update.
#
# The loop with its progress bar is given.

# %% nbgrader={"grade": false, "grade_id": "fit", "locked": false, "schema_version": 3, "solution": true}
def fit_linear(x, y, lr, num_steps):
    """Gradient descent on mean((w * x + b - y)**2); returns (w, b, history)."""
    history = []
    ### BEGIN SOLUTION
    w = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    ### END SOLUTION
    for _ in tqdm(range(num_steps), desc="fit_linear", leave=False):
        ### BEGIN SOLUTION
        loss = (w * x + b - y).pow(2).mean()
        history.append((w.item(), b.item(), loss.item()))
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
        w.grad = None
        b.grad = None
    ### END SOLUTION
    return w, b, history


# %% [markdown] nbgrader={"grade": false, "grade_id": "fit-run-md", "locked": true, "schema_version": 3, "solution": false}
# Noisy points around the line $y = 3x + 2$, made on `device`. The plots show the fitted
# line, the loss, and the path of $(w, b)$ over the contours of the loss: gradient descent
# first fixes $b$ (the steep direction) and then slides along the valley to the best $w$.

# %% nbgrader={"grade": false, "grade_id": "fit-run", "locked": true, "schema_version": 3, "solution": false}
gen = torch.Generator().manual_seed(0)
x_data = torch.linspace(-1, 1, 100)
y_data = 3 * x_data + 2 + 0.3 * torch.randn(100, generator=gen)
x_data, y_data = x_data.to(device), y_data.to(device)
num_steps = budget(full=200, fast=100)
with checks.explain_errors("fit_linear"):
    w_fit, b_fit, history = fit_linear(x_data, y_data, lr=0.1, num_steps=num_steps)
path = np.array(history)
print(f"fitted: w = {w_fit.item():.3f}, b = {b_fit.item():.3f}; loss {path[0, 2]:.3f} -> {path[-1, 2]:.4f}")

xs, ys = x_data.cpu().numpy(), y_data.cpu().numpy()
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
axes[0].scatter(xs, ys, s=8, alpha=0.6, label="data")
axes[0].plot(xs, w_fit.item() * xs + b_fit.item(), color="C3", label="fit")
axes[0].set(xlabel="x", ylabel="y", title="the data and the fitted line")
axes[0].legend()
axes[1].semilogy(path[:, 2])
axes[1].set(xlabel="step", ylabel="mean squared error", title="loss")
W_grid, B_grid = np.meshgrid(np.linspace(-0.5, 4.5, 120), np.linspace(-0.5, 3.5, 120))
L_grid = ((W_grid[..., None] * xs + B_grid[..., None] - ys) ** 2).mean(axis=-1)
axes[2].contour(W_grid, B_grid, L_grid, levels=np.logspace(-1.2, 1.3, 14), cmap="viridis")
axes[2].plot(path[:, 0], path[:, 1], ".-", color="C3", markersize=3)
axes[2].set(xlabel="w", ylabel="b", title="path of gradient descent")
plt.tight_layout()
plt.show()

# %% nbgrader={"grade": false, "grade_id": "fit-check", "locked": true, "schema_version": 3, "solution": false}
checks.check_true(
    "w and b are still leaves", w_fit.is_leaf and b_fit.is_leaf,
    "w or b is no longer a leaf: the update was done outside `torch.no_grad()` (`w = w - lr * w.grad` "
    "makes a new, computed tensor). Update in place inside `with torch.no_grad():`.",
)
checks.check_true(
    "w and b still require grad", w_fit.requires_grad and b_fit.requires_grad,
    "w or b does not require grad: it was created without `requires_grad=True`, or detached "
    "(`.detach()`) before it was returned. Return the parameters themselves.",
)
checks.check_true("history", len(history) == num_steps and all(len(h) == 3 for h in history),
                  f"expected {num_steps} tuples (w, b, loss), got {len(history)} entries.")
with checks.explain_errors("fit_linear on float64 data"):
    w64, b64, _ = fit_linear(torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([1.0, 3.0], dtype=torch.float64),
                             0.1, 1)
checks.check_true("w is a scalar", w64.dim() == 0,
                  f"w has shape {tuple(w64.shape)}: start from scalars (0-dimensional tensors, shape ()).")
checks.check_true(
    "w and b take x's dtype", w64.dtype == torch.float64 and b64.dtype == torch.float64,
    f"for float64 data w is {w64.dtype} and b is {b64.dtype}: a new tensor is float32 unless you ask for "
    "another dtype. Create w and b with x's dtype (and on x's device).",
)
# Three steps on two points, worked out by hand: x = [0, 1], y = [1, 3], lr = 0.1.
with checks.explain_errors("fit_linear on two points"):
    _, _, tiny_history = fit_linear(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 3.0]), 0.1, 3)
checks.check_close(
    "three steps by hand", tiny_history, [(0.0, 0.0, 5.0), (0.3, 0.4, 2.825), (0.53, 0.69, 1.63225)],
    mistakes={"the gradients were never zeroed, so the second update used the sum of two gradients":
                  [(0.0, 0.0, 5.0), (0.3, 0.4, 2.825), (0.83, 1.09, 0.58725)],
              "the loss is the sum of the squared errors, not their mean":
                  [(0.0, 0.0, 10.0), (0.6, 0.8, 2.6), (0.92, 1.16, 0.872)],
              "history holds w and b after the update: record (w, b, loss) before the step":
                  [(0.3, 0.4, 5.0), (0.53, 0.69, 2.825), (0.708, 0.899, 1.63225)]},
)
# Least squares in closed form: with 1-D x, w = cov(x, y) / var(x) and b = mean(y) - w * mean(x).
w_best = ((x_data - x_data.mean()) * (y_data - y_data.mean())).sum() / ((x_data - x_data.mean()) ** 2).sum()
b_best = y_data.mean() - w_best * x_data.mean()
checks.check_close(
    "fitted (w, b) against least squares", [w_fit.item(), b_fit.item()], [w_best.item(), b_best.item()],
    rtol=0.05, atol=0.05,
    hint="if the loss curve zigzags or explodes, the gradients were never zeroed: they accumulate "
         "across steps. Clear them after every update (`w.grad = None`).",
)

# %% nbgrader={"grade": true, "grade_id": "test-fit", "locked": true, "points": 3, "schema_version": 3, "solution": false}
# Graded: fit_linear (hidden tests: the exact trajectory on other data, float64, leaves).
_w, _b, _h = fit_linear(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 3.0]), 0.1, 3)
assert len(_h) == 3 and _h[0] == (0.0, 0.0, 5.0), f"history[0] should be (0.0, 0.0, 5.0), got {_h[0] if _h else None}"
### BEGIN HIDDEN TESTS
_gen = torch.Generator().manual_seed(77)
for _dt, _lr, _n in [(torch.float64, 0.05, 25), (torch.float32, 0.3, 10)]:
    _x = torch.randn(30, generator=_gen, dtype=_dt) * 2
    _y = -1.5 * _x + 0.5 + 0.1 * torch.randn(30, generator=_gen, dtype=_dt)
    _w, _b, _h = fit_linear(_x, _y, _lr, _n)
    assert _w.is_leaf and _b.is_leaf and _w.requires_grad and _b.requires_grad, "w and b must stay leaves that require grad"
    assert _w.dtype == _dt and _w.shape == torch.Size([]), "w must be a scalar tensor of x's dtype"
    _rw, _rb, _ref = 0.0, 0.0, []
    for _ in range(_n):
        _res = _rw * _x + _rb - _y
        _ref.append((_rw, _rb, _res.pow(2).mean().item()))
        _rw, _rb = _rw - _lr * (2 * _res * _x).mean().item(), _rb - _lr * (2 * _res).mean().item()
    checks.check_close("hidden history", _h, _ref, rtol=1e-4, atol=1e-6, quiet=True)
    checks.check_close("hidden final (w, b)", [_w.item(), _b.item()], [_rw, _rb], rtol=1e-4, atol=1e-6, quiet=True)
### END HIDDEN TESTS
checks.passed("fit_linear")

# %% [markdown] nbgrader={"grade": false, "grade_id": "function-md", "locked": true, "schema_version": 3, "solution": false}
# ## 5 · Your own autograd operation
#
# Autograd knows the derivative of every built-in operation. For a new one you subclass
# `torch.autograd.Function` and write two static methods:
#
# * `forward(ctx, x)` computes the result from plain tensors (autograd does not record inside
#   it) and stores what the backward pass will need with `ctx.save_for_backward(...)`;
# * `backward(ctx, grad_output)` receives $\partial L/\partial\,\text{out}$ and returns
#   $\partial L/\partial x$ = `grad_output` times the local derivative (the chain rule), one
#   gradient per input of `forward`. `ctx.saved_tensors` gives back what was saved.
#
# You call it as `MyFunction.apply(x)`, never `forward` directly. To trust a hand-written
# backward, compare it with numeric differences: `torch.autograd.gradcheck` does exactly
# that, for random `grad_output`s. It needs **float64** inputs: in float32 the differences
# $\frac{f(x+\epsilon)-f(x-\epsilon)}{2\epsilon}$ are too coarse and correct code fails.
#
# ## Exercise 4 · SiLU as an autograd Function (3 points)
#
# The SiLU (or "swish") activation is $\operatorname{silu}(x) = x\,\sigma(x)$, with the sigmoid
# $\sigma(x) = 1/(1+e^{-x})$ and $\sigma'(x) = \sigma(x)(1-\sigma(x))$. Work out its derivative
# with the product rule and implement `SiLUFunction` (element-wise, any shape). Use `torch.sigmoid`
# (numerically stable) and save the input for the backward pass.

# %% nbgrader={"grade": false, "grade_id": "function", "locked": false, "schema_version": 3, "solution": true}
class SiLUFunction(torch.autograd.Function):
    """silu(x) = x * sigmoid(x), with a hand-written backward pass."""

    @staticmethod
    def forward(ctx, x):
        ### BEGIN SOLUTION
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)
        ### END SOLUTION

    @staticmethod
    def backward(ctx, grad_output):
        ### BEGIN SOLUTION
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad_output * s * (1 + x * (1 - s))
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "function-check", "locked": true, "schema_version": 3, "solution": false}
x64 = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_()
sig = torch.sigmoid(x64.detach())
with checks.explain_errors("SiLUFunction forward"):
    out = SiLUFunction.apply(x64)
checks.check_close("forward", out, x64.detach() * sig,
                   mistakes={"forward returns sigmoid(x), not x * sigmoid(x)": sig})
checks.check_autograd_function(
    "SiLUFunction backward", SiLUFunction.apply, [x64],
    mistakes={"only the derivative of the sigmoid: use the product rule, d(x*s)/dx = s + x*s'": sig * (1 - sig),
              "only sigmoid(x): the x * sigmoid'(x) term of the product rule is missing": sig},
)

# %% [markdown] nbgrader={"grade": false, "grade_id": "function-plot-md", "locked": true, "schema_version": 3, "solution": false}
# Your function next to PyTorch's built-in `F.silu`, and its derivative obtained through
# *your* backward (on `device`): unlike the ReLU, the SiLU is smooth and dips slightly below zero.

# %% nbgrader={"grade": false, "grade_id": "function-plot", "locked": true, "schema_version": 3, "solution": false}
grid = torch.linspace(-6, 6, 200, device=device, requires_grad=True)
with checks.explain_errors("SiLUFunction on a grid"):
    silu_out = SiLUFunction.apply(grid)
    silu_out.sum().backward()
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(grid.detach().cpu(), silu_out.detach().cpu(), label="SiLUFunction (yours)")
ax.plot(grid.detach().cpu(), F.silu(grid).detach().cpu(), "--", label="F.silu (built-in)")
ax.plot(grid.detach().cpu(), grid.grad.cpu(), label="derivative via your backward")
ax.plot(grid.detach().cpu(), grid.detach().relu().cpu(), ":", color="gray", label="ReLU")
ax.set(xlabel="x", ylim=(-1.5, 6), title="SiLU and its derivative")
ax.legend()
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test-function", "locked": true, "points": 3, "schema_version": 3, "solution": false}
# Graded: SiLUFunction (hidden tests: other shapes and seeds, large inputs, a scalar, float32).
# Your Function runs where you defined it: these two drivers call it there (through `.apply`)
# and bring back plain tensors. The backward is compared with numeric differences of the
# forward, for a grad_output that is not all ones.
def _apply(function, x):
    return function.apply(x)


def _backward_of(function, x, grad_output):
    x = x.detach().clone().requires_grad_()
    function.apply(x).backward(grad_output)
    return x.grad


_x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
_upstream = torch.rand(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5


def _weighted_output():  # its gradient with respect to x is what backward(grad_output=_upstream) returns
    return (checks.run_in_kernel(_apply, SiLUFunction, _x) * _upstream).sum()


_grad = checks.run_in_kernel(_backward_of, SiLUFunction, _x, _upstream)
_local = checks.numeric_gradient(lambda: checks.run_in_kernel(_apply, SiLUFunction, _x).sum(), _x)
checks.gradient_check(
    "SiLUFunction backward", _weighted_output, _x, _grad, quiet=True,
    mistakes={"backward ignores grad_output: return grad_output times the local derivative (the chain rule)": _local},
)
### BEGIN HIDDEN TESTS
_gen = torch.Generator().manual_seed(2718)
for _shape, _scale in [((), 1.0), ((7,), 3.0), ((2, 3, 4), 1.0), ((5,), 12.0)]:
    _x = torch.randn(_shape, generator=_gen, dtype=torch.float64) * _scale
    _up = torch.rand(_shape, generator=_gen, dtype=torch.float64) + 0.5
    _xr = _x.clone().requires_grad_()
    (_ref,) = torch.autograd.grad(F.silu(_xr), _xr, _up)
    checks.check_close("hidden backward", checks.run_in_kernel(_backward_of, SiLUFunction, _x, _up), _ref,
                       rtol=1e-3, atol=1e-5, quiet=True)
    checks.check_close("hidden forward", checks.run_in_kernel(_apply, SiLUFunction, _x), F.silu(_x), quiet=True)
_x = torch.tensor([-60.0, -5.0, 0.0, 5.0, 60.0])
_up = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
_y = checks.run_in_kernel(_apply, SiLUFunction, _x)
assert _y.dtype == torch.float32 and torch.isfinite(_y).all(), "the forward must be finite and keep float32"
_xr = _x.clone().requires_grad_()
F.silu(_xr).backward(_up)
checks.check_close("hidden float32 backward", checks.run_in_kernel(_backward_of, SiLUFunction, _x, _up), _xr.grad,
                   rtol=1e-5, atol=1e-6, quiet=True)
### END HIDDEN TESTS
checks.passed("SiLUFunction")

# %% [markdown] nbgrader={"grade": false, "grade_id": "recap", "locked": true, "schema_version": 3, "solution": false}
# ## Recap
#
# * `requires_grad=True` makes autograd record; `backward()` fills `.grad` of the **leaves**.
# * The record is a graph of backward functions linked by `next_functions`; leaves appear as
#   `AccumulateGrad` nodes.
# * `backward()` **adds** to `.grad`: clear gradients after every update (`p.grad = None`,
#   `p.grad.zero_()`, or `optimizer.zero_grad()` from notebook 05).
# * Update parameters in place inside `torch.no_grad()`, so they stay leaves and the update is
#   not recorded.
# * A custom `torch.autograd.Function` pairs a `forward` with a `backward` that returns
#   `grad_output` times the local derivative; check it with `gradcheck` in float64.
#
# **Classic mistakes met here:** gradients never zeroed (they accumulate); a stored `.grad`
# emptied later by `zero_()`; an update outside `torch.no_grad()` (in place: an error; rebinding:
# a parameter that is no longer a leaf); a custom backward that ignores `grad_output`.
#
# **Further exercises** (not graded): fit $y = ax^2 + bx + c$ with the same loop; make
# `per_batch_grads` faster with `torch.func.vmap` and `torch.func.grad`; write a
# `torch.autograd.Function` with two inputs (e.g. $x^p$ with a learnable $p$) and gradcheck both gradients.
