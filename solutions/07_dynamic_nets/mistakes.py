"""Typical wrong answers to notebook 07, used by the grading tests.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero, ``says`` the words a cell's output must show for it. Every
other graded cell must keep its full points, so the mistakes combined in one
submission are independent of each other. ``ALTERNATIVES`` are correct answers
written differently: each must keep every point.
"""

_INIT = '''
class DynamicNet(nn.Module):
    def __init__(self, D_in, H, D_out, max_depth=3, seed=0):
        super().__init__()
        self.max_depth = max_depth
        self.generator = torch.Generator().manual_seed(seed)
        self.last_depth = None
        self.input_linear = nn.Linear(D_in, H)
        self.middle_linear = nn.Linear(H, H)
        self.output_linear = nn.Linear(H, D_out)
'''

_HOOKED = '''
def per_use_grads(model, x, y, loss_fn, depth):
    inputs, outputs = [], []

    def save(module, args, output):
        inputs.append(args[0])
        outputs.append(output)

    handle = model.middle_linear.register_forward_hook(save)
    try:
        loss = loss_fn(model(x, depth=depth), y)
    finally:
        handle.remove()
'''

_LOOP_START = '''
def train_dynamic(model, x, y, loss_fn, optimizer, num_steps):
    losses, depths = [], []
    for _ in tqdm(range(num_steps), leave=False):
'''

