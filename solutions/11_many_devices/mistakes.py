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
    },
}
