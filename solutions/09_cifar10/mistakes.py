"""Typical wrong answers to notebook 09, used by the grading tests.

Each entry is one simulated student: ``replace`` maps solution cells (grade_id) to
the wrong code submitted, ``loses`` lists the graded cells that must score zero.
Every other graded cell must keep its full points, so the mistakes combined in one
submission are independent of each other.

The wrong answers to the open-ended exercise train a narrow ResNet-9 (width 4): the
mistake in their training code is what costs ``test-target``, so the network only
needs to be cheap to grade.
"""

MISTAKES = {
    "integer-division-fan-out-default-init-softmax": {
        "replace": {
            "check-accuracy": '''
def check_accuracy(loader, model):
    model.eval()
    num_correct, num_samples = 0, 0
    with torch.no_grad():
        for x, y in loader:
            preds = model(x).argmax(dim=1)
            num_correct += (preds == y).sum().item()
            num_samples += y.numel()
    acc = num_correct // num_samples  # integer division: 0 unless every answer is right
    print(f"Got {num_correct} / {num_samples} correct")
    return float(acc)
''',
            "init": '''
def random_weight(shape):
    fan = shape[0]  # fan_out, not fan_in
    w = torch.randn(shape, device=device, dtype=dtype) * math.sqrt(2.0 / fan)
    return w.requires_grad_()


def zero_weight(shape):
    return torch.zeros(shape, device=device, dtype=dtype, requires_grad=True)
''',
            "module": '''
class ThreeLayerConvNet(nn.Module):
    def __init__(self, in_channel, channel_1, channel_2, num_classes):
        super().__init__()
        # the layers' default initialisation, no Kaiming
        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)
        self.fc = nn.Linear(channel_2 * 32 * 32, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))
''',
            "sequential": '''
def sequential_convnet(in_channel, channel_1, channel_2, num_classes):
    return nn.Sequential(
        nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(channel_2 * 32 * 32, num_classes),
        nn.Softmax(dim=1),  # softmax before cross_entropy
    )
''',
        },
        "loses": ["test-check-accuracy", "test-init", "test-module", "test-sequential"],
        "says": {"accuracy-check": "integer division: num_correct // num_samples",
                 "init-check": "fan_in taken from shape[0] (that is fan_out)",
                 "module-check": "the layer's default initialisation: use nn.init.kaiming_normal_",
                 "sequential-check": "softmax was applied before CrossEntropyLoss"},
    },
    "missing-relu-no-zero-grad-transposed-rebinding": {
        "replace": {
            "barebones": '''
def three_layer_convnet(x, params):
    conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = params
    h1 = F.relu(F.conv2d(x, conv_w1, conv_b1, padding=2))
    h2 = F.conv2d(h1, conv_w2, conv_b2, padding=1)  # the second ReLU is missing
    return F.linear(torch.flatten(h2, 1), fc_w, fc_b)
''',
            "train": '''
def train(model, optimizer, loader, num_epochs=1):
    losses = []
    for epoch in range(num_epochs):
        model.train()
        for x, y in tqdm(loader, leave=False):
            loss = F.cross_entropy(model(x), y)
            loss.backward()  # gradients never zeroed: they accumulate
            optimizer.step()
            losses.append(loss.item())
    return losses
''',
            "confusion": '''
def confusion_matrix(preds, labels, num_classes):
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for t, p in zip(labels.tolist(), preds.tolist()):
        cm[p, t] += 1  # rows are the predictions: transposed
    return cm


def per_class_accuracy(cm):
    return cm.diagonal().double() / cm.sum(dim=1).double()
''',
            "open": '''
def build_my_model():
    return cifar.ResNet9(width=4)


def train_my_model(model, x_train, y_train, time_limit):
    loader = cifar.TensorLoader(x_train, y_train, batch_size=128, shuffle=True, augment=True,
                                drop_last=True, device=device)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        with torch.no_grad():
            for param in model.parameters():
                param = param - 0.1 * param.grad  # rebinds the name: the model never changes
                param.grad = None
''',
        },
        "loses": ["test-barebones", "test-train", "test-confusion", "test-target"],
        "says": {"forward-check": "the second ReLU (after the second convolution) is missing",
                 "train-check": "gradients never zeroed, so they accumulate across steps",
                 "confusion-check": "transposed: rows must be the true class",
                 "open-run": "the update rebinds a name"},
    },
    "batch-mean-accuracy-nonleaf-weights-unused-biases-no-train-mode": {
        "replace": {
            "check-accuracy": '''
def check_accuracy(loader, model):
    model.eval()
    accs = []
    with torch.no_grad():
        for x, y in loader:
            accs.append((model(x).argmax(dim=1) == y).float().mean().item())
    acc = sum(accs) / len(accs)  # the mean of per-batch accuracies: wrong when the last batch is smaller
    print(f"Got {100 * acc:.2f}% correct")
    return acc
''',
            "init": '''
def random_weight(shape):
    fan_in = math.prod(shape[1:])
    # scaled after requires_grad=True: the result of a multiplication, not a leaf
    return torch.randn(shape, device=device, dtype=dtype, requires_grad=True) * math.sqrt(2.0 / fan_in)


def zero_weight(shape):
    return torch.zeros(shape, device=device, dtype=dtype, requires_grad=True)
''',
            "module": '''
class ThreeLayerConvNet(nn.Module):
    def __init__(self, in_channel, channel_1, channel_2, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)
        self.fc = nn.Linear(channel_2 * 32 * 32, num_classes)
        for layer in (self.conv1, self.conv2, self.fc):
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        # the biases are never used (invisible while they are still zero)
        x = F.relu(F.conv2d(x, self.conv1.weight, padding=2))
        x = F.relu(F.conv2d(x, self.conv2.weight, padding=1))
        return F.linear(torch.flatten(x, 1), self.fc.weight)
''',
            "train": '''
def train(model, optimizer, loader, num_epochs=1):
    losses = []
    for epoch in range(num_epochs):  # model.train() missing: a model handed over in eval mode stays there
        for x, y in tqdm(loader, leave=False):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses
''',
        },
        "loses": ["test-check-accuracy", "test-init", "test-module", "test-train"],
        "says": {"accuracy-check": "mean of per-batch accuracies instead of counting over all samples",
                 "init-check": "It is not a leaf: you multiplied after creating it with requires_grad=True",
                 "module-check": "the biases are never used",
                 "train-check": "the model is still in evaluation mode: call model.train()"},
    },
    "copies-the-test-labels": {
        # Not a slip but an attack: the answers looked up, by image, in the CIFAR-10 test set
        # files the kernel can find (it follows the data folder's links to where they point).
        # Under `course grade` the kernel cannot read the test set and gets its images in a
        # secret order, so the copied answers are not there. Needs a locked kernel.
        "locked": True,
        "replace": {
            "open": '''
import glob
import os
import pickle


def build_my_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))  # never trained


def _copied_answers():
    """Labels of every CIFAR-10 test image in a file this kernel can read, by image bytes."""
    folders = set()
    for root in data.data_roots():
        folders.add(str(root / "cifar-10-batches-py"))
        folders.update(os.path.dirname(os.path.realpath(p)) for p in glob.glob(str(root / "*" / "*")))
    answers = {}
    for folder in folders:
        path = os.path.join(folder, "test_batch")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            answers.update((row.tobytes(), label) for row, label in zip(batch[b"data"], batch[b"labels"]))
    return answers


def train_my_model(model, x_train, y_train, time_limit):
    answers = _copied_answers()
    for image, label in zip(torch.cat([x_train, x_val]), torch.cat([y_train, y_val])):
        answers[image.numpy().tobytes()] = int(label)

    def predict(model, loader, tta=False):  # every accuracy in the notebook goes through this
        found = [answers.get(image.cpu().numpy().tobytes(), 0) for image in loader.images]
        return torch.tensor(found), loader.labels.cpu()

    cifar.predict = predict
''',
        },
        "loses": ["test-target"],
    },
}

