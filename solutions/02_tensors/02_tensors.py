# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false}
# # 02 · Tensors
#
# A `torch.Tensor` is an n-dimensional array, like a NumPy array, with two extra powers:
# it can live on a GPU, and (next notebook) it can record the operations applied to it so
# that gradients come for free. This notebook is about the array part. You will move data
# between NumPy and torch, read and change shapes, reduce along dimensions, and rebuild
# the two-layer network of notebook 01 with tensors, still with a hand-written backward pass,
# in code that runs unchanged on a CPU or a GPU.
#
# **Learning goals**
# 1. Convert between NumPy and torch, and know when the two share memory (`from_numpy`) and when they copy.
# 2. Read a tensor's `shape`/`size()`, `dim()`, `numel()`, `dtype` and `device`; reshape safely (`view` vs `reshape`).
# 3. Reduce along a dimension with `dim=` and `keepdim=`; compute an accuracy without integer division.
# 4. Write the forward and manual backward pass of a two-layer net with tensors.
# 5. Write device-agnostic code with `torch.device`: create tensors where they are needed, move data to the weights.
#
# Every exercise has a **self-check** you can run as often as you like, and a graded cell
# (with hidden tests on other shapes, dtypes and devices) that the autograder runs.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup-md", "locked": true, "schema_version": 3, "solution": false}
# ## Setup
# `setup` seeds every random generator and picks the device: `cuda` when a GPU is
# visible, `cpu` otherwise. All code below uses `device` and never names a device itself.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

from course_utils import budget, checks, setup

config = setup(seed=0)
device = config.device

# %% [markdown] nbgrader={"grade": false, "grade_id": "bridge-md", "locked": true, "schema_version": 3, "solution": false}
# ## 1 · NumPy and torch: shared memory or a copy?
#
# There are several ways to turn a NumPy array into a tensor, and they differ in one
# important way: whether the tensor gets its own memory.
#
# | call | memory | dtype |
# |---|---|---|
# | `torch.from_numpy(a)` | **shared** with `a` | same as `a` (float64 stays float64) |
# | `torch.as_tensor(a, ...)` | shared **if it can** (same dtype, CPU), otherwise a copy | as asked |
# | `torch.tensor(a, ...)` | always a **copy** | as asked |
# | `t.numpy()` (CPU tensors only) | **shared** with `t` | same as `t` |
#
# Shared memory is cheap (no copy) but means a change on one side shows up on the other.
# Watch it happen:

# %% nbgrader={"grade": false, "grade_id": "bridge-demo", "locked": true, "schema_version": 3, "solution": false}
a = np.arange(6.0).reshape(2, 3)
t_shared = torch.from_numpy(a)
t_copy = torch.tensor(a)
a[0, 0] = 100.0  # change the NumPy array ...
print("from_numpy sees the change:", t_shared[0, 0].item())  # ... the shared tensor sees it
print("torch.tensor does not:     ", t_copy[0, 0].item())
print("same buffer:", t_shared.data_ptr() == a.ctypes.data, "| dtype kept:", t_shared.dtype)

back = t_shared.numpy()  # and back again, still the same memory
back[1, 1] = -1.0
print("a after writing through t_shared.numpy():\n", a)

# %% [markdown] nbgrader={"grade": false, "grade_id": "bridge-ex-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 1 · Shared and independent tensors (2 points)
#
# * `shared_tensor(a)` returns a tensor that **shares memory** with the NumPy array `a`
#   (no copy, same dtype).
# * `independent_tensor(a, device, dtype)` returns a tensor with the values of `a`, with the
#   given `dtype`, on the given `device`, that **never** shares memory with `a`, whatever
#   `a`'s dtype and whatever the device.
#
# Careful with `torch.as_tensor`: it copies only when it has to.

# %% nbgrader={"grade": false, "grade_id": "bridge", "locked": false, "schema_version": 3, "solution": true}
def shared_tensor(a):
    """A tensor that shares memory with the NumPy array `a`."""
    ### BEGIN SOLUTION
    return torch.from_numpy(a)
    ### END SOLUTION


def independent_tensor(a, device, dtype=torch.float32):
    """A new tensor with `a`'s values, `dtype` and `device`, never sharing memory with `a`."""
    ### BEGIN SOLUTION
    return torch.tensor(a, dtype=dtype, device=device)
    ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "bridge-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** We change the array after the conversion and look at the tensor.

# %% nbgrader={"grade": false, "grade_id": "bridge-check", "locked": true, "schema_version": 3, "solution": false}
arr = np.arange(12.0).reshape(3, 4)[:, ::2]  # float64, every other column: not contiguous
with checks.explain_errors("shared_tensor"):
    s = shared_tensor(arr)
checks.check_tensor("shared_tensor", s, shape=(3, 2), dtype=torch.float64)
arr[1, 1] = -7.0
checks.check_true(
    "shared_tensor shares memory", s[1, 1].item() == -7.0,
    "after changing the array, your tensor still holds the old value: it is a copy. "
    "`torch.tensor(a)` always copies, and so do `a.copy()` and `np.ascontiguousarray(a)` for an array "
    "that is not contiguous (this one holds every other column); `torch.from_numpy(a)` shares the "
    "array's memory, strides included.",
)

