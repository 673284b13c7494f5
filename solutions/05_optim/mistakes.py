"""Typical wrong answers to notebook 05, used by the grading tests.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero. Every other graded cell must keep its full points, so the
mistakes combined in one submission are independent of each other.
"""

MISTAKES = {
    "velocity-rebound-and-never-zeroed": {
        "replace": {
            "momentum": '''
def momentum_step(params, velocities, lr, momentum, nesterov=False):
    with torch.no_grad():
        for p, v in zip(params, velocities):
            v = momentum * v + p.grad  # rebinds v: the caller's velocity stays zero (plain SGD)
            if nesterov:
                p -= lr * (p.grad + momentum * v)
            else:
                p -= lr * v
''',
            "train-step": '''
def train_step(model, loss_fn, optimizer, x, y):
    loss = loss_fn(model(x), y)  # gradients never zeroed: they accumulate across steps
    loss.backward()
    optimizer.step()
    return loss.item()
''',
        },
        "loses": ["test-momentum", "test-train-step"],
    },
    "optimizer-before-move-and-scheduler-per-batch": {
        "replace": {
            "device": '''
def make_model_and_optimizer(device, lr=0.05):
    model = make_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    model = model.to(device)  # optimizer built before the model was moved
    return model, optimizer
''',
            "schedule": '''
def train_epochs(model, loss_fn, optimizer, scheduler, batches, num_epochs):
    epoch_losses, epoch_lrs = [], []
    for _ in range(num_epochs):
        epoch_lrs.append(optimizer.param_groups[0]["lr"])
        total = 0.0
        for xb, yb in batches:
            total += train_step(model, loss_fn, optimizer, xb, yb)
            scheduler.step()  # per batch instead of per epoch
        epoch_losses.append(total / len(batches))
    return epoch_losses, epoch_lrs
''',
        },
        "loses": ["test-device", "test-schedule"],
    },
    "nesterov-ignored-and-scheduler-first": {
        "replace": {
            "momentum": '''
def momentum_step(params, velocities, lr, momentum, nesterov=False):
    with torch.no_grad():
        for p, v in zip(params, velocities):
            v.mul_(momentum).add_(p.grad)
            p -= lr * v  # nesterov=True is ignored
''',
            "schedule": '''
def train_epochs(model, loss_fn, optimizer, scheduler, batches, num_epochs):
    epoch_losses, epoch_lrs = [], []
    for _ in range(num_epochs):
        scheduler.step()  # before optimizer.step(): the schedule runs one epoch ahead
        epoch_lrs.append(optimizer.param_groups[0]["lr"])
        total = 0.0
        for xb, yb in batches:
            total += train_step(model, loss_fn, optimizer, xb, yb)
        epoch_losses.append(total / len(batches))
    return epoch_losses, epoch_lrs
''',
        },
        "loses": ["test-momentum", "test-schedule"],
    },
    "replaced-velocity-zero-grad-last-no-nesterov-scheduler-before-training": {
        # Each slip passes the visible part of its graded cell and fails a hidden test.
        "replace": {
            "momentum": '''
def momentum_step(params, velocities, lr, momentum, nesterov=False):
    with torch.no_grad():
        for i, (p, v) in enumerate(zip(params, velocities)):
            velocities[i] = momentum * v + p.grad  # a new tensor in the list: the caller's velocity is lost
            p -= lr * (p.grad + momentum * velocities[i] if nesterov else velocities[i])
''',
            "train-step": '''
def train_step(model, loss_fn, optimizer, x, y):
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()  # cleared last: leftover gradients from earlier code spoil the first step
    return loss.item()
''',
            "device": '''
def make_model_and_optimizer(device, lr=0.05):
    model = make_net().to(device)
    return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)  # nesterov=True forgotten
''',
            "schedule": '''
def train_epochs(model, loss_fn, optimizer, scheduler, batches, num_epochs):
    epoch_losses, epoch_lrs = [], []
    for _ in range(num_epochs):
        epoch_lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()  # before the epoch trains: it trains with the next rate
        total = 0.0
        for xb, yb in batches:
            total += train_step(model, loss_fn, optimizer, xb, yb)
        epoch_losses.append(total / len(batches))
    return epoch_losses, epoch_lrs
''',
        },
        "loses": ["test-momentum", "test-train-step", "test-device", "test-schedule"],
    },
}
