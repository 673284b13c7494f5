"""Typical wrong answers to notebook 09, used by the grading tests.

Each entry is one simulated student: ``replace`` maps solution cells (grade_id) to
the wrong code submitted, ``loses`` lists the graded cells that must score zero.
Every other graded cell must keep its full points, so the mistakes combined in one
submission are independent of each other.
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
def train(model, optimizer, loader, epochs=1):
    losses = []
    for epoch in range(epochs):
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
    return cifar.ResNet9(width=16)


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
def train(model, optimizer, loader, epochs=1):
    losses = []
    for epoch in range(epochs):  # model.train() missing: a model handed over in eval mode stays there
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