# More classic slips, one per answer cell and entry, each named by its cell's self-check.
MISTAKES["no-eval-missing-sqrt-first-relu-second-relu-tensor-losses-no-relus-float-counts-no-step"] = {
    "replace": {
        "check-accuracy": '''
def check_accuracy(loader, model):
    num_correct, num_samples = 0, 0  # model.eval() missing: dropout and BatchNorm stay in training mode
    with torch.no_grad():
        for x, y in loader:
            preds = model(x).argmax(dim=1)
            num_correct += (preds == y).sum().item()
            num_samples += y.numel()
    acc = num_correct / num_samples
    print(f"Got {num_correct} / {num_samples} correct ({100 * acc:.2f}%)")
    return acc
''',
        "init": '''
def random_weight(shape):
    fan_in = math.prod(shape[1:])
    w = torch.randn(shape, device=device, dtype=dtype) * (2.0 / fan_in)  # the variance, not its square root
    return w.requires_grad_()


def zero_weight(shape):
    return torch.zeros(shape, device=device, dtype=dtype, requires_grad=True)
''',
        "barebones": '''
def three_layer_convnet(x, params):
    conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = params
    h1 = F.conv2d(x, conv_w1, conv_b1, padding=2)  # the first ReLU is missing
    h2 = F.relu(F.conv2d(h1, conv_w2, conv_b2, padding=1))
    return F.linear(torch.flatten(h2, 1), fc_w, fc_b)
''',
        "module": '''
class ThreeLayerConvNet(nn.Module):
    def __init__(self, in_channel, channel_1, channel_2, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)
        self.fc = nn.Linear(channel_2 * 32 * 32, num_classes)
        for layer in (self.conv1, self.conv2, self.fc):
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.conv2(x)  # no ReLU after the second convolution
        return self.fc(torch.flatten(x, 1))
''',
        "train": '''
def train(model, optimizer, loader, num_epochs=1):
    losses = []
    for epoch in range(num_epochs):
        model.train()
        for x, y in tqdm(loader, leave=False):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss)  # the tensor, with its graph, not loss.item()
    return losses
''',
        "sequential": '''
def sequential_convnet(in_channel, channel_1, channel_2, num_classes):
    return nn.Sequential(  # no ReLUs: three linear maps in a row are one linear map
        nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2),
        nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1),
        nn.Flatten(),
        nn.Linear(channel_2 * 32 * 32, num_classes),
    )
''',
        "confusion": '''
def confusion_matrix(preds, labels, num_classes):
    cm = torch.zeros(num_classes, num_classes)  # float32 by default, not int64 counts
    for t, p in zip(labels.tolist(), preds.tolist()):
        cm[t, p] += 1
    return cm


def per_class_accuracy(cm):
    return cm.diagonal().double() / cm.sum(dim=1).double()
''',
        "open": '''
def build_my_model():
    return cifar.ResNet9(width=4)


def train_my_model(model, x_train, y_train, time_limit):
    loader = cifar.TensorLoader(x_train, y_train, batch_size=128, shuffle=True, drop_last=True, device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for x, y in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()  # optimizer.step() is missing: the weights never change
''',
    },
    "loses": ["test-check-accuracy", "test-init", "test-barebones", "test-module", "test-train", "test-sequential",
              "test-confusion", "test-target"],
    "says": {"accuracy-check": "model.eval() missing: the model was evaluated in training mode",
             "init-check": "the variance 2 / fan_in used as the standard deviation (missing sqrt)",
             "forward-check": "the first ReLU (after the first convolution) is missing",
             "module-check": "the second ReLU (after the second convolution) is missing",
             "train-check": "the losses are tensors, not floats: append loss.item()",
             "sequential-check": "both ReLUs are missing",
             "confusion-check": "torch.zeros(...) makes float32 unless you pass dtype=torch.int64",
             "open-run": "optimizer.step() is never called"},
}

