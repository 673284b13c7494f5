"""Typical wrong answers to notebook 01, used by the grading tests and the demo.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero, ``says`` the words each self-check (or graded cell) shows for it.
Every other graded cell must keep its full points, so the mistakes combined in one
submission are independent of each other. Packing: the self-checks of ``backward``
and ``train`` call the student's forward pass (and ``train``'s its backward and
``sgd_step``), so a forward mistake shares a submission only with an ``sgd`` mistake,
and a ``train`` mistake only with a ``backward`` mistake whose signature it survives.

``ALTERNATIVES`` are correct answers written differently; each must get full marks.
"""

_FORWARD = '''
def two_layer_forward(x, w1, w2):
    h = x @ w1
    h_relu = {relu}
    return h_relu @ w2, (h, h_relu)


def squared_error(y_pred, y):
    return {loss}
'''


def _forward(relu="np.maximum(h, 0)", loss="float(np.sum((y_pred - y) ** 2))"):
    return _FORWARD.format(relu=relu, loss=loss)


_BACKWARD = '''
def two_layer_backward(x, y, y_pred, cache, w2):
    h, h_relu = cache
    grad_y_pred = {grad_y_pred}
    grad_w2 = {grad_w2}
    grad_h_relu = grad_y_pred @ w2.T
{mask}
    return x.T @ grad_h, grad_w2
'''


def _backward(grad_y_pred="2.0 * (y_pred - y)", grad_w2="h_relu.T @ grad_y_pred",
              mask="    grad_h = grad_h_relu.copy()\n    grad_h[h < 0] = 0"):
    return _BACKWARD.format(grad_y_pred=grad_y_pred, grad_w2=grad_w2, mask=mask)


_SGD = '''
def sgd_step(params, grads, lr):
    for p, g in zip(params, grads):
{body}
'''


def _sgd(body):
    return _SGD.format(body=body)


_TRAIN = '''
def train(x, y, w1, w2, lr, num_steps):
    losses = []
    for _ in range({steps}):
        y_pred, cache = two_layer_forward(x, w1, w2)
{record_before}        grad_w1, grad_w2 = two_layer_backward(x, y, y_pred, cache, w2)
{step}
{record_after}    return losses
'''
_RECORD = "        losses.append(squared_error(y_pred, y))\n"


def _train(steps="num_steps", step="        sgd_step([w1, w2], [grad_w1, grad_w2], lr)", after=False):
    return _TRAIN.format(steps=steps, step=step, record_before="" if after else _RECORD,
                         record_after=(_RECORD.replace("y_pred, y", "two_layer_forward(x, w1, w2)[0], y")
                                       if after else ""))


MISTAKES = {
    "forgot-relu-and-rebinds": {
        "replace": {
            "forward": _forward(relu="h  # forgot the ReLU"),
            "sgd": _sgd("        p = p - lr * g  # rebinds the loop variable: the caller's arrays never move"),
        },
        "loses": ["test-forward", "test-sgd"],
        "says": {"forward-check": "you forgot the ReLU: h_relu is still h",
                 "sgd-check": "Did you write `param = param - lr * grad`?"},
    },
    "wrong-mask-and-never-steps": {
        "replace": {
            # mask from the wrong tensor: h_relu is never negative
            "backward": _backward(mask="    grad_h = grad_h_relu.copy()\n    grad_h[h_relu < 0] = 0"),
            "train": _train(step="        pass  # forgot to take the step"),
        },
        "loses": ["test-backward", "test-train"],
        "says": {"backward-check": "The ReLU mask is missing or taken from the wrong tensor",
                 "train-check": "the loss never changed: the weights were never updated"},
    },
    "mean-loss-and-uphill": {
        "replace": {
            "forward": _forward(loss="float(np.mean((y_pred - y) ** 2))  # the mean, not the sum"),
            "sgd": _sgd("        p += lr * g  # uphill"),
        },
        "loses": ["test-forward", "test-sgd"],
        "says": {"forward-check": "you took the mean instead of the sum",
                 "sgd-check": "the step goes uphill"},
    },
    "max-not-maximum-and-no-lr": {
        "replace": {
            "forward": _forward(relu="np.max(h, 0)  # a reduction along axis 0, not the ReLU"),
            "sgd": _sgd("        p -= g  # the learning rate is missing"),
        },
        "loses": ["test-forward", "test-sgd"],
        "says": {"forward-check": "np.max(h, 0) is the largest entry of each column",
                 "sgd-check": "the learning rate is missing"},
    },
    "not-squared-and-return-in-loop": {
        "replace": {
            "forward": _forward(loss="float(np.sum(y_pred - y))  # forgot to square"),
            "sgd": _sgd("        p -= lr * g\n        return  # leaves the loop after the first array"),
        },
        "loses": ["test-forward", "test-sgd"],
        "says": {"forward-check": "you forgot to square the difference",
                 "sgd-check": "only the first array was updated: is there a `return` inside the loop?"},
    },
    "no-factor-two-and-loss-after-step": {
        "replace": {
            "backward": _backward(grad_y_pred="y_pred - y  # d(u^2)/du is 2u"),
            "train": _train(after=True),  # records the loss of the updated weights
        },
        "loses": ["test-backward", "test-train"],
        "says": {"backward-check": "you dropped the factor 2",
                 "train-check": "the loss is recorded after the step"},
    },
    "flipped-sign-and-rebinds-in-train": {
        "replace": {
            "backward": _backward(grad_y_pred="2.0 * (y - y_pred)  # the sign is flipped"),
            # rebinds the local names: the caller's w1 and w2 never move
            "train": _train(step="        w1 = w1 - lr * grad_w1\n        w2 = w2 - lr * grad_w2"),
        },
        "loses": ["test-backward", "test-train"],
        "says": {"backward-check": "the sign is flipped",
                 "train-check": "these parameters did not change after the update: w1, w2"},
    },
    "cache-changed-and-off-by-one": {
        "replace": {
            # right gradients, but the cache is changed in place
            "backward": _backward(mask="    h[h < 0] = 0\n    grad_h = grad_h_relu * (h > 0)"),
            "train": _train(steps="num_steps - 1"),  # one step short
        },
        "loses": ["test-backward", "test-train"],
        "says": {"backward-check": "two_layer_backward changed the cache in place",
                 "train-check": "an off-by-one in the loop's range?"},
    },
    "transposed-grad-w2": {
        # a gradient of the wrong shape breaks training, so this one travels alone
        "replace": {"backward": _backward(grad_w2="grad_y_pred.T @ h_relu  # (D_out, H): transposed")},
        "loses": ["test-backward"],
        "says": {"backward-check": "grad_w2 is transposed"},
    },
}

