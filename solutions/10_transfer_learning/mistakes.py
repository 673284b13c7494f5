"""Typical wrong answers to notebook 10, used by the grading tests.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero. Every other graded cell must keep its full points.
"""

MISTAKES = {
    "hardcoded-head-frozen-head-shared-state": {
        "replace": {
            "head": '''
def replace_head(model, num_classes):
    model.fc = nn.Linear(512, num_classes)  # right for ResNet-18 only
    return model
''',
            "trainable": '''
def set_trainable(model, strategy):
    if strategy not in ("finetune", "feature_extractor"):
        raise ValueError(f"unknown strategy {strategy!r}")
    for param in model.parameters():  # freezes the new head too
        param.requires_grad = strategy == "finetune"
''',
            "best": '''
class BestWeights:
    def __init__(self):
        self.best_score = float("-inf")
        self.best_epoch = None
        self.state = None

    def update(self, model, score, epoch):
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.state = model.state_dict()  # references the live tensors: follows the model
            return True
        return False

    def restore(self, model):
        model.load_state_dict(self.state)
        return model
''',
        },
        "loses": ["test-head", "test-trainable", "test-best-weights"],
        "says": {"head-check": "the number of inputs is hard-coded",
                 "trainable-check": "no parameter trains: the new head is frozen too",
                 "best-check": "the saved state_dict was not copied: it followed the model to the last epoch"},
    },
    "frozen-body-in-optimizer-and-scheduler-per-batch": {
        "replace": {
            "optimizer": '''
def make_optimizer(model, lr, body_lr=None, weight_decay=0.0):
    # hands the frozen backbone to the optimizer too (and ignores body_lr)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
''',
            "train": '''
def train_model(model, loaders, loss_fn, optimizer, scheduler, num_epochs, device):
    history = {"lr": [], "train_loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
    tracker = BestWeights()
    for epoch in range(num_epochs):
        history["lr"].append(optimizer.param_groups[0]["lr"])
        for phase in ("train", "val"):
            training = phase == "train"
            model.train(training)
            total_loss, correct, seen = 0.0, 0, 0
            with torch.set_grad_enabled(training):
                for x, y in loaders[phase]:
                    x, y = x.to(device), y.to(device)
                    outputs = model(x)
                    loss = loss_fn(outputs, y)
                    if training:
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                        scheduler.step()  # every batch: StepLR(step_size=7) now decays after 7 batches
                    total_loss += loss.item() * len(y)
                    correct += int((outputs.argmax(1) == y).sum())
                    seen += len(y)
            history[f"{phase}_loss"].append(total_loss / seen)
            history[f"{phase}_acc"].append(correct / seen)
        tracker.update(model, history["val_acc"][-1], epoch)
    tracker.restore(model)
    return model, history
''',
        },
        "loses": ["test-optimizer", "test-train-model"],
        "says": {"optimizer-check": "the frozen backbone is still handed to the optimizer",
                 "train-check": "scheduler.step() is called every batch instead of once per epoch"},
    },
    "out-features-no-unfreeze-no-body-lr-tie-val-with-grad": {
        "replace": {
            "head": '''
def replace_head(model, num_classes):
    model.fc.out_features = num_classes  # changes a number, not the weight matrix
    return model
''',
            "trainable": '''
def set_trainable(model, strategy):
    if strategy not in ("finetune", "feature_extractor"):
        raise ValueError(f"unknown strategy {strategy!r}")
    if strategy == "feature_extractor":  # "finetune" never unfreezes a frozen body
        for param in model.parameters():
            param.requires_grad = False
    for param in model.fc.parameters():
        param.requires_grad = True
''',
            "optimizer": '''
def make_optimizer(model, lr, body_lr=None, weight_decay=0.0):
    head_ids = {id(p) for p in model.fc.parameters()}
    head = [p for p in model.fc.parameters() if p.requires_grad]
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": head, "lr": lr}]
    if body:
        groups.append({"params": body, "lr": lr})  # ignores body_lr
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
''',
            "best": '''
class BestWeights:
    def __init__(self):
        self.best_score = float("-inf")
        self.best_epoch = None
        self.state = None

    def update(self, model, score, epoch):
        if score >= self.best_score:  # a tie replaces the earlier epoch
            self.best_score, self.best_epoch = score, epoch
            self.state = copy.deepcopy(model.state_dict())
            return True
        return False

    def restore(self, model):
        model.load_state_dict(self.state)
        return model
''',
            "train": '''
def train_model(model, loaders, loss_fn, optimizer, scheduler, num_epochs, device):
    history = {"lr": [], "train_loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
    tracker = BestWeights()
    for epoch in range(num_epochs):
        history["lr"].append(optimizer.param_groups[0]["lr"])
        for phase in ("train", "val"):
            training = phase == "train"
            model.train(training)
            total_loss, correct, seen = 0.0, 0, 0
            for x, y in loaders[phase]:  # no torch.no_grad(): validation builds graphs for nothing
                x, y = x.to(device), y.to(device)
                outputs = model(x)
                loss = loss_fn(outputs, y)
                if training:
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                total_loss += loss.item() * len(y)
                correct += int((outputs.argmax(1) == y).sum())
                seen += len(y)
            if training:
                scheduler.step()
            history[f"{phase}_loss"].append(total_loss / seen)
            history[f"{phase}_acc"].append(correct / seen)
        tracker.update(model, history["val_acc"][-1], epoch)
    tracker.restore(model)
    return model, history
''',
        },
        "loses": ["test-head", "test-trainable", "test-optimizer", "test-best-weights", "test-train-model"],
        "says": {"head-check": "model.fc is still the old layer",
                 "trainable-check": "after freezing, fine-tuning must set requires_grad=True again everywhere",
                 "optimizer-check": "body_lr is ignored",
                 "best-check": "on a tie (0.8 again in epoch 2) the earlier epoch must stay",
                 "train-check": "the validation phase ran with autograd on"},
    },
}

