"""Typical wrong answers to notebook 04, used by the grading tests and the demo.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero. Every other graded cell must keep its full points, so the
mistakes combined in one submission are independent of each other.
"""

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
    },
}