arr64 = np.ones(3)  # float64, as NumPy makes it
with checks.explain_errors("independent_tensor"):
    c64 = independent_tensor(arr64, device, torch.float32)
    c_meta = independent_tensor(arr64, torch.device("meta"), torch.float64)
checks.check_tensor("independent_tensor(float64 array, dtype=float32)", c64, shape=(3,), dtype=torch.float32,
                    device=device)
checks.check_tensor("independent_tensor(array, device=meta)", c_meta, shape=(3,), dtype=torch.float64,
                    device="meta")
arr32 = np.ones(3, dtype=np.float32)
with checks.explain_errors("independent_tensor"):
    c = independent_tensor(arr32, device, torch.float32)
checks.check_tensor("independent_tensor", c, shape=(3,), dtype=torch.float32, device=device)
arr32[0] = 5.0
checks.check_true(
    "independent_tensor is a copy", c[0].item() == 1.0,
    "after changing the array, your tensor changed too: it shares memory with the array. "
    "`torch.as_tensor` and `torch.from_numpy` do not copy when the dtype (and device) already "
    "match, and `.to(...)` returns the same tensor when nothing changes; `torch.tensor(a, ...)` or "
    "`.clone()` always makes a copy.",
)

# %% nbgrader={"grade": true, "grade_id": "test-bridge", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: NumPy <-> torch (hidden tests: other dtypes, the no-copy trap of as_tensor, a non-CPU device).
# The arrays are made where your code runs (`checks.in_kernel`), so that a shared buffer can be seen.
_a = checks.in_kernel(np.arange(4.0))
_s = shared_tensor(_a)
_a[0] = 42.0
assert checks.fetch(_s)[0].item() == 42.0, "shared_tensor must share memory with the array"
### BEGIN HIDDEN TESTS
def _convert_then_write(convert, dtype):
    a = np.arange(12, dtype=dtype).reshape(3, 4)[:, ::2]  # a strided (non-contiguous) array
    t = convert(a)
    a[2, 1] = 99
    return t


for _dt in [np.int32, np.float32, np.float64]:
    _s = checks.run_in_kernel(_convert_then_write, shared_tensor, np.dtype(_dt))
    assert isinstance(_s, torch.Tensor) and _s.dtype == torch.from_numpy(np.zeros(1, _dt)).dtype, "shared_tensor must keep the dtype"
    assert _s[2, 1].item() == 99, "shared_tensor must share memory"
for _dt, _tdt in [(np.float32, torch.float32), (np.float64, torch.float64), (np.int64, torch.float32), (np.float64, torch.float16)]:
    _a = checks.in_kernel(np.arange(6, dtype=_dt).reshape(2, 3))
    _c = independent_tensor(_a, torch.device("cpu"), _tdt)
    checks.check_tensor("hidden independent", _c, shape=(2, 3), dtype=_tdt, device="cpu", quiet=True)
    _a[0, 0] = 123
    assert checks.fetch(_c)[0, 0].item() == 0, "independent_tensor shares memory with the array"
    checks.check_close("hidden values", _c, np.arange(6).reshape(2, 3), quiet=True)
_m = independent_tensor(np.zeros((2, 2)), torch.device("meta"), torch.float64)
checks.check_tensor("hidden device", _m, shape=(2, 2), dtype=torch.float64, device="meta", quiet=True)
### END HIDDEN TESTS
checks.passed("NumPy bridge")

# %% [markdown] nbgrader={"grade": false, "grade_id": "shape-md", "locked": true, "schema_version": 3, "solution": false}
# ## 2 · Shape, dtype, device
#
# Five attributes describe a tensor:
#
# * `t.shape` (or `t.size()`, the same `torch.Size`; `t.size(1)` is one dimension),
# * `t.dim()`, the number of dimensions, and `t.numel()`, the number of elements,
# * `t.dtype`: `float32` is the default for new tensors (NumPy's default is `float64`),
#   labels are `int64` (`long`), masks are `bool`,
# * `t.device`: `cpu` or `cuda:0` ... Operations need all their tensors on one device.

# %% nbgrader={"grade": false, "grade_id": "shape-demo", "locked": true, "schema_version": 3, "solution": false}
images = torch.randn(8, 3, 32, 32, device=device)  # a batch: N, C, H, W
print("shape:", images.shape, "| size(1):", images.size(1), "| dim:", images.dim(),
      "| numel:", images.numel(), "| dtype:", images.dtype, "| device:", images.device)
