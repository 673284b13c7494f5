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
    },
    "frozen-body-in-optimizer-and-scheduler-per-batch": {
        "replace": {
            "optimizer": '''
def make_optimizer(model, lr, body_lr=None, weight_decay=0.0):
    # hands the frozen backbone to the optimizer too (and ignores body_lr)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
''',
            "train": '''
def train_model(model, loaders, criterion, optimizer, scheduler, num_epochs, device):
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
                    loss = criterion(outputs, y)
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
def train_model(model, loaders, criterion, optimizer, scheduler, num_epochs, device):
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
                loss = criterion(outputs, y)
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
    },
}
