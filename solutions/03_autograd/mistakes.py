"""Typical wrong answers to notebook 03, used by the grading tests and the demo.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero, ``says`` the words each self-check shows for it. Every other
graded cell must keep its full points, so the mistakes combined in one submission
are independent of each other (each self-check of this notebook uses only its own
exercise, so one mistake per exercise fits in one submission).

``ALTERNATIVES`` are correct answers written differently; each must get full marks.
"""

_FIT = '''
def fit_linear(x, y, lr, num_steps):
    history = []
    w = {init}
    b = {init}
    for _ in tqdm(range(num_steps), desc="fit_linear", leave=False):
        loss = (w * x + b - y).pow(2).{reduce}()
{record_before}        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
{record_after}        w.grad = None
        b.grad = None
    return w, b, history
'''
_RECORD = "        history.append((w.item(), b.item(), loss.item()))\n"


def _fit(init="torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)", reduce="mean", after=False):
    return _FIT.format(init=init, reduce=reduce, record_before="" if after else _RECORD,
                       record_after=_RECORD if after else "")


_SILU = '''
class SiLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return {grad}
'''


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
        "says": {"leaves-check": "A tensor reached along several paths must appear once",
                 "per-batch-check": "every entry is the same tensor, emptied by `w.grad.zero_()`"},
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
        "says": {"fit-check": "the gradients were never zeroed",
                 "function-check": "backward ignores grad_output"},
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
        "says": {"fit-run": "a `.grad` is None because the tensor is not a leaf",
                 "per-batch-check": "the gradients were never zeroed (neither the stale one on entry nor between batches)"},
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
        "says": {"leaves-check": "compare tensors by identity",
                 "per-batch-check": "the gradients of w were not cleared",
                 "fit-check": "detached (`.detach()`)",
                 "function-check": "forward returns sigmoid(x), not x * sigmoid(x)"},
    },
    "breadth-first-stale-first-sum-loss-sigmoid-derivative": {
        "replace": {
            "leaves": '''
def leaf_tensors(output):
    if output.grad_fn is None:
        return [output] if output.requires_grad else []
    leaves, seen, queue = [], set(), [output.grad_fn]
    while queue:
        fn = queue.pop(0)  # a queue: breadth-first, not depth-first
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            if all(fn.variable is not t for t in leaves):
                leaves.append(fn.variable)
            continue
        queue.extend(next_fn for next_fn, _ in fn.next_functions)
    return leaves
''',
            "per-batch": '''
def per_batch_grads(w, batches, loss_fn):
    grads = []
    for batch in batches:
        loss_fn(w, batch).backward()  # the first backward adds to the stale .grad w arrived with
        grads.append(w.grad.clone())
        w.grad = None
    return grads
''',
            "fit": _fit(reduce="sum"),  # the sum of squared errors, not the mean
            "function": _SILU.format(grad="grad_output * s * (1 - s)  # the sigmoid's derivative only"),
        },
        "loses": ["test-leaves", "test-accumulate", "test-fit", "test-function"],
        "says": {"leaves-check": "The right leaves in the wrong order",
                 "per-batch-check": "the first gradient includes the stale `.grad`",
                 "fit-check": "the loss is the sum of the squared errors, not their mean",
                 "function-check": "only the derivative of the sigmoid"},
    },
    "lists-data-leaf-stores-grad-itself-records-after-step-half-product-rule": {
        "replace": {
            "leaves": '''
def leaf_tensors(output):
    if output.grad_fn is None:
        return [output]  # also for a leaf that does not require grad
    leaves, seen = [], set()

    def visit(fn):
        if fn is None or fn in seen:
            return
        seen.add(fn)
        if hasattr(fn, "variable"):
            if all(fn.variable is not t for t in leaves):
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
        if w.grad is not None:
            w.grad.zero_()
        loss_fn(w, batch).backward()
        grads.append(w.grad)  # the same tensor each time, zeroed and refilled by the next batch
    return grads
''',
            "fit": _fit(after=True),  # history records w and b after the update
            "function": _SILU.format(grad="grad_output * s  # the x * sigmoid'(x) term is missing"),
        },
        "loses": ["test-leaves", "test-accumulate", "test-fit", "test-function"],
        "says": {"leaves-check": "return [] for it",
                 "per-batch-check": "you stored `w.grad` itself",
                 "fit-check": "history holds w and b after the update",
                 "function-check": "the x * sigmoid'(x) term of the product rule is missing"},
    },
    "lone-leaf-forgotten-and-float32-parameters": {
        "replace": {
            "leaves": '''
def leaf_tensors(output):
    leaves, seen = [], set()

    def visit(fn):
        if fn is None or fn in seen:  # a leaf has no grad_fn: it is never visited
            return
        seen.add(fn)
        if hasattr(fn, "variable"):
            if all(fn.variable is not t for t in leaves):
                leaves.append(fn.variable)
            return
        for next_fn, _ in fn.next_functions:
            visit(next_fn)

    visit(output.grad_fn)
    return leaves
''',
            # float32 whatever x's dtype (and on the CPU whatever x's device)
            "fit": _fit(init="torch.tensor(0.0, requires_grad=True)"),
        },
        "loses": ["test-leaves", "test-fit"],
        "says": {"leaves-check": "a leaf that requires grad depends only on itself: return [output]",
                 "fit-check": "for float64 data w is torch.float32"},
    },
}


