"""Typical wrong answers to notebook 01, used by the grading tests and the demo.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero. Every other graded cell must keep its full points, so the
mistakes combined in one submission are independent of each other.
"""

MISTAKES = {
    "forgot-relu-and-rebinds": {
        "replace": {
            "forward": '''
def two_layer_forward(x, w1, w2):
    h = x @ w1
    h_relu = h  # forgot the ReLU
    return h_relu @ w2, (h, h_relu)


def squared_error(y_pred, y):
    return float(np.sum((y_pred - y) ** 2))
''',
            "sgd": '''
def sgd_step(params, grads, lr):
    for p, g in zip(params, grads):
        p = p - lr * g  # rebinds the loop variable: the caller's arrays never move
''',
        },
        "loses": ["test-forward", "test-sgd"],
    },
    "wrong-mask-and-never-steps": {
        "replace": {
            "backward": '''
def two_layer_backward(x, y, y_pred, cache, w2):
    h, h_relu = cache
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h = grad_y_pred @ w2.T
    grad_h[h_relu < 0] = 0  # mask from the wrong tensor: h_relu is never negative
    return x.T @ grad_h, grad_w2
''',
            "train": '''
def train(x, y, w1, w2, lr, num_steps):
    losses = []
    for _ in range(num_steps):
        y_pred, cache = two_layer_forward(x, w1, w2)
        losses.append(squared_error(y_pred, y))
        grad_w1, grad_w2 = two_layer_backward(x, y, y_pred, cache, w2)
        # forgot to take the step
    return losses
''',
        },
        "loses": ["test-backward", "test-train"],
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
