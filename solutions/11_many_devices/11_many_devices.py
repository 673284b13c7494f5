# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false}
# # 11 · Training on many devices
#
# One GPU (or one CPU) is often not enough: the model trains too slowly, or you want a bigger
# batch than fits. **Data parallelism** is the standard answer: every device holds a full copy
# of the model, each works on its own slice of the batch, and the gradients are averaged before
# the update, so all copies stay identical.
#
# PyTorch offers two tools. `nn.DataParallel` is one line and one process; it is simple, and
# slow. `DistributedDataParallel` (DDP) runs one **process per device**, started by `torchrun`;
# it is what everyone uses in practice, on one machine or a thousand. In this notebook DDP runs
# for real: two processes on your CPU talking through the `gloo` backend (and on two or more
# GPUs through NCCL, when you have them).
#
# **Learning goals**
# 1. Explain why averaging per-device gradients of a *mean* loss equals one big batch.
# 2. Know what `nn.DataParallel` does, and why `DistributedDataParallel` replaced it.
# 3. Start processes with `torchrun`; use ranks, the world size and `all_reduce`.
# 4. Give every process its own part of the data with a `DistributedSampler`.
# 5. Write the gradient averaging DDP does for you, and a DDP training step, and prove that
#    2 processes × batch B take exactly the same step as 1 process × batch 2B.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup-md", "locked": true, "schema_version": 3, "solution": false}
# ## Setup
# Besides the usual names, the setup cell imports `torch.distributed as dist`, the sampler and
# the DDP wrapper. The worker processes started later provide exactly these names to the
# functions you write, so write your functions using these names only.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np  # noqa: F401 - the names the workers provide, see above
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: F401
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from course_utils import budget, checks, distributed, setup

