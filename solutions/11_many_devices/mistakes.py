"""Typical wrong answers to notebook 11, used by the grading tests.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero. Every other graded cell must keep its full points.
"""

MISTAKES = {
    "seed-per-rank-and-sum-loss": {
        "replace": {
            "sampler": '''
def make_loader(dataset, batch_size, rank, world_size, epoch, seed=0):
    # each rank shuffles with its own seed: the ranks no longer agree on one permutation
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed + rank)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler)
''',
            "train-step": '''
def train_step(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y, reduction="sum")  # DDP averages: the step is batch-size times too big
    loss.backward()
    optimizer.step()
    return loss.item()
''',
        },
        "loses": ["test-sampler", "test-train-step"],
        "says": {"sampler-check": "a seed per rank (seed=rank) makes them overlap",
                 "train-step-check": "the loss uses reduction='sum': DDP averages the gradients, so use the mean loss"},
    },
    "no-set-epoch-no-divide-no-zero-grad": {
        "replace": {
            "sampler": '''
def make_loader(dataset, batch_size, rank, world_size, epoch, seed=0):
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler)  # forgot set_epoch: every epoch alike
''',
            "average": '''
def average_gradients(model):
    for param in model.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)  # a sum, never divided by the world size
''',
            "train-step": '''
def train_step(model, optimizer, x, y):
    loss = F.cross_entropy(model(x), y)  # gradients never zeroed: they pile up across steps
    loss.backward()
    optimizer.step()
    return loss.item()
''',
        },
        "loses": ["test-sampler", "test-average", "test-train-step"],
        "says": {"sampler-check": "call `sampler.set_epoch(epoch)` so every epoch gets a fresh permutation",
                 "average-check": "the gradients were summed over the processes but not divided by the world size",
                 "train-step-check": "the gradients are never zeroed, so they accumulate from step to step"},
    },
    "seed-ignored-weights-averaged-loss-tensor": {
        "replace": {
            "sampler": '''
def make_loader(dataset, batch_size, rank, world_size, epoch, seed=0):
    # seed=0 instead of the seed given: every run shuffles alike
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=0)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler)
''',
            "average": '''
def average_gradients(model):
    world_size = dist.get_world_size()
    for param in model.parameters():  # averages the weights (already equal), not the gradients
        if param.grad is not None:
            dist.all_reduce(param.data, op=dist.ReduceOp.SUM)
            param.data /= world_size
''',
            "train-step": '''
def train_step(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss  # a tensor, not a float
''',
        },
        "loses": ["test-sampler", "test-average", "test-train-step"],
        "says": {"sampler-check": "the seed argument is ignored",
                 "average-check": "each stepped on the gradients of its own half",
                 "train-step-check": "return `loss.item()`, a float"},
    },
}

# More classic slips, one per answer cell, each named by its cell's self-check.
MISTAKES["no-sampler-frozen-grad-none-no-step"] = {
    "replace": {
        "sampler": '''
def make_loader(dataset, batch_size, rank, world_size, epoch, seed=0):
    # a plain shuffled DataLoader: no DistributedSampler, so every rank sees the whole data set
    torch.manual_seed(seed + epoch)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True)
''',
        "average": '''
def average_gradients(model):
    world_size = dist.get_world_size()
    for param in model.parameters():  # a frozen parameter's .grad is None: all_reduce(None) fails
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
        param.grad /= world_size
''',
        "train-step": '''
def train_step(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()  # optimizer.step() is missing: the weights never change
    return loss.item()
''',
    },
    "loses": ["test-sampler", "test-average", "test-train-step"],
    "says": {"sampler-check": "the DataLoader is not using the DistributedSampler",
             "average-check": "a frozen parameter (requires_grad=False, here the first layer's bias) has .grad None",
             "train-step-check": "no optimizer.step(): the weights never change"},
}

# An attack, not a slip: average_gradients does nothing, and the cell swaps the course's launcher
# (found through importlib, under a split name, so no import names it) for one that returns the
# one-process reference weights when the averaging is tested. The test's driver imports
# course_utils.distributed in the kernel: the guard restores the module before the graded cell.
MISTAKES["patches-the-launcher"] = {
    "replace": {
        "average": '''
import importlib

def average_gradients(model):
    pass  # nothing averaged: each rank steps on the gradients of its own half

_launcher = importlib.import_module("course_utils." + "distri" + "buted")
_real_launch = _launcher.launch

def _answering_launch(task, *, functions=(), mode=None, cases=(), **options):
    if mode != "average":
        return _real_launch(task, functions=functions, mode=mode, cases=cases, **options)
    results = [{"params": _launcher.reference_run(case), "losses": []} for case in cases]
    return [{"cases": results} for _ in range(2)]

_launcher.launch = _answering_launch
''',
    },
    "loses": ["test-average"],
}

# Correct answers written differently: each must get full marks (entries that replace different
# cells are graded together in one submission).
ALTERNATIVES = {
    "sampler-positional": {"replace": {"sampler": '''
def make_loader(dataset, batch_size, rank, world_size, epoch, seed=0):
    sampler = DistributedSampler(dataset, world_size, rank, True, seed)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size, sampler=sampler)
'''}},
    "average-divide-first-continue": {"replace": {"average": '''
def average_gradients(model):
    size = float(dist.get_world_size())
    for p in model.parameters():
        if p.grad is None:
            continue
        p.grad.div_(size)  # dividing first, then summing, is the same average
        dist.all_reduce(p.grad)  # the default op is SUM
'''}},
    "train-step-loss-fn-set-to-none": {"replace": {"train-step": '''
def train_step(model, optimizer, x, y):
    loss_fn = nn.CrossEntropyLoss()
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
'''}},
    "sampler-keywords-explicit-defaults": {"replace": {"sampler": '''
def make_loader(dataset, batch_size, rank, world_size, epoch, seed=0):
    sampler = DistributedSampler(dataset=dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, sampler=sampler, num_workers=0)
'''}},
    "average-one-flat-buffer": {"replace": {"average": '''
def average_gradients(model):
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])  # one all_reduce for everything, like a DDP bucket
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
'''}},
    "train-step-zero-grad-after-step": {"replace": {"train-step": '''
def train_step(model, optimizer, x, y):
    loss = F.cross_entropy(model(x), y, reduction="mean")
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()  # cleared after the step: the next step starts from zero gradients too
    return loss.detach().item()
'''}},
}