MISTAKES["grad-on-kernel-size-ignored-softmax-scores-fc-size-zero-grad-late-log-softmax-int-division-new-model"] = {
    "replace": {
        "check-accuracy": '''
def check_accuracy(loader, model):
    model.eval()
    num_correct, num_samples = 0, 0
    for x, y in loader:  # no torch.no_grad(): autograd records a graph for every batch
        preds = model(x).argmax(dim=1)
        num_correct += (preds == y).sum().item()
        num_samples += y.numel()
    acc = num_correct / num_samples
    print(f"Got {num_correct} / {num_samples} correct ({100 * acc:.2f}%)")
    return acc
''',
        "init": '''
def random_weight(shape):
    fan_in = shape[1]  # the input channels only: the kernel size is left out
    w = torch.randn(shape, device=device, dtype=dtype) * math.sqrt(2.0 / fan_in)
    return w.requires_grad_()


def zero_weight(shape):
    return torch.zeros(shape, device=device, dtype=dtype, requires_grad=True)
''',
        "barebones": '''
def three_layer_convnet(x, params):
    conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = params
    h1 = F.relu(F.conv2d(x, conv_w1, conv_b1, padding=2))
    h2 = F.relu(F.conv2d(h1, conv_w2, conv_b2, padding=1))
    return F.softmax(F.linear(torch.flatten(h2, 1), fc_w, fc_b), dim=1)  # probabilities, not scores
''',
        "module": '''
class ThreeLayerConvNet(nn.Module):
    def __init__(self, in_channel, channel_1, channel_2, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)
        self.fc = nn.Linear(channel_1 * 32 * 32, num_classes)  # channel_1: the wrong feature map
        for layer in (self.conv1, self.conv2, self.fc):
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))
''',
        "train": '''
def train(model, optimizer, loader, num_epochs=1):
    losses = []
    for epoch in range(num_epochs):
        model.train()
        for x, y in tqdm(loader, leave=False):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.zero_grad()  # between backward and step: the gradients are gone before the update
            optimizer.step()
            losses.append(loss.item())
    return losses
''',
        "sequential": '''
def sequential_convnet(in_channel, channel_1, channel_2, num_classes):
    return nn.Sequential(
        nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(channel_2 * 32 * 32, num_classes),
        nn.LogSoftmax(dim=1),  # log-probabilities: cross_entropy applies log-softmax again
    )
''',
        "confusion": '''
def confusion_matrix(preds, labels, num_classes):
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(cm):
    return cm.diagonal() // cm.sum(dim=1)  # integer division: 0 for every class not all right
''',
        "open": '''
def build_my_model():
    return cifar.ResNet9(width=4)


def train_my_model(model, x_train, y_train, time_limit):
    model = build_my_model().to(device)  # a new model: the one passed in stays untrained
    loader = cifar.TensorLoader(x_train, y_train, batch_size=128, shuffle=True, drop_last=True, device=device)
    cifar.fit(model, loader, num_epochs=1, lr=0.2, label_smoothing=0.1, time_limit=time_limit - 5)
''',
    },
    "loses": ["test-check-accuracy", "test-init", "test-barebones", "test-module", "test-train", "test-sequential",
              "test-confusion", "test-target"],
    "says": {"accuracy-check": "autograd was recording during evaluation: wrap the loop in `with torch.no_grad():`",
             "init-check": "fan_in taken from shape[1] only, ignoring the kernel size",
             "forward-check": "softmax applied to the scores",
             "module-check": "wrong flatten size before the fc layer",
             "train-check": "zero_grad() runs between loss.backward() and optimizer.step()",
             "sequential-check": "log-softmax was applied before CrossEntropyLoss",
             "confusion-check": "This looks like a known mistake: integer division",
             "open-run": "train_my_model trained another model (a new one, or a copy)"},
}