config = setup(seed=0)
print(f"CUDA GPUs: {torch.cuda.device_count()} | gloo available: {dist.is_gloo_available()} | "
      f"NCCL available: {dist.is_nccl_available()}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "math-md", "locked": true, "schema_version": 3, "solution": false}
# ## Why averaging gradients is the same as one big batch
#
# Take a batch of $2B$ examples and a loss that is the **mean** over the batch,
# $L = \frac{1}{2B}\sum_{i=1}^{2B} \ell_i$. Split the batch into two halves of $B$, one per
# device, and let each device compute the mean loss of its half, $L_0$ and $L_1$. Then
#
# $$L = \tfrac12 (L_0 + L_1) \quad\Longrightarrow\quad \nabla L = \tfrac12 (\nabla L_0 + \nabla L_1).$$
#
# The gradient of the big batch is the **average** of the devices' gradients. That is all data
# parallelism needs: average the gradients across devices, then every device takes the same
# optimizer step from the same weights, so the copies never drift apart.
#
# Two details matter. The loss must be a **mean** (with `reduction="sum"` the average of the two
# halves is half the big-batch gradient). And the gradients are *averaged*, not summed (a sum is
# twice the big-batch gradient, so the step is twice too big). Let us check it in one process:

# %% nbgrader={"grade": false, "grade_id": "math-demo", "locked": true, "schema_version": 3, "solution": false}
demo_case = {"seed": 0, "batch": 8}
demo_model = distributed.toy_model(demo_case)
(x_big, y_big), = distributed.toy_batches(demo_case, world_size=2)


def grads_of(x, y, reduction="mean"):
    demo_model.zero_grad()
    F.cross_entropy(demo_model(x), y, reduction=reduction).backward()
    return torch.cat([p.grad.flatten() for p in demo_model.parameters()])


g_big = grads_of(x_big, y_big)
g_halves = [grads_of(distributed.shard(x_big, r, 2), distributed.shard(y_big, r, 2)) for r in range(2)]
print("mean loss: big batch vs average of halves, max difference:",
      f"{(g_big - (g_halves[0] + g_halves[1]) / 2).abs().max():.1e}")
print("mean loss: big batch vs SUM of halves, max difference:     ",
      f"{(g_big - (g_halves[0] + g_halves[1])).abs().max():.1e}")
g_sum = [grads_of(distributed.shard(x_big, r, 2), distributed.shard(y_big, r, 2), "sum") for r in range(2)]
print("sum loss:  big batch vs average of halves, max difference: ",
      f"{(g_big - (g_sum[0] + g_sum[1]) / 2).abs().max():.1e}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "dp-md", "locked": true, "schema_version": 3, "solution": false}
# ## `nn.DataParallel`: one process, many GPUs
#
# `model = nn.DataParallel(model)` is the one-line version. On every forward call it
#
# 1. splits the input batch along dimension 0 into one chunk per GPU (*scatter*),
# 2. copies the model from GPU 0 to every GPU (*replicate*, on **every** call),
# 3. runs the copies in parallel **threads** of the one Python process,
# 4. collects the outputs on GPU 0 (*gather*), where the loss is computed; backward sends the
#    gradients back to GPU 0, where the single optimizer updates the single copy.
#
# Why it is not recommended any more: one Python process with threads competes for the GIL; the
# model is copied every step; GPU 0 does extra work (gather, loss, optimizer) and needs extra
# memory, so the GPUs are unevenly loaded; and it cannot span more than one machine. PyTorch's own
# documentation recommends `DistributedDataParallel` even on a single machine.
#
# One trap you will meet whichever wrapper you use: the wrapped model's `state_dict` keys get a
# `module.` prefix. Save `model.module.state_dict()` so the file loads into a plain model. On a
# machine without two GPUs, `DataParallel` simply calls the wrapped module:

# %% nbgrader={"grade": false, "grade_id": "dp-demo", "locked": true, "schema_version": 3, "solution": false}
plain = nn.Linear(4, 2).to(config.device)
wrapped = nn.DataParallel(plain)
x_dp = torch.randn(6, 4, device=config.device)
print(f"DataParallel over device ids {wrapped.device_ids} (empty on CPU: it just calls the module)")
print("same output as the plain module:", torch.allclose(wrapped(x_dp), plain(x_dp)))
print("state_dict keys, wrapped:", list(wrapped.state_dict()), "| unwrapped:", list(wrapped.module.state_dict()))
if torch.cuda.device_count() >= 2:
    print(f"{torch.cuda.device_count()} GPUs: a batch of 6 is split into chunks of "
          f"{[len(c) for c in x_dp.chunk(torch.cuda.device_count())]}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "ddp-md", "locked": true, "schema_version": 3, "solution": false}
# ## `DistributedDataParallel`: one process per device
#
# With DDP you start **one process per device**. The processes form a *process group*; each knows
#
# * its **rank** (0, 1, ...; rank 0 is the one that usually prints and saves),
# * the **world size** (how many processes there are),
# * its **local rank** (its index on this machine, which picks its GPU: `cuda:{local_rank}`).
#
# They talk through a *backend*: **NCCL** between NVIDIA GPUs, **gloo** on CPUs (and as a fallback).
# `torchrun` starts the processes and tells each one who it is through environment variables
# (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, and `MASTER_ADDR`/`MASTER_PORT` to meet). In a terminal:
#
# ```bash
# torchrun --standalone --nproc-per-node 2 train.py      # or: python -m torch.distributed.run ...
# ```
#
# Every process runs the **same script**. `DDP(model)` broadcasts rank 0's weights to all the
# others at construction, then hooks into backward: as soon as a group (*bucket*) of gradients is
# ready it starts an `all_reduce` that averages it across processes, overlapping communication with
# the rest of backward. Each process has its own optimizer; since all start from the same weights
# and apply the same averaged gradients, they stay identical without ever sending weights again.
#
# The cell below writes a complete little script and starts it with `torchrun`, exactly as you would
# from a terminal. Each process holds a different tensor; `all_reduce` sums them in place on every rank.

# %% nbgrader={"grade": false, "grade_id": "hello", "locked": true, "schema_version": 3, "solution": false}
HELLO = '''
import os
import torch
import torch.distributed as dist

dist.init_process_group("gloo")              # torchrun's environment variables say who we are
rank, world = dist.get_rank(), dist.get_world_size()
t = torch.tensor([10.0 * (rank + 1)])        # rank 0 holds 10, rank 1 holds 20
print(f"[rank {rank}/{world}, LOCAL_RANK={os.environ['LOCAL_RANK']}] before all_reduce: {t.item()}", flush=True)
dist.all_reduce(t, op=dist.ReduceOp.SUM)      # every rank now holds the sum
print(f"[rank {rank}/{world}] after all_reduce (sum): {t.item()}", flush=True)
dist.destroy_process_group()
'''
with tempfile.TemporaryDirectory() as hello_dir:
    hello_script = Path(hello_dir) / "hello_ddp.py"
    hello_script.write_text(HELLO)
    print(f"$ {Path(sys.executable).name} -m torch.distributed.run --standalone --nproc-per-node 2 hello_ddp.py")
    hello_lines = distributed.run_torchrun([str(hello_script)], nproc=2, timeout=120)
checks.check_true("all_reduce", any("after all_reduce (sum): 30.0" in ln for ln in hello_lines),
                  "the two ranks did not both end with 10 + 20 = 30; see the output above.")

# %% [markdown] nbgrader={"grade": false, "grade_id": "sampler-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 1 · Each process its own data (2 points)
#
# If every process iterated over the whole data set, they would all compute the same gradients:
# two processes, no speed-up. Each rank must see a **different part** of every epoch, and all
# ranks together must see everything once. `DistributedSampler(dataset, num_replicas, rank, ...)`
# does this: it shuffles the indices with a seed *shared by all ranks* (so they agree on the
# permutation), then gives rank `r` every `num_replicas`-th index starting at `r`. If the data set
# does not divide evenly it repeats a few indices, so every rank gets the same number of batches:
# otherwise one rank would wait forever in an `all_reduce` the others never join.
#
# The permutation depends on the seed **and the epoch**; the sampler cannot know the epoch, so you
# call `sampler.set_epoch(epoch)` before each epoch. Forget it and every epoch repeats the same order.
#
# Implement `make_loader(dataset, batch_size, rank, world_size, epoch, seed=0)`: a `DataLoader` with
# a shuffling `DistributedSampler` for this rank and epoch. Pass the rank and world size explicitly
# (the sampler can also read them from an initialised process group, but here there is none).

# %% nbgrader={"grade": false, "grade_id": "sampler", "locked": false, "schema_version": 3, "solution": true}
def make_loader(dataset, batch_size, rank, world_size, epoch, seed=0):
    """DataLoader over this rank's shard of `dataset`, shuffled for `epoch` with a seed shared by all ranks."""
    ### BEGIN SOLUTION
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler)
    ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "sampler-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** A data set whose examples are their own indices, so we can see who gets what.

# %% nbgrader={"grade": false, "grade_id": "sampler-check", "locked": true, "schema_version": 3, "solution": false}
index_set = TensorDataset(torch.arange(12))


def seen_by(rank, world_size, epoch, seed=0):
    loader = make_loader(index_set, 4, rank, world_size, epoch, seed)
    return [i for b in loader for i in b[0].tolist()]


with checks.explain_errors("make_loader"):
    for r in range(2):
        print(f"rank {r}, epoch 0: {seen_by(r, 2, 0)}   epoch 1: {seen_by(r, 2, 1)}")
    rank0, rank1 = seen_by(0, 2, 0), seen_by(1, 2, 0)
    rank0_epoch1, rank0_seed1 = seen_by(0, 2, 1), seen_by(0, 2, 0, seed=1)
checks.check_true("one shard per rank", len(rank0) == 6,
                  f"rank 0 saw {len(rank0)} of the 12 examples, not 6. If it saw all 12, the DataLoader "
                  "is not using the DistributedSampler (pass `sampler=...`, and no `shuffle=True`).")
checks.check_true("disjoint shards", not set(rank0) & set(rank1),
                  f"ranks 0 and 1 both saw {sorted(set(rank0) & set(rank1))}. Every rank must shuffle with "
                  "the SAME seed so they agree on one permutation; a seed per rank (seed=rank) makes them overlap.")
checks.check_true("complete epoch", sorted(rank0 + rank1) == list(range(12)),
                  "together the ranks should see every example exactly once per epoch.")
checks.check_true("new order each epoch", rank0 != rank0_epoch1,
                  "rank 0 sees the examples in index order, every epoch: the sampler does not shuffle. Keep "
                  "DistributedSampler's shuffle=True." if rank0 == list(range(0, 12, 2)) else
                  "rank 0 sees the same examples in the same order in epoch 0 and epoch 1: call "
                  "`sampler.set_epoch(epoch)` so every epoch gets a fresh permutation.")
checks.check_true("the seed is used", rank0 != rank0_seed1,
                  "rank 0 sees the same order with seed=0 and seed=1: the seed argument is ignored. Pass "
                  "seed=seed to the DistributedSampler (all ranks get the same seed, so they still agree).")

# %% nbgrader={"grade": true, "grade_id": "test-sampler", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: DistributedSampler setup (hidden tests: other world sizes, uneven sizes, seeds, batch sizes).
# The loader is built and read where make_loader runs (in the grader: your notebook's kernel), on a
# data set whose examples are their own indices.
def _loader_batches(make_loader, n, batch_size, rank, world_size, epoch, seed=0):
    from torch.utils.data import TensorDataset

    loader = make_loader(TensorDataset(torch.arange(n)), batch_size, rank, world_size, epoch, seed)
    return loader, [b[0].tolist() for b in loader]


def _indices(rank, world_size, epoch):
    _, batches = checks.run_in_kernel(_loader_batches, make_loader, 12, 4, rank, world_size, epoch)
    return [i for b in batches for i in b]


_a, _b = _indices(0, 2, 3), _indices(1, 2, 3)
assert not set(_a) & set(_b) and sorted(_a + _b) == list(range(12)), "the two ranks' shards overlap or miss examples"
### BEGIN HIDDEN TESTS
def _seen(n, bs, rank, world, epoch, seed=0):
    _loader, _batches = checks.run_in_kernel(_loader_batches, make_loader, n, bs, rank, world, epoch, seed)
    # is_instance trusts the class name the kernel reports; the batches below are what it does.
    assert checks.is_instance(_loader, DataLoader), "make_loader should return a DataLoader"
    assert _batches and all(len(b) <= bs for b in _batches), "the batches are larger than batch_size"
    assert len(_batches[0]) == min(bs, n // world), "the first batch does not have batch_size examples"
    return [i for b in _batches for i in b]


for _n, _world, _bs, _seed in [(30, 3, 4, 0), (64, 4, 8, 5), (20, 2, 3, 11)]:
    for _epoch in (0, 2):
        _parts = [_seen(_n, _bs, _r, _world, _epoch, _seed) for _r in range(_world)]
        assert sorted(i for p in _parts for i in p) == list(range(_n)), \
            "the ranks together do not see every example exactly once"
    assert _seen(_n, _bs, 0, _world, 0, _seed) == _seen(_n, _bs, 0, _world, 0, _seed), "not reproducible"
    assert _seen(_n, _bs, 1, _world, 0, _seed) != _seen(_n, _bs, 1, _world, 1, _seed), "epochs repeat the same order"
    assert _seen(_n, _bs, 0, _world, 0, _seed) != _seen(_n, _bs, 0, _world, 0, _seed + 1), "the seed is ignored"
_lens = [len(_seen(10, 2, _r, 3, 0)) for _r in range(3)]  # uneven: 10 examples on 3 ranks
assert _lens == [4, 4, 4], "with 10 examples on 3 ranks every rank needs 4 samples (padding)"
### END HIDDEN TESTS
checks.passed("make_loader")

# %% [markdown] nbgrader={"grade": false, "grade_id": "average-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 2 · Average the gradients yourself (2 points)
#
# Before using DDP, write the heart of it by hand. After `loss.backward()` every process holds the
# gradients of its own half. `average_gradients(model)` must replace every parameter's `.grad` with
# the average of that gradient over all processes:
#
# * `dist.all_reduce(tensor, op=dist.ReduceOp.SUM)` sums `tensor` across processes **in place**, and
#   every process gets the result;
# * `dist.get_world_size()` is the number of processes;
# * skip parameters whose `.grad` is `None` (frozen ones); every rank skips the same ones, so the
#   collectives still match up.
#
# Your function runs inside the worker processes, where the names of the setup cell (`dist`,
# `torch`, ...) exist; do not use anything else defined in this notebook.

# %% nbgrader={"grade": false, "grade_id": "average", "locked": false, "schema_version": 3, "solution": true}
def average_gradients(model):
    """Replace each parameter's .grad by its average over all processes (in place)."""
    ### BEGIN SOLUTION
    world_size = dist.get_world_size()
    for param in model.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad /= world_size
    ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "average-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check, on two real processes.** Two workers start with torchrun's environment variables;
# each builds the same seeded model, takes its half of a batch of $2 \times 8$, computes the mean loss
# and its gradients, calls your `average_gradients`, and takes two SGD steps with momentum. We compare
# the weights with one process that trains on the whole batch of 16. A second, smaller case freezes
# the first layer's bias (`requires_grad=False`, so its `.grad` stays `None`). The self-checks fork
# their workers from a launcher that has already imported PyTorch (the first one takes a few
# seconds to start, later launches a fraction of a second); the training run below uses `torchrun`.

# %% nbgrader={"grade": false, "grade_id": "average-check", "locked": true, "schema_version": 3, "solution": false}
step_case = {"seed": 0, "batch": 8, "steps": 2, "momentum": 0.9}
frozen_case = {"seed": 1, "batch": 4, "steps": 2, "freeze_first_bias": True}
one_process = distributed.flatten_params(distributed.reference_run(step_case))
try:
    per_rank = distributed.launch("step", functions=[average_gradients], mode="average",
                                  cases=[step_case, frozen_case], backend="gloo", timeout=180)
except distributed.LaunchError as err:
    checks.check_true("a frozen parameter", not ("Expected parameter `tensor`" in str(err)
                                                 and "but got <class 'NoneType'>" in str(err)),
                      "dist.all_reduce was given None: a frozen parameter (requires_grad=False, here the first "
                      "layer's bias) has .grad None. Skip parameters whose .grad is None.")
    with checks.explain_errors("average_gradients"):
        raise
rank_params = [distributed.flatten_params(result["cases"][0]["params"]) for result in per_rank]
checks.check_true("the ranks agree", torch.allclose(rank_params[0], rank_params[1], atol=1e-6),
                  "the two processes ended with different weights: each stepped on the gradients of its own "
                  "half. Every parameter's .grad must go through dist.all_reduce.")
for r in range(2):
    checks.check_close(
        f"rank {r}: 2 processes x 8 vs 1 process x 16", rank_params[r], one_process, rtol=1e-4, atol=1e-6,
        mistakes={"the gradients were summed over the processes but not divided by the world size":
                      distributed.flatten_params(distributed.reference_run(step_case, loss_scale=2.0))},
    )
    checks.check_close(f"rank {r}: with a frozen bias", distributed.flatten_params(per_rank[r]["cases"][1]["params"]),
                       distributed.flatten_params(distributed.reference_run(frozen_case)), rtol=1e-4, atol=1e-6)

# %% nbgrader={"grade": true, "grade_id": "test-average", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: average_gradients on two processes (hidden tests: other models, a frozen parameter, momentum).
# The processes are started where average_gradients is defined (in the grader: your notebook's
# kernel); the weights they end with are compared with one process on the whole batch.
assert callable(average_gradients), "define average_gradients(model) above"
### BEGIN HIDDEN TESTS
def _launch(function, mode, cases):
    from course_utils import distributed

    return distributed.launch("step", functions=[function], mode=mode, cases=cases, backend="gloo",
                              timeout=180, echo=False)


_cases = [{"seed": 3, "batch": 5, "steps": 2, "momentum": 0.5, "freeze_first_bias": True},
          {"seed": 4, "batch": 3, "steps": 1, "in_features": 7, "hidden": 9, "classes": 3, "lr": 0.3}]
_runs = checks.run_in_kernel(_launch, average_gradients, "average", _cases)
assert len(_runs) == 2, "expected the results of two processes"
for _i, _case in enumerate(_cases):
    _expected = distributed.flatten_params(distributed.reference_run(_case))
    for _r in range(2):
        checks.check_close("hidden case, one rank", distributed.flatten_params(_runs[_r]["cases"][_i]["params"]),
                           _expected, rtol=1e-4, atol=1e-6, quiet=True)
### END HIDDEN TESTS
checks.passed("average_gradients")

# %% [markdown] nbgrader={"grade": false, "grade_id": "train-step-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 3 · A training step with DDP (2 points)
#
# With `model = DDP(model)` you never call `average_gradients`: DDP's hooks average the gradients
# *during* `loss.backward()`. So the training step of a DDP process looks exactly like the ordinary
# step you know, which is the point of DDP. What matters is what you learned above:
#
# * the loss must be the **mean** over the process's batch (`F.cross_entropy` with its default
#   `reduction="mean"`), or the averaged gradient is not the big-batch gradient;
# * zero the gradients every step, as always (DDP averages whatever `.grad` holds).
#
# Implement `train_step(model, optimizer, x, y)`: one step of cross-entropy training on this
# process's batch `(x, y)`, returning this process's loss as a Python `float`. `model` is the
# DDP-wrapped model; `optimizer` holds its parameters.

# %% nbgrader={"grade": false, "grade_id": "train-step", "locked": false, "schema_version": 3, "solution": true}
def train_step(model, optimizer, x, y):
    """One optimizer step on this process's batch; returns this process's mean loss as a float."""
    ### BEGIN SOLUTION
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()
    ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "train-step-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check, on two real processes**: now each worker wraps the model in `DDP` and calls your
# `train_step` twice on its half of the batch; one process on the whole batch must end with the
# same weights.

# %% nbgrader={"grade": false, "grade_id": "train-step-check", "locked": true, "schema_version": 3, "solution": false}
with checks.explain_errors("train_step"):
    per_rank = distributed.launch("step", functions=[train_step], mode="ddp", cases=[step_case],
                                  backend="gloo", timeout=180)
for r, result in enumerate(per_rank):
    losses = result["cases"][0]["losses"]
    checks.check_true(f"rank {r}: returns the loss", all(isinstance(v, float) for v in losses),
                      f"train_step returned {[type(v).__name__ for v in losses]}; return `loss.item()`, a float.")
    checks.check_close(
        f"rank {r}: DDP, 2 processes x 8 vs 1 process x 16", distributed.flatten_params(result["cases"][0]["params"]),
        one_process, rtol=1e-4, atol=1e-6,
        mistakes={"the loss uses reduction='sum': DDP averages the gradients, so use the mean loss":
                      distributed.flatten_params(distributed.reference_run(step_case, loss_scale=8.0)),
                  "the gradients are never zeroed, so they accumulate from step to step":
                      distributed.flatten_params(distributed.reference_run(step_case, zero_grad=False)),
                  "no optimizer.step(): the weights never change":
                      distributed.flatten_params(distributed.toy_model(step_case).state_dict())},
    )

# %% nbgrader={"grade": true, "grade_id": "test-train-step", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: the DDP training step (hidden tests: other models and batch sizes, three steps, momentum).
# The processes are started where train_step is defined (in the grader: your notebook's kernel);
# the weights they end with are compared with one process on the whole batch.
assert callable(train_step), "define train_step(model, optimizer, x, y) above"
### BEGIN HIDDEN TESTS
def _launch(function, mode, cases):
    from course_utils import distributed

    return distributed.launch("step", functions=[function], mode=mode, cases=cases, backend="gloo",
                              timeout=180, echo=False)


_cases = [{"seed": 5, "batch": 6, "steps": 3, "momentum": 0.9, "lr": 0.2},
          {"seed": 6, "batch": 2, "steps": 2, "in_features": 5, "hidden": 11, "classes": 6}]
_runs = checks.run_in_kernel(_launch, train_step, "ddp", _cases)
assert len(_runs) == 2, "expected the results of two processes"
for _i, _case in enumerate(_cases):
    _expected = distributed.flatten_params(distributed.reference_run(_case))
    for _r in range(2):
        _losses = _runs[_r]["cases"][_i]["losses"]
        assert len(_losses) == _case["steps"] and all(isinstance(v, float) for v in _losses), \
            "train_step should return the loss as a float"
        checks.check_close("hidden case, one rank", distributed.flatten_params(_runs[_r]["cases"][_i]["params"]),
                           _expected, rtol=1e-4, atol=1e-6, quiet=True)
### END HIDDEN TESTS
checks.passed("train_step")

# %% [markdown] nbgrader={"grade": false, "grade_id": "cifar-md", "locked": true, "schema_version": 3, "solution": false}
# ## Putting it together: DDP training on CIFAR-10
#
# Now a real run: two processes train a small convnet on a subset of CIFAR-10 with **your**
# `make_loader` and `train_step`. Each worker loads the data itself, wraps the model in `DDP`,
# and calls `make_loader(..., epoch)` at the start of every epoch. Every rank records which examples
# it saw and its losses; rank 0 also measures the test accuracy (all ranks hold the same weights,
# so one evaluation is enough). It uses NCCL on GPUs when there is one per process, else gloo.
#
# On a CPU, two processes share the same cores, so do not expect a speed-up here: the point is
# the mechanics, which are identical on eight GPUs. The effective batch size is
# `world_size × batch_size`; when you add devices, you usually scale the learning rate with it.

# %% nbgrader={"grade": false, "grade_id": "cifar-run", "locked": true, "schema_version": 3, "solution": false}
cifar_options = {"n_train": budget(full=20_000, fast=2_000), "n_test": budget(full=10_000, fast=1_000),
                 "epochs": budget(full=4, fast=2), "batch_size": 32, "lr": 0.05, "seed": config.seed}
print(f"2 processes, {cifar_options['n_train']} training images, {cifar_options['epochs']} epochs, "
      f"batch {cifar_options['batch_size']} per process")
runs = distributed.launch("cifar", functions=[make_loader, train_step], nproc=2, timeout=540, **cifar_options)

fig, ax = plt.subplots(figsize=(7, 3.5))
for run in runs:
    ax.plot(run["losses"], label=f"rank {run['rank']} ({run['backend']}, {run['device']})", alpha=0.8)
ax.set(xlabel="step", ylabel="cross-entropy on this rank's batch", title="DDP on CIFAR-10: each rank's loss")
ax.legend()
plt.show()
print(f"test accuracy after {cifar_options['epochs']} epochs: {runs[0]['test_accuracy']:.1%} (chance: 10%)")

# %% nbgrader={"grade": false, "grade_id": "cifar-check", "locked": true, "schema_version": 3, "solution": false}
for epoch in range(cifar_options["epochs"]):
    seen = [set(run["indices"][epoch]) for run in runs]
    checks.check_true(f"epoch {epoch}: disjoint shards", not seen[0] & seen[1],
                      f"{len(seen[0] & seen[1])} examples were trained on by both ranks in epoch {epoch}.", quiet=True)
    checks.check_true(f"epoch {epoch}: whole subset", len(seen[0] | seen[1]) == cifar_options["n_train"],
                      "the ranks together did not cover the training subset.", quiet=True)
checks.passed("every epoch, the two ranks trained on disjoint halves of the data")
checks.check_true("learning", runs[0]["test_accuracy"] > 0.15,
                  f"test accuracy {runs[0]['test_accuracy']:.1%} is near chance (10%): check train_step.")

# %% [markdown] nbgrader={"grade": false, "grade_id": "nccl-md", "locked": true, "schema_version": 3, "solution": false}
# ## On GPUs: NCCL
#
# Nothing in the worker changes on GPUs except the backend and the device: `init_process_group("nccl")`,
# `torch.cuda.set_device(local_rank)`, the model on `cuda:{local_rank}` and `DDP(model, device_ids=[local_rank])`.
# The next cell runs the same training with NCCL when this machine has at least two GPUs, and says
# so and skips otherwise.

# %% nbgrader={"grade": false, "grade_id": "nccl-run", "locked": true, "schema_version": 3, "solution": false}
n_gpus = torch.cuda.device_count()
if n_gpus >= 2 and dist.is_nccl_available():
    gpu_runs = distributed.launch("cifar", functions=[make_loader, train_step], nproc=n_gpus,
                                  backend="nccl", timeout=540, **cifar_options)
    print(f"NCCL on {n_gpus} GPUs: test accuracy {gpu_runs[0]['test_accuracy']:.1%}, "
          f"epoch times {[round(t, 1) for t in gpu_runs[0]['epoch_times']]} s")
else:
    print(f"skipped: NCCL needs at least 2 CUDA GPUs, this machine has {n_gpus}.")

# %% [markdown] nbgrader={"grade": false, "grade_id": "recap", "locked": true, "schema_version": 3, "solution": false}
# ## Recap
#
# * Data parallelism = same model on every device, different data, **averaged** gradients of a
#   **mean** loss. Then $k$ processes × batch $B$ take exactly the step of one process × batch $kB$.
# * `nn.DataParallel` is one process with threads; it copies the model every step and overloads GPU 0.
#   Use `DistributedDataParallel`: one process per device, started by `torchrun`.
# * Every process runs the same script; `rank`, `world_size`, `local_rank` tell them apart. Rank 0 prints
#   and saves (save `model.module.state_dict()`).
# * A `DistributedSampler` with one shared seed gives each rank its own shard; call `set_epoch` every epoch.
# * Every rank must run the same collectives in the same order, or they wait forever.
#
# **Further exercises** (not graded): add BatchNorm to the convnet and compare `nn.SyncBatchNorm`;
# accumulate gradients over two micro-batches with `model.no_sync()`; time one process against two
# on a machine with two GPUs and explain the difference from the CPU run.
