"""Typical wrong answers to notebook 07, used by the grading tests.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero. Every other graded cell must keep its full points, so the
mistakes combined in one submission are independent of each other.
"""

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
            "per-use": '''
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
    if not outputs:
        return []
    grad_outputs = torch.autograd.grad(loss, outputs)
    with torch.no_grad():
        return [g.T @ z for g, z in zip(grad_outputs, outputs)]  # the output, not the input of the use
''',
        },
        "loses": ["test-dynamic-forward", "test-per-use"],
    },
    "global-rng-depth-and-never-zeroed": {
        "replace": {
            "dynamic": '''
import random


class DynamicNet(nn.Module):
    def __init__(self, D_in, H, D_out, max_depth=3, seed=0):
        super().__init__()
        self.max_depth = max_depth
        self.generator = torch.Generator().manual_seed(seed)
        self.last_depth = None
        self.input_linear = nn.Linear(D_in, H)
        self.middle_linear = nn.Linear(H, H)
        self.output_linear = nn.Linear(H, D_out)

    def forward(self, x, depth=None):
        if depth is None:
            depth = random.randint(0, self.max_depth)  # global RNG: not reproducible from the seed
        self.last_depth = depth
        h = F.relu(self.input_linear(x))
        for _ in range(depth):
            h = F.relu(self.middle_linear(h))
        return self.output_linear(h)
''',
            "train": '''
def train_dynamic(model, x, y, loss_fn, optimizer, num_steps):
    losses, depths = [], []
    for _ in tqdm(range(num_steps), leave=False):
        loss = loss_fn(model(x), y)  # gradients never zeroed: they accumulate across steps
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        depths.append(model.last_depth)
    return losses, depths
''',
        },
        "loses": ["test-dynamic-depth", "test-train"],
    },
    "exclusive-bound-hook-kept-tensor-losses": {
        "replace": {
            "dynamic": '''
class DynamicNet(nn.Module):
    def __init__(self, D_in, H, D_out, max_depth=3, seed=0):
        super().__init__()
        self.max_depth = max_depth
        self.generator = torch.Generator().manual_seed(seed)
        self.last_depth = None
        self.input_linear = nn.Linear(D_in, H)
        self.middle_linear = nn.Linear(H, H)
        self.output_linear = nn.Linear(H, D_out)

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
            "train": '''
def train_dynamic(model, x, y, loss_fn, optimizer, num_steps):
    losses, depths = [], []
    for _ in tqdm(range(num_steps), leave=False):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())  # a tensor, not a float
        depths.append(model.last_depth)
    return losses, depths
''',
        },
        "loses": ["test-dynamic-depth", "test-per-use", "test-train"],
    },
}
