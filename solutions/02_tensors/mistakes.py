"""Typical wrong answers to notebook 02, used by the grading tests and the demo.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero. Every other graded cell must keep its full points, so the
mistakes combined in one submission are independent of each other.
"""

MISTAKES = {
    "copies-and-views": {
        "replace": {
            "bridge": '''
def shared_tensor(a):
    return torch.tensor(a)  # a copy: later changes to the array are not seen


def independent_tensor(a, device, dtype=torch.float32):
    return torch.as_tensor(a, dtype=dtype, device=device)  # no copy when dtype/device match
''',
            "flatten": '''
def flatten_batch(x):
    return x.view(x.size(0), -1)  # fails on non-contiguous (permuted, transposed) inputs
''',
        },
        "loses": ["test-bridge", "test-flatten"],
    },
    "integer-division-and-cpu-weights": {
        "replace": {
            "reductions": '''
def standardize(x, dim):
    mean = x.mean(dim=dim, keepdim=True)
    std = x.std(dim=dim, keepdim=True, correction=0)
    return (x - mean) / std


def accuracy(scores, labels):
    correct = (scores.argmax(dim=1) == labels).sum().item()
    return float(correct // labels.numel())  # integer division: 0 unless every row is right
''',
            "train": '''
def init_weights(d_in, h, d_out, device, dtype=torch.float32):
    w1 = torch.randn(d_in, h, dtype=dtype)  # device ignored: always on the CPU
    w2 = torch.randn(h, d_out, dtype=dtype)
    return w1, w2


def train(x, y, w1, w2, lr, num_steps):
    losses = []
    x, y = x.to(w1), y.to(w1)
    for _ in tqdm(range(num_steps), desc="training", leave=False):
        y_pred, cache = forward(x, w1, w2)
        losses.append((y_pred - y).pow(2).sum().item())
        grad_w1, grad_w2 = backward(x, y, y_pred, cache, w2)
        w1 -= lr * grad_w1
        w2 -= lr * grad_w2
    return losses
''',
        },
        "loses": ["test-reductions", "test-train"],
    },
    "wrong-mask-and-rebinds": {
        "replace": {
            "net": '''
def forward(x, w1, w2):
    h = x @ w1
    h_relu = h.clamp(min=0)
    return h_relu @ w2, (h, h_relu)


def backward(x, y, y_pred, cache, w2):
    h, h_relu = cache
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h = grad_y_pred @ w2.T
    grad_h[h_relu < 0] = 0  # mask from the wrong tensor: h_relu is never negative
    return x.T @ grad_h, grad_w2
''',
            "train": '''
def init_weights(d_in, h, d_out, device, dtype=torch.float32):
    return (torch.randn(d_in, h, device=device, dtype=dtype),
            torch.randn(h, d_out, device=device, dtype=dtype))


def train(x, y, w1, w2, lr, num_steps):
    losses = []
    x, y = x.to(w1), y.to(w1)
    for _ in tqdm(range(num_steps), desc="training", leave=False):
        y_pred, cache = forward(x, w1, w2)
        losses.append((y_pred - y).pow(2).sum().item())
        grad_w1, grad_w2 = backward(x, y, y_pred, cache, w2)
        w1 = w1 - lr * grad_w1  # rebinds the local name: the caller's weights never move
        w2 = w2 - lr * grad_w2
    return losses
''',
        },
        "loses": ["test-net", "test-train"],
    },
    "contiguous-copy-and-cache-changed": {
        "replace": {
            "bridge": '''
def shared_tensor(a):
    return torch.from_numpy(np.ascontiguousarray(a))  # copies a strided array: no longer shared


def independent_tensor(a, device, dtype=torch.float32):
    return torch.tensor(a, dtype=dtype, device=device)
''',
            "net": '''
def forward(x, w1, w2):
    h = x @ w1
    h_relu = h.clamp(min=0)
    return h_relu @ w2, (h, h_relu)


def backward(x, y, y_pred, cache, w2):
    h, h_relu = cache
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h = grad_y_pred @ w2.T
    mask = h.clamp_(min=0) > 0  # right gradients, but the cache is changed in place
    return x.T @ (grad_h * mask), grad_w2
''',
        },
        "loses": ["test-bridge", "test-net"],
    },
    "to-without-copy-and-tensor-losses": {
        "replace": {
            "bridge": '''
def shared_tensor(a):
    return torch.from_numpy(a)


def independent_tensor(a, device, dtype=torch.float32):
    return torch.from_numpy(a).to(device=device, dtype=dtype)  # .to returns the same tensor when nothing changes
''',
            "train": '''
def init_weights(d_in, h, d_out, device, dtype=torch.float32):
    return (torch.randn(d_in, h, device=device, dtype=dtype),
            torch.randn(h, d_out, device=device, dtype=dtype))


def train(x, y, w1, w2, lr, num_steps):
    losses = []
    x, y = x.to(w1), y.to(w1)
    for _ in tqdm(range(num_steps), desc="training", leave=False):
        y_pred, cache = forward(x, w1, w2)
        losses.append((y_pred - y).pow(2).sum())  # a tensor, not a Python float
        grad_w1, grad_w2 = backward(x, y, y_pred, cache, w2)
        w1 -= lr * grad_w1
        w2 -= lr * grad_w2
    return losses
''',
        },
        "loses": ["test-bridge", "test-train"],
    },
}
