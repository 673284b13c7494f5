"""Typical wrong answers to notebook 04, used by the grading tests and the demo.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero, ``says`` the words each self-check shows for it. Every other
graded cell must keep its full points, so the mistakes combined in one submission
are independent of each other (each self-check of this notebook uses only its own
exercise, so one mistake per exercise fits in one submission).

``ALTERNATIVES`` are correct answers written differently; each must get full marks.
"""

_TO_TENSORS = '''
def to_tensors(features, labels, device):
    x = {features}
    y = {labels}
    return x, y

'''
_CLASSIFIER = '''
def build_classifier(n_features, hidden, n_classes):
    return nn.Sequential(
        nn.Linear(n_features, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, n_classes),{last}
    )
'''


def _classifier(features="torch.as_tensor(features, dtype=torch.float32, device=device)",
                labels="torch.as_tensor(labels, device=device).long()", last=""):
    return _TO_TENSORS.format(features=features, labels=labels) + _CLASSIFIER.format(last=last)


_INIT = '''
def init_linear_layers(model):
    for module in model.modules():
        if isinstance(module, nn.Linear):
            {weight}
{bias}
'''
_ZERO_BIAS = "            if module.bias is not None:\n                nn.init.zeros_(module.bias)"


def _init(weight='nn.init.kaiming_normal_(module.weight, nonlinearity="relu")', bias=_ZERO_BIAS):
    return _INIT.format(weight=weight, bias=bias)


_SGD = '''
def sgd_step(model, lr):
    {context}
        for param in model.parameters():
{skip}            {update}
            param.grad = None
'''
_SKIP = "            if param.grad is None:\n                continue\n"


def _sgd(update="param -= lr * param.grad", skip=_SKIP, context="with torch.no_grad():"):
    return _SGD.format(update=update, skip=skip, context=context)


