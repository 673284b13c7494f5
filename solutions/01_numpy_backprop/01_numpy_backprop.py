# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false}
# # 01 · A neural network by hand, in NumPy
#
# Before PyTorch does the calculus for us, we do it once ourselves. You will build a
# two-layer network with a ReLU, derive its backward pass on paper, check that
# derivation against numeric differences, and train it with gradient descent.
#
# **Learning goals**
# 1. Write the forward pass of `x → Linear → ReLU → Linear` with matrix products.
# 2. Derive and implement the backward pass: the chain rule, matrix shapes, the ReLU mask.
# 3. Verify an analytic gradient with a numeric gradient check.
# 4. Update parameters *in place* and train with gradient descent; read a loss curve.
#
# Every exercise has a **self-check** you can run as often as you like, and a graded
# cell (with hidden tests on other shapes and seeds) that the autograder runs.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup-md", "locked": true, "schema_version": 3, "solution": false}
# ## Setup
# One imports cell, then one call that seeds everything and prints the device and
# the mode (`COURSE_FAST=1` makes runs shorter; this notebook is quick either way).

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import matplotlib.pyplot as plt
import numpy as np

from course_utils import budget, checks, setup

config = setup(seed=0)

# %% [markdown] nbgrader={"grade": false, "grade_id": "problem-md", "locked": true, "schema_version": 3, "solution": false}
# ## The problem
#
# A batch of $N$ inputs $X \in \mathbb{R}^{N \times D_{in}}$ and targets
# $Y \in \mathbb{R}^{N \times D_{out}}$, both random: this lesson is about the
# mechanics, so the data has no meaning and the network simply memorises it.
#
# The network, with weights $W_1 \in \mathbb{R}^{D_{in} \times H}$ and
# $W_2 \in \mathbb{R}^{H \times D_{out}}$ (no biases, to keep the algebra short):
#
# $$h = X W_1, \qquad h_{relu} = \max(h, 0), \qquad \hat{Y} = h_{relu} W_2, \qquad
# L = \sum_{i,j} (\hat{Y}_{ij} - Y_{ij})^2 .$$

# %% nbgrader={"grade": false, "grade_id": "data", "locked": true, "schema_version": 3, "solution": false}
N, D_in, H, D_out = 64, 1000, 100, 10