MISTAKES = {
    "unshared-layers-and-output-instead-of-input": {
        "replace": {
            "dynamic": '''
class DynamicNet(nn.Module):
    def __init__(self, D_in, H, D_out, max_depth=3, seed=0):
        super().__init__()
        self.max_depth = max_depth
        self.generator = torch.Generator().manual_seed(seed)
        self.last_depth = None
        self.input_linear = nn.Linear(D_in, H)
        # one layer per depth: no weight sharing
        self.middle_layers = nn.ModuleList([nn.Linear(H, H) for _ in range(max_depth)])
        self.output_linear = nn.Linear(H, D_out)

    def forward(self, x, depth=None):
        if depth is None:
            depth = int(torch.randint(0, self.max_depth + 1, (1,), generator=self.generator))
        self.last_depth = depth
        h = F.relu(self.input_linear(x))
        for i in range(depth):
            h = F.relu(self.middle_layers[min(i, self.max_depth - 1)](h))
        return self.output_linear(h)
''',
            "per-use": _HOOKED + '''    if not outputs:
        return []
    grad_outputs = torch.autograd.grad(loss, outputs)
    with torch.no_grad():
        return [g.T @ z for g, z in zip(grad_outputs, outputs)]  # the output, not the input of the use
''',
        },
        "loses": ["test-dynamic-forward", "test-per-use"],
        "says": {"dynamic-check": "One shared middle_linear, not one layer per depth",
                 "grad-check": "the use's OUTPUT instead of its input"},
    },
    "global-rng-depth-and-never-zeroed": {
        "replace": {
            "dynamic": '''
import random


''' + _INIT.lstrip("\n") + '''
    def forward(self, x, depth=None):
        if depth is None:
            depth = random.randint(0, self.max_depth)  # global RNG: not reproducible from the seed
        self.last_depth = depth
        h = F.relu(self.input_linear(x))
        for _ in range(depth):
            h = F.relu(self.middle_linear(h))
        return self.output_linear(h)
''',
            "train": _LOOP_START + '''        loss = loss_fn(model(x), y)  # gradients never zeroed: they accumulate across steps
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        depths.append(model.last_depth)
    return losses, depths
''',
        },
        "loses": ["test-dynamic-depth", "test-train"],
        "says": {"depth-check": "not random.randint or the global torch RNG",
                 "train-check": "gradients never zeroed"},
    },
    "exclusive-bound-hook-kept-tensor-losses": {
        "replace": {
            "dynamic": _INIT + '''
    def forward(self, x, depth=None):
        if depth is None:
            # high is exclusive: max_depth is never drawn
            depth = int(torch.randint(0, self.max_depth, (1,), generator=self.generator))
        self.last_depth = depth
        h = F.relu(self.input_linear(x))
        for _ in range(depth):
            h = F.relu(self.middle_linear(h))
        return self.output_linear(h)
''',
            "per-use": '''
def per_use_grads(model, x, y, loss_fn, depth):
    inputs, outputs = [], []

    def save(module, args, output):
        inputs.append(args[0])
        outputs.append(output)

    model.middle_linear.register_forward_hook(save)  # never removed: it stays on the model
    loss = loss_fn(model(x, depth=depth), y)
    if not outputs:
        return []
    grad_outputs = torch.autograd.grad(loss, outputs)
    with torch.no_grad():
        return [g.T @ a for g, a in zip(grad_outputs, inputs)]
''',
            "train": _LOOP_START + '''        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())  # a tensor, not a float
        depths.append(model.last_depth)
    return losses, depths
''',
        },
        "loses": ["test-dynamic-depth", "test-per-use", "test-train"],
        "says": {"depth-check": "Is the upper bound of torch.randint exclusive",
                 "grad-check": "the forward hook is still attached",
                 "train-check": "record loss.item(), a Python float"},
    },
    "middle-relu-missing-transposed-zero-grad-last": {
        "replace": {
            "dynamic": _INIT + '''
    def forward(self, x, depth=None):
        if depth is None:
            depth = int(torch.randint(0, self.max_depth + 1, (1,), generator=self.generator))
        self.last_depth = depth
        h = F.relu(self.input_linear(x))
        for _ in range(depth):
            h = self.middle_linear(h)  # no ReLU after the shared layer
        return self.output_linear(h)
''',
            "per-use": _HOOKED + '''    if not outputs:
        return []
    grad_outputs = torch.autograd.grad(loss, outputs)
    with torch.no_grad():
        return [a.T @ g for g, a in zip(grad_outputs, inputs)]  # transposed: a^T g
''',
            "train": _LOOP_START + '''        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()  # cleared last: leftover gradients spoil the first step
        losses.append(loss.item())
        depths.append(model.last_depth)
    return losses, depths
''',
        },
        "loses": ["test-dynamic-forward", "test-per-use", "test-train"],
        "says": {"dynamic-check": "the ReLU after middle_linear is missing",
                 "grad-check": "transposed: a^T g instead of g^T a",
                 "train-check": "the leftover gradients in .grad were added to the first step"},
    },
    "zero-depth-drawn-total-split-depth-read-early": {
        "replace": {
            "dynamic": _INIT + '''
    def forward(self, x, depth=None):
        if not depth:  # depth=0 counts as "not given": a depth is drawn instead
            depth = int(torch.randint(0, self.max_depth + 1, (1,), generator=self.generator))
        self.last_depth = depth
        h = F.relu(self.input_linear(x))
        for _ in range(depth):
            h = F.relu(self.middle_linear(h))
        return self.output_linear(h)
''',
            "per-use": '''
def per_use_grads(model, x, y, loss_fn, depth):
    if depth == 0:
        return []
    model.zero_grad()
    loss_fn(model(x, depth=depth), y).backward()
    total = model.middle_linear.weight.grad.detach().clone()
    return [total / depth for _ in range(depth)]  # the total, split evenly: not per use
''',
            "train": _LOOP_START + '''        optimizer.zero_grad()
        depths.append(model.last_depth)  # read before the forward pass: the previous step's depth
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, depths
''',
        },
        "loses": ["test-dynamic-forward", "test-per-use", "test-train"],
        "says": {"dynamic-check": "treats depth=0 like None",
                 "grad-check": "all contributions are the total gradient divided by the depth",
                 "train-check": "model.last_depth was recorded before the forward pass"},
    },
    "tensor-depth-empty-grad-call-no-step": {
        "replace": {
            "dynamic": _INIT + '''
    def forward(self, x, depth=None):
        if depth is None:
            depth = torch.randint(0, self.max_depth + 1, (1,), generator=self.generator)  # stays a tensor
        self.last_depth = depth
        h = F.relu(self.input_linear(x))
        for _ in range(depth):
            h = F.relu(self.middle_linear(h))
        return self.output_linear(h)
''',
            "per-use": _HOOKED + '''    grad_outputs = torch.autograd.grad(loss, outputs)  # fails at depth 0: nothing to differentiate
    with torch.no_grad():
        return [g.T @ a for g, a in zip(grad_outputs, inputs)]
''',
            "train": _LOOP_START + '''        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()  # optimizer.step() forgotten: nothing ever changes
        losses.append(loss.item())
        depths.append(model.last_depth)
    return losses, depths
''',
        },
        "loses": ["test-dynamic-depth", "test-per-use", "test-train"],
        "says": {"depth-check": "not a Python int",
                 "grad-check": "torch.autograd.grad was called with no outputs to differentiate",
                 "train-check": "the weights did not move"},
    },
    "off-by-one-depth-reversed-uses-own-depths": {
        "replace": {
            "dynamic": _INIT + '''
    def forward(self, x, depth=None):
        if depth is None:
            depth = int(torch.randint(0, self.max_depth + 1, (1,), generator=self.generator))
        self.last_depth = depth
        h = F.relu(self.input_linear(x))
        for _ in range(depth + 1):  # one use too many
            h = F.relu(self.middle_linear(h))
        return self.output_linear(h)
''',
            "per-use": _HOOKED + '''    if not outputs:
        return []
    grad_outputs = torch.autograd.grad(loss, outputs)
    with torch.no_grad():
        contributions = [g.T @ a for g, a in zip(grad_outputs, inputs)]
    return contributions[::-1]  # "backward runs from the last use": reversed
''',
            "train": '''
import random


def train_dynamic(model, x, y, loss_fn, optimizer, num_steps):
    losses, depths = [], []
    for _ in tqdm(range(num_steps), leave=False):
        depth = random.randint(0, 3)  # drawn here, not by the model
        optimizer.zero_grad()
        loss = loss_fn(model(x, depth=depth), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        depths.append(depth)
    return losses, depths
''',
        },
        "loses": ["test-dynamic-forward", "test-per-use", "test-train"],
        "says": {"dynamic-check": "off by one: the shared layer ran depth + 1 times",
                 "grad-check": "the contributions are in reverse order",
                 "train-check": "call model(x) without depth and record model.last_depth"},
    },
}