ALTERNATIVES = {
    "leaves-explicit-stack": {
        "replace": {"leaves": '''
def leaf_tensors(output):
    if output.grad_fn is None:
        return [output] if output.requires_grad else []
    leaves, seen = [], set()
    stack = [output.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ == "AccumulateGrad":
            if id(fn.variable) not in {id(t) for t in leaves}:
                leaves.append(fn.variable)
            continue
        stack.extend(reversed([next_fn for next_fn, _ in fn.next_functions]))  # first input on top
    return leaves
'''},
    },
    "leaves-recursive-generator": {
        "replace": {"leaves": '''
def leaf_tensors(output):
    if not output.requires_grad:
        return []
    if output.is_leaf:
        return [output]

    def walk(fn):
        if fn is None:
            return
        if hasattr(fn, "variable"):
            yield fn.variable
        for next_fn, _ in fn.next_functions:
            yield from walk(next_fn)

    unique = {}
    for leaf in walk(output.grad_fn):
        unique.setdefault(id(leaf), leaf)
    return list(unique.values())
'''},
    },
    "per-batch-autograd-grad": {
        "replace": {"per-batch": '''
def per_batch_grads(w, batches, loss_fn):
    grads = []
    for batch in batches:
        (grad,) = torch.autograd.grad(loss_fn(w, batch), [w])
        grads.append(grad)
    w.grad = None
    return grads
'''},
    },
    "per-batch-zero-and-clone": {
        "replace": {"per-batch": '''
def per_batch_grads(w, batches, loss_fn):
    grads = []
    for batch in batches:
        if w.grad is not None:
            w.grad.zero_()
        loss = loss_fn(w, batch)
        loss.backward()
        grads.append(w.grad.detach().clone())
    if w.grad is not None:
        w.grad.zero_()
    return grads
'''},
    },
    "fit-mse-loss-and-zero": {
        "replace": {"fit": '''
def fit_linear(x, y, lr, num_steps):
    history = []
    w = torch.tensor(0.0, dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.tensor(0.0, dtype=x.dtype, device=x.device, requires_grad=True)
    for _ in tqdm(range(num_steps), desc="fit_linear", leave=False):
        loss = F.mse_loss(w * x + b, y)
        history.append((float(w), float(b), float(loss)))
        loss.backward()
        with torch.no_grad():
            for p in (w, b):
                p.sub_(lr * p.grad)
                p.grad.zero_()
    return w, b, history
'''},
    },
    "fit-zeros-like-and-sum-over-n": {
        "replace": {"fit": '''
def fit_linear(x, y, lr, num_steps):
    history = []
    w = torch.zeros_like(x[0]).requires_grad_()
    b = torch.zeros_like(x[0]).requires_grad_()
    for _ in tqdm(range(num_steps), desc="fit_linear", leave=False):
        residual = w * x + b - y
        loss = (residual ** 2).sum() / len(x)
        history.append(tuple(t.item() for t in (w, b, loss)))
        loss.backward()
        with torch.no_grad():
            w.add_(w.grad, alpha=-lr)
            b.add_(b.grad, alpha=-lr)
        w.grad, b.grad = None, None
    return w, b, history
'''},
    },
    "function-saves-sigmoid-too": {
        "replace": {"function": '''
class SiLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s = x.sigmoid()
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, grad_output):
        x, s = ctx.saved_tensors
        return grad_output * (s + x * s * (1 - s))
'''},
    },
    "function-expit-and-mul": {
        "replace": {"function": '''
class SiLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.mul(x, torch.special.expit(x))

    @staticmethod
    def backward(ctx, grad_output):
        x = ctx.saved_tensors[0]
        sig = torch.special.expit(x)
        local = sig + x * sig - x * sig.pow(2)  # product rule, expanded
        return local * grad_output
'''},
    },
}