rng = np.random.default_rng(config.seed)
x = rng.standard_normal((N, D_in))
y = rng.standard_normal((N, D_out))
print(f"x: {x.shape}, y: {y.shape}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "forward-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 1 · Forward pass and loss (2 points)
#
# Implement `two_layer_forward(x, w1, w2)`. It returns the prediction `y_pred` and a
# `cache = (h, h_relu)` of the intermediate values the backward pass will need.
# Then implement `squared_error(y_pred, y)`, the **sum** (not the mean) of squared errors,
# returned as a Python `float`.
#
# Use `@` for matrix products and `np.maximum` for the ReLU. No loops.

# %% nbgrader={"grade": false, "grade_id": "forward", "locked": false, "schema_version": 3, "solution": true}
def two_layer_forward(x, w1, w2):
    """Forward pass of x -> Linear(w1) -> ReLU -> Linear(w2).

    Returns (y_pred, cache) where cache = (h, h_relu).
    """
    ### BEGIN SOLUTION
    h = x @ w1
    h_relu = np.maximum(h, 0)
    y_pred = h_relu @ w2
    cache = (h, h_relu)
    ### END SOLUTION
    return y_pred, cache


def squared_error(y_pred, y):
    """Sum of squared differences, as a float."""
    ### BEGIN SOLUTION
    return float(np.sum((y_pred - y) ** 2))
    ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "forward-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** A tiny input whose answer was worked out by hand. If you see a
# message about a "known mistake", it names the slip it recognised.

# %% nbgrader={"grade": false, "grade_id": "forward-check", "locked": true, "schema_version": 3, "solution": false}
x_small = np.array([[1.0, -2.0], [0.5, 1.0], [-1.0, -1.0]])
w1_small = np.array([[1.0, -1.0, 0.5], [0.5, 1.0, -1.0]])
w2_small = np.array([[1.0, 0.0], [-1.0, 2.0], [0.5, 1.0]])
y_small = np.array([[1.0, 1.0], [0.0, 0.0], [2.0, -1.0]])

with checks.explain_errors("two_layer_forward"):
    y_pred_small, (h_small, h_relu_small) = two_layer_forward(x_small, w1_small, w2_small)
checks.check_close("h = x @ w1", h_small, [[0.0, -3.0, 2.5], [1.0, 0.5, -0.75], [-1.5, 0.0, 0.5]],
                   mistakes={"a transpose too many: h should be x @ w1, of shape (N, H)": (x_small @ w1_small).T})
checks.check_close(
    "h_relu", h_relu_small, [[0.0, 0.0, 2.5], [1.0, 0.5, 0.0], [0.0, 0.0, 0.5]],
    mistakes={"you forgot the ReLU: h_relu is still h, negative entries included": h_small,
              "np.max(h, 0) is the largest entry of each column (a reduction along axis 0), "
              "not the ReLU: np.maximum(h, 0) compares every entry with 0": np.max(h_small, 0)},
)
checks.check_close(
    "y_pred", y_pred_small, [[1.25, 2.5], [0.5, 1.0], [0.25, 0.5]],
    mistakes={"you forgot the ReLU: y_pred = (x @ w1) @ w2": x_small @ w1_small @ w2_small,
              "the ReLU is applied to the output instead of the hidden layer":
                  np.maximum(x_small @ w1_small @ w2_small, 0)},
)
with checks.explain_errors("squared_error"):
    loss_small = squared_error(y_pred_small, y_small)
checks.check_close("squared_error", loss_small, 8.875,
                   mistakes={"you took the mean instead of the sum": 8.875 / 6,
                             "you forgot to square the difference": 3.0,
                             "the sum of absolute differences, not of squared differences": 6.5,
                             "the square root of the sum (a norm), not the sum of squares": 8.875 ** 0.5})

# %% nbgrader={"grade": true, "grade_id": "test-forward", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: forward pass and loss (hidden tests use other shapes and seeds).
y_pred_t, cache_t = two_layer_forward(x_small, w1_small, w2_small)
checks.check_close("y_pred", y_pred_t, [[1.25, 2.5], [0.5, 1.0], [0.25, 0.5]], quiet=True)
### BEGIN HIDDEN TESTS
_rng = np.random.default_rng(1234)
for _n, _d, _h, _o in [(5, 7, 4, 3), (1, 3, 6, 2), (16, 20, 8, 1)]:
    _x, _w1, _w2 = _rng.standard_normal((_n, _d)), _rng.standard_normal((_d, _h)), _rng.standard_normal((_h, _o))
    _y = _rng.standard_normal((_n, _o))
    _yp, (_hh, _hr) = two_layer_forward(_x, _w1, _w2)
    checks.check_close("hidden h", _hh, _x @ _w1, quiet=True)
    checks.check_close("hidden h_relu", _hr, np.maximum(_x @ _w1, 0), quiet=True)
    checks.check_close("hidden y_pred", _yp, np.maximum(_x @ _w1, 0) @ _w2, quiet=True)
    _loss = squared_error(_yp, _y)
    assert isinstance(_loss, float), f"squared_error should return a float, got {type(_loss).__name__}"
    checks.check_close("hidden loss", _loss, np.sum((np.maximum(_x @ _w1, 0) @ _w2 - _y) ** 2), quiet=True)
### END HIDDEN TESTS
checks.passed("forward pass and loss")

# %% [markdown] nbgrader={"grade": false, "grade_id": "backward-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 2 · Backward pass (4 points)
#
# Work backwards through the graph, one line per forward line, keeping the shapes in view:
#
# | gradient | formula | shape |
# |---|---|---|
# | $\partial L/\partial \hat Y$ | $2(\hat Y - Y)$ | $N \times D_{out}$ |
# | $\partial L/\partial W_2$ | $h_{relu}^\top \,\partial L/\partial \hat Y$ | $H \times D_{out}$ |
# | $\partial L/\partial h_{relu}$ | $\partial L/\partial \hat Y \; W_2^\top$ | $N \times H$ |
# | $\partial L/\partial h$ | $\partial L/\partial h_{relu}$, zeroed where $h < 0$ | $N \times H$ |
# | $\partial L/\partial W_1$ | $X^\top \,\partial L/\partial h$ | $D_{in} \times H$ |
#
# A gradient always has the shape of the thing it is the gradient of: if a shape does not
# fit, a transpose is missing. The ReLU passes gradient only where its *input* `h` was positive.
#
# Implement `two_layer_backward(x, y, y_pred, cache, w2)` returning `(grad_w1, grad_w2)`.
# Do not modify `cache` in place.

# %% nbgrader={"grade": false, "grade_id": "backward", "locked": false, "schema_version": 3, "solution": true}
def two_layer_backward(x, y, y_pred, cache, w2):
    """Gradients of the sum-of-squares loss with respect to w1 and w2."""
    h, h_relu = cache
    ### BEGIN SOLUTION
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h_relu = grad_y_pred @ w2.T
    grad_h = grad_h_relu.copy()
    grad_h[h < 0] = 0
    grad_w1 = x.T @ grad_h
    ### END SOLUTION
    return grad_w1, grad_w2


# %% [markdown] nbgrader={"grade": false, "grade_id": "gradcheck-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check: a numeric gradient check.** For a small network we nudge every weight by
# $\pm 10^{-5}$, measure the change of the loss, and compare $\frac{L(w+\epsilon)-L(w-\epsilon)}{2\epsilon}$
# with your analytic gradient. In float64 a correct backward pass agrees to about $10^{-8}$.
# Before that we check that the cache came back unchanged, and a second probe switches every hidden unit off ($h < 0$ everywhere): then nothing can flow
# back to `w1` and its gradient must be exactly zero.

# %% nbgrader={"grade": false, "grade_id": "backward-check", "locked": true, "schema_version": 3, "solution": false}
gc_rng = np.random.default_rng(7)
x_gc, y_gc = gc_rng.standard_normal((4, 5)), gc_rng.standard_normal((4, 3))
w1_gc, w2_gc = gc_rng.standard_normal((5, 6)), gc_rng.standard_normal((6, 3))


def loss_at_current_weights():
    return squared_error(two_layer_forward(x_gc, w1_gc, w2_gc)[0], y_gc)


x_off = np.abs(x_gc)
w1_off = -np.abs(w1_gc)  # every h = x_off @ w1_off is negative: all ReLUs are off
with checks.explain_errors("two_layer_backward"):
    y_pred_gc, cache_gc = two_layer_forward(x_gc, w1_gc, w2_gc)
    cache_before = [np.copy(c) for c in cache_gc]
    grad_w1_gc, grad_w2_gc = two_layer_backward(x_gc, y_gc, y_pred_gc, cache_gc, w2_gc)
    y_pred_off, cache_off = two_layer_forward(x_off, w1_off, w2_gc)
    grad_w1_off, _ = two_layer_backward(x_off, y_gc, y_pred_off, cache_off, w2_gc)
checks.check_true(
    "cache unchanged", all(np.array_equal(c, c0) for c, c0 in zip(cache_gc, cache_before, strict=True)),
    "two_layer_backward changed the cache in place (an assignment into h or h_relu, such as "
    "`h[h < 0] = 0`): the exercise asks you not to. Build the masked gradient as a new array instead.",
)
checks.check_true(
    "ReLU mask", np.all(grad_w1_off == 0),
    "every hidden unit is off (h < 0), so grad_w1 must be all zeros, but yours is not. "
    "The ReLU mask is missing or taken from the wrong tensor: zero grad_h where h < 0.",
)
for label, weight, analytic in [("grad_w2", w2_gc, grad_w2_gc), ("grad_w1", w1_gc, grad_w1_gc)]:
    numeric = checks.numeric_gradient(loss_at_current_weights, weight)
    checks.gradient_check(
        label, loss_at_current_weights, weight, analytic,
        mistakes={"you dropped the factor 2 from d(u^2)/du = 2u": numeric / 2,
                  "the sign is flipped: dL/dy_pred is 2 * (y_pred - y), not 2 * (y - y_pred)": -numeric,
                  f"{label} is transposed: a gradient has the shape of the weight it belongs to "
                  "(swap the operands of the product and transpose them)": numeric.T},
    )

# %% nbgrader={"grade": true, "grade_id": "test-backward", "locked": true, "points": 4, "schema_version": 3, "solution": false}
# Graded: backward pass (hidden tests: other shapes, and the ReLU mask on mixed signs).
# Inputs of the right shapes that do not come from your forward pass (so a mistake
# there costs points only in exercise 1).
_hidden = np.ones((x_gc.shape[0], w1_gc.shape[1]))
_gw1, _gw2 = two_layer_backward(x_gc, y_gc, np.zeros_like(y_gc), (_hidden, _hidden), w2_gc)
checks.check_shape("grad_w1", _gw1, w1_gc.shape, quiet=True)
checks.check_shape("grad_w2", _gw2, w2_gc.shape, quiet=True)
### BEGIN HIDDEN TESTS
_rng = np.random.default_rng(4321)
for _n, _d, _h, _o in [(3, 4, 5, 2), (8, 2, 3, 4), (1, 6, 7, 1)]:
    _x, _w1, _w2 = _rng.standard_normal((_n, _d)), _rng.standard_normal((_d, _h)), _rng.standard_normal((_h, _o))
    _y = _rng.standard_normal((_n, _o))
    _hh = _x @ _w1
    _hr = np.maximum(_hh, 0)
    _yp = _hr @ _w2
    _cache = (_hh.copy(), _hr.copy())
    _gw1, _gw2 = two_layer_backward(_x, _y, _yp, _cache, _w2)
    _gy = 2 * (_yp - _y)
    checks.check_close("hidden grad_w2", _gw2, _hr.T @ _gy, quiet=True)
    checks.check_close("hidden grad_w1", _gw1, _x.T @ ((_gy @ _w2.T) * (_hh > 0)), quiet=True)
    assert np.array_equal(_cache[0], _hh) and np.array_equal(_cache[1], _hr), "backward modified the cache in place"
### END HIDDEN TESTS
checks.passed("backward pass")

# %% [markdown] nbgrader={"grade": false, "grade_id": "sgd-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 3 · An in-place gradient-descent step (2 points)
#
# `sgd_step(params, grads, lr)` takes a list of weight arrays and the matching list of
# gradients and moves every weight a step of size `lr` downhill: $w \leftarrow w - \eta \nabla_w L$.
#
# It must change the arrays **in place** and return nothing. `w = w - lr * g` inside the loop
# only rebinds the loop variable to a new array; the weights the caller holds do not move, and
# training silently does nothing. This is the most common bug in hand-written training loops
# (PyTorch has the same trap, as you will see in notebook 04).

# %% nbgrader={"grade": false, "grade_id": "sgd", "locked": false, "schema_version": 3, "solution": true}
def sgd_step(params, grads, lr):
    """Update every array in params in place: p <- p - lr * g."""
    ### BEGIN SOLUTION
    for p, g in zip(params, grads, strict=True):
        p -= lr * g
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "sgd-check", "locked": true, "schema_version": 3, "solution": false}
w_a, w_b = np.ones((2, 3)), np.zeros(4)
g_a, g_b = np.full((2, 3), 2.0), np.arange(4.0)
before = {"w_a": w_a.copy(), "w_b": w_b.copy()}
with checks.explain_errors("sgd_step"):
    sgd_step([w_a, w_b], [g_a, g_b], lr=0.5)