MISTAKES = {
    "activation-at-end-and-transposed-weights": {
        "replace": {
            "mlp": '''
def build_mlp(sizes, activation=nn.ReLU):
    layers = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(d_in, d_out), activation()]  # also after the last layer
    return nn.Sequential(*layers)
''',
            "functional": '''
def mlp_functional(x, params):
    for i, (weight, bias) in enumerate(params):
        if i > 0:
            x = F.relu(x)
        x = x @ weight + bias  # nn.Linear stores (out, in): this needs weight.T
    return x
''',
        },
        "loses": ["test-mlp", "test-functional"],
        "says": {"mlp-check": "There is an activation after the last layer",
                 "functional-check": "A weight is transposed, or the operands are in the wrong order"},
    },
    "flat-loss-and-children-only": {
        "replace": {
            "sgd": '''
def sgd_step(model, lr):
    with torch.no_grad():
        for param in model.parameters():
            if param.grad is None:
                continue
            param = param - lr * param.grad  # rebinds the loop variable: the model never changes
            param.grad = None
''',
            "init": '''
def init_linear_layers(model):
    for module in model.children():  # direct submodules only: nested layers are missed
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
''',
        },
        "loses": ["test-sgd", "test-init"],
        "says": {"sgd-check": "these parameters did not change after the update",
                 "init-check": "Walk the model with `modules()`"},
    },
    "softmax-before-loss-and-float-labels": {
        "replace": {
            "classifier": '''
def to_tensors(features, labels, device):
    x = torch.tensor(features, dtype=torch.float32, device=device)
    y = torch.tensor(labels, device=device)  # float64 labels: wrong dtype for CrossEntropyLoss
    return x, y


def build_classifier(n_features, hidden, n_classes):
    return nn.Sequential(
        nn.Linear(n_features, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, n_classes), nn.Softmax(dim=1),  # CrossEntropyLoss applies softmax itself
    )
''',
            "sgd": '''
def sgd_step(model, lr):
    with torch.no_grad():
        for param in model.parameters():
            if param.grad is not None:
                param -= lr * param.grad  # gradients never cleared: they accumulate
''',
        },
        "loses": ["test-classifier", "test-sgd"],
        "says": {"classifier-check": "labels of the wrong dtype for the loss",
                 "sgd-check": "were not cleared"},
    },
    "ignored-activation-detached-weights-new-parameters-missing-relu-xavier": {
        # Each slip passes the visible part of its graded cell and fails a hidden test.
        "replace": {
            "mlp": '''
def build_mlp(sizes, activation=nn.ReLU):
    layers = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            layers.append(nn.ReLU())  # ignores the `activation` argument
        layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)
''',
            "functional": '''
def mlp_functional(x, params):
    for i, (weight, bias) in enumerate(params):
        if i > 0:
            x = F.relu(x)
        x = F.linear(x, weight.detach(), bias.detach())  # right values, but no gradients reach the weights
    return x
''',
            "sgd": '''
def sgd_step(model, lr):
    with torch.no_grad():
        for module in model.modules():
            for name, param in list(module.named_parameters(recurse=False)):
                if param.grad is None:
                    continue
                # new Parameter objects: an optimizer or another reference still holds the old ones
                setattr(module, name, nn.Parameter(param - lr * param.grad))
''',
            "classifier": '''
def to_tensors(features, labels, device):
    return (torch.as_tensor(features, dtype=torch.float32, device=device),
            torch.as_tensor(labels, device=device).long())


def build_classifier(n_features, hidden, n_classes):
    return nn.Sequential(
        nn.Linear(n_features, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden),  # the second ReLU is missing: two linear layers collapse into one
        nn.Linear(hidden, n_classes),
    )
''',
            "init": '''
def init_linear_layers(model):
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_normal_(module.weight)  # Glorot scaling, not Kaiming
            if module.bias is not None:
                nn.init.zeros_(module.bias)
''',
        },
        "loses": ["test-mlp", "test-functional", "test-sgd", "test-classifier", "test-init"],
        "says": {"mlp-check": "The `activation` argument is ignored",
                 "functional-check": "did you detach the weights",
                 "sgd-check": "the model now holds new Parameter objects",
                 "classifier-check": "A ReLU is missing between two linear layers",
                 "init-check": "Xavier/Glorot scaling instead of Kaiming"},
    },
    "shared-activation-relu-at-end-no-skip-softmax-fan-out": {
        "replace": {
            "mlp": '''
def build_mlp(sizes, activation=nn.ReLU):
    act = activation()  # one instance, reused at every position
    layers = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            layers.append(act)
        layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)
''',
            "functional": '''
def mlp_functional(x, params):
    for weight, bias in params:
        x = F.relu(F.linear(x, weight, bias))  # also after the last layer
    return x
''',
            "sgd": _sgd(skip=""),  # frozen parameters (grad None) are not skipped
            "classifier": _classifier(last=" nn.Softmax(dim=1),  # CrossEntropyLoss applies softmax itself"),
            "init": _init(weight='nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")'),
        },
        "loses": ["test-mlp", "test-functional", "test-sgd", "test-classifier", "test-init"],
        "says": {"mlp-check": "the same activation object appears twice",
                 "functional-check": "a ReLU after the last layer",
                 "sgd-check": "skip parameters whose `.grad` is None",
                 "classifier-check": "softmax was applied before CrossEntropyLoss",
                 "init-check": "mode='fan_out'"},
    },
    "one-layer-short-no-bias-uphill-float64-features-bias-kept": {
        "replace": {
            "mlp": '''
def build_mlp(sizes, activation=nn.ReLU):
    layers = [nn.Linear(sizes[0], sizes[1])]
    for i in range(1, len(sizes) - 2):  # one pair of sizes short: the last layer is missing
        layers += [activation(), nn.Linear(sizes[i], sizes[i + 1])]
    return nn.Sequential(*layers)
''',
            "functional": '''
def mlp_functional(x, params):
    for i, (weight, bias) in enumerate(params):
        if i > 0:
            x = F.relu(x)
        x = x @ weight.T  # the bias is forgotten
    return x
''',
            "sgd": _sgd(update="param += lr * param.grad  # uphill"),
            "classifier": _classifier(features="torch.from_numpy(features).to(device)  # stays float64"),
            "init": _init(bias=""),  # the biases keep their default values
        },
        "loses": ["test-mlp", "test-functional", "test-sgd", "test-classifier", "test-init"],
        "says": {"mlp-check": "An off-by-one in the loop over the sizes?",
                 "functional-check": "the bias is missing",
                 "sgd-check": "the step goes uphill",
                 "classifier-check": "NumPy arrays are float64",
                 "init-check": "the first Linear's bias is not zero"},
    },
    "no-activation-no-relu-outside-no-grad-log-softmax-bias-none": {
        "replace": {
            "mlp": '''
def build_mlp(sizes, activation=nn.ReLU):
    return nn.Sequential(*[nn.Linear(d_in, d_out) for d_in, d_out in zip(sizes[:-1], sizes[1:])])
''',
            "functional": '''
def mlp_functional(x, params):
    for weight, bias in params:
        x = F.linear(x, weight, bias)  # no ReLU between the layers
    return x
''',
            "sgd": _sgd(context="if True:  # autograd records the update"),
            "classifier": _classifier(last=" nn.LogSoftmax(dim=1),  # CrossEntropyLoss applies it again"),
            "init": _init(bias="            nn.init.zeros_(module.bias)  # fails for bias=False"),
        },
        "loses": ["test-mlp", "test-functional", "test-sgd", "test-classifier", "test-init"],
        "says": {"mlp-check": "There is no activation between the linear layers",
                 "functional-check": "no ReLU between the layers",
                 "sgd-check": "Do the update inside `with torch.no_grad():`",
                 "classifier-check": "log-softmax was applied before CrossEntropyLoss",
                 "init-check": "whose `.bias` is None"},
    },
    "column-labels-and-new-parameters": {
        "replace": {
            "classifier": _classifier(labels="torch.as_tensor(labels, device=device).long().reshape(-1, 1)"),
            "init": '''
def init_linear_layers(model):
    for module in model.modules():
        if isinstance(module, nn.Linear):
            std = (2 / module.in_features) ** 0.5
            module.weight = nn.Parameter(torch.randn_like(module.weight) * std)  # a new Parameter object
            if module.bias is not None:
                module.bias = nn.Parameter(torch.zeros_like(module.bias))
''',
        },
        "loses": ["test-classifier", "test-init"],
        "says": {"classifier-check": "labels should have shape (300,), one class index per row",
                 "init-check": "the model holds new parameter objects"},
    },
}


