"""Typical wrong answers to notebook 02, used by the grading tests and the demo.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero, ``says`` the words each self-check shows for it. Every other
graded cell must keep its full points, so the mistakes combined in one submission
are independent of each other. The self-checks of ``bridge``, ``flatten``,
``reductions`` and ``net`` use only their own exercise; ``train``'s runs the
student's forward and backward too, so a ``train`` mistake shares a submission
only with a ``net`` mistake whose signature it survives.

``ALTERNATIVES`` are correct answers written differently; each must get full marks.
"""

_FORWARD = '''
def forward(x, w1, w2):
    h = x @ w1
    h_relu = {relu}
    return h_relu @ w2, (h, h_relu)
'''
_BACKWARD = '''

def backward(x, y, y_pred, cache, w2):
    h, h_relu = cache
    grad_y_pred = {grad_y_pred}
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h = grad_y_pred @ {w2t}
    grad_h[h < 0] = 0
    return x.T @ grad_h, grad_w2
'''


def _net(relu="h.clamp(min=0)", grad_y_pred="2.0 * (y_pred - y)", w2t="w2.T"):
    return _FORWARD.format(relu=relu) + _BACKWARD.format(grad_y_pred=grad_y_pred, w2t=w2t)


_REDUCTIONS = '''
def standardize(x, dim):
    mean = {mean}
    std = {std}
    return (x - mean) / std


def accuracy(scores, labels):
    return {accuracy}
'''


def _reductions(mean="x.mean(dim=dim, keepdim=True)", std="x.std(dim=dim, keepdim=True, correction=0)",
                accuracy="(scores.argmax(dim=1) == labels).float().mean().item()"):
    return _REDUCTIONS.format(mean=mean, std=std, accuracy=accuracy)


_TRAIN = '''
def init_weights(d_in, h, d_out, device, dtype=torch.float32):
    return ({rand}(d_in, h, device=device, dtype=dtype),
            {rand}(h, d_out, device=device, dtype=dtype))


def train(x, y, w1, w2, lr, num_steps):
    losses = []
    {move}
    for _ in tqdm(range(num_steps), desc="training", leave=False):
        y_pred, cache = forward(x, w1, w2)
        losses.append((y_pred - y).pow(2).sum().item())
        grad_w1, grad_w2 = backward(x, y, y_pred, cache, w2)
        w1 -= lr * grad_w1
        w2 -= lr * grad_w2
    return losses
'''


def _train(rand="torch.randn", move="x, y = x.to(w1), y.to(w1)"):
    return _TRAIN.format(rand=rand, move=move)


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
        "says": {"bridge-check": "it is a copy",
                 "flatten-check": "`view` was called on a non-contiguous tensor"},
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
        "says": {"reductions-check": "integer division",
                 "train-check": "the tensor is on device cpu, expected meta"},
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
        "says": {"net-check": "The ReLU mask is missing or taken from the wrong tensor",
                 "train-check": "these parameters did not change after the update: w1, w2"},
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
        "says": {"bridge-check": "np.ascontiguousarray(a)` for an array that is not contiguous",
                 "net-check": "backward changed the cache in place"},
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
        "says": {"bridge-check": "it shares memory with the array",
                 "train-check": "use `loss.item()`"},
    },
    "ignores-dtype-flattens-batch-no-keepdim-no-factor-two-uniform": {
        "replace": {
            "bridge": '''
def shared_tensor(a):
    return torch.from_numpy(a)


def independent_tensor(a, device, dtype=torch.float32):
    return torch.tensor(a, device=device)  # dtype forgotten: float64 arrays stay float64
''',
            "flatten": '''
def flatten_batch(x):
    return torch.flatten(x)  # flattens the batch dimension too
''',
            "reductions": _reductions(mean="x.mean(dim=dim)", std="x.std(dim=dim, correction=0)"),  # no keepdim
            "net": _net(grad_y_pred="y_pred - y"),  # the factor 2 of d(u^2)/du is missing
            "train": _train(rand="torch.rand"),  # uniform on [0, 1), not standard normal
        },
        "loses": ["test-bridge", "test-flatten", "test-reductions", "test-net", "test-train"],
        "says": {"bridge-check": "wrong dtype: expected torch.float32, got torch.float64",
                 "flatten-check": "the batch dimension was flattened too",
                 "reductions-check": "you reduced without keepdim=True",
                 "net-check": "you dropped the factor 2",
                 "train-check": "`torch.rand` draws uniformly"},
    },
    "ignores-device-four-d-only-sample-std-no-relu": {
        "replace": {
            "bridge": '''
def shared_tensor(a):
    return torch.from_numpy(a)


def independent_tensor(a, device, dtype=torch.float32):
    return torch.tensor(a, dtype=dtype)  # device forgotten: always on the CPU
''',
            "flatten": '''
def flatten_batch(x):
    return x.reshape(x.size(0), x.size(1) * x.size(2) * x.size(3))  # only for 4-D batches
''',
            "reductions": _reductions(std="x.std(dim=dim, keepdim=True)"),  # the sample std (correction=1)
            "net": _net(relu="h  # the ReLU is missing"),
        },
        "loses": ["test-bridge", "test-flatten", "test-reductions", "test-net"],
        "says": {"bridge-check": "the tensor is on device cpu, expected meta",
                 "flatten-check": "Your code assumes a fixed number of dimensions",
                 "reductions-check": "you used the sample std (correction=1)",
                 "net-check": "the ReLU is missing in forward"},
    },
    "argmax-over-batch-flipped-sign-data-not-moved": {
        "replace": {
            "reductions": _reductions(accuracy="(scores.argmax(dim=0) == labels).float().mean().item()"),
            "net": _net(grad_y_pred="2.0 * (y - y_pred)"),  # the sign is flipped
            "train": _train(move="pass  # float64 data from NumPy meets float32 weights"),
        },
        "loses": ["test-reductions", "test-net", "test-train"],
        "says": {"reductions-check": "argmax over dim=0 (across the batch)",
                 "net-check": "the sign is flipped",
                 "train-run": "the operands have different dtypes"},
    },
    "count-not-fraction-and-untransposed-w2": {
        "replace": {
            "reductions": _reductions(accuracy="float((scores.argmax(dim=1) == labels).sum())  # a count"),
            "net": _net(w2t="w2  # w2 where w2.T belongs"),
        },
        "loses": ["test-reductions", "test-net"],
        "says": {"reductions-check": "the number of right rows, not the fraction",
                 "net-check": "A weight is transposed, or the operands are in the wrong order"},
    },
}