checks.check_params_updated("sgd_step", {"w_a": before["w_a"]}, {"w_a": w_a})
checks.check_close("w_a after one step", w_a, np.zeros((2, 3)),
                   mistakes={"the step goes uphill: it must subtract lr * g": np.full((2, 3), 2.0),
                             "the learning rate is missing: the step is lr * g, not g": np.full((2, 3), -1.0)})
checks.check_close("w_b after one step", w_b, [0.0, -0.5, -1.0, -1.5],
                   mistakes={"only the first array was updated: is there a `return` inside the loop?":
                                 before["w_b"]})

# %% nbgrader={"grade": true, "grade_id": "test-sgd", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: in-place SGD step.
_p = [np.ones(3)]
sgd_step(_p, [np.ones(3)], lr=0.25)
checks.check_close("one step", _p[0], np.full(3, 0.75), quiet=True)
### BEGIN HIDDEN TESTS
_rng = np.random.default_rng(99)
_params = [_rng.standard_normal((4, 5)), _rng.standard_normal(7), _rng.standard_normal((2, 2, 2))]
_ids = [id(p) for p in _params]
_copies = [p.copy() for p in _params]
_grads = [_rng.standard_normal(p.shape) for p in _params]
assert sgd_step(_params, _grads, lr=1e-2) is None, "sgd_step should update in place and return None"
assert [id(p) for p in _params] == _ids, "sgd_step replaced the arrays in the list instead of updating them"
for _p, _c, _g in zip(_params, _copies, _grads):
    checks.check_close("hidden step", _p, _c - 1e-2 * _g, quiet=True)