# More classic slips, one per answer cell and entry, each named by its cell's self-check.
MISTAKES["no-return-compares-no-momentum-shallow-copy-lr-after-step"] = {
    "replace": {
        "head": '''
def replace_head(model, num_classes):
    model.fc = nn.Linear(model.fc.in_features, num_classes)  # `return model` is missing
''',
        "trainable": '''
def set_trainable(model, strategy):
    if strategy not in ("finetune", "feature_extractor"):
        raise ValueError(f"unknown strategy {strategy!r}")
    for param in model.parameters():
        param.requires_grad == (strategy == "finetune")  # == compares: nothing is assigned
    for param in model.fc.parameters():
        param.requires_grad = True
''',
        "optimizer": '''
def make_optimizer(model, lr, body_lr=None, weight_decay=0.0):
    head_ids = {id(p) for p in model.fc.parameters()}
    head = [p for p in model.fc.parameters() if p.requires_grad]
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": head, "lr": lr}]
    if body:
        groups.append({"params": body, "lr": lr if body_lr is None else body_lr})
    return torch.optim.SGD(groups, lr=lr, weight_decay=weight_decay)  # momentum=0.9 forgotten
''',
        "best": '''
class BestWeights:
    def __init__(self):
        self.best_score = float("-inf")
        self.best_epoch = None
        self.state = None

    def update(self, model, score, epoch):
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.state = model.state_dict().copy()  # a new dict, but the same live tensors
            return True
        return False

    def restore(self, model):
        model.load_state_dict(self.state)
        return model
''',
        "train": '''
def train_model(model, loaders, loss_fn, optimizer, scheduler, num_epochs, device):
    history = {"lr": [], "train_loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
    tracker = BestWeights()
    for epoch in range(num_epochs):
        for phase in ("train", "val"):
            training = phase == "train"
            model.train(training)
            total_loss, correct, seen = 0.0, 0, 0
            with torch.set_grad_enabled(training):
                for x, y in loaders[phase]:
                    x, y = x.to(device), y.to(device)
                    outputs = model(x)
                    loss = loss_fn(outputs, y)
                    if training:
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                    total_loss += loss.item() * len(y)
                    correct += int((outputs.argmax(1) == y).sum())
                    seen += len(y)
            if training:
                scheduler.step()
                history["lr"].append(optimizer.param_groups[0]["lr"])  # after the step: the next epoch's rate
            history[f"{phase}_loss"].append(total_loss / seen)
            history[f"{phase}_acc"].append(correct / seen)
        tracker.update(model, history["val_acc"][-1], epoch)
    tracker.restore(model)
    return model, history
''',
    },
    "loses": ["test-head", "test-trainable", "test-optimizer", "test-best-weights", "test-train-model"],
    "says": {"head-check": "it returned None (a `return model` is missing)",
             "trainable-check": "the backbone is not frozen. Assign `param.requires_grad = False` (`==` only compares",
             "optimizer-check": "momentum=0.9 is missing",
             "best-check": "the saved state_dict was not copied",
             "train-check": "history['lr'] is recorded after scheduler.step()"},
}