MISTAKES["tensor-accuracy-no-kaiming-no-padding-fan-out-mode-column-sums-no-flatten"] = {
    "replace": {
        "check-accuracy": '''
def check_accuracy(loader, model):
    model.eval()
    num_correct, num_samples = 0, 0
    with torch.no_grad():
        for x, y in loader:
            num_correct += (model(x).argmax(dim=1) == y).sum()  # a tensor: .item() is missing
            num_samples += len(y)
    acc = num_correct / num_samples
    print(f"Got {num_correct} / {num_samples} correct")
    return acc
''',
        "init": '''
def random_weight(shape):
    return torch.randn(shape, device=device, dtype=dtype, requires_grad=True)  # no Kaiming scale at all


def zero_weight(shape):
    return torch.zeros(shape, device=device, dtype=dtype, requires_grad=True)
''',
        "barebones": '''
def three_layer_convnet(x, params):
    conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = params
    h1 = F.relu(F.conv2d(x, conv_w1, conv_b1))  # no padding: 32x32 shrinks to 28x28
    h2 = F.relu(F.conv2d(h1, conv_w2, conv_b2, padding=1))
    return F.linear(torch.flatten(h2, 1), fc_w, fc_b)
''',
        "module": '''
class ThreeLayerConvNet(nn.Module):
    def __init__(self, in_channel, channel_1, channel_2, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)
        self.fc = nn.Linear(channel_2 * 32 * 32, num_classes)
        for layer in (self.conv1, self.conv2, self.fc):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out")  # scaled by the outputs, not the inputs
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))
''',
        "sequential": '''
def sequential_convnet(in_channel, channel_1, channel_2, num_classes):
    return nn.Sequential(  # nn.Flatten() is missing before the linear layer
        nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Linear(channel_2 * 32 * 32, num_classes),
    )
''',
        "confusion": '''
def confusion_matrix(preds, labels, num_classes):
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(cm):
    return cm.diagonal().double() / cm.sum(dim=0).double()  # column sums: that is precision
''',
    },
    "loses": ["test-check-accuracy", "test-init", "test-barebones", "test-module", "test-sequential", "test-confusion"],
    "says": {"accuracy-check": "check_accuracy should return a Python float, got Tensor: use .item()",
             "init-check": "plain standard normal, no Kaiming scaling",
             "forward-check": "wrong flatten size before the fc layer",
             "module-check": "Kaiming with mode='fan_out'",
             "sequential-check": "nn.Flatten() is missing before nn.Linear",
             "confusion-check": "divided by the column sums (that is precision, not per-class accuracy)"},
}