### END HIDDEN TESTS
checks.passed("in-place SGD step")

# %% [markdown] nbgrader={"grade": false, "grade_id": "train-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 4 · Train the network (2 points)
#
# Put the pieces together. `train(x, y, w1, w2, lr, num_steps)` repeats *forward → loss →
# backward → step* `num_steps` times, updating `w1` and `w2` in place, and returns the
# list of the `num_steps` loss values (the loss computed at the start of each step).
# Use your functions from exercises 1 to 3.

# %% nbgrader={"grade": false, "grade_id": "train", "locked": false, "schema_version": 3, "solution": true}
def train(x, y, w1, w2, lr, num_steps):
    """Gradient descent on the two-layer net; returns the loss of every step."""
    losses = []
    ### BEGIN SOLUTION
    for _ in range(num_steps):
        y_pred, cache = two_layer_forward(x, w1, w2)
        losses.append(squared_error(y_pred, y))
        grad_w1, grad_w2 = two_layer_backward(x, y, y_pred, cache, w2)
        sgd_step([w1, w2], [grad_w1, grad_w2], lr)
    ### END SOLUTION
    return losses


# %% [markdown] nbgrader={"grade": false, "grade_id": "train-run-md", "locked": true, "schema_version": 3, "solution": false}
# With random weights of unit variance the first loss is in the tens of millions, so the
# learning rate has to be tiny. In fast mode we take fewer steps.