ALTERNATIVES = {
    "mlp-layer-list-plus-equals": {
        "replace": {"mlp": '''
def build_mlp(sizes, activation=nn.ReLU):
    layers = [nn.Linear(sizes[0], sizes[1])]
    for d_in, d_out in zip(sizes[1:-1], sizes[2:]):
        layers += [activation(), nn.Linear(d_in, d_out)]
    return nn.Sequential(*layers)
'''},
    },
    "mlp-append-to-sequential": {
        "replace": {"mlp": '''
def build_mlp(sizes, activation=nn.ReLU):
    model = nn.Sequential()
    for i in range(len(sizes) - 1):
        if i:
            model.append(activation())
        model.append(nn.Linear(in_features=sizes[i], out_features=sizes[i + 1]))
    return model
'''},
    },
    "functional-matmul-and-clamp": {
        "replace": {"functional": '''
def mlp_functional(x, params):
    *hidden, (w_last, b_last) = params
    for weight, bias in hidden:
        x = (x @ weight.T + bias).clamp(min=0)
    return x @ w_last.T + b_last
'''},
    },
    "functional-addmm-and-relu": {
        "replace": {"functional": '''
def mlp_functional(x, params):
    out = x
    for i, (weight, bias) in enumerate(params):
        out = torch.relu(out) if i > 0 else out
        out = torch.addmm(bias, out, weight.t())
    return out
'''},
    },
    "sgd-sub-and-zero-grad": {
        "replace": {"sgd": '''
def sgd_step(model, lr):
    with torch.no_grad():
        for param in model.parameters():
            if param.grad is not None:
                param.sub_(lr * param.grad)
    model.zero_grad(set_to_none=False)  # zeros instead of None: cleared all the same
'''},
    },
    "sgd-add-alpha-named-parameters": {
        "replace": {"sgd": '''
@torch.no_grad()
def sgd_step(model, lr):
    trainable = [p for _, p in model.named_parameters() if p.grad is not None]
    for p in trainable:
        p.add_(p.grad, alpha=-lr)
        p.grad = None
    return model
'''},
    },
    "classifier-from-numpy-and-ordered-dict": {
        "replace": {"classifier": '''
from collections import OrderedDict


def to_tensors(features, labels, device):
    x = torch.from_numpy(features).float().to(device)
    y = torch.tensor(labels, dtype=torch.long, device=device)
    return x, y


def build_classifier(n_features, hidden, n_classes):
    return nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(n_features, hidden)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(hidden, hidden)), ("relu2", nn.ReLU()),
        ("out", nn.Linear(hidden, n_classes)),
    ]))
'''},
    },
    "classifier-loop-and-to": {
        "replace": {"classifier": '''
def to_tensors(features, labels, device):
    return (torch.tensor(features, device=device).to(torch.float32),
            torch.as_tensor(labels).to(device=device, dtype=torch.int64))


def build_classifier(n_features, hidden, n_classes):
    layers = []
    for d_in, d_out in [(n_features, hidden), (hidden, hidden)]:
        layers += [nn.Linear(d_in, d_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Linear(hidden, n_classes))
'''},
    },
    "init-apply-and-fill": {
        "replace": {"init": '''
def init_linear_layers(model):
    def init(module):
        if type(module) is nn.Linear:
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                with torch.no_grad():
                    module.bias.fill_(0.0)

    model.apply(init)
'''},
    },
    "init-named-modules-and-normal": {
        "replace": {"init": '''
def init_linear_layers(model):
    for _, module in model.named_modules():
        if isinstance(module, nn.Linear):
            fan_in = module.weight.shape[1]
            nn.init.normal_(module.weight, mean=0.0, std=(2.0 / fan_in) ** 0.5)
            if module.bias is not None:
                nn.init.constant_(module.bias, 0.0)
'''},
    },
}