MISTAKES["swapped-linear-eval-to-freeze-head-twice-no-flags-train-mode-once"] = {
    "replace": {
        "head": '''
def replace_head(model, num_classes):
    model.fc = nn.Linear(num_classes, model.fc.in_features)  # arguments swapped: (in, out)
    return model
''',
        "trainable": '''
def set_trainable(model, strategy):
    if strategy not in ("finetune", "feature_extractor"):
        raise ValueError(f"unknown strategy {strategy!r}")
    if strategy == "feature_extractor":
        model.eval()  # eval() switches dropout and BatchNorm, it freezes no parameter
        model.fc.train()
    else:
        model.train()
    for param in model.fc.parameters():
        param.requires_grad = True
''',
        "optimizer": '''
def make_optimizer(model, lr, body_lr=None, weight_decay=0.0):
    head = [p for p in model.fc.parameters() if p.requires_grad]
    body = [p for p in model.parameters() if p.requires_grad]  # the head's parameters are in here too
    groups = [{"params": head, "lr": lr}]
    if body:
        groups.append({"params": body, "lr": lr if body_lr is None else body_lr})
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
''',
        "best": '''
class BestWeights:
    def __init__(self):
        self.best_score = float("-inf")
        self.best_epoch = None
        self.state = None

    def update(self, model, score, epoch):
        if score > self.best_score:  # keeps the weights but never says whether it did
            self.best_score, self.best_epoch = score, epoch
            self.state = copy.deepcopy(model.state_dict())

    def restore(self, model):
        model.load_state_dict(self.state)
        return model
''',
        "train": '''
def train_model(model, loaders, loss_fn, optimizer, scheduler, num_epochs, device):
    history = {"lr": [], "train_loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
    tracker = BestWeights()
    model.train()  # once: after the first validation every epoch trains in eval mode
    for epoch in range(num_epochs):
        history["lr"].append(optimizer.param_groups[0]["lr"])
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in loaders["train"]:
            x, y = x.to(device), y.to(device)
            outputs = model(x)
            loss = loss_fn(outputs, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(y)
            correct += int((outputs.argmax(1) == y).sum())
            seen += len(y)
        scheduler.step()
        history["train_loss"].append(total_loss / seen)
        history["train_acc"].append(correct / seen)
        model.eval()
        total_loss, correct, seen = 0.0, 0, 0
        with torch.no_grad():
            for x, y in loaders["val"]:
                x, y = x.to(device), y.to(device)
                outputs = model(x)
                total_loss += loss_fn(outputs, y).item() * len(y)
                correct += int((outputs.argmax(1) == y).sum())
                seen += len(y)
        history["val_loss"].append(total_loss / seen)
        history["val_acc"].append(correct / seen)
        tracker.update(model, history["val_acc"][-1], epoch)
    tracker.restore(model)
    return model, history
''',
    },
    "loses": ["test-head", "test-trainable", "test-optimizer", "test-best-weights", "test-train-model"],
    "says": {"head-check": "the arguments of nn.Linear are swapped",
             "trainable-check": "model.eval() and torch.no_grad() freeze nothing",
             "optimizer-check": "the body group must leave out the head's parameters",
             "best-check": "it returns nothing (a `return True` / `return False` is missing)",
             "train-check": "training steps ran in evaluation mode: after the first validation"},
}