ALTERNATIVES = {
    "dynamic-high-only-item-method-relu": {
        "replace": {
            "dynamic": _INIT + '''
    def forward(self, x, depth=None):
        if depth is None:
            depth = torch.randint(self.max_depth + 1, size=(1,), generator=self.generator).item()
        self.last_depth = depth
        h = self.input_linear(x).relu()
        for _ in range(depth):
            h = self.middle_linear(h).relu()
        return self.output_linear(h)
''',
        },
    },
    "dynamic-relu-module-clamp-while": {
        "replace": {
            "dynamic": '''
class DynamicNet(nn.Module):
    def __init__(self, D_in, H, D_out, max_depth=3, seed=0):
        super().__init__()
        self.max_depth = max_depth
        self.generator = torch.Generator().manual_seed(seed)
        self.last_depth = None
        self.input_linear = nn.Linear(in_features=D_in, out_features=H)
        self.middle_linear = nn.Linear(H, H)
        self.output_linear = nn.Linear(H, D_out)
        self.act = nn.ReLU()

    def forward(self, x, depth=None):
        if depth is None:
            depth = int(torch.randint(low=0, high=self.max_depth + 1, size=(), generator=self.generator))
        self.last_depth = int(depth)
        h = self.act(self.input_linear(x))
        uses = 0
        while uses < depth:
            h = self.middle_linear(h).clamp(min=0)
            uses += 1
        return self.output_linear(h)
''',
        },
    },
    "per-use-retain-grad-and-backward": {
        "replace": {
            "per-use": '''
def per_use_grads(model, x, y, loss_fn, depth):
    seen = []

    def keep(module, args, output):
        output.retain_grad()  # keep the gradient that reaches this use's output
        seen.append((args[0].detach(), output))

    handle = model.middle_linear.register_forward_hook(keep)
    try:
        loss = loss_fn(model(x, depth=depth), y)
    finally:
        handle.remove()
    if depth == 0:
        return []
    loss.backward()
    return [out.grad.T @ a for a, out in seen]
''',
        },
    },
    "per-use-pre-hook-and-einsum": {
        "replace": {
            "per-use": '''
def per_use_grads(model, x, y, loss_fn, depth):
    inputs, outputs = [], []
    handles = [
        model.middle_linear.register_forward_pre_hook(lambda module, args: inputs.append(args[0])),
        model.middle_linear.register_forward_hook(lambda module, args, out: outputs.append(out)),
    ]
    try:
        loss = loss_fn(model(x, depth=depth), y)
    finally:
        for handle in handles:
            handle.remove()
    if len(outputs) == 0:
        return list()
    grads = torch.autograd.grad(loss, outputs)
    return [torch.einsum("ni,nj->ij", g, a).detach() for g, a in zip(grads, inputs)]
''',
        },
    },
    "train-model-zero-grad-float-no-tqdm": {
        "replace": {
            "train": '''
def train_dynamic(model, x, y, loss_fn, optimizer, num_steps):
    losses, depths = [], []
    for step in range(num_steps):
        model.zero_grad(set_to_none=False)
        prediction = model(x)
        depths.append(model.last_depth)
        loss = loss_fn(prediction, y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses, depths
''',
        },
    },
    "train-tuple-records": {
        "replace": {
            "train": '''
def train_dynamic(model, x, y, loss_fn, optimizer, num_steps):
    losses, depths = [], []
    records = []
    for _ in tqdm(range(num_steps), desc="training"):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        records.append((loss.detach().item(), model.last_depth))
    losses.extend(r[0] for r in records)
    depths.extend(r[1] for r in records)
    return losses, depths
''',
        },
    },
}
