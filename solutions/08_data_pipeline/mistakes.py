"""Typical wrong answers to notebook 08, used by the grading tests.

Each entry is one simulated student: ``replace`` maps solution cells (grade_id) to
the wrong code submitted, ``loses`` lists the graded cells that must score zero,
``says`` the words a cell's output must show for it. Every other graded cell must
keep its full points, so the mistakes combined in one submission are independent
of each other. ``ALTERNATIVES`` are correct answers written differently: each must
keep every point.
"""

_DATASET_TOP = '''
class CifarArrayDataset(Dataset):
    def __init__(self, images, labels, transform=None):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self):
        return len(self.images)
'''

_DEVICE_TOP = '''
class DeviceLoader:
    def __init__(self, loader, device, preprocess=None):
        self.loader = loader
        self.device = device
        self.preprocess = preprocess

    def __len__(self):
        return len(self.loader)
'''

_SPLIT_TOP = '''
def make_loaders(dataset, val_fraction, batch_size, seed=0):
    n_val = int(len(dataset) * val_fraction)
    generator = torch.Generator().manual_seed(seed)
    pin = torch.cuda.is_available()
'''

_EPOCH_TOP = '''
def train_one_epoch(model, loader, optimizer, loss_fn, writer, epoch):
    model.train()
    losses = []
    for batch_index, (x, y) in enumerate(loader):
'''

_EPOCH_END = '''    return sum(losses) / len(losses)
'''

MISTAKES = {
    "view-instead-of-permute-and-per-image-std": {
        "replace": {
            "dataset": _DATASET_TOP + '''
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
        "says": {"dataset-check": "view/reshape instead of permute",
                 "stats-check": "std averaged over images (mean of per-image stds)"},
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
            "device-loader": _DEVICE_TOP + '''
    def __iter__(self):
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)  # the labels are never moved
            if self.preprocess is not None:
                x = self.preprocess(x)
            yield x, y
''',
            "train-epoch": _EPOCH_TOP + '''        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        writer.add_scalar("loss/train", losses[-1], batch_index)  # restarts at 0 every epoch
''' + _EPOCH_END,
        },
        "loses": ["test-loaders", "test-device-loader", "test-logging"],
        "says": {"split-check": "did you drop the last batch? Evaluation must see every sample",
                 "device-check": "move the labels too",
                 "train-epoch-check": "The second epoch restarted at 0"},
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
            "train-epoch": _EPOCH_TOP + '''        loss = loss_fn(model(x), y)
        loss.backward()  # no zero_grad: the gradients accumulate
        optimizer.step()
        losses.append(loss.item())
        writer.add_scalar("loss/train", losses[-1], epoch * len(loader) + batch_index)
''' + _EPOCH_END,
        },
        "loses": ["test-dataset", "test-stats", "test-loaders", "test-device-loader", "test-logging"],
        "says": {"dataset-check": "the transform was applied to the uint8 image",
                 "stats-check": "wrong dtype: expected torch.float32, got torch.float64",
                 "split-check": "the seed argument is ignored",
                 "device-check": "__iter__ must start a fresh pass each time",
                 "train-epoch-check": "gradients never zeroed"},
    },
    "numpy-size-unscaled-stats-unseeded-preprocess-first-tensor-logged": {
        "replace": {
            "dataset": '''
class CifarArrayDataset(Dataset):
    def __init__(self, images, labels, transform=None):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self):
        return self.images.size  # NumPy's size: every element, not the number of images

    def __getitem__(self, index):
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1).float() / 255
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
''',
            "stats": '''
def channel_stats(images):
    x = images.to(torch.float64)  # not divided by 255
    return x.mean(dim=(0, 2, 3)).float(), x.std(dim=(0, 2, 3)).float()
''',
            "split": '''
def make_loaders(dataset, val_fraction, batch_size, seed=0):
    n_val = int(len(dataset) * val_fraction)
    train_part, val_part = random_split(dataset, [len(dataset) - n_val, n_val])  # no generator
    pin = torch.cuda.is_available()
    train_loader = DataLoader(train_part, batch_size=batch_size, shuffle=True, drop_last=True, pin_memory=pin)
    val_loader = DataLoader(val_part, batch_size=batch_size, shuffle=False, drop_last=False, pin_memory=pin)
    return train_loader, val_loader
''',
            "device-loader": _DEVICE_TOP + '''
    def __iter__(self):
        for x, y in self.loader:
            if self.preprocess is not None:
                x = self.preprocess(x)  # on the CPU, before the move
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
''',
            "train-epoch": _EPOCH_TOP + '''        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        writer.add_scalar("loss/train", loss, epoch * len(loader) + batch_index)  # the tensor