# Correct answers written differently: each must get full marks (entries that replace different
# cells are graded together in one submission).
ALTERNATIVES = {
    "head-weight-shape-same-device": {"replace": {"head": '''
def replace_head(model, num_classes):
    old = model.fc
    in_features = old.weight.shape[1]
    model.fc = nn.Linear(in_features, num_classes, bias=True).to(old.weight.device)
    return model
'''}},
    "trainable-requires-grad-underscore": {"replace": {"trainable": '''
def set_trainable(model, strategy):
    if strategy not in ("finetune", "feature_extractor"):
        raise ValueError(f"unknown strategy {strategy!r}: use 'finetune' or 'feature_extractor'")
    model.requires_grad_(strategy == "finetune")
    model.fc.requires_grad_(True)
'''}},
    "optimizer-by-name": {"replace": {"optimizer": '''
def make_optimizer(model, lr, body_lr=None, weight_decay=0.0):
    head, body = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if name.startswith("fc.") else body).append(p)
    groups = [{"params": head, "lr": lr}]
    if body:
        groups.append({"params": body, "lr": body_lr if body_lr is not None else lr})
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
'''}},
    "best-clone-dict": {"replace": {"best": '''
class BestWeights:
    """Remember the weights of the epoch with the highest score."""

    def __init__(self):
        self.best_score = float("-inf")
        self.best_epoch = None
        self.state = None

    def update(self, model, score, epoch):
        improved = score > self.best_score
        if improved:
            self.best_score, self.best_epoch = score, epoch
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return improved

    def restore(self, model):
        model.load_state_dict(self.state, strict=True)
        return model
'''}},
    "train-separate-phases-inference-mode": {"replace": {"train": '''
def train_model(model, loaders, loss_fn, optimizer, scheduler, num_epochs, device):
    history = {"lr": [], "train_loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
    tracker = BestWeights()
    for epoch in range(num_epochs):
        history["lr"].append(scheduler.get_last_lr()[0])
        model.train()
        total, correct, n = 0.0, 0, 0
        for x, y in tqdm(loaders["train"], desc=f"epoch {epoch + 1}", leave=False):
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            optimizer.step()
            total += loss.item() * x.size(0)
            correct += (out.argmax(1) == y).sum().item()
            n += x.size(0)
        scheduler.step()
        history["train_loss"].append(total / n)
        history["train_acc"].append(correct / n)
        model.eval()
        total, correct, n = 0.0, 0, 0
        with torch.inference_mode():
            for x, y in loaders["val"]:
                x, y = x.to(device), y.to(device)
                out = model(x)
                total += loss_fn(out, y).item() * x.size(0)
                correct += (out.argmax(1) == y).sum().item()
                n += x.size(0)
        history["val_loss"].append(total / n)
        history["val_acc"].append(correct / n)
        tracker.update(model, correct / n, epoch)
    tracker.restore(model)
    return model, history
'''}},
    "head-setattr-keywords": {"replace": {"head": '''
def replace_head(model, num_classes):
    setattr(model, "fc", nn.Linear(in_features=model.fc.in_features, out_features=num_classes))
    return model
'''}},
    "trainable-named-parameters": {"replace": {"trainable": '''
def set_trainable(model, strategy):
    if strategy not in ("finetune", "feature_extractor"):
        raise ValueError(f"unknown strategy {strategy!r}: use 'finetune' or 'feature_extractor'")
    for name, param in model.named_parameters():
        param.requires_grad_(strategy == "finetune" or name.startswith("fc."))
'''}},
    "optimizer-body-group-first-default-lr": {"replace": {"optimizer": '''
def make_optimizer(model, lr, body_lr=None, weight_decay=0.0):
    head_ids = set(map(id, model.fc.parameters()))
    trainable = list(filter(lambda p: p.requires_grad, model.parameters()))
    body = [p for p in trainable if id(p) not in head_ids]
    head = [p for p in trainable if id(p) in head_ids]
    groups = [{"params": body, "lr": lr if body_lr is None else body_lr}] if body else []
    groups.append({"params": head})  # takes the optimizer's default lr
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
'''}},
    "best-model-copy-copy-into": {"replace": {"best": '''
class BestWeights:
    """Remember the weights of the epoch with the highest score."""

    def __init__(self):
        self.best_score = float("-inf")
        self.best_epoch = None
        self.state = None

    def update(self, model, score, epoch):
        if not score > self.best_score:
            return False
        self.best_score, self.best_epoch = score, epoch
        self.state = copy.deepcopy(model).state_dict()  # the tensors of a copy nobody trains
        return True

    def restore(self, model):
        with torch.no_grad():
            for key, value in model.state_dict().items():
                value.copy_(self.state[key])
        return model
'''}},
    "train-phase-loop-nullcontext": {"replace": {"train": '''
import contextlib


def train_model(model, loaders, loss_fn, optimizer, scheduler, num_epochs, device):
    history = {"lr": [], "train_loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
    tracker = BestWeights()
    for epoch in range(num_epochs):
        history["lr"].append(optimizer.param_groups[0]["lr"])
        for phase in ["train", "val"]:
            is_train = phase == "train"
            model.train() if is_train else model.eval()
            weighted_losses, hits = [], 0
            with contextlib.nullcontext() if is_train else torch.no_grad():
                for inputs, labels in tqdm(loaders[phase], leave=False):
                    inputs, labels = inputs.to(device), labels.to(device)
                    if is_train:
                        optimizer.zero_grad()
                    scores = model(inputs)
                    loss = loss_fn(scores, labels)
                    if is_train:
                        loss.backward()
                        optimizer.step()
                    weighted_losses.append(loss.item() * len(labels))
                    hits += scores.argmax(dim=1).eq(labels).sum().item()
            size = len(loaders[phase].dataset)
            history[phase + "_loss"].append(sum(weighted_losses) / size)
            history[phase + "_acc"].append(hits / size)
        scheduler.step()
        tracker.update(model, history["val_acc"][-1], epoch)
    return tracker.restore(model), history
'''}},
}
