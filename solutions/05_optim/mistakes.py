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
        "says": {"momentum-check": "the velocity is not kept between steps",
                 "step-check": "gradients never zeroed"},
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
        "says": {"device-check": "the optimizer built before the model was moved",
                 "schedule-check": "scheduler.step() is called per batch instead of per epoch"},
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
        "says": {"momentum-check": "nesterov=True is ignored",
                 "schedule-check": "PyTorch warned that scheduler.step() was called before optimizer.step()"},
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
        "says": {"momentum-check": "the velocity is not kept between steps",
                 "step-check": "clear them at the START of train_step",
                 "device-check": "nesterov=True is missing",
                 "schedule-check": "PyTorch warned that scheduler.step() was called before optimizer.step()"},
    },
    "no-grad-forgotten-step-before-backward-lr-ignored-epoch-loss-summed": {
        "replace": {
            "momentum": '''
def momentum_step(params, velocities, lr, momentum, nesterov=False):
    for p, v in zip(params, velocities):  # no torch.no_grad(): autograd sees the update of p
        v.mul_(momentum).add_(p.grad)
        p -= lr * (p.grad + momentum * v) if nesterov else lr * v
''',
            "train-step": '''
def train_step(model, loss_fn, optimizer, x, y):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    optimizer.step()  # before backward(): it steps with whatever .grad held
    loss.backward()
    return loss.item()
''',
            "device": '''
def make_model_and_optimizer(device, lr=0.05):
    model = make_net().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)  # lr ignored
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
        epoch_losses.append(total)  # the sum of the batch losses, not their mean
        scheduler.step()
    return epoch_losses, epoch_lrs
''',
        },
        "loses": ["test-momentum", "test-train-step", "test-device", "test-schedule"],
        "says": {"momentum-check": "Do the update inside `with torch.no_grad():`",
                 "step-check": "the weights did not move: step() ran before backward()",
                 "device-check": "the lr argument is ignored",
                 "schedule-check": "the SUM of the batch losses, not their mean"},
    },
    "lr-in-velocity-tensor-returned-second-model-lr-recorded-late": {
        "replace": {
            "momentum": '''
def momentum_step(params, velocities, lr, momentum, nesterov=False):
    with torch.no_grad():
        for p, v in zip(params, velocities):
            v.mul_(momentum).add_(lr * p.grad)  # the other convention: lr inside the velocity
            p -= lr * p.grad + momentum * v if nesterov else v
''',
            "train-step": '''
def train_step(model, loss_fn, optimizer, x, y):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss  # the tensor, not loss.item()
''',
            "device": '''
def make_model_and_optimizer(device, lr=0.05):
    model = make_net().to(device)
    # the parameters of a second, new net: the optimizer never touches the returned model
    optimizer = torch.optim.SGD(make_net().to(device).parameters(), lr=lr, momentum=0.9, nesterov=True)
    return model, optimizer
''',
            "schedule": '''
def train_epochs(model, loss_fn, optimizer, scheduler, batches, num_epochs):
    epoch_losses, epoch_lrs = [], []
    for _ in range(num_epochs):
        total = 0.0
        for xb, yb in batches:
            total += train_step(model, loss_fn, optimizer, xb, yb)
        epoch_losses.append(total / len(batches))
        scheduler.step()
        epoch_lrs.append(optimizer.param_groups[0]["lr"])  # read after the step: the next epoch's rate
    return epoch_losses, epoch_lrs
''',
        },
        "loses": ["test-momentum", "test-train-step", "test-device", "test-schedule"],
        "says": {"momentum-check": "the learning rate was folded into the velocity",
                 "step-check": "a Python float; got Tensor",
                 "device-check": "(or before the model was rebuilt)",
                 "schedule-check": "the rates run one epoch ahead"},
    },
    "parameter-rebound-and-loss-after-the-step": {
        "replace": {
            "momentum": '''
def momentum_step(params, velocities, lr, momentum, nesterov=False):
    with torch.no_grad():
        for p, v in zip(params, velocities):
            v.mul_(momentum).add_(p.grad)
            p = p - lr * (p.grad + momentum * v if nesterov else v)  # rebinds p: the parameter never moves
''',
            "train-step": '''
def train_step(model, loss_fn, optimizer, x, y):
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    optimizer.step()
    return loss_fn(model(x), y).item()  # a second forward pass: the loss after the step
''',
        },
        "loses": ["test-momentum", "test-train-step"],
        "says": {"momentum-check": "p never moved: it was rebound",
                 "step-check": "the returned loss was computed after optimizer.step()"},
    },
}

