"""Typical wrong answers to notebook 08, used by the grading tests.

Each entry is one simulated student: ``replace`` maps solution cells (grade_id) to
the wrong code submitted, ``loses`` lists the graded cells that must score zero.
Every other graded cell must keep its full points, so the mistakes combined in one
submission are independent of each other.
"""

MISTAKES = {
    "view-instead-of-permute-and-per-image-std": {
        "replace": {
            "dataset": '''
class CifarArrayDataset(Dataset):
    def __init__(self, images, labels, transform=None):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        h, w, c = self.images[index].shape
        # right shape, scrambled pixels: view reinterprets the HWC memory as CHW
        image = torch.from_numpy(self.images[index]).view(c, h, w).float() / 255
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
''',
            "stats": '''
def channel_stats(images):
    x = images.to(torch.float64) / 255
    # the std of each image, averaged: ignores how much images differ from each other
    return x.mean(dim=(0, 2, 3)).float(), x.std(dim=(2, 3)).mean(dim=0).float()
''',
        },
        "loses": ["test-dataset", "test-stats"],
    },
    "unseeded-shuffled-val-labels-stay-and-epoch-local-steps": {
        "replace": {
            "split": '''
def make_loaders(dataset, val_fraction, batch_size, seed=0):
    n_val = int(len(dataset) * val_fraction)
    # no generator: the split changes every run; the validation loader shuffles and drops
    train_part, val_part = random_split(dataset, [len(dataset) - n_val, n_val])
    train_loader = DataLoader(train_part, batch_size=batch_size, shuffle=True, drop_last=True)
    val_loader = DataLoader(val_part, batch_size=batch_size, shuffle=True, drop_last=True)
    return train_loader, val_loader
''',
            "device-loader": '''
class DeviceLoader:
    def __init__(self, loader, device, preprocess=None):
        self.loader = loader
        self.device = device
        self.preprocess = preprocess

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)  # the labels are never moved
            if self.preprocess is not None:
                x = self.preprocess(x)
            yield x, y
''',
            "train-epoch": '''
def train_one_epoch(model, loader, optimizer, loss_fn, writer, epoch):
    model.train()
    losses = []
    for batch_index, (x, y) in enumerate(loader):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        writer.add_scalar("loss/train", losses[-1], batch_index)  # restarts at 0 every epoch
    return sum(losses) / len(losses)
''',
        },
        "loses": ["test-loaders", "test-device-loader", "test-logging"],
    },
    "transform-on-uint8-float64-stats-seed-ignored-one-shot-iterator-no-zero-grad": {
        "replace": {
            "dataset": '''
class CifarArrayDataset(Dataset):
    def __init__(self, images, labels, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1)
        if self.transform is not None:
            image = self.transform(image)  # applied to the uint8 image, before scaling to [0, 1]
        return image.float() / 255, int(self.labels[index])
''',
            "stats": '''
def channel_stats(images):
    x = images.to(torch.float64) / 255
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))  # float64, not float32
''',
            "split": '''
def make_loaders(dataset, val_fraction, batch_size, seed=0):
    n_val = int(len(dataset) * val_fraction)
    generator = torch.Generator().manual_seed(0)  # reproducible, but ignores seed
    train_part, val_part = random_split(dataset, [len(dataset) - n_val, n_val], generator=generator)
    pin = torch.cuda.is_available()
    return (DataLoader(train_part, batch_size=batch_size, shuffle=True, drop_last=True, pin_memory=pin),
            DataLoader(val_part, batch_size=batch_size, shuffle=False, pin_memory=pin))
''',
            "device-loader": '''
class DeviceLoader:
    def __init__(self, loader, device, preprocess=None):
        self.loader, self.device, self.preprocess = loader, device, preprocess
        self.batches = self._batches()  # one iterator, made once: one epoch, then nothing

    def _batches(self):
        for x, y in self.loader:
            x, y = x.to(self.device), y.to(self.device)
            yield (self.preprocess(x) if self.preprocess is not None else x), y

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return self.batches
''',
            "train-epoch": '''
def train_one_epoch(model, loader, optimizer, loss_fn, writer, epoch):
    model.train()
    losses = []
    for batch_index, (x, y) in enumerate(loader):
        loss = loss_fn(model(x), y)
        loss.backward()  # no zero_grad: the gradients accumulate
        optimizer.step()
        losses.append(loss.item())
        writer.add_scalar("loss/train", losses[-1], epoch * len(loader) + batch_index)
    return sum(losses) / len(losses)
''',
        },
        "loses": ["test-dataset", "test-stats", "test-loaders", "test-device-loader", "test-logging"],
    },
}