print("torch default float:", torch.tensor([1.0]).dtype, "| NumPy default float:", np.array([1.0]).dtype)
print("integers stay integers:", torch.tensor([1, 2]).dtype,
      "| true division gives floats:", (torch.tensor([7]) / 2).item(),
      "| floor division does not:", (torch.tensor([7]) // 2).item())

# %% [markdown] nbgrader={"grade": false, "grade_id": "view-md", "locked": true, "schema_version": 3, "solution": false}
# ### `view` versus `reshape`
#
# A tensor is a block of memory plus a *stride* per dimension (how many elements to skip to
# move one step along it). `t.T`, `t.permute(...)` and slicing only change the strides: no copy,
# but the result is no longer laid out row by row (it is *non-contiguous*).
# `view` reinterprets the memory with a new shape and therefore needs a compatible layout;
# `reshape` does the same when it can and copies when it must.

# %% nbgrader={"grade": false, "grade_id": "view-demo", "locked": true, "schema_version": 3, "solution": false}
m = torch.arange(6).reshape(2, 3)
print("m.stride():", m.stride(), "| m.T.stride():", m.T.stride(), "| m.T contiguous?", m.T.is_contiguous())
try:
    m.T.view(6)
except RuntimeError as err:
    print("m.T.view(6) fails:", str(err).split(".")[0])
print("m.T.reshape(6):", m.T.reshape(6).tolist(), "| m.T.contiguous().view(6):", m.T.contiguous().view(6).tolist())

# %% [markdown] nbgrader={"grade": false, "grade_id": "flatten-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 2 · Flatten a batch (2 points)
#
# Before a fully connected layer, every example of a batch has to become one row.
# Write `flatten_batch(x)`: for `x` of shape `(N, d1, d2, ...)` (any number of dimensions
# after the first, at least one) return the tensor of shape `(N, d1 * d2 * ...)` with each
# example's values in row-major order. It must work for non-contiguous inputs too, such as
# images that were permuted from `(N, H, W, C)` to `(N, C, H, W)`.

# %% nbgrader={"grade": false, "grade_id": "flatten", "locked": false, "schema_version": 3, "solution": true}
def flatten_batch(x):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), for contiguous and non-contiguous x."""
    ### BEGIN SOLUTION
    return x.reshape(x.size(0), -1)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "flatten-check", "locked": true, "schema_version": 3, "solution": false}
batch = torch.arange(2 * 3 * 2 * 2, device=device).reshape(2, 3, 2, 2)
with checks.explain_errors("flatten_batch"):
    flat = flatten_batch(batch)
checks.check_true(
    "flatten_batch keeps one row per example", flat.dim() == 2 and flat.shape[0] == 2,
    f"a batch of shape (2, 3, 2, 2) became shape {tuple(flat.shape)}: "
    + ("the batch dimension was flattened too, into one long vector. Keep dimension 0 and flatten "
       "only the dimensions after it." if flat.dim() == 1 else "expected (2, 12): dimension 0 stays, "
       "the others become one."),
)
checks.check_tensor("flatten_batch (contiguous input)", flat, shape=(2, 12), device=device)
checks.check_close("flatten_batch values", flat, np.arange(24).reshape(2, 12))

channels_last = torch.arange(2 * 4 * 4 * 3, device=device).reshape(2, 4, 4, 3)
channels_first = channels_last.permute(0, 3, 1, 2)  # N, C, H, W but non-contiguous
with checks.explain_errors("flatten_batch on a permuted batch"):
    flat = flatten_batch(channels_first)
checks.check_close("flatten_batch (non-contiguous input)", flat,
                   channels_first.contiguous().cpu().numpy().reshape(2, 48))

try:
    other_shapes = [tuple(flatten_batch(torch.zeros(shape, device=device)).shape)
                    for shape in [(4, 5, 6), (2, 1, 3, 1, 2)]]
    failure = None
except (IndexError, RuntimeError, ValueError, TypeError) as err:
    other_shapes, failure = None, f"{type(err).__name__}: {err}"
checks.check_true(
    "flatten_batch for 3-D and 5-D batches", other_shapes == [(4, 30), (2, 6)],
    (f"it raised {failure}" if failure else f"expected shapes [(4, 30), (2, 6)], got {other_shapes}")
    + ". Your code assumes a fixed number of dimensions (e.g. `x.size(3)`): compute the row length "
    "from all the dimensions after the first, whatever their number.",
)

# %% nbgrader={"grade": true, "grade_id": "test-flatten", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: flatten (hidden tests: batch of one, 2-D and 5-D inputs, transposed inputs).
checks.check_shape("flatten", flatten_batch(torch.zeros(4, 2, 5)), (4, 10), quiet=True)
### BEGIN HIDDEN TESTS
def _flatten_permuted(flatten_batch, x, dims):
    return flatten_batch(x.permute(*dims))  # permuted where flatten_batch runs: non-contiguous there


_g = torch.Generator().manual_seed(5)
for _shape, _perm in [((1, 3, 4, 5), (0, 2, 1, 3)), ((6, 7), (0, 1)), ((3, 2, 2, 2, 2), (0, 4, 3, 2, 1)),
                      ((5, 4, 3), (0, 2, 1)), ((2, 1, 9), (0, 1, 2))]:
    _x = torch.randn(_shape, generator=_g)
    _out = checks.run_in_kernel(_flatten_permuted, flatten_batch, _x, _perm)
    checks.check_close("hidden flatten", _out, _x.permute(_perm).contiguous().numpy().reshape(_shape[0], -1), quiet=True)
_x = torch.randn(3, 4, generator=_g)
_out = checks.run_in_kernel(_flatten_permuted, flatten_batch, _x, (1, 0))  # (4, 3), non-contiguous 2-D
checks.check_close("hidden flatten 2-D transposed", _out, _x.T.numpy(), quiet=True)
### END HIDDEN TESTS
checks.passed("flatten_batch")

# %% [markdown] nbgrader={"grade": false, "grade_id": "reduce-md", "locked": true, "schema_version": 3, "solution": false}
# ## 3 · Reductions along a dimension
#
# `sum`, `mean`, `std`, `max`, `argmax` ... reduce over every element by default, or over
# one dimension with `dim=`: **that dimension disappears** from the shape. With
# `keepdim=True` it stays, with size 1, so the result broadcasts back against the input.
# That is what you want when you subtract a per-row statistic: without `keepdim`, a vector of
# row means of shape `(N,)` lines up with the *last* dimension, i.e. the columns. For a square
# matrix no error is raised: the result is silently wrong.

# %% nbgrader={"grade": false, "grade_id": "reduce-demo", "locked": true, "schema_version": 3, "solution": false}
r = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
print("sum():", r.sum().item(), "| sum(dim=0):", r.sum(dim=0).tolist(), "| sum(dim=1):", r.sum(dim=1).tolist())
print("mean(dim=1, keepdim=True) has shape", tuple(r.mean(dim=1, keepdim=True).shape))
values, indices = r.max(dim=1)
print("max(dim=1) gives values", values.tolist(), "and indices", indices.tolist())

fig, axes = plt.subplots(1, 3, figsize=(9, 2.4))
for ax, (title, data) in zip(axes, [("r  (2, 3)", r), ("r.sum(dim=0)  (3,)", r.sum(dim=0, keepdim=True)),
                                    ("r.sum(dim=1)  (2,)", r.sum(dim=1, keepdim=True))]):
    ax.imshow(data, cmap="Blues", vmin=0, vmax=15)
    for (i, j), v in np.ndenumerate(data.numpy()):
        ax.text(j, i, f"{v:g}", ha="center", va="center")
    ax.set(title=title, xticks=[], yticks=[])
fig.suptitle("dim= names the dimension that is summed away")
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "reductions-ex-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 3 · Standardise and measure accuracy (3 points)
#
# * `standardize(x, dim)` returns `(x - mean) / std`, with the mean and the standard deviation
#   taken along `dim` (population std: `correction=0`). Any number of dimensions, any `dim`.
# * `accuracy(scores, labels)`: `scores` has shape `(N, C)` (one score per class), `labels`
#   holds the true class of each row (int64). Return the fraction of rows whose highest score
#   is the true class, as a Python `float`.
#
# Comparing tensors gives `bool`s, summing them gives an `int64` tensor: watch how you divide.

# %% nbgrader={"grade": false, "grade_id": "reductions", "locked": false, "schema_version": 3, "solution": true}
def standardize(x, dim):
    """Subtract the mean and divide by the (population) std along `dim`."""
    ### BEGIN SOLUTION
    mean = x.mean(dim=dim, keepdim=True)
    std = x.std(dim=dim, keepdim=True, correction=0)
    return (x - mean) / std
    ### END SOLUTION


def accuracy(scores, labels):
    """Fraction of rows whose argmax over classes equals the label, as a float."""
    ### BEGIN SOLUTION
    predictions = scores.argmax(dim=1)
    return (predictions == labels).float().mean().item()
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "reductions-check", "locked": true, "schema_version": 3, "solution": false}
sq = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 12.0], [0.0, 0.0, 3.0]])
with checks.explain_errors("standardize"):
    rows = standardize(sq, dim=1)
    z = standardize(torch.randn(50, 4, device=device) * 3 + 7, dim=0)
rows_expected = [[-1.2247449, 0.0, 1.2247449], [-0.9258201, -0.4629100, 1.3887301], [-0.7071068, -0.7071068, 1.4142136]]
checks.check_close(
    "standardize(x, dim=1)", rows, rows_expected, rtol=1e-5,
    mistakes={"you reduced without keepdim=True, so the row statistics broadcast along the columns":
                  (sq - sq.mean(dim=1)) / sq.std(dim=1, correction=0),
              "you used the sample std (correction=1) instead of the population std":
                  (sq - sq.mean(dim=1, keepdim=True)) / sq.std(dim=1, keepdim=True)},
)
checks.check_true("standardize(x, dim=0): column means are 0", bool(z.mean(dim=0).abs().max() < 1e-5),
                  "after standardising along dim=0 every column should have mean 0.")
checks.check_close("standardize(x, dim=0): column stds", z.std(dim=0, correction=0), torch.ones(4), rtol=1e-4)

scores_small = torch.tensor([[0.1, 2.0, 0.3, 0.0], [1.5, 0.2, 0.1, 0.4], [0.0, 0.1, 3.0, 0.2], [0.9, 0.8, 0.7, 0.6]])
labels_small = torch.tensor([1, 0, 2, 3])  # rows 0, 1 and 2 are right: accuracy 0.75
with checks.explain_errors("accuracy"):
    acc = accuracy(scores_small, labels_small)
checks.check_true("accuracy is a Python float", isinstance(acc, float),
                  f"got {type(acc).__name__}; return a plain number with `.item()` (a float, not an int).")
checks.check_close(
    "accuracy", acc, 0.75,
    mistakes={"integer division: `correct // n` floors the fraction to 0; divide a float "
              "(`.float().mean()` or `/`)": 0.0,
              "the number of right rows, not the fraction: divide by the number of rows": 3.0,
              "argmax over dim=0 (across the batch) instead of dim=1 (across the classes)": 1.0},
)

# %% nbgrader={"grade": true, "grade_id": "test-reductions", "locked": true, "points": 3, "schema_version": 3, "solution": false}
# Graded: reductions (hidden tests: square inputs, 3-D, negative dims, float64, other seeds).
_scores = torch.tensor([[0.1, 2.0, 0.3, 0.0], [1.5, 0.2, 0.1, 0.4], [0.0, 0.1, 3.0, 0.2], [0.9, 0.8, 0.7, 0.6]])
checks.check_close("accuracy", accuracy(_scores, torch.tensor([1, 0, 2, 3])), 0.75, quiet=True)
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(11)
for _shape, _dim, _dt in [((4, 4), 1, torch.float32), ((4, 4), 0, torch.float64), ((3, 5, 2), -1, torch.float64),
                          ((3, 5, 2), 1, torch.float32), ((7,), 0, torch.float32)]:
    _x = torch.randn(_shape, generator=_g, dtype=_dt) * 2 + 1
    _z = standardize(_x, _dim)
    assert _z.dtype == _dt, "standardize changed the dtype"
    _ref = (_x - _x.mean(dim=_dim, keepdim=True)) / _x.std(dim=_dim, keepdim=True, correction=0)
    checks.check_close("hidden standardize", _z, _ref, rtol=1e-4, atol=1e-6, quiet=True)
for _n, _c in [(1, 3), (10, 4), (37, 10), (5, 5)]:
    _s = torch.randn(_n, _c, generator=_g)
    _l = torch.randint(0, _c, (_n,), generator=_g)
    _a = accuracy(_s, _l)
    assert isinstance(_a, float), "accuracy must return a Python float"
    checks.check_close("hidden accuracy", _a, (_s.argmax(1) == _l).double().mean().item(), quiet=True)
_s = torch.eye(4)
assert accuracy(_s, torch.arange(4)) == 1.0, "accuracy should be 1.0 when every row is right"
assert accuracy(_s, torch.tensor([1, 0, 3, 2])) == 0.0, "accuracy should be 0.0 when every row is wrong"
### END HIDDEN TESTS
checks.passed("reductions")

# %% [markdown] nbgrader={"grade": false, "grade_id": "net-md", "locked": true, "schema_version": 3, "solution": false}
# ## 4 · The two-layer network, now with tensors
#
# The network and loss of notebook 01, unchanged:
# $h = XW_1$, $h_{relu} = \max(h, 0)$, $\hat Y = h_{relu}W_2$, $L = \sum (\hat Y - Y)^2$,
# and the same backward formulas. Only the vocabulary changes:
#
# | NumPy | torch |
# |---|---|
# | `x @ w`, `a.T` | `x @ w`, `a.T` (or `a.t()`) |
# | `np.maximum(h, 0)` | `h.clamp(min=0)` (or `torch.relu(h)`) |
# | `a.copy()` | `a.clone()` |
# | `rng.standard_normal((n, d))` | `torch.randn(n, d, device=..., dtype=...)` |
#
# Autograd comes in notebook 03; here you still write the backward pass yourself. Keep the
# result on the inputs' device and dtype (everything above does that by itself).
#
# ## Exercise 4 · Forward and manual backward with tensors (4 points)
#
# Implement `forward(x, w1, w2)` returning `(y_pred, (h, h_relu))` and
# `backward(x, y, y_pred, cache, w2)` returning `(grad_w1, grad_w2)` for the loss
# `(y_pred - y).pow(2).sum()`. Do not modify the cache in place.

# %% nbgrader={"grade": false, "grade_id": "net", "locked": false, "schema_version": 3, "solution": true}
def forward(x, w1, w2):
    """x -> Linear(w1) -> ReLU -> Linear(w2); returns (y_pred, (h, h_relu))."""
    ### BEGIN SOLUTION
    h = x @ w1
    h_relu = h.clamp(min=0)
    y_pred = h_relu @ w2
    return y_pred, (h, h_relu)
    ### END SOLUTION


def backward(x, y, y_pred, cache, w2):
    """Gradients of sum((y_pred - y)**2) with respect to w1 and w2."""
    h, h_relu = cache
    ### BEGIN SOLUTION
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h_relu = grad_y_pred @ w2.T
    grad_h = grad_h_relu.clone()
    grad_h[h < 0] = 0
    grad_w1 = x.T @ grad_h
    return grad_w1, grad_w2
    ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "net-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** An unchanged cache, the ReLU of the forward pass, the all-ReLUs-off probe,
# a numeric gradient check in float64 (as in notebook 01, now on tensors), and a float32 run
# on `device` that must stay float32 on `device`.

# %% nbgrader={"grade": false, "grade_id": "net-check", "locked": true, "schema_version": 3, "solution": false}
gen = torch.Generator().manual_seed(7)
x_gc, y_gc = torch.randn(4, 5, generator=gen, dtype=torch.float64), torch.randn(4, 3, generator=gen, dtype=torch.float64)
w1_gc, w2_gc = torch.randn(5, 6, generator=gen, dtype=torch.float64), torch.randn(6, 3, generator=gen, dtype=torch.float64)


def loss_gc():
    return (forward(x_gc, w1_gc, w2_gc)[0] - y_gc).pow(2).sum()


x_off, w1_off = x_gc.abs(), -w1_gc.abs()  # every h < 0: nothing flows back to w1
x_dev, y_dev = torch.randn(8, 5, device=device), torch.randn(8, 3, device=device)
w1_dev, w2_dev = torch.randn(5, 6, device=device), torch.randn(6, 3, device=device)
with checks.explain_errors("forward/backward"):
    y_pred_off, cache_off = forward(x_off, w1_off, w2_gc)
    grad_w1_off, _ = backward(x_off, y_gc, y_pred_off, cache_off, w2_gc)
    y_pred_gc, cache_gc = forward(x_gc, w1_gc, w2_gc)
    cache_before = [t.clone() for t in cache_gc]
    grad_w1_gc, grad_w2_gc = backward(x_gc, y_gc, y_pred_gc, cache_gc, w2_gc)
    y_pred_dev, cache_dev = forward(x_dev, w1_dev, w2_dev)
    grad_w1_dev, grad_w2_dev = backward(x_dev, y_dev, y_pred_dev, cache_dev, w2_dev)
checks.check_true(
    "cache unchanged", all(torch.equal(t, t0) for t, t0 in zip(cache_gc, cache_before, strict=True)),
    "backward changed the cache in place (`h[...] = ...`, `h.clamp_(...)`, `h.relu_()`): the exercise "
    "asks you not to. Build the masked gradient as a new tensor instead.",
)
h_gc, h_relu_gc = cache_gc
checks.check_close("forward: h_relu", h_relu_gc, h_gc.clamp(min=0),
                   mistakes={"the ReLU is missing in forward: h_relu is still h, negative entries included": h_gc})
checks.check_true(
    "ReLU mask", bool((grad_w1_off == 0).all()),
    "all hidden units are off (h < 0), so grad_w1 must be zero. The ReLU mask is missing or "
    "taken from the wrong tensor: zero grad_h where h < 0 (h_relu is never negative).",
)

for label, weight, analytic in [("grad_w2", w2_gc, grad_w2_gc), ("grad_w1", w1_gc, grad_w1_gc)]:
    numeric = checks.numeric_gradient(loss_gc, weight)
    checks.gradient_check(label, loss_gc, weight, analytic,
                          mistakes={"you dropped the factor 2 of d(u^2)/du": numeric / 2,
                                    "the sign is flipped: use 2 * (y_pred - y)": -numeric,
                                    f"{label} is transposed: a gradient has the shape of its weight": numeric.T})

checks.check_tensor("grad_w1 on device", grad_w1_dev, shape=(5, 6), dtype=torch.float32, device=device)
checks.check_tensor("grad_w2 on device", grad_w2_dev, shape=(6, 3), dtype=torch.float32, device=device)

# %% nbgrader={"grade": true, "grade_id": "test-net", "locked": true, "points": 4, "schema_version": 3, "solution": false}
# Graded: forward and backward (hidden tests: square shapes where a missing transpose
# raises no error, mixed ReLU signs, float32, an unchanged cache).
_yp, _c = forward(x_gc, w1_gc, w2_gc)
checks.check_shape("y_pred", _yp, (4, 3), quiet=True)
checks.check_shape("grad_w1", backward(x_gc, y_gc, _yp, _c, w2_gc)[0], (5, 6), quiet=True)
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(4321)
for (_n, _d, _h, _o), _dt in [((3, 4, 5, 2), torch.float64), ((4, 5, 3, 3), torch.float64),
                              ((6, 6, 6, 6), torch.float64), ((1, 2, 7, 1), torch.float32)]:
    _x, _y = torch.randn(_n, _d, generator=_g, dtype=_dt), torch.randn(_n, _o, generator=_g, dtype=_dt)
    _w1, _w2 = torch.randn(_d, _h, generator=_g, dtype=_dt), torch.randn(_h, _o, generator=_g, dtype=_dt)
    _hh = _x @ _w1
    _hr = _hh.clamp(min=0)
    _yp, (_sh, _shr) = forward(_x, _w1, _w2)
    checks.check_close("hidden h", _sh, _hh, rtol=1e-4, atol=1e-6, quiet=True)
    checks.check_close("hidden h_relu", _shr, _hr, rtol=1e-4, atol=1e-6, quiet=True)
    checks.check_close("hidden y_pred", _yp, _hr @ _w2, rtol=1e-4, atol=1e-6, quiet=True)
    _cache = (_hh.clone(), _hr.clone())
    _gw1, _gw2 = backward(_x, _y, _hr @ _w2, _cache, _w2)
    _gy = 2 * (_hr @ _w2 - _y)
    checks.check_close("hidden grad_w2", _gw2, _hr.T @ _gy, rtol=1e-4, atol=1e-6, quiet=True)
    checks.check_close("hidden grad_w1", _gw1, _x.T @ ((_gy @ _w2.T) * (_hh > 0)), rtol=1e-4, atol=1e-6, quiet=True)
    assert _gw1.dtype == _dt and _gw2.dtype == _dt, "the gradients changed dtype"
    assert torch.equal(_cache[0], _hh) and torch.equal(_cache[1], _hr), "backward modified the cache in place"
### END HIDDEN TESTS
checks.passed("forward and backward")

# %% [markdown] nbgrader={"grade": false, "grade_id": "device-md", "locked": true, "schema_version": 3, "solution": false}
# ## 5 · Device-agnostic code
#
# A `torch.device` names where a tensor lives. Code that runs unchanged on a laptop and on a
# GPU machine picks the device once (here `device = config.device`) and then
#
# * **creates** tensors where they are needed: `torch.randn(..., device=device)`,
# * **moves** incoming data to where the weights are: `x.to(w1.device)` (data usually arrives
#   on the CPU, from NumPy or a data loader),
# * brings single numbers back with `.item()` (and arrays with `.cpu().numpy()`).
#
# Mixing devices in one operation is an error. On a CPU-only machine we can still see it,
# with PyTorch's `meta` device (tensors with a shape and a dtype but no data):

# %% nbgrader={"grade": false, "grade_id": "device-demo", "locked": true, "schema_version": 3, "solution": false}
on_cpu = torch.ones(3)
elsewhere = torch.ones(3, device="meta")
try:
    on_cpu + elsewhere
except RuntimeError as err:
    print("cpu + meta:", err)
print("after .to():", (on_cpu.to(elsewhere.device) + elsewhere).device)
print("x.to(w) moves to w's device *and* dtype:", torch.ones(2).to(torch.zeros(1, dtype=torch.float64)).dtype)

# %% [markdown] nbgrader={"grade": false, "grade_id": "train-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 5 · Train on any device (3 points)
#
# * `init_weights(d_in, h, d_out, device, dtype)` returns `(w1, w2)` with standard-normal
#   entries (as in notebook 01), shapes `(d_in, h)` and `(h, d_out)`, **created** on `device`
#   with `dtype` (not created on the CPU and copied).
# * `train(x, y, w1, w2, lr, num_steps)` runs gradient descent with your `forward` and
#   `backward`. The data `x`, `y` may arrive on another device and with another dtype than
#   the weights: move them to the weights' device and dtype first. Update `w1` and `w2`
#   **in place** and return the list of `num_steps` losses as Python floats (the loss at the
#   start of each step). The loop with its progress bar is given.

# %% nbgrader={"grade": false, "grade_id": "train", "locked": false, "schema_version": 3, "solution": true}
def init_weights(d_in, h, d_out, device, dtype=torch.float32):
    """Standard-normal w1 (d_in, h) and w2 (h, d_out), created on `device` with `dtype`."""
    ### BEGIN SOLUTION
    w1 = torch.randn(d_in, h, device=device, dtype=dtype)
    w2 = torch.randn(h, d_out, device=device, dtype=dtype)
    return w1, w2
    ### END SOLUTION


def train(x, y, w1, w2, lr, num_steps):
    """Gradient descent on the two-layer net; returns the loss of every step as floats."""
    losses = []
    ### BEGIN SOLUTION
    x, y = x.to(w1), y.to(w1)
    ### END SOLUTION
    for _ in tqdm(range(num_steps), desc="training", leave=False):
        ### BEGIN SOLUTION
        y_pred, cache = forward(x, w1, w2)
        losses.append((y_pred - y).pow(2).sum().item())
        grad_w1, grad_w2 = backward(x, y, y_pred, cache, w2)
        w1 -= lr * grad_w1
        w2 -= lr * grad_w2
        ### END SOLUTION
    return losses


# %% [markdown] nbgrader={"grade": false, "grade_id": "train-run-md", "locked": true, "schema_version": 3, "solution": false}
# The data is made on the CPU in float64, the way it would come from NumPy; the weights are
# made on `device` in float32. Same sizes and learning rate as notebook 01.

# %% nbgrader={"grade": false, "grade_id": "train-run", "locked": true, "schema_version": 3, "solution": false}
N, D_in, H, D_out = 64, 1000, 100, 10
num_steps = budget(full=500, fast=200)
x = torch.from_numpy(np.random.default_rng(0).standard_normal((N, D_in)))
y = torch.from_numpy(np.random.default_rng(1).standard_normal((N, D_out)))
losses = None
with checks.explain_errors("init_weights / train"):
    w1, w2 = init_weights(D_in, H, D_out, device)
    before = checks.param_snapshot({"w1": w1, "w2": w2})
    losses = train(x, y, w1, w2, lr=1e-6, num_steps=num_steps)

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(losses)
ax.set(xlabel="step", ylabel="sum of squared errors (log scale)", title=f"Training with tensors on {device.type}")
plt.show()
print(f"loss: {losses[0]:.3g} at step 0 -> {losses[-1]:.3g} at step {len(losses) - 1}")

# %% nbgrader={"grade": false, "grade_id": "train-check", "locked": true, "schema_version": 3, "solution": false}
checks.check_true("train finished", losses is not None,
                  "the training cell above stopped with an error: fix that first (its message names the slip).")
with checks.explain_errors("init_weights on another device"):
    w_meta = init_weights(3, 4, 2, torch.device("meta"), torch.float64)
checks.check_tensor("w1", w1, shape=(D_in, H), dtype=torch.float32, device=device)
with checks.explain_errors("init_weights"):
    w_probe = init_weights(300, 200, 1, device)[0]
checks.check_true(
    "init_weights draws standard-normal entries",
    abs(w_probe.mean().item()) < 0.05 and abs(w_probe.std().item() - 1) < 0.05,
    f"w1 has mean {w_probe.mean().item():.3f} and std {w_probe.std().item():.3f}; standard normal means "
    "mean 0 and std 1." + (" All entries lie in [0, 1): `torch.rand` draws uniformly, `torch.randn` "
                           "from the normal distribution." if bool(((w_probe >= 0) & (w_probe < 1)).all()) else ""),
)
checks.check_tensor("init_weights on another device: w1", w_meta[0], shape=(3, 4), dtype=torch.float64, device="meta")
checks.check_tensor("init_weights on another device: w2", w_meta[1], shape=(4, 2), dtype=torch.float64, device="meta")
checks.check_updated_in_place("train updates w1, w2", {"w1": w1, "w2": w2}, before)
checks.check_true("losses are floats", len(losses) == num_steps and all(isinstance(v, float) for v in losses),
                  f"expected {num_steps} Python floats; use `loss.item()` (a tensor keeps its device memory alive).")
checks.check_true("loss decreased", losses[-1] < 1e-3 * losses[0],
                  f"the loss went from {losses[0]:.3g} to {losses[-1]:.3g}; it should fall by more than 1000x.")

# %% nbgrader={"grade": true, "grade_id": "test-train", "locked": true, "points": 3, "schema_version": 3, "solution": false}
# Graded: init_weights and train. train is tested with reference versions of forward and
# backward, so a mistake in exercise 4 costs points only there.
_w = init_weights(2, 3, 4, torch.device("meta"), torch.float64)
assert _w[0].device.type == "meta" and _w[0].dtype == torch.float64, "init_weights must create on device with dtype"
### BEGIN HIDDEN TESTS
_v1, _v2 = init_weights(300, 200, 100, torch.device("cpu"), torch.float32)
checks.check_tensor("hidden w1", _v1, shape=(300, 200), dtype=torch.float32, device="cpu", quiet=True)
checks.check_tensor("hidden w2", _v2, shape=(200, 100), dtype=torch.float32, device="cpu", quiet=True)
assert abs(_v1.std().item() - 1) < 0.05 and abs(_v1.mean().item()) < 0.05, "w1 should be standard normal"
assert abs(_v2.std().item() - 1) < 0.05 and abs(_v2.mean().item()) < 0.05, "w2 should be standard normal"
_v1, _v2 = init_weights(4, 5, 6, torch.device("meta"), torch.float16)
checks.check_tensor("hidden meta w2", _v2, shape=(5, 6), dtype=torch.float16, device="meta", quiet=True)


def _forward(x, w1, w2):
    h = x @ w1
    return h.clamp(min=0) @ w2, (h, h.clamp(min=0))


def _backward(x, y, y_pred, cache, w2):
    h, h_relu = cache
    g = 2 * (y_pred - y)
    return x.T @ ((g @ w2.T) * (h > 0)), h_relu.T @ g


_g = torch.Generator().manual_seed(2024)
_x, _y = torch.randn(10, 6, generator=_g, dtype=torch.float64), torch.randn(10, 2, generator=_g, dtype=torch.float64)
_w1, _w2 = torch.randn(6, 5, generator=_g), torch.randn(5, 2, generator=_g)  # float32 weights
_r1, _r2 = _w1.double().clone(), _w2.double().clone()
with checks.substitute(forward=_forward, backward=_backward):
    _losses = train(_x, _y, _w1, _w2, 1e-3, 7)
_expected = []
for _ in range(7):
    _yp, _cc = _forward(_x, _r1, _r2)
    _expected.append((_yp - _y).pow(2).sum().item())
    _gw1, _gw2 = _backward(_x, _y, _yp, _cc, _r2)
    _r1 -= 1e-3 * _gw1
    _r2 -= 1e-3 * _gw2
assert len(_losses) == 7 and all(isinstance(_v, float) for _v in _losses), "train must return 7 Python floats"
checks.check_close("hidden losses", _losses, _expected, rtol=1e-4, quiet=True)
assert _w1.dtype == torch.float32, "train changed the dtype of the weights"
checks.check_close("hidden w1 after training", _w1, _r1, rtol=1e-3, atol=1e-5, quiet=True)
checks.check_close("hidden w2 after training", _w2, _r2, rtol=1e-3, atol=1e-5, quiet=True)
### END HIDDEN TESTS
checks.passed("device-agnostic training")

# %% [markdown] nbgrader={"grade": false, "grade_id": "recap", "locked": true, "schema_version": 3, "solution": false}
# ## Recap
#
# * `torch.from_numpy` and `.numpy()` share memory; `torch.tensor` copies; `torch.as_tensor`
#   copies only when it must. NumPy's float64 stays float64 unless you convert it.
# * `shape`/`size()`, `dim()`, `numel()`, `dtype`, `device` describe a tensor. `view` needs a
#   contiguous layout, `reshape` works always.
# * `dim=` names the dimension a reduction removes; `keepdim=True` keeps it for broadcasting.
# * The manual backward of notebook 01 carries over line by line; a gradient has the shape of
#   what it is the gradient of.
# * Pick the device once, create tensors on it, move incoming data to the weights, and bring
#   numbers back with `.item()`.
#
# **Classic mistakes met here:** `view` on a non-contiguous tensor; a wrong dtype (float64 from
# NumPy meeting float32 weights, int labels, integer division in an accuracy); tensors on
# different devices; a transposed weight in the backward pass (silent for square shapes!);
# statistics reduced without `keepdim` that broadcast along the wrong axis.
#
# **Further exercises** (not graded): time `forward` on the CPU and, if you have one, on a GPU
# for growing `N` (call `torch.cuda.synchronize()` before reading the clock); rewrite `accuracy`
# for labels given as one-hot rows; find out which operations return views (`x[::2]`, `x.T`,
# `x.expand`, `x.unsqueeze`) with `x.data_ptr()` and `x.is_contiguous()`.