# %% nbgrader={"grade": false, "grade_id": "train-run", "locked": true, "schema_version": 3, "solution": false}
num_steps = budget(full=500, fast=200)
lr = 1e-6
w1 = rng.standard_normal((D_in, H))
w2 = rng.standard_normal((H, D_out))
w1_start, w2_start = w1.copy(), w2.copy()
with checks.explain_errors("train"):
    losses = train(x, y, w1, w2, lr, num_steps)

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(losses)
ax.set(xlabel="step", ylabel="sum of squared errors (log scale)", title="Training the NumPy network")
plt.show()
print(f"loss: {losses[0]:.3g} at step 0 -> {losses[-1]:.3g} at step {len(losses) - 1}")

# %% nbgrader={"grade": false, "grade_id": "train-check", "locked": true, "schema_version": 3, "solution": false}
checks.check_true(
    "number of losses", len(losses) == num_steps,
    f"expected {num_steps} loss values, got {len(losses)}: append one loss in each of the num_steps steps"
    + (" (an off-by-one in the loop's range?)" if abs(len(losses) - num_steps) == 1 else "") + ".",
)
checks.check_true(
    "the loss moves", len(set(losses)) > 1,
    "the loss never changed: the weights were never updated. Call sgd_step on [w1, w2] and their "
    "gradients in every step (and check that it updates in place, exercise 3).",
)
# The first loss is the loss of the starting weights; one step later the loss is smaller.
with checks.explain_errors("train (the first step again, from the same start)"):
    y_pred_start, cache_start = two_layer_forward(x, w1_start, w2_start)
    g1_start, g2_start = two_layer_backward(x, y, y_pred_start, cache_start, w2_start)
    loss_after_one_step = squared_error(two_layer_forward(x, w1_start - lr * g1_start, w2_start - lr * g2_start)[0], y)
