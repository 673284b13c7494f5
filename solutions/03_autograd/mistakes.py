"""Typical wrong answers to notebook 03, used by the grading tests and the demo.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero. Every other graded cell must keep its full points, so the
mistakes combined in one submission are independent of each other.
"""

MISTAKES = {
    "duplicate-leaves-and-aliased-grads": {
        "replace": {
            "leaves": '''
def leaf_tensors(output):
    if output.grad_fn is None:
        return [output] if output.requires_grad else []
    leaves = []

    def visit(fn):
        if fn is None:
            return
        if hasattr(fn, "variable"):
            leaves.append(fn.variable)  # no memory of what was seen: duplicates
            return
        for next_fn, _ in fn.next_functions:
            visit(next_fn)

    visit(output.grad_fn)
    return leaves
''',
            "per-batch": '''
def per_batch_grads(w, batches, loss_fn):
    grads = []
    for batch in batches:
        if w.grad is not None:
            w.grad.zero_()
        loss_fn(w, batch).backward()
        grads.append(w.grad)  # the same tensor every time: zero_() empties the stored entries
    if w.grad is not None:
        w.grad.zero_()
    return grads
''',
        },
        "loses": ["test-leaves", "test-accumulate"],
    },
    "never-zeroed-and-no-chain-rule": {
        "replace": {
            "fit": '''
def fit_linear(x, y, lr, num_steps):
    history = []
    w = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    for _ in tqdm(range(num_steps), desc="fit_linear", leave=False):
        loss = (w * x + b - y).pow(2).mean()
        history.append((w.item(), b.item(), loss.item()))
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
        # gradients never zeroed: they accumulate across steps
    return w, b, history
''',
            "function": '''
class SiLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return s * (1 + x * (1 - s))  # the local derivative alone: grad_output is ignored
''',
        },
        "loses": ["test-fit", "test-function"],
    },
    "update-outside-no-grad-and-stale-grad": {
        "replace": {
            "fit": '''
def fit_linear(x, y, lr, num_steps):
    history = []
    w = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    for _ in tqdm(range(num_steps), desc="fit_linear", leave=False):
        loss = (w * x + b - y).pow(2).mean()
        history.append((w.item(), b.item(), loss.item()))
        loss.backward()
        w = w - lr * w.grad  # recorded by autograd: w is no longer a leaf, its .grad stays None
        b = b - lr * b.grad
    return w, b, history
''',
            "per-batch": '''
def per_batch_grads(w, batches, loss_fn):
    grads = []
    for batch in batches:
        loss_fn(w, batch).backward()  # adds to whatever .grad already holds
        grads.append(w.grad.clone())
    w.grad = None
    return grads
''',
        },
        "loses": ["test-fit", "test-accumulate"],
    },
    "equal-values-detached-and-consistent-sigmoid": {
        "replace": {
            "leaves": '''
def leaf_tensors(output):
    if output.grad_fn is None:
        return [output] if output.requires_grad else []
    leaves = []

    def visit(fn):
        if fn is None:
            return
        if hasattr(fn, "variable"):
            if not any(torch.equal(fn.variable, t) for t in leaves):  # equal values, not the same tensor
                leaves.append(fn.variable)
            return
        for next_fn, _ in fn.next_functions:
            visit(next_fn)

    visit(output.grad_fn)
    return leaves
''',
            "per-batch": '''
def per_batch_grads(w, batches, loss_fn):
    grads = []
    for batch in batches:
        (grad,) = torch.autograd.grad(loss_fn(w, batch), w)
        grads.append(grad)
    return grads  # w.grad still holds the stale gradient it arrived with
''',
            "fit": '''
def fit_linear(x, y, lr, num_steps):
    history = []
    w = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    for _ in tqdm(range(num_steps), desc="fit_linear", leave=False):
        loss = (w * x + b - y).pow(2).mean()
        history.append((w.item(), b.item(), loss.item()))
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
        w.grad = None
        b.grad = None
    return w.detach(), b.detach(), history  # no longer tensors that require grad
''',
            "function": '''
class SiLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sigmoid(x)  # the sigmoid, not x * sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad_output * s * (1 - s)  # consistent with that forward: gradcheck alone passes
''',
        },
        "loses": ["test-leaves", "test-accumulate", "test-fit", "test-function"],
    },
}