# Correct answers written differently: each must keep every point.
ALTERNATIVES = {
    "momentum-decorator-and-alpha": {
        "replace": {
            "momentum": '''
@torch.no_grad()
def momentum_step(params, velocities, lr, momentum, nesterov=False):
    for i in range(len(params)):
        p, v, g = params[i], velocities[i], params[i].grad
        v.mul_(momentum).add_(g)
        p.add_(g.add(v, alpha=momentum) if nesterov else v, alpha=-lr)
''',
        },
    },
    "momentum-augmented-assignments": {
        "replace": {
            "momentum": '''
def momentum_step(params, velocities, lr, momentum, nesterov=False):
    with torch.no_grad():
        for p, v in zip(params, velocities):
            v *= momentum
            v += p.grad
            step = p.grad + momentum * v if nesterov else v
            p -= lr * step
    return None
''',
        },
    },
    "train-step-zero-grad-keeps-tensors-float": {
        "replace": {
            "train-step": '''
def train_step(model, loss_fn, optimizer, x, y):
    optimizer.zero_grad(set_to_none=False)  # zeros in .grad instead of None
    prediction = model(x)
    loss = loss_fn(prediction, y)
    loss.backward()
    optimizer.step()
    return float(loss)
''',
        },
    },
    "train-step-grads-cleared-by-hand": {
        "replace": {
            "train-step": '''
def train_step(model, loss_fn, optimizer, x, y):
    for p in model.parameters():
        p.grad = None
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.detach().cpu().item()
''',
        },
    },
    "device-module-to-in-place-keywords": {
        "replace": {
            "device": '''
def make_model_and_optimizer(device, lr=0.05):
    model = make_net()
    model.to(device)  # Module.to moves the module itself (and returns it)
    optimizer = torch.optim.SGD(params=model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    return (model, optimizer)
''',
        },
    },
    "device-param-group-positional": {
        "replace": {
            "device": '''
def make_model_and_optimizer(device, lr=0.05):
    model = make_net().to(device=device)
    optimizer = torch.optim.SGD([{"params": list(model.parameters())}], lr, 0.9, nesterov=True)
    return [model, optimizer]
''',
        },
    },
    "schedule-get-last-lr-and-numpy-mean": {
        "replace": {
            "schedule": '''
def train_epochs(model, loss_fn, optimizer, scheduler, batches, num_epochs):
    epoch_losses, epoch_lrs = [], []
    for epoch in range(num_epochs):
        epoch_lrs.append(scheduler.get_last_lr()[0])
        batch_losses = [train_step(model, loss_fn, optimizer, xb, yb) for xb, yb in batches]
        epoch_losses.append(float(np.mean(batch_losses)))
        scheduler.step()
    return epoch_losses, epoch_lrs
''',
        },
    },
    "schedule-while-loop-and-enumerate": {
        "replace": {
            "schedule": '''
def train_epochs(model, loss_fn, optimizer, scheduler, batches, num_epochs):
    epoch_losses, epoch_lrs = [], []
    epoch = 0
    while epoch < num_epochs:
        lr_this_epoch = optimizer.param_groups[0]["lr"]
        running = 0.0
        for count, (xb, yb) in enumerate(batches, start=1):
            running += train_step(model, loss_fn, optimizer, xb, yb)
        scheduler.step()
        epoch_losses.append(running / count)
        epoch_lrs.append(lr_this_epoch)
        epoch += 1
    return epoch_losses, epoch_lrs
''',
        },
    },
}