''' + _EPOCH_END,
        },
        "loses": ["test-dataset", "test-stats", "test-loaders", "test-device-loader", "test-logging"],
        "says": {"dataset-check": "NumPy's .size is the number of ELEMENTS",
                 "stats-check": "pixels not scaled to [0, 1]: divide by 255",
                 "split-check": "gave different validation sets: pass generator=torch.Generator().manual_seed(seed)",
                 "device-check": "it ran before the move",
                 "train-epoch-check": "log loss.item(), a Python float"},
    },
    "float64-image-uint8-mean-ragged-train-batches-to-not-kept-epoch-plus-batch": {
        "replace": {
            "dataset": _DATASET_TOP + '''
    def __getitem__(self, index):
        image = torch.tensor(self.images[index].transpose(2, 0, 1) / 255)  # NumPy's division: float64
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
''',
            "stats": '''
def channel_stats(images):
    mean = images.mean(dim=(0, 2, 3)) / 255  # the mean of a uint8 tensor
    std = images.double().std(dim=(0, 2, 3)) / 255
    return mean.float(), std.float()
''',
            "split": _SPLIT_TOP + '''    train_part, val_part = random_split(dataset, [len(dataset) - n_val, n_val], generator=generator)
    train_loader = DataLoader(train_part, batch_size=batch_size, shuffle=True, pin_memory=pin)  # keeps a ragged batch
    val_loader = DataLoader(val_part, batch_size=batch_size, shuffle=False, pin_memory=pin)
    return train_loader, val_loader
''',
            "device-loader": _DEVICE_TOP + '''
    def __iter__(self):
        for x, y in self.loader:
            x.to(self.device, non_blocking=True)  # the moved copy is thrown away
            y = y.to(self.device, non_blocking=True)
            if self.preprocess is not None:
                x = self.preprocess(x)
            yield x, y
''',
            "train-epoch": _EPOCH_TOP + '''        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        writer.add_scalar("loss/train", losses[-1], epoch + batch_index)
''' + _EPOCH_END,
        },
        "loses": ["test-dataset", "test-stats", "test-loaders", "test-device-loader", "test-logging"],
        "says": {"dataset-check": "NumPy arrays are float64",
                 "stats-check": "`.mean()` of an integer or bool tensor",
                 "split-check": "(drop_last=True)",
                 "device-check": "tensor.to() is not in place",
                 "train-epoch-check": "epoch + batch_index moves one step per epoch"},
    },
    "float-label-per-image-stats-swapped-parts-samples-counted-no-step": {
        "replace": {
            "dataset": _DATASET_TOP + '''
    def __getitem__(self, index):
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1).float() / 255
        if self.transform is not None:
            image = self.transform(image)
        return image, float(self.labels[index])  # a float, not a class index
''',
            "stats": '''
def channel_stats(images):
    x = images.to(torch.float64) / 255
    return x.mean(dim=(2, 3)).float(), x.std(dim=(2, 3)).float()  # per image: dimension 0 kept
''',
            "split": _SPLIT_TOP + '''    # the lengths in the wrong order: the first part has n_val samples
    train_part, val_part = random_split(dataset, [n_val, len(dataset) - n_val], generator=generator)
    train_loader = DataLoader(train_part, batch_size=batch_size, shuffle=True, drop_last=True, pin_memory=pin)
    val_loader = DataLoader(val_part, batch_size=batch_size, shuffle=False, drop_last=False, pin_memory=pin)
    return train_loader, val_loader
''',
            "device-loader": '''
class DeviceLoader:
    def __init__(self, loader, device, preprocess=None):
        self.loader = loader
        self.device = device
        self.preprocess = preprocess

    def __len__(self):
        return len(self.loader.dataset)  # samples, not batches

    def __iter__(self):
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            if self.preprocess is not None:
                x = self.preprocess(x)
            yield x, y
''',
            "train-epoch": _EPOCH_TOP + '''        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()  # optimizer.step() forgotten
        losses.append(loss.item())
        writer.add_scalar("loss/train", losses[-1], epoch * len(loader) + batch_index)
''' + _EPOCH_END,
        },
        "loses": ["test-dataset", "test-stats", "test-loaders", "test-device-loader", "test-logging"],
        "says": {"dataset-check": "a float label",
                 "stats-check": "the batch dimension was not reduced",
                 "split-check": "The parts are swapped",
                 "device-check": "that is the number of samples, len(loader.dataset)",
                 "train-epoch-check": "the weights did not move"},
    },
    "width-height-swapped-train-unshuffled-preprocess-skipped-wrong-tag": {
        "replace": {
            "dataset": _DATASET_TOP + '''
    def __getitem__(self, index):
        image = torch.from_numpy(self.images[index]).permute(2, 1, 0).float() / 255  # (C, W, H)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
''',
            "split": _SPLIT_TOP + '''    train_part, val_part = random_split(dataset, [len(dataset) - n_val, n_val], generator=generator)
    train_loader = DataLoader(train_part, batch_size=batch_size, drop_last=True, pin_memory=pin)  # no shuffle
    val_loader = DataLoader(val_part, batch_size=batch_size, shuffle=False, drop_last=False, pin_memory=pin)
    return train_loader, val_loader
''',
            "device-loader": _DEVICE_TOP + '''
    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)  # preprocess forgotten
''',
            "train-epoch": _EPOCH_TOP + '''        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        writer.add_scalar("train/loss", losses[-1], epoch * len(loader) + batch_index)  # another tag
