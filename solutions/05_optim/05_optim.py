# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false}
# # 05 · Optimizers: `torch.optim`
#
# Up to now every update was written by hand: `param -= lr * param.grad`. The package
# `torch.optim` does that step for us, and offers better steps than plain gradient
# descent. In this notebook you open the box once (momentum, by hand), then use
# optimizers the way real training code does.
#
# **Learning goals**
# 1. Know what SGD with momentum and Nesterov momentum compute, and reproduce
#    `torch.optim.SGD` by hand.
# 2. Write the standard step `zero_grad -> forward -> backward -> step`, and know why
#    gradients must be cleared every step.
# 3. Compare SGD, SGD + momentum, Nesterov and Adam on one problem and read the curves.
# 4. Build the optimizer *after* moving the model to its device, and say why.
# 5. Lower the learning rate with a `StepLR` schedule, stepped once per epoch, after
#    the optimizer.
#
# Every exercise has a **self-check** you can run as often as you like, and a graded
# cell (with hidden tests on other shapes, seeds and settings) that the autograder runs.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup-md", "locked": true, "schema_version": 3, "solution": false}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from course_utils import budget, checks, setup

config = setup(seed=0)
device = config.device

# %% [markdown] nbgrader={"grade": false, "grade_id": "problem-md", "locked": true, "schema_version": 3, "solution": false}
# ## The problem
#
# A small regression task that every exercise reuses: 256 points in 20 dimensions, a
# smooth nonlinear target, and a network `Linear(20, 64) -> Tanh -> Linear(64, 1)`
# trained with the mean squared error. `make_net(seed)` always builds the same
# initial weights for the same seed, so different optimizers start from one point.
#
# The data is made on the CPU with its own generator, then moved to `device`: the
# numbers are the same on every machine.

# %% nbgrader={"grade": false, "grade_id": "problem", "locked": true, "schema_version": 3, "solution": false}
N, D_in, H = 256, 20, 64
data_gen = torch.Generator().manual_seed(0)
x_cpu = torch.randn(N, D_in, generator=data_gen)
w_true = torch.randn(D_in, 1, generator=data_gen)
y_cpu = torch.sin(x_cpu @ w_true / 2) + 0.1 * x_cpu[:, :1] ** 2
x, y = x_cpu.to(device), y_cpu.to(device)
loss_fn = nn.MSELoss()