ALTERNATIVES = {
    "bridge-as-tensor-and-clone": {
        "replace": {"bridge": '''
def shared_tensor(a):
    return torch.as_tensor(a)  # no copy needed: same dtype, CPU


def independent_tensor(a, device, dtype=torch.float32):
    return torch.from_numpy(a).clone().to(device=device, dtype=dtype)
'''},
    },
    "bridge-asarray-copy": {
        "replace": {"bridge": '''
def shared_tensor(a):
    return torch.asarray(a)


def independent_tensor(a, device, dtype=torch.float32):
    return torch.asarray(a, dtype=dtype, device=device, copy=True)
'''},
    },
    "flatten-start-dim": {
        "replace": {"flatten": '''
def flatten_batch(x):
    return torch.flatten(x, start_dim=1)
'''},
    },
    "flatten-contiguous-view": {
        "replace": {"flatten": '''
def flatten_batch(x):
    return x.contiguous().view(len(x), x[0].numel())
'''},
    },
    "reductions-std-mean-and-division": {
        "replace": {"reductions": '''
def standardize(x, dim):
    std, mean = torch.std_mean(x, dim=dim, keepdim=True, correction=0)
    return (x - mean) / std


def accuracy(scores, labels):
    return (scores.argmax(1) == labels).sum().item() / labels.numel()
'''},
    },
    "reductions-by-hand": {
        "replace": {"reductions": '''
def standardize(x, dim):
    centred = x - x.mean(dim, keepdim=True)
    return centred / centred.pow(2).mean(dim, keepdim=True).sqrt()


def accuracy(scores, labels):
    predictions = scores.max(dim=1).indices
    return float(torch.mean((predictions == labels).double()))
'''},
    },
    "net-relu-and-mask-product": {
        "replace": {"net": '''
def forward(x, w1, w2):
    h = x @ w1
    h_relu = torch.relu(h)
    return h_relu @ w2, [h, h_relu]


def backward(x, y, y_pred, cache, w2):
    h, h_relu = cache
    grad_y_pred = 2 * (y_pred - y)
    grad_h = (grad_y_pred @ w2.t()) * (h > 0)
    return x.t() @ grad_h, h_relu.t() @ grad_y_pred
'''},
    },
    "net-where-and-matmul": {
        "replace": {"net": '''
def forward(x, w1, w2):
    h = torch.matmul(x, w1)
    h_relu = torch.where(h > 0, h, torch.zeros_like(h))
    return torch.matmul(h_relu, w2), (h, h_relu)


def backward(x, y, y_pred, cache, w2):
    h, h_relu = cache
    grad_y_pred = (y_pred - y).mul(2)
    grad_h = torch.where(h < 0, 0.0, torch.matmul(grad_y_pred, w2.transpose(0, 1)))
    grad_w1 = torch.einsum("nd,nh->dh", x, grad_h)
    grad_w2 = torch.einsum("nh,no->ho", h_relu, grad_y_pred)
    return grad_w1, grad_w2
'''},
    },
    "train-normal-and-sub": {
        "replace": {"train": '''
def init_weights(d_in, h, d_out, device, dtype=torch.float32):
    w1 = torch.empty(d_in, h, device=device, dtype=dtype).normal_()
    w2 = torch.empty(h, d_out, device=device, dtype=dtype).normal_()
    return w1, w2


def train(x, y, w1, w2, lr, num_steps):
    losses = []
    x = x.to(device=w1.device, dtype=w1.dtype)
    y = y.to(device=w1.device, dtype=w1.dtype)
    for _ in tqdm(range(num_steps), desc="training", leave=False):
        y_pred, cache = forward(x, w1, w2)
        losses.append(float(torch.sum((y_pred - y) ** 2)))
        grad_w1, grad_w2 = backward(x, y, y_pred, cache, w2)
        w1.sub_(lr * grad_w1)
        w2.sub_(grad_w2, alpha=lr)
    return losses
'''},
    },
    "train-torch-normal-and-slices": {
        "replace": {"train": '''
def init_weights(d_in, h, d_out, device, dtype=torch.float32):
    return tuple(torch.normal(0.0, 1.0, size=shape, device=device, dtype=dtype)
                 for shape in [(d_in, h), (h, d_out)])


def train(x, y, w1, w2, lr, num_steps):
    losses = []
    x, y = (t.to(w1.device).to(w1.dtype) for t in (x, y))
    for _ in tqdm(range(num_steps), desc="training", leave=False):
        y_pred, cache = forward(x, w1, w2)
        loss = (y_pred - y).square().sum()
        losses.append(loss.item())
        grads = backward(x, y, y_pred, cache, w2)
        for w, g in zip((w1, w2), grads):
            w[...] = w - lr * g
    return losses
'''},
    },
}
