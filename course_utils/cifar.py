"""CIFAR-10 as whole tensors: a fast loader, batch augmentation, a small ResNet, a training loop.

This is the course's recipe for CIFAR-10 on a laptop CPU (notebook 09; notebook 10
reuses the network and the loader). Four pieces, each usable on its own:

* :func:`load_tensors` reads CIFAR-10 once (through :func:`course_utils.data.cifar10`,
  so the offline copy, the cache and the clear :class:`~course_utils.data.DataNotFoundError`
  all apply) and returns the images as **one uint8 tensor** ``(N, 3, 32, 32)`` and the
  labels as one int64 tensor ``(N,)``;
* :class:`TensorLoader` iterates over such tensors in batches, already on the device:
  it shuffles, augments (:func:`random_crop_flip`) and normalises (:func:`normalize`)
  **whole batches** instead of one PIL image at a time, which is what makes a CPU epoch
  take seconds of data work instead of minutes;
* :class:`ResNet9` is a small ResNet-9-style network (about 0.41 M parameters at the
  default ``width=16``): conv-BatchNorm-ReLU blocks, max-pool downsampling, two residual
  blocks, global max-pool and one linear head ``fc`` (replace it for transfer learning;
  ``features`` is the backbone, ``feature_dim`` its output size);
* :func:`fit` trains with SGD (Nesterov momentum, weight decay), a one-cycle learning
  rate and label smoothing, with an optional wall-clock ``time_limit``, and returns one
  :class:`EpochLog` per epoch; :func:`evaluate` and :func:`predict` do the
  ``model.eval()`` + ``torch.no_grad()`` part.

Typical use::

    from course_utils import cifar
    x_train, y_train = cifar.load_tensors(train=True)
    x_test, y_test = cifar.load_tensors(train=False)
    train_loader = cifar.TensorLoader(x_train, y_train, batch_size=256, shuffle=True,
                                      augment=True, drop_last=True, device=device)
    test_loader = cifar.TensorLoader(x_test, y_test, batch_size=1000, device=device)
    model = cifar.ResNet9().to(device, memory_format=torch.channels_last)
    history = cifar.fit(model, train_loader, num_epochs=8, test_loader=test_loader)
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from course_utils import data

__all__ = [
    "CLASSES",
    "MEAN",
    "STD",
    "EpochLog",
    "ResNet9",
    "TensorLoader",
    "conv_bn",
    "evaluate",
    "fit",
    "load_tensors",
    "normalize",
    "one_cycle",
    "predict",
    "random_crop_flip",
    "train_epoch",
]

#: The ten class names, in label order.
CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
#: Per-channel mean and standard deviation of the 50,000 training images (pixels in [0, 1]).
MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)


# --------------------------------------------------------------------------- data


def load_tensors(
    train: bool = True,
    n: int | None = None,
    *,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 as ``(images, labels)``: uint8 ``(N, 3, 32, 32)`` and int64 ``(N,)``, on the CPU.

    ``n`` keeps a random subset of ``n`` images (the same one for the same ``seed``),
    stratified so every class gets ``n // 10`` images or one more. Data is found by
    :func:`course_utils.data.cifar10`; when there is none it raises
    :class:`~course_utils.data.DataNotFoundError` saying where it looked.
    """
    dataset = data.cifar10(train=train, root=root, download=download)
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(dataset.targets, dtype=torch.long)
    if n is not None and n < len(labels):
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        generator = torch.Generator().manual_seed(seed)
        num_classes = int(labels.max()) + 1
        picked = []
        for cls in range(num_classes):
            members = torch.nonzero(labels == cls).flatten()
            members = members[torch.randperm(len(members), generator=generator)]
            picked.append(members[: n // num_classes + (cls < n % num_classes)])
        index = torch.cat(picked)
        index = index[torch.randperm(len(index), generator=generator)]
        images, labels = images[index].contiguous(), labels[index]
    return images, labels


def normalize(
    images: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD
) -> torch.Tensor:
    """uint8 images ``(N, C, H, W)`` -> float32, scaled to [0, 1] and standardised per channel."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return images.to(torch.float32).div_(255.0).sub_(m).div_(s)


def random_crop_flip(
    images: torch.Tensor, padding: int = 4, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop (after reflect-padding by ``padding``) and horizontal flip, per image.

    Works on a whole batch ``(N, C, H, W)`` of any dtype (uint8 included) with one
    gather: each image gets its own shift in ``[-padding, padding]`` on both axes and a
    coin flip, drawn from ``generator`` (a CPU generator; the result stays on the
    images' device). The output has the input's shape and dtype.
    """
    n, c, h, w = images.shape
    device = images.device
    shifts = torch.randint(-padding, padding + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    rows = torch.arange(h) + shifts[:, :1]  # (n, h)
    cols = torch.arange(w) + shifts[:, 1:]  # (n, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    # Reflect out-of-range indices back into the image (like F.pad(mode="reflect")).
    rows = torch.where(rows < 0, -rows, rows)
    rows = torch.where(rows >= h, 2 * (h - 1) - rows, rows)
    cols = torch.where(cols < 0, -cols, cols)
    cols = torch.where(cols >= w, 2 * (w - 1) - cols, cols)
    rows, cols = rows.to(device), cols.to(device)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    return images[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


class TensorLoader:
    """Batches ``(x, y)`` from preloaded tensors, preprocessed on the device.

    ``images`` are uint8 ``(N, C, H, W)`` (as from :func:`load_tensors`), ``labels``
    int64 ``(N,)``. Both are moved to ``device`` once; each batch is then indexed,
    optionally augmented with :func:`random_crop_flip`, normalised with ``mean``/``std``
    and, with ``channels_last=True``, laid out channels-last (faster convolutions on
    most CPUs and GPUs). ``x`` is float32 ``(B, C, H, W)``, ``y`` int64 ``(B,)``.

    It behaves like a ``DataLoader``: ``len(loader)`` is the number of batches, each
    ``for`` loop is one epoch (a new shuffle when ``shuffle=True``, reproducible from
    ``seed``), and ``drop_last=True`` drops a final incomplete batch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 256,
        *,
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        seed: int = 0,
        mean: Sequence[float] = MEAN,
        std: Sequence[float] = STD,
    ) -> None:
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 (N, C, H, W), got {images.dtype}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device or "cpu")
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, dtype=torch.long)
        self.batch_size = batch_size
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        self.channels_last = channels_last
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_samples(self) -> int:
        """Images seen per epoch (fewer than the data set with ``drop_last``)."""
        return len(self) * self.batch_size if self.drop_last else len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for batch in range(len(self)):
            index = order[batch * self.batch_size : (batch + 1) * self.batch_size].to(self.device)
            x = self.images[index]
            if self.augment:
                x = random_crop_flip(x, generator=self.generator)
            x = normalize(x, self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[index]


# --------------------------------------------------------------------------- model


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution (no bias: BatchNorm has one) -> BatchNorm -> ReLU; keeps H and W."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    """``x + block(x)``: two conv-BN-ReLU blocks with a skip connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResNet9(nn.Module):
    """A ResNet-9-style net for 32x32 images; ``width=16`` is a quarter of the original.

    Layout (``w = width``; spatial size for 32x32 inputs)::

        conv_bn(3, w), max-pool             16x16
        conv_bn(w, 2w)                      16x16
        residual(2w)                        16x16
        conv_bn(2w, 4w), max-pool           8x8
        conv_bn(4w, 8w), max-pool           4x4
        residual(8w)                        4x4
        global max-pool, flatten            8w      <- self.features ends here
        fc: Linear(8w, num_classes)                 <- self.fc
        scores = fc(features) * logit_scale

    Downsampling comes early (right after the first convolution, unlike the original
    ResNet-9, which pools after the second): at the same parameter count a training step
    on a 2-core CPU takes about 25% less time (396 vs 530 ms per batch of 256), and almost
    all the compute runs on 16x16 maps or smaller. The scores are multiplied by
    ``logit_scale`` (0.125, as in the original ResNet-9 recipe): max-pooled features are
    large, and unscaled scores make the first steps at a high learning rate unstable.
    """

    def __init__(
        self, num_classes: int = 10, width: int = 16, in_channels: int = 3, logit_scale: float = 0.125
    ) -> None:
        super().__init__()
        w = width
        self.logit_scale = logit_scale
        self.feature_dim = 8 * w
        self.features = nn.Sequential(
            conv_bn(in_channels, w),
            nn.MaxPool2d(2),
            conv_bn(w, 2 * w),
            _Residual(2 * w),
            conv_bn(2 * w, 4 * w),
            nn.MaxPool2d(2),
            conv_bn(4 * w, 8 * w),
            nn.MaxPool2d(2),
            _Residual(8 * w),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(self.feature_dim, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x)) * self.logit_scale


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class EpochLog:
    """One epoch of :func:`fit`: cumulative training seconds, mean loss, accuracies."""

    epoch: int
    seconds: float
    train_loss: float
    train_acc: float
    test_acc: float | None = None
    stopped_early: bool = False


def _progress(iterable: Iterable, total: int, desc: str, enabled: bool) -> Iterable:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def train_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    deadline: float | None = None,
    progress: bool = True,
    desc: str = "train",
) -> tuple[float, float, bool]:
    """One pass over ``loader`` in training mode.

    ``scheduler`` is stepped after every batch (as :class:`~torch.optim.lr_scheduler.OneCycleLR`
    expects). ``deadline`` is a ``time.perf_counter()`` value: the epoch stops after the
    batch that crosses it. Returns ``(mean loss, accuracy, stopped_early)`` over the
    batches seen.
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.train()
    total_loss = torch.zeros(())
    correct = seen = 0
    stopped = False
    bar = _progress(loader, len(loader) if hasattr(loader, "__len__") else None, desc, progress)
    for x, y in bar:
        scores = model(x)
        loss = loss_fn(scores, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.detach().cpu() * len(y)
        correct += int((scores.argmax(1) == y).sum())
        seen += len(y)
        if deadline is not None and time.perf_counter() > deadline:
            stopped = True
            break
    if hasattr(bar, "close"):
        bar.close()
    if seen == 0:
        return float("nan"), float("nan"), stopped
    return float(total_loss) / seen, correct / seen, stopped


@torch.no_grad()
def predict(
    model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *, tta: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true labels over ``loader``, as int64 CPU tensors.

    Runs in ``model.eval()`` mode under ``torch.no_grad()`` and restores the model's
    previous mode afterwards. ``tta=True`` averages the scores of each image and its
    mirror image (test-time augmentation).
    """
    was_training = model.training
    model.eval()
    preds, labels = [], []
    try:
        for x, y in loader:
            scores = model(x)
            if tta:
                scores = scores.softmax(1) + model(x.flip(3)).softmax(1)
            preds.append(scores.argmax(1).cpu())
            labels.append(y.cpu())
    finally:
        model.train(was_training)
    return torch.cat(preds), torch.cat(labels)


def evaluate(
    model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *, tta: bool = False
) -> float:
    """Accuracy (a float in [0, 1]) of ``model`` over every sample of ``loader``."""
    preds, labels = predict(model, loader, tta=tta)
    return float((preds == labels).sum()) / len(labels)


def one_cycle(
    optimizer: torch.optim.Optimizer, total_steps: int, *, pct_start: float = 0.25
) -> torch.optim.lr_scheduler.LambdaLR:
    """A one-cycle learning-rate schedule, stepped once per batch.

    The learning rate rises linearly from 1/25 of the optimizer's ``lr`` to ``lr`` over
    the first ``pct_start`` of ``total_steps``, then falls linearly to zero: the shape of
    :class:`~torch.optim.lr_scheduler.OneCycleLR` with ``anneal_strategy="linear"``, but
    valid for any number of steps (OneCycleLR fails on very short runs).
    """
    peak = max(1.0, pct_start * total_steps)
    total = max(float(total_steps), peak + 1.0)

    def factor(step: int) -> float:
        if step < peak:
            return 0.04 + 0.96 * step / peak
        return max(0.0, (total - step) / (total - peak))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(
    model: nn.Module,
    train_loader: TensorLoader,
    num_epochs: int,
    *,
    test_loader: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    lr: float = 0.2,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.1,
    pct_start: float = 0.25,
    time_limit: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> list[EpochLog]:
    """Train ``model`` (already on its device) with the course's recipe.

    SGD with Nesterov momentum and weight decay, a one-cycle learning rate that peaks
    at ``lr`` after ``pct_start`` of the steps and falls linearly to zero (:func:`one_cycle`), and
    cross-entropy with ``label_smoothing``. After each epoch, accuracy on
    ``test_loader`` (when given). ``time_limit`` (seconds of training, evaluation not
    counted) stops training after the batch that exceeds it. ``log`` receives one
    line per epoch (``None``: silent). Returns one :class:`EpochLog` per epoch run.
    """
    if num_epochs <= 0:
        raise ValueError(f"num_epochs must be positive, got {num_epochs}")
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay
    )
    scheduler = one_cycle(optimizer, num_epochs * len(train_loader), pct_start=pct_start)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    history: list[EpochLog] = []
    trained = 0.0
    for epoch in range(1, num_epochs + 1):
        start = time.perf_counter()
        deadline = None if time_limit is None else start + (time_limit - trained)
        loss, acc, stopped = train_epoch(
            model, train_loader, optimizer, scheduler=scheduler, loss_fn=loss_fn,
            deadline=deadline, progress=progress, desc=f"epoch {epoch}/{num_epochs}",
        )
        trained += time.perf_counter() - start
        test_acc = evaluate(model, test_loader) if test_loader is not None else None
        history.append(EpochLog(epoch, trained, loss, acc, test_acc, stopped))
        if log is not None:
            line = f"epoch {epoch}/{num_epochs}: {trained:6.1f} s, loss {loss:.3f}, train acc {acc:.1%}"
            if test_acc is not None:
                line += f", test acc {test_acc:.1%}"
            log(line + (" (time limit reached)" if stopped else ""))
        if stopped:
            break
    return history