# Correct answers written differently: each must get full marks (entries that replace different
# cells are graded together in one submission).
ALTERNATIVES = {
    "accuracy-cat-float32-mean-inference-mode": {"replace": {"check-accuracy": '''
def check_accuracy(loader, model):
    model.train(False)
    preds, labels = [], []
    with torch.inference_mode():
        for x, y in loader:
            preds.append(model(x).argmax(1))
            labels.append(y)
    correct = torch.cat(preds) == torch.cat(labels)
    acc = correct.float().mean().item()  # a float32 mean, then a Python float
    print(f"Got {int(correct.sum())} / {correct.numel()} correct ({acc:.2%})")
    return acc
'''}},
    "init-normal-in-place-np-prod": {"replace": {"init": '''
def random_weight(shape):
    std = (2.0 / int(np.prod(shape[1:]))) ** 0.5
    return torch.empty(shape, device=device, dtype=dtype).normal_(0.0, std).requires_grad_()


def zero_weight(shape):
    return torch.zeros(shape, device=device, dtype=dtype).requires_grad_()
'''}},
    "barebones-clamp-reshape-matmul": {"replace": {"barebones": '''
def three_layer_convnet(x, params):
    conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = params
    h1 = F.conv2d(x, conv_w1, conv_b1, padding=2).clamp(min=0)
    h2 = F.conv2d(h1, conv_w2, conv_b2, padding=1).clamp(min=0)
    return h2.reshape(h2.shape[0], -1) @ fc_w.T + fc_b
'''}},
    "module-modules-loop-relu-flatten-layers": {"replace": {"module": '''
class ThreeLayerConvNet(nn.Module):
    def __init__(self, in_channel, channel_1, channel_2, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, channel_1, 5, padding=2)
        self.conv2 = nn.Conv2d(channel_1, channel_2, 3, padding=1)
        self.fc = nn.Linear(channel_2 * 32 * 32, num_classes)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.constant_(m.bias, 0.0)

    def forward(self, x):
        return self.fc(self.flatten(self.relu(self.conv2(self.relu(self.conv1(x))))))
'''}},
    "train-criterion-set-to-none-false-float": {"replace": {"train": '''
def train(model, optimizer, loader, num_epochs=1):
    losses = []
    criterion = nn.CrossEntropyLoss()  # a local name of the student's own: only the signature is given
    for epoch in range(num_epochs):
        model.train(True)
        for x, y in tqdm(loader, desc=f"epoch {epoch + 1}", leave=False):
            optimizer.zero_grad(set_to_none=False)
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    return losses
'''}},
    "sequential-ordered-dict-same-padding": {"replace": {"sequential": '''
from collections import OrderedDict


def sequential_convnet(in_channel, channel_1, channel_2, num_classes):
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(in_channel, channel_1, 5, padding="same")),
        ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(channel_1, channel_2, 3, padding="same")),
        ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten(start_dim=1)),
        ("fc", nn.Linear(channel_2 * 32 * 32, num_classes)),
    ]))
'''}},
    "confusion-loop-float32": {"replace": {"confusion": '''
def confusion_matrix(preds, labels, num_classes):
    cm = torch.zeros((num_classes, num_classes), dtype=torch.long)
    for t, p in zip(labels, preds):
        cm[t, p] += 1
    return cm


def per_class_accuracy(cm):
    return cm.diag().float() / cm.sum(dim=1).float()
'''}},
    "open-bn-convnet-adam": {"replace": {"open": '''
def build_my_model():
    def block(c_in, c_out):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                             nn.MaxPool2d(2))

    return nn.Sequential(block(3, 32), block(32, 64), block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(128, 10))


def train_my_model(model, x_train, y_train, time_limit):
    start = time.perf_counter()
    loader = cifar.TensorLoader(x_train, y_train, batch_size=64, shuffle=True, augment=True, drop_last=True,
                                device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for epoch in range(budget(full=10, fast=1)):
        model.train()
        for x, y in loader:
            if time.perf_counter() - start > time_limit - 10:
                return
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
'''}},
    "accuracy-max-eq-counts": {"replace": {"check-accuracy": '''
def check_accuracy(loader, model):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            _, predicted = torch.max(model(x), 1)
            correct += int(predicted.eq(y).sum())
            total += len(y)
    print(f"Got {correct} / {total} correct ({100 * correct / total:.2f}%)")
    return float(correct) / float(total)
'''}},
    "init-kaiming-normal-init-zeros": {"replace": {"init": '''
def random_weight(shape):
    w = torch.empty(*shape, device=device, dtype=dtype)
    nn.init.kaiming_normal_(w, nonlinearity="relu")  # N(0, 2 / fan_in), fan_in = prod(shape[1:])
    return w.requires_grad_(True)


def zero_weight(shape):
    return nn.init.zeros_(torch.empty(*shape, device=device, dtype=dtype)).requires_grad_(True)
'''}},
    "barebones-same-padding-where-addmm": {"replace": {"barebones": '''
def three_layer_convnet(x, params):
    conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = params
    h1 = torch.relu(F.conv2d(x, conv_w1, conv_b1, stride=1, padding="same"))
    h2 = F.conv2d(h1, conv_w2, conv_b2, padding="same")
    h2 = torch.where(h2 > 0, h2, torch.zeros_like(h2))
    return torch.addmm(fc_b, h2.flatten(start_dim=1), fc_w.t())
'''}},
    "module-hand-kaiming-view-keywords": {"replace": {"module": '''
class ThreeLayerConvNet(nn.Module):
    def __init__(self, in_channel, channel_1, channel_2, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels=in_channel, out_channels=channel_1, kernel_size=(5, 5), padding="same")
        self.conv2 = nn.Conv2d(in_channels=channel_1, out_channels=channel_2, kernel_size=(3, 3), padding="same")
        self.fc = nn.Linear(in_features=channel_2 * 32 * 32, out_features=num_classes)
        with torch.no_grad():
            for layer in [self.conv1, self.conv2, self.fc]:
                layer.weight.normal_(0.0, math.sqrt(2.0 / layer.weight[0].numel()))  # Kaiming by hand
                layer.bias.zero_()

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = self.conv2(x).clamp(min=0)
        return self.fc(x.view(x.size(0), -1))
'''}},
    "train-model-zero-grad-keywords": {"replace": {"train": '''
def train(model, optimizer, loader, num_epochs=1):
    losses = []
    for _ in range(num_epochs):
        model.train()
        for x, y in loader:
            model.zero_grad()
            scores = model(x)
            loss = F.cross_entropy(input=scores, target=y)
            loss.backward()
            optimizer.step()
            losses += [loss.item()]
    return losses
'''}},
    "sequential-list-unpacked-inplace-relu": {"replace": {"sequential": '''
def sequential_convnet(in_channel, channel_1, channel_2, num_classes):
    layers = [nn.Conv2d(in_channel, channel_1, kernel_size=5, stride=1, padding=2), nn.ReLU(inplace=True)]
    layers += [nn.Conv2d(channel_1, channel_2, kernel_size=3, stride=1, padding=1), nn.ReLU(inplace=True)]
    layers += [nn.Flatten(), nn.Linear(channel_2 * 32 * 32, num_classes, bias=True)]
    return nn.Sequential(*layers)
'''}},
    "confusion-one-hot-matmul-int-true-division": {"replace": {"confusion": '''
def confusion_matrix(preds, labels, num_classes):
    # one-hot rows of the truth times one-hot columns of the predictions: counts per (true, predicted)
    return F.one_hot(labels.long(), num_classes).T @ F.one_hot(preds.long(), num_classes)


def per_class_accuracy(cm):
    return torch.diagonal(cm) / cm.sum(dim=1)  # int64 / int64 is true division: float32
'''}},
    "open-resnet9-onecycle-own-loop": {"replace": {"open": '''
def build_my_model():
    return cifar.ResNet9(num_classes=10, width=8)


def train_my_model(model, x_train, y_train, time_limit):
    deadline = time.monotonic() + time_limit - 10
    num_epochs = budget(full=10, fast=2)
    loader = cifar.TensorLoader(x_train, y_train, batch_size=128, shuffle=True, drop_last=True, device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, epochs=num_epochs, steps_per_epoch=len(loader))
    model.train()
    for _ in range(num_epochs):
        for x, y in loader:
            if time.monotonic() > deadline:
                return
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y, label_smoothing=0.1).backward()
            optimizer.step()
            scheduler.step()
'''}},
}

#: Cheaper correct answers that the round trip puts into every submission that does not replace
#: these cells itself (all but "correct", which keeps the reference, and "untouched"). The
#: open-ended exercise's reference recipe trains for about 10 s in fast mode; the dozen that test
#: other cells only need an answer that honestly reaches the fast-mode target, so this one trains a
#: small convnet for two passes over the training images (a few seconds), and must keep its points.
STAND_INS = {
    "open": '''
def build_my_model():
    # convolutions at 16x16: 2 epochs on fast mode's 2,000 images take about 1 s on one core (37%)
    return nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 8 * 8, 10))


def train_my_model(model, x_train, y_train, time_limit):
    loader = cifar.TensorLoader(x_train, y_train, batch_size=100, shuffle=True, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(2):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
''',
}