# A cell that does not run: its function is missing, and the graded cell says which cell to fix
# (not a bare NameError); the training test uses reference functions, so it keeps its points.
MISTAKES["sgd-cell-does-not-parse"] = {
    "replace": {
        "sgd": '''
def sgd_step(params, grads, lr):
    for p, g in zip(params, grads)
        p -= lr * g
''',
    },
    "loses": ["test-sgd"],
    "says": {"test-sgd": "cell 'sgd', which defines it, failed"},
}


ALTERNATIVES = {
    "forward-dot-where-and-inner-product": {
        "replace": {"forward": '''
def two_layer_forward(x, w1, w2):
    h = np.dot(x, w1)
    h_relu = np.where(h > 0, h, 0.0)
    return np.matmul(h_relu, w2), (h, h_relu)


def squared_error(y_pred, y):
    diff = (y_pred - y).ravel()
    return float(diff @ diff)
'''},
    },
    "forward-einsum-mask-and-square": {
        "replace": {"forward": '''
def two_layer_forward(x, w1, w2):
    h = np.einsum("nd,dh->nh", x, w1)
    h_relu = h * (h > 0)
    y_pred = h_relu.dot(w2)
    return y_pred, (h, h_relu)


def squared_error(y_pred, y):
    return np.square(y_pred - y).sum().item()
'''},
    },
    "backward-multiply-by-mask": {
        "replace": {"backward": '''
def two_layer_backward(x, y, y_pred, cache, w2):
    h, h_relu = cache
    grad_y_pred = 2 * (y_pred - y)
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return np.dot(x.T, grad_h), np.dot(h_relu.T, grad_y_pred)
'''},
    },
    "backward-einsum-and-where": {
        "replace": {"backward": '''
def two_layer_backward(x, y, y_pred, cache, w2):
    h, h_relu = cache
    grad_y_pred = np.multiply(2.0, y_pred - y)
    grad_w2 = np.einsum("nh,no->ho", h_relu, grad_y_pred)
    grad_h = np.where(h < 0, 0.0, np.einsum("no,ho->nh", grad_y_pred, w2))
    grad_w1 = np.einsum("nd,nh->dh", x, grad_h)
    return grad_w1, grad_w2
'''},
    },
    "sgd-subtract-out": {
        "replace": {"sgd": '''
def sgd_step(params, grads, lr):
    for p, g in zip(params, grads):
        np.subtract(p, lr * g, out=p)
'''},
    },
    "sgd-index-loop-and-slice-assignment": {
        "replace": {"sgd": '''
def sgd_step(params, grads, lr):
    for i in range(len(params)):
        params[i][...] = params[i] - lr * grads[i]
'''},
    },
    "train-keywords-and-tuples": {
        "replace": {"train": '''
def train(x, y, w1, w2, lr, num_steps):
    losses = []
    for step in range(num_steps):
        y_pred, (h, h_relu) = two_layer_forward(x=x, w1=w1, w2=w2)
        losses.append(squared_error(y_pred=y_pred, y=y))
        grads = two_layer_backward(x=x, y=y, y_pred=y_pred, cache=(h, h_relu), w2=w2)
        sgd_step(params=(w1, w2), grads=grads, lr=lr)
    return losses
'''},
    },
    "train-while-loop": {
        "replace": {"train": '''
def train(x, y, w1, w2, lr, num_steps):
    losses = []
    while len(losses) < num_steps:
        y_pred, cache = two_layer_forward(x, w1, w2)
        losses += [squared_error(y_pred, y)]
        sgd_step([w1, w2], list(two_layer_backward(x, y, y_pred, cache, w2)), lr)
    return losses
'''},
    },
}