''' + _EPOCH_END,
        },
        "loses": ["test-dataset", "test-loaders", "test-device-loader", "test-logging"],
        "says": {"dataset-check": "height and width are swapped",
                 "split-check": "use shuffle=True for training",
                 "device-check": "preprocess was not applied",
                 "train-epoch-check": "log under the tag 'loss/train'"},
    },
}

ALTERNATIVES = {
    "dataset-as-tensor-item": {
        "replace": {
            "dataset": '''
class CifarArrayDataset(Dataset):
    def __init__(self, images, labels, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, index):
        image = torch.as_tensor(self.images[index]).permute(2, 0, 1).to(torch.float32).div(255)
        if self.transform:
            image = self.transform(image)
        return image, self.labels[index].item()
''',
        },
    },
    "dataset-channels-first-once": {
        "replace": {
            "dataset": '''
class CifarArrayDataset(Dataset):
    def __init__(self, images, labels, transform=None):
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (N, C, H, W), a view
        self.labels = torch.as_tensor(labels)
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        image = self.images[index].float() / 255.0
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
''',
        },
    },
    "stats-std-mean": {
        "replace": {
            "stats": '''
def channel_stats(images):
    std, mean = torch.std_mean(images.double().div(255), dim=(0, 2, 3))
    return mean.to(torch.float32), std.to(torch.float32)
''',
        },
    },
    "stats-rows-per-channel-population-std": {
        "replace": {
            "stats": '''
def channel_stats(images):
    channels = images.shape[1]
    rows = images.transpose(0, 1).reshape(channels, -1).float() / 255  # one row per channel
    mean = rows.mean(dim=1)
    std = ((rows - mean[:, None]) ** 2).mean(dim=1).sqrt()  # divides by n: the same on many pixels
    return [mean, std]
''',
        },
    },
    "split-randperm-subsets": {
        "replace": {
            "split": '''
def make_loaders(dataset, val_fraction, batch_size, seed=0):
    n_val = int(len(dataset) * val_fraction)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    val_part, train_part = Subset(dataset, order[:n_val]), Subset(dataset, order[n_val:])
    options = {"batch_size": batch_size, "pin_memory": torch.cuda.is_available()}
    return (DataLoader(train_part, shuffle=True, drop_last=True, **options),
            DataLoader(val_part, **options))
''',
        },
    },
    "split-keywords": {
        "replace": {
            "split": '''
def make_loaders(dataset, val_fraction, batch_size, seed=0):
    n_val = int(val_fraction * len(dataset))
    n_train = len(dataset) - n_val
    parts = random_split(dataset, lengths=[n_train, n_val], generator=torch.Generator().manual_seed(seed))
    train_loader = DataLoader(dataset=parts[0], batch_size=batch_size, shuffle=True, drop_last=True,
                              pin_memory=torch.cuda.is_available())
    val_loader = DataLoader(dataset=parts[1], batch_size=batch_size, pin_memory=torch.cuda.is_available())
    return train_loader, val_loader
''',
        },
    },
    "device-loader-generator-expression": {
        "replace": {
            "device-loader": '''
class DeviceLoader:
    def __init__(self, loader, device, preprocess=None):
        self.loader = loader
        self.device = device
        self.preprocess = preprocess if preprocess is not None else (lambda x: x)

    def __len__(self):
        return len(self.loader)

    def _ready(self, batch):
        x, y = (t.to(self.device, non_blocking=True) for t in batch)
        return self.preprocess(x), y

    def __iter__(self):
        return (self._ready(batch) for batch in self.loader)  # a fresh generator per pass
''',
        },
    },
    "device-loader-iterator-class": {
        "replace": {
            "device-loader": '''
class DeviceLoader:
    def __init__(self, loader, device, preprocess=None):
        self.loader = loader
        self.device = device
        self.preprocess = preprocess
        self._batches = None

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self._batches = iter(self.loader)  # every pass starts over
        return self

    def __next__(self):
        x, y = next(self._batches)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.preprocess:
            x = self.preprocess(x)
        return x, y
''',
        },
    },
    "train-epoch-keywords-and-counter": {
        "replace": {
            "train-epoch": '''
def train_one_epoch(model, loader, optimizer, loss_fn, writer, epoch):
    model.train()
    losses = []
    step = epoch * len(loader)
    for x, y in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        value = loss.item()
        losses.append(value)
        writer.add_scalar(tag="loss/train", scalar_value=value, global_step=step)
        step += 1
    return sum(losses) / len(losses)
''',
        },
    },
    "train-epoch-enumerate-from-offset": {
        "replace": {
            "train-epoch": '''
def train_one_epoch(model, loader, optimizer, loss_fn, writer, epoch):
    model.train()
    losses = []
    for global_step, (x, y) in enumerate(loader, start=epoch * len(loader)):
        scores = model(x)
        loss = loss_fn(scores, y)
        model.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        writer.add_scalar("loss/train", float(loss), global_step=global_step)
    return sum(losses) / len(losses)
''',
        },
    },
}