checks.check_close(
    "the first loss is the loss of the starting weights", losses[0], squared_error(y_pred_start, y),
    mistakes={"the loss is recorded after the step: append the loss of the forward pass before "
              "updating the weights": loss_after_one_step},
)
checks.check_params_updated("train updates w1 and w2", {"w1": w1_start, "w2": w2_start}, {"w1": w1, "w2": w2})
checks.check_true(
    "loss decreased", losses[-1] < 1e-3 * losses[0],
    f"the loss went from {losses[0]:.3g} to {losses[-1]:.3g}; it should fall by more than 1000x.",
)

# %% nbgrader={"grade": true, "grade_id": "test-train", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: the training loop. It is tested with reference versions of the other three
# functions, so a mistake in exercises 1-3 costs points only there.
### BEGIN HIDDEN TESTS
def _forward(x, w1, w2):
    h = x @ w1
    return np.maximum(h, 0) @ w2, (h, np.maximum(h, 0))


def _squared_error(y_pred, y):
    return float(np.sum((y_pred - y) ** 2))


def _backward(x, y, y_pred, cache, w2):
    h, h_relu = cache
    g = 2 * (y_pred - y)
    return x.T @ ((g @ w2.T) * (h > 0)), h_relu.T @ g


def _sgd_step(params, grads, lr):
    for p, g in zip(params, grads):
        p -= lr * g


_rng = np.random.default_rng(2024)
_x, _y = _rng.standard_normal((10, 6)), _rng.standard_normal((10, 2))
_w1, _w2 = _rng.standard_normal((6, 5)), _rng.standard_normal((5, 2))
_w1_ref, _w2_ref = _w1.copy(), _w2.copy()
with checks.substitute(two_layer_forward=_forward, squared_error=_squared_error,
                       two_layer_backward=_backward, sgd_step=_sgd_step):
    _losses = train(_x, _y, _w1, _w2, 1e-3, 7)
_expected = []
for _ in range(7):
    _yp, _c = _forward(_x, _w1_ref, _w2_ref)
    _expected.append(_squared_error(_yp, _y))
    _sgd_step([_w1_ref, _w2_ref], _backward(_x, _y, _yp, _c, _w2_ref), 1e-3)
assert len(_losses) == 7, f"train should return 7 losses, got {len(_losses)}"
checks.check_close("hidden losses", _losses, _expected, quiet=True)
checks.check_close("hidden w1 after training", _w1, _w1_ref, quiet=True)
### END HIDDEN TESTS
checks.passed("training loop")

# %% [markdown] nbgrader={"grade": false, "grade_id": "recap", "locked": true, "schema_version": 3, "solution": false}
# ## Recap
#
# * The forward pass is three lines; the backward pass is the same lines in reverse,
#   each a matrix product whose shape you can predict.
# * The ReLU's gradient is a mask taken from its **input** `h`.
# * A numeric gradient check catches almost every backward bug; use it whenever you
#   write a gradient by hand (PyTorch's `torch.autograd.gradcheck` does the same, notebook 03).
# * Parameters must be updated **in place**, or training silently does nothing.
#
# **Further exercises** (not graded): add biases `b1`, `b2` and their gradients; replace the
# sum with a mean and see how the learning rate must change; try `lr = 1e-5` and explain the plot.