def make_net(seed=0):
    """The regression network, with the same initial weights for the same seed (on the CPU)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D_in, H), nn.Tanh(), nn.Linear(H, 1))


print(f"x: {tuple(x.shape)}, y: {tuple(y.shape)}, parameters: {sum(p.numel() for p in make_net().parameters())}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "momentum-md", "locked": true, "schema_version": 3, "solution": false}
# ## What an optimizer is
#
# An optimizer is built from an iterable of tensors (usually `model.parameters()`) and
# keeps **references** to them, plus whatever state its rule needs. It has two methods
# you call every step:
#
# * `optimizer.zero_grad()` clears the `.grad` of every parameter it holds;
# * `optimizer.step()` reads each `.grad` and updates the parameter **in place** (under
#   `torch.no_grad()`, so you do not have to).
#
# Plain SGD takes the step $p \leftarrow p - \eta\, g$. On a long, gently sloping
# valley that is slow: each step only sees the local slope. **Momentum** keeps a running
# sum of past gradients, a velocity $v$, so steps that keep pointing the same way grow,
# and steps that zig-zag cancel. `torch.optim.SGD(params, lr=η, momentum=μ)` does, for
# every parameter, with $v$ starting at zero:
#
# $$v \leftarrow \mu\, v + g, \qquad p \leftarrow p - \eta\, v .$$
#
# **Nesterov** momentum (`nesterov=True`) steps with a look-ahead: it uses the
# gradient plus the velocity it is about to move with,
#
# $$v \leftarrow \mu\, v + g, \qquad p \leftarrow p - \eta\,(g + \mu\, v) .$$
#
# (Some texts write momentum as $v \leftarrow \mu v - \eta g,\ p \leftarrow p + v$. For a
# constant learning rate that is the same rule: PyTorch just keeps $\eta$ out of $v$.)
#
# ## Exercise 1 · Momentum by hand (3 points)
#
# Implement `momentum_step(params, velocities, lr, momentum, nesterov=False)`: one step of
# the rule above for every parameter, with the gradient read from `p.grad`. `velocities`
# is a list of tensors shaped like the parameters (zeros before the first step) that hold
# PyTorch's $v$ (without $\eta$: the tests compare them with `torch.optim.SGD`'s momentum
# buffers). Update **both** lists in place, without recording the update in autograd, and
# return nothing. Rebinding (`v = momentum * v + g`) would make a new tensor and the
# velocity would be lost after the step.

# %% nbgrader={"grade": false, "grade_id": "momentum", "locked": false, "schema_version": 3, "solution": true}
def momentum_step(params, velocities, lr, momentum, nesterov=False):
    """One step of SGD with (Nesterov) momentum, as torch.optim.SGD computes it, in place."""
    ### BEGIN SOLUTION
    with torch.no_grad():
        for p, v in zip(params, velocities, strict=True):
            v.mul_(momentum).add_(p.grad)
            if nesterov:
                p.sub_(lr * (p.grad + momentum * v))
            else:
                p.sub_(lr * v)
    ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "momentum-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** With a *constant* gradient $g$ the velocity after steps 1, 2, 3 is
# $g,\ (1+\mu)g,\ (1+\mu+\mu^2)g$, so three momentum steps move $p$ by
# $-\eta g\,(3 + 2\mu + \mu^2)$; with $\mu = 0.5$, $\eta = 0.1$ that is $-0.425\,g$.
# Nesterov adds $\mu v$ to each step: $-\eta g\,(1.5 + 1.75 + 1.875) = -0.5125\,g$.
# Plain SGD would move $-0.3\,g$.

# %% nbgrader={"grade": false, "grade_id": "momentum-check", "locked": true, "schema_version": 3, "solution": false}
g_const = torch.tensor([1.0, 0.5, -2.0], device=device)
for nesterov, expected in [(False, 0.425), (True, 0.5125)]:
    p_demo = torch.tensor([1.0, -2.0, 0.0], device=device, requires_grad=True)
    v_demo = torch.zeros(3, device=device)
    with checks.explain_errors(f"momentum_step (nesterov={nesterov})"):
        for _ in range(3):
            p_demo.grad = g_const.clone()
            momentum_step([p_demo], [v_demo], lr=0.1, momentum=0.5, nesterov=nesterov)
    start = torch.tensor([1.0, -2.0, 0.0], device=device)
    checks.check_close(
        f"p after 3 steps (nesterov={nesterov})", p_demo, start - expected * g_const,
        mistakes={"the velocity is not kept between steps (rebound with `v = ...` instead of "
                  "updated in place, or never used): that is plain SGD": start - 0.3 * g_const,
                  "nesterov=True is ignored: plain momentum instead of p -= lr * (g + momentum * v)":
                      start - 0.425 * g_const,
                  "p never moved: it was rebound (`p = p - ...` makes a new tensor) instead of "
                  "updated in place (`p -= ...`)": start,
                  "the velocity is added with the wrong sign": start + expected * g_const},
    )
    checks.check_true("p is still a leaf", p_demo.is_leaf and p_demo.requires_grad,
                      "the update was recorded by autograd (p is no longer a leaf): do it inside "
                      "`with torch.no_grad():` and in place.", quiet=True)
checks.check_close("velocity after 3 steps", v_demo, 1.75 * g_const,
                   mistakes={"the velocities were not updated in place": torch.zeros(3),
                             "the learning rate was folded into the velocity (v = momentum * v + lr * g): "
                             "PyTorch's v leaves lr out and multiplies by it in the step": 0.175 * g_const})

# %% nbgrader={"grade": true, "grade_id": "test-momentum", "locked": true, "points": 3, "schema_version": 3, "solution": false}
# Graded: momentum_step against torch.optim.SGD (hidden tests: other shapes, momentum
# values, random gradients, both nesterov settings, several steps).
_p = torch.ones(2, requires_grad=True)
_v = torch.zeros(2)
_p.grad = torch.ones(2)
momentum_step([_p], [_v], lr=0.5, momentum=0.9)
checks.check_close("one step", _p, torch.full((2,), 0.5), quiet=True)
### BEGIN HIDDEN TESTS
_gen = torch.Generator().manual_seed(2024)
for _nesterov in (False, True):
    for _mu, _lr in [(0.9, 0.05), (0.3, 0.2)]:
        _mine = [torch.randn(4, 3, generator=_gen, dtype=torch.float64).requires_grad_(),
                 torch.randn(5, generator=_gen, dtype=torch.float64).requires_grad_()]
        _ref = [t.detach().clone().requires_grad_() for t in _mine]
        _vel = [torch.zeros_like(t) for t in _mine]
        _vel_ids = [id(v) for v in _vel]
        _opt = torch.optim.SGD(_ref, lr=_lr, momentum=_mu, nesterov=_nesterov)
        for _step in range(4):
            _grads = [torch.randn(t.shape, generator=_gen, dtype=torch.float64) for t in _mine]
            for _t, _r, _g in zip(_mine, _ref, _grads):
                _t.grad, _r.grad = _g.clone(), _g.clone()
            assert momentum_step(_mine, _vel, _lr, _mu, nesterov=_nesterov) is None, \
                "momentum_step should update in place and return None"
            _opt.step()
            for _t, _r in zip(_mine, _ref):
                assert _t.is_leaf, "the update was recorded by autograd: use torch.no_grad()"
                if _nesterov:
                    checks.check_close("hidden steps with nesterov=True", _t, _r, rtol=1e-10, atol=1e-12, quiet=True)
                else:
                    checks.check_close("hidden steps with nesterov=False", _t, _r, rtol=1e-10, atol=1e-12, quiet=True)
        assert [id(v) for v in _vel] == _vel_ids, "the velocity tensors were replaced, not updated in place"
        checks.check_close("hidden velocity", _vel[1], _opt.state[_ref[1]]["momentum_buffer"], quiet=True)
### END HIDDEN TESTS
checks.passed("momentum by hand")

# %% [markdown] nbgrader={"grade": false, "grade_id": "step-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 2 · One training step (2 points)
#
# Every training loop in this course repeats the same four lines:
#
# ```python
# optimizer.zero_grad()          # clear the old gradients
# loss = loss_fn(model(x), y)    # forward
# loss.backward()                # fills p.grad for every parameter
# optimizer.step()               # p <- p - ... using p.grad
# ```
#
# `backward()` **adds** to `.grad`; it never overwrites. That is what makes weight
# sharing and gradient accumulation work (notebook 07), and it is why forgetting
# `zero_grad()` is a classic bug: the gradients of all earlier steps pile up, the steps
# grow, and training wanders off or diverges while the code looks fine.
#
# Implement `train_step(model, loss_fn, optimizer, x, y)`: one optimisation step on the
# batch, returning the loss computed in the forward pass as a Python `float`
# (`loss.item()`). Clear the gradients *first*: the function must give the right step
# even when `.grad` holds leftovers from earlier code.

# %% nbgrader={"grade": false, "grade_id": "train-step", "locked": false, "schema_version": 3, "solution": true}
def train_step(model, loss_fn, optimizer, x, y):
    """zero_grad -> forward -> loss -> backward -> step; returns the loss as a float."""
    ### BEGIN SOLUTION
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()
    ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "step-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** Two plain SGD steps on a tiny linear model. Before each step we compute
# the gradient $g_k$ on a *copy* of the model, so we know where the weights must land:
# $w_1 = w_0 - \eta g_1$ and $w_2 = w_1 - \eta g_2$. If the gradients are never zeroed,
# the second step uses $g_1 + g_2$, and the check says so. A third step starts with
# leftover gradients in `.grad` (as earlier code can leave them): it must ignore them.

# %% nbgrader={"grade": false, "grade_id": "step-check", "locked": true, "schema_version": 3, "solution": false}
torch.manual_seed(0)
tiny = nn.Linear(3, 2).to(device)
tiny_opt = torch.optim.SGD(tiny.parameters(), lr=0.1)
xb, yb = torch.randn(8, 3, device=device), torch.randn(8, 2, device=device)
w0 = tiny.weight.detach().clone()
loss0, g1 = checks.grad_on_copy(tiny, loss_fn, xb, yb)
with checks.explain_errors("train_step"):
    out = train_step(tiny, loss_fn, tiny_opt, xb, yb)
    w1 = tiny.weight.detach().clone()
    loss1, g2 = checks.grad_on_copy(tiny, loss_fn, xb, yb)
    train_step(tiny, loss_fn, tiny_opt, xb, yb)
checks.check_true("returns a float", isinstance(out, float),
                  f"train_step should return loss.item(), a Python float; got {type(out).__name__}"
                  + (": the loss tensor itself (it keeps the whole graph alive)." if torch.is_tensor(out) else "."))
checks.check_close("returned loss", out, loss0, quiet=True,
                   mistakes={"the returned loss was computed after optimizer.step() (a second forward pass): "
                             "return the loss of the forward pass the step used": loss1})
checks.check_close("weight after step 1", w1, w0 - 0.1 * g1,
                   mistakes={"the weights did not move: step() ran before backward(), or the gradients "
                             "were cleared between backward() and step()": w0})
checks.check_close("weight after step 2", tiny.weight, w1 - 0.1 * g2,
                   mistakes={"gradients never zeroed: backward() adds to .grad, so step 2 used g1 + g2. "
                             "Call optimizer.zero_grad() at the start of every step": w1 - 0.1 * (g1 + g2)})
w2 = tiny.weight.detach().clone()
g3 = checks.grad_on_copy(tiny, loss_fn, xb, yb).grad
for leftover in tiny.parameters():
    leftover.grad = torch.full_like(leftover, 5.0)  # gradients left in .grad by earlier code
with checks.explain_errors("train_step"):
    train_step(tiny, loss_fn, tiny_opt, xb, yb)
checks.check_close("weight after a step that starts with leftover gradients", tiny.weight, w2 - 0.1 * g3,
                   mistakes={"the leftover gradients in .grad were added to this step: clear them at the START "
                             "of train_step (optimizer.zero_grad() before backward()), not at the end":
                                 w2 - 0.1 * (g3 + 5.0)})

# %% nbgrader={"grade": true, "grade_id": "test-train-step", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: train_step (hidden tests: Adam, other shapes, leftover gradients, several steps).
def _sgd_setup():
    # Runs in the kernel when graded: a linear model, its loss and an SGD optimizer.
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    return model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1)


_model, _loss_fn, _opt = checks.run_in_kernel(_sgd_setup)
_start = checks.run_in_kernel(checks.parameter_copies, _model)  # copies of its parameters, by name
_x, _y = torch.randn(8, 3), torch.randn(8, 2)
_loss = train_step(_model, _loss_fn, _opt, _x, _y)
checks.check_close("returned loss", _loss, ((_x @ _start["weight"].T + _start["bias"] - _y) ** 2).mean(), quiet=True)
### BEGIN HIDDEN TESTS
def _adam_setup():
    # Runs in the kernel: a model, its loss and Adam, with leftover gradients in .grad.
    torch.manual_seed(77)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    loss_fn = nn.SmoothL1Loss()
    loss_fn(model(torch.randn(10, 5) * 3), torch.randn(10, 3)).backward()  # leftover gradients from "earlier code"
    return model, loss_fn, torch.optim.Adam(model.parameters(), lr=0.05)


_model, _lf, _opt = checks.run_in_kernel(_adam_setup)
_ref = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
_ref.load_state_dict(checks.run_in_kernel(checks.parameter_copies, _model))
_ref_lf = torch.nn.SmoothL1Loss()
_ref_opt = torch.optim.Adam(_ref.parameters(), lr=0.05)
torch.manual_seed(78)
_x, _y = torch.randn(10, 5), torch.randn(10, 3)
for _step in range(5):
    _got = train_step(_model, _lf, _opt, _x, _y)
    _ref_opt.zero_grad()
    _ref_loss = _ref_lf(_ref(_x), _y)
    _ref_loss.backward()
    _ref_opt.step()
    assert isinstance(_got, float), "train_step should return the loss as a Python float (loss.item())"
    checks.check_close("hidden loss", _got, _ref_loss.item(), rtol=1e-5, quiet=True)
    _now = checks.run_in_kernel(checks.parameter_copies, _model)
    for _name, _q in _ref.named_parameters():
        checks.check_close("hidden parameters after a step", _now[_name], _q, rtol=1e-5, atol=1e-7, quiet=True)
### END HIDDEN TESTS
checks.passed("training step")

# %% [markdown] nbgrader={"grade": false, "grade_id": "compare-md", "locked": true, "schema_version": 3, "solution": false}
# ## Four optimizers, one problem
#
# **Adam** goes further than momentum: it keeps, per parameter, a running average of the
# gradient (like momentum) *and* of its square, and divides the first by the square root
# of the second. Every parameter thus gets its own step size: large where gradients are
# small and consistent, small where they are large or noisy. Its default `lr=1e-3` is a
# good first try on many problems; SGD's learning rate needs tuning per problem.
#
# Below, the same network starts from the same weights four times and trains with your
# `train_step`: plain SGD, SGD with momentum 0.9, Nesterov, and Adam. The three SGD
# variants share one learning rate, so the curves show what momentum adds.

# %% nbgrader={"grade": false, "grade_id": "compare", "locked": true, "schema_version": 3, "solution": false}
num_steps = budget(full=300, fast=60)
optimizers = {
    "SGD": lambda params: torch.optim.SGD(params, lr=0.1),
    "SGD + momentum 0.9": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
    "Nesterov 0.9": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True),
    "Adam (lr=1e-2)": lambda params: torch.optim.Adam(params, lr=1e-2),
}
histories = {}
for name, build in optimizers.items():
    model = make_net(seed=1).to(device)  # move first ...
    optimizer = build(model.parameters())  # ... then build the optimizer
    histories[name] = [train_step(model, loss_fn, optimizer, x, y)
                       for _ in tqdm(range(num_steps), desc=name, leave=False)]

fig, ax = plt.subplots(figsize=(7, 4))
for name, losses in histories.items():
    ax.semilogy(losses, label=name)
ax.set(xlabel="step", ylabel="training MSE (log scale)", title="One problem, four optimizers")
ax.legend()
plt.show()
for name, losses in histories.items():
    print(f"{name:<20} loss after {num_steps} steps: {losses[-1]:.2e}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "compare-read-md", "locked": true, "schema_version": 3, "solution": false}
# **Reading the plot.** Plain SGD gets stuck on a plateau: the gradient there is small,
# so its steps are small. Momentum builds up speed along the consistent direction and
# leaves the plateau many times sooner; Nesterov's look-ahead makes it slightly faster and
# steadier. Adam rescales every parameter's step and is fastest here, but this is one
# small problem: on others, well-tuned SGD + momentum generalises as well or better, and
# it remains the usual choice for training image classifiers from scratch.

# %% [markdown] nbgrader={"grade": false, "grade_id": "device-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 3 · Move the model first, then build the optimizer (2 points)
#
# The optimizer stores references to the tensors it was given. So the order matters:
#
# ```python
# model = make_net().to(device)                         # 1. move
# optimizer = torch.optim.SGD(model.parameters(), ...)  # 2. then build
# ```
#
# Why? In today's PyTorch, `model.to(device)` usually swaps the data *inside* the existing
# `Parameter` objects, so the reverse order often works by luck. It breaks when the
# conversion has to create **new** parameter objects (some accelerator backends do, and so
# does PyTorch's opt-in flag `torch.__future__.set_overwrite_module_params_on_conversion`).
# Then the optimizer keeps updating the old tensors, whose `.grad` is never filled: the
# model never learns, with no error. And state an optimizer has already created
# (momentum buffers, Adam's averages) is never moved along with the model. Moving first
# is right in every case.
#
# The demonstration below switches that flag on to make the failure visible on any
# machine, builds the optimizer too early, then trains for 20 steps.

# %% nbgrader={"grade": false, "grade_id": "device-demo", "locked": true, "schema_version": 3, "solution": false}
def with_new_parameter_objects(fn, *args, **kwargs):
    """Run fn with module conversions creating new Parameter objects (as some backends do)."""
    previous = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(previous)


def built_too_early():
    model = make_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)  # built BEFORE ...
    return model.to(device), optimizer  # ... the model was moved


early_model, early_opt = with_new_parameter_objects(built_too_early)
early_losses = []
for _ in range(20):
    early_opt.zero_grad()
    loss = loss_fn(early_model(x), y)
    loss.backward()
    early_opt.step()
    early_losses.append(loss.item())
print(f"loss over 20 steps: {early_losses[0]:.4f} -> {early_losses[-1]:.4f} (it never moved)")
try:
    checks.check_optimizer_tracks_model("optimizer built too early", early_model, early_opt)
except checks.CheckError as err:
    print(f"The check explains it:\n  {err}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "device-ex-md", "locked": true, "schema_version": 3, "solution": false}
# Now write `make_model_and_optimizer(device, lr)` the right way round: a `make_net()` on
# `device`, and a `torch.optim.SGD` with the given `lr`, `momentum=0.9` and
# `nesterov=True` that updates exactly the model's parameters. Return `(model, optimizer)`.

# %% nbgrader={"grade": false, "grade_id": "device", "locked": false, "schema_version": 3, "solution": true}
def make_model_and_optimizer(device, lr=0.05):
    """The regression net on `device` and an SGD optimizer (Nesterov momentum 0.9) for it."""
    ### BEGIN SOLUTION
    model = make_net().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    return model, optimizer
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "device-check", "locked": true, "schema_version": 3, "solution": false}
with checks.explain_errors("make_model_and_optimizer"):
    model_d, opt_d = with_new_parameter_objects(make_model_and_optimizer, device, lr=0.01)
checks.check_optimizer_tracks_model("make_model_and_optimizer", model_d, opt_d)
checks.check_true("model on device", all(p.device.type == device.type for p in model_d.parameters()),
                  f"the model's parameters should be on {device}; did you call model.to(device)?")
group = opt_d.param_groups[0]
checks.check_true("an SGD optimizer", isinstance(opt_d, torch.optim.SGD),
                  f"expected a torch.optim.SGD optimizer, got {type(opt_d).__name__}.", quiet=True)
checks.check_true("learning rate", group["lr"] == 0.01,
                  f"make_model_and_optimizer(device, lr=0.01) built an optimizer with lr={group['lr']}: the lr "
                  "argument is ignored. Pass it on: torch.optim.SGD(..., lr=lr, ...).", quiet=True)
checks.check_true("momentum", group.get("momentum") == 0.9,
                  f"momentum is {group.get('momentum')}, expected 0.9: pass momentum=0.9 to SGD.", quiet=True)
checks.check_true("nesterov", bool(group.get("nesterov")),
                  "nesterov=True is missing: without it SGD takes plain momentum steps.", quiet=True)
checks.passed("hyperparameters", "SGD, lr=lr, momentum=0.9, nesterov=True")

# %% nbgrader={"grade": true, "grade_id": "test-device", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: the optimizer is built after the move (hidden tests: other lr, CPU and the
# notebook's device, parameters that really train).
def _optimizer_view(model, optimizer):
    # Runs where the model lives: the model's parameters, the tensors the optimizer holds, its settings.
    held = [p for group in optimizer.param_groups for p in group["params"]]
    settings = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    return list(model.parameters()), held, settings


_model, _opt = checks.run_in_kernel(checks.with_new_parameter_objects, make_model_and_optimizer, device, lr=0.01)
_params, _held, _ = checks.run_in_kernel(_optimizer_view, _model, _opt)
assert all(any(_h is _p for _p in _params) for _h in _held), \
    "the optimizer holds tensors that are not the model's parameters: build it after model.to(device)"
assert all(any(_p is _h for _h in _held) for _p in _params), "the optimizer does not update every parameter of the model"
### BEGIN HIDDEN TESTS
def _step(model, optimizer, x, y):
    # Runs in the kernel: one optimizer step on the MSE of model(x); returns the gradients it used.
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    optimizer.step()
    return grads


for _dev in {torch.device("cpu"), device}:
    for _lr in (0.2, 0.003):
        _m, _o = checks.run_in_kernel(checks.with_new_parameter_objects, make_model_and_optimizer, _dev, lr=_lr)
        _params, _held, _settings = checks.run_in_kernel(_optimizer_view, _m, _o)
        assert len(_held) == len(_params) and all(any(_h is _p for _p in _params) for _h in _held), \
            "the optimizer must hold exactly the model's parameters (built after the move)"
        assert all(_p.device.type == _dev.type for _p in _params), "the model's parameters are not on the device"
        # checks.is_instance reads the class name your kernel reports; the steps below check the behaviour.
        assert checks.is_instance(_o, torch.optim.SGD), "expected a torch.optim.SGD optimizer"
        assert (_settings["lr"], _settings["momentum"], _settings["nesterov"]) == (_lr, 0.9, True), \
            "wrong optimizer settings (lr, momentum, nesterov)"
        _ref = [_p.detach().clone().requires_grad_() for _p in _params]
        _ref_opt = torch.optim.SGD(_ref, lr=_lr, momentum=0.9, nesterov=True)
        _x, _y = torch.randn(8, D_in, device=_dev), torch.ones(8, 1, device=_dev)
        for _ in range(2):
            for _r, _g in zip(_ref, checks.run_in_kernel(_step, _m, _o, _x, _y)):
                _r.grad = _g
            _ref_opt.step()
            for _p, _r in zip(checks.run_in_kernel(_optimizer_view, _m, _o)[0], _ref):
                checks.check_close("hidden parameters after optimizer steps", _p, _r, rtol=1e-5, atol=1e-7, quiet=True)
### END HIDDEN TESTS
checks.passed("optimizer built after the move")

# %% [markdown] nbgrader={"grade": false, "grade_id": "schedule-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 4 · A learning-rate schedule (3 points)
#
# Big steps early, small steps late: a schedule lowers the learning rate as training
# goes on. `torch.optim.lr_scheduler.StepLR(optimizer, step_size=s, gamma=γ)` multiplies
# the learning rate by γ every `s` **epochs**, so in epoch $e$ (counting from 0) it is
#
# $$\eta_e = \eta_0 \cdot \gamma^{\lfloor e / s \rfloor} .$$
#
# The scheduler counts its own `step()` calls; it does not know what an epoch is. Two
# classic slips follow from that:
#
# * `scheduler.step()` **inside the batch loop**: the rate decays once per batch, so
#   with 100 batches per epoch it has collapsed after one epoch;
# * `scheduler.step()` **before** `optimizer.step()` (e.g. at the top of the epoch): the
#   first value of the schedule is skipped, every epoch runs one step ahead, and PyTorch
#   warns about it.
#
# Implement `train_epochs(model, loss_fn, optimizer, scheduler, batches, num_epochs)`.
# `batches` is a list of `(x, y)` pairs; one epoch is one pass over it, one `train_step`
# per batch. Return two lists of length `num_epochs`: the mean of the batch losses of
# each epoch, and the learning rate each epoch **trained with**
# (`optimizer.param_groups[0]["lr"]` during that epoch).

# %% nbgrader={"grade": false, "grade_id": "schedule", "locked": false, "schema_version": 3, "solution": true}
def train_epochs(model, loss_fn, optimizer, scheduler, batches, num_epochs):
    """Train num_epochs passes over batches; step the scheduler once per epoch, after the optimizer.

    Returns (epoch_losses, epoch_lrs).
    """
    epoch_losses, epoch_lrs = [], []
    ### BEGIN SOLUTION
    for _ in range(num_epochs):
        epoch_lrs.append(optimizer.param_groups[0]["lr"])
        total = 0.0
        for xb, yb in batches:
            total += train_step(model, loss_fn, optimizer, xb, yb)
        epoch_losses.append(total / len(batches))
        scheduler.step()
    ### END SOLUTION
    return epoch_losses, epoch_lrs


# %% [markdown] nbgrader={"grade": false, "grade_id": "schedule-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** 3 batches, 5 epochs, `lr=0.1`, `step_size=2`, `gamma=0.5`: by the
# formula the epochs train with 0.1, 0.1, 0.05, 0.05, 0.025. The loss function is a
# stand-in that notes, at every call, the loss and the learning rate the batch trains with.

# %% nbgrader={"grade": false, "grade_id": "schedule-check", "locked": true, "schema_version": 3, "solution": false}
torch.manual_seed(0)
sched_model = nn.Linear(3, 1).to(device)
sched_opt = torch.optim.SGD(sched_model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.StepLR(sched_opt, step_size=2, gamma=0.5)
sched_batches = [(torch.randn(4, 3, device=device), torch.randn(4, 1, device=device)) for _ in range(3)]
sched_loss = checks.RecordingMSE(sched_opt)  # an MSELoss that notes (lr, loss) at every call
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with checks.explain_errors("train_epochs"):
        sched_losses, sched_lrs = train_epochs(sched_model, sched_loss, sched_opt, scheduler, sched_batches, 5)
checks.check_true(
    "scheduler after optimizer",
    not any("before `optimizer.step()`" in str(w.message) for w in caught),
    "PyTorch warned that scheduler.step() was called before optimizer.step(): step the "
    "scheduler at the END of each epoch, after the optimizer has stepped.")
checks.check_true("one loss per epoch", len(sched_losses) == 5 and len(sched_lrs) == 5,
                  f"expected 5 losses and 5 learning rates, got {len(sched_losses)} and {len(sched_lrs)}.")
checks.check_close(
    "learning rate per epoch", sched_lrs, [0.1, 0.1, 0.05, 0.05, 0.025],
    mistakes={"scheduler.step() is called per batch instead of per epoch":
                  [0.1 * 0.5 ** ((3 * e) // 2) for e in range(5)],
              "the rates run one epoch ahead: scheduler.step() is called before optimizer.step() "
              "(at the start of the epoch), or the rate is recorded after scheduler.step() instead "
              "of the one the epoch trained with": [0.1 * 0.5 ** ((e + 1) // 2) for e in range(5)]},
)
checks.check_true("one train_step per batch", len(sched_loss.calls) == 15,
                  f"5 epochs of 3 batches compute the loss 15 times; it was computed {len(sched_loss.calls)} "
                  "times. One train_step per batch, one pass over batches per epoch.")
batch_lrs = [lr for lr, _ in sched_loss.calls]
checks.check_close("learning rate each batch trained with", batch_lrs, [0.1] * 6 + [0.05] * 6 + [0.025] * 3,
                   mistakes={"the epochs trained with the next epoch's rate: scheduler.step() runs before "
                             "the epoch's batches": [0.05] * 6 + [0.025] * 6 + [0.0125] * 3})
batch_losses = np.array([value for _, value in sched_loss.calls]).reshape(5, 3)
checks.check_close("loss per epoch", sched_losses, batch_losses.mean(axis=1).tolist(),
                   mistakes={"the SUM of the batch losses, not their mean (divide by len(batches))":
                                 batch_losses.sum(axis=1).tolist(),
                             "the loss of the last batch only, not the mean over the epoch's batches":
                                 batch_losses[:, -1].tolist()})

# %% nbgrader={"grade": true, "grade_id": "test-schedule", "locked": true, "points": 3, "schema_version": 3, "solution": false}
# Graded: the StepLR training loop, tested with a reference train_step so a mistake in
# exercise 2 costs points only there (hidden tests: other step sizes, gammas, batch counts).
def _reference_step(model, loss_fn, optimizer, x, y):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def _train_step(model, loss_fn, optimizer, x, y):
    # The reference step, run where the model lives (in your kernel when graded).
    return checks.run_in_kernel(_reference_step, model, loss_fn, optimizer, x, y)


def _linear_setup(seed, n_in, n_out, lr, momentum, step_size, gamma):
    # Runs in the kernel when graded: a linear model, its loss, SGD and a StepLR schedule.
    torch.manual_seed(seed)
    model = nn.Linear(n_in, n_out)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    return model, nn.MSELoss(), optimizer, scheduler


_model, _loss_fn, _opt, _sched = checks.run_in_kernel(
    _linear_setup, seed=0, n_in=3, n_out=1, lr=0.1, momentum=0.0, step_size=2, gamma=0.5)
_batches = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(3)]
with checks.substitute(train_step=_train_step):
    _losses, _lrs = train_epochs(_model, _loss_fn, _opt, _sched, _batches, 5)
checks.check_close("learning rate per epoch", _lrs, [0.1, 0.1, 0.05, 0.05, 0.025], quiet=True)
### BEGIN HIDDEN TESTS
def _current_lr(optimizer):
    # Runs in the kernel: the learning rate the optimizer would step with now.
    return optimizer.param_groups[0]["lr"]


def _scheduler_steps(scheduler):
    # Runs in the kernel: how many times scheduler.step() was called.
    return scheduler.last_epoch


_trained_with = []


def _recording_step(model, loss_fn, optimizer, x, y):
    # The reference step, noting the learning rate each batch trains with.
    _trained_with.append(checks.run_in_kernel(_current_lr, optimizer))
    return _train_step(model, loss_fn, optimizer, x, y)


for _s, _gamma, _nb, _ne in [(3, 0.1, 4, 7), (1, 0.5, 1, 4), (2, 0.9, 5, 5)]:
    _m, _lf, _o, _sch = checks.run_in_kernel(
        _linear_setup, seed=_s + _nb, n_in=4, n_out=2, lr=0.2, momentum=0.5, step_size=_s, gamma=_gamma)
    _start = checks.run_in_kernel(checks.parameter_copies, _m)
    torch.manual_seed(_s + _nb)
    _bs = [(torch.randn(6, 4), torch.randn(6, 2)) for _ in range(_nb)]
    _trained_with.clear()
    with checks.substitute(train_step=_recording_step):
        _losses, _lrs = train_epochs(_m, _lf, _o, _sch, _bs, _ne)
    checks.check_close("hidden lrs", _lrs, [0.2 * _gamma ** (e // _s) for e in range(_ne)], quiet=True)
    checks.check_close("hidden learning rate of each batch", _trained_with,
                       [0.2 * _gamma ** (e // _s) for e in range(_ne) for _ in range(_nb)], quiet=True)
    assert checks.run_in_kernel(_scheduler_steps, _sch) == _ne, "the scheduler must step exactly once per epoch"
    _r = torch.nn.Linear(4, 2)
    _r.load_state_dict(_start)
    _ro = torch.optim.SGD(_r.parameters(), lr=0.2, momentum=0.5)
    _rs = torch.optim.lr_scheduler.StepLR(_ro, step_size=_s, gamma=_gamma)
    _ref_losses = []
    for _e in range(_ne):
        _ref_losses.append(float(np.mean([_reference_step(_r, torch.nn.MSELoss(), _ro, a, b) for a, b in _bs])))
        _rs.step()
    checks.check_close("hidden epoch losses", _losses, _ref_losses, rtol=1e-5, quiet=True)
### END HIDDEN TESTS
checks.passed("StepLR schedule")

# %% [markdown] nbgrader={"grade": false, "grade_id": "schedule-run-md", "locked": true, "schema_version": 3, "solution": false}
# ## What a schedule buys
#
# Where a schedule shows its worth most clearly is noisy data. Below, a linear model learns
# $y = x^\top w + \text{noise}$ with plain mini-batch SGD at `lr=0.3`, once with a constant
# rate and once with `StepLR` dividing it by 5 every third of the run. The dashed line is
# the best loss any linear model can reach on this data (the least-squares fit).
#
# With a constant rate, every mini-batch pulls the weights towards *its own* best fit, so
# they keep jittering around the minimum and the loss stalls above the floor. Each decay
# shrinks the jitter, and the loss drops a step. (Too early a decay would slow the first
# phase down instead: where to put the steps is a hyperparameter, like the rate itself.)

# %% nbgrader={"grade": false, "grade_id": "schedule-run", "locked": true, "schema_version": 3, "solution": false}
num_epochs = budget(full=24, fast=9)
lin_gen = torch.Generator().manual_seed(1)
x_lin = torch.randn(256, 20, generator=lin_gen)
y_lin = x_lin @ torch.randn(20, 1, generator=lin_gen) + 0.5 * torch.randn(256, 1, generator=lin_gen)
floor = loss_fn(x_lin @ torch.linalg.lstsq(x_lin, y_lin).solution, y_lin).item()  # best linear fit
lin_batches = list(zip(x_lin.to(device).split(32), y_lin.to(device).split(32)))

runs = {}
for label, gamma in [("constant lr", 1.0), ("StepLR, gamma=0.2", 0.2)]:
    torch.manual_seed(0)
    lin_model = nn.Linear(20, 1, bias=False).to(device)
    lin_opt = torch.optim.SGD(lin_model.parameters(), lr=0.3)
    lin_sched = torch.optim.lr_scheduler.StepLR(lin_opt, step_size=num_epochs // 3, gamma=gamma)
    runs[label] = train_epochs(lin_model, loss_fn, lin_opt, lin_sched, lin_batches, num_epochs)

fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(11, 3.8))
for label, (epoch_losses, epoch_lrs) in runs.items():
    ax_loss.plot(epoch_losses, "o-", label=label)
    ax_lr.step(range(num_epochs), epoch_lrs, where="post", label=label)
ax_loss.axhline(floor, color="gray", linestyle="--", label="best linear fit")
top = 1.3 * runs["constant lr"][0][-1]
ax_loss.set(ylim=(0.95 * floor, top), xlabel="epoch", ylabel="mean training MSE of the epoch",
            title="Loss (epoch 0 is off the chart)")
ax_loss.legend()
ax_lr.set(yscale="log", xlabel="epoch", ylabel="learning rate (log scale)", title="Learning rate per epoch")
ax_lr.legend()
plt.tight_layout()
plt.show()
for label, (epoch_losses, epoch_lrs) in runs.items():
    print(f"{label:<18} final loss {epoch_losses[-1]:.3f} (floor {floor:.3f}), rates {epoch_lrs}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "recap", "locked": true, "schema_version": 3, "solution": false}
# ## Recap
#
# * An optimizer holds references to the parameters and updates them in place with
#   `step()`; `zero_grad()` clears the gradients, which `backward()` would otherwise add up.
# * Momentum keeps a velocity $v \leftarrow \mu v + g$; Nesterov steps with $g + \mu v$.
#   Adam gives every parameter its own step size from running averages of $g$ and $g^2$.
# * Move the model to its device first, then build the optimizer from `model.parameters()`.
# * `StepLR` counts its own `step()` calls: call it once per epoch, after the optimizer.
#
# **Further exercises** (not graded): give SGD without momentum the learning rate 0.5 and
# compare again; try `torch.optim.AdamW` with `weight_decay=1e-2`; replace `StepLR` with
# `CosineAnnealingLR(optimizer, T_max=num_epochs)` and plot both schedules.
