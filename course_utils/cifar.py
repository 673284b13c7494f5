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

A faster recipe sits beside it: :class:`AirNet` trained by :func:`fit_air`, a half-width
version of Keller Jordan's airbench94 (a frozen whitening first layer, :func:`whiten_init`;
batch 1024; lookahead weight averaging; alternating flips), with flip-and-shift test-time
augmentation (:func:`tta_scores`, ``evaluate(..., tta=2)``). ``benchmarks/cifar_recipe.py``
measures both on the full test set.

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
import torch.nn.functional as F
from torch import nn

from course_utils import data

__all__ = [
    "CLASSES",
    "MEAN",
    "STD",
    "AirNet",
    "AirRecipe",
    "EpochLog",
    "ResNet9",
    "TensorLoader",
    "conv_bn",
    "evaluate",
    "fit",
    "fit_air",
    "load_tensors",
    "normalize",
    "one_cycle",
    "predict",
    "random_crop_flip",
    "train_epoch",
    "tta_scores",
    "whiten_init",
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
    model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *, tta: bool | int = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true labels over ``loader``, as int64 CPU tensors.

    Runs in ``model.eval()`` mode under ``torch.no_grad()`` and restores the model's
    previous mode afterwards. ``tta=True`` averages the scores of each image and its
    mirror image (test-time augmentation); ``tta=2`` adds one-pixel shifts (:func:`tta_scores`).
    """
    was_training = model.training
    model.eval()
    preds, labels = [], []
    try:
        for x, y in loader:
            if tta == 2:
                scores = tta_scores(model, x, level=2)
            else:
                scores = model(x)
                if tta:
                    scores = scores.softmax(1) + model(x.flip(3)).softmax(1)
            preds.append(scores.argmax(1).cpu())
            labels.append(y.cpu())
    finally:
        model.train(was_training)
    return torch.cat(preds), torch.cat(labels)


def evaluate(
    model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *, tta: bool | int = False
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



# --------------------------------------------------------------------------- the fast recipe


def whiten_init(conv: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Make ``conv`` a whitening filter bank for the patches of ``images`` (normalised floats).

    The covariance of every ``k x k`` patch (``k`` is the kernel size) is diagonalised; the
    first half of the output channels project a patch onto its eigenvectors, each scaled to
    unit variance, and the second half are their negatives (so a ReLU-like activation after
    it loses nothing). ``conv`` must have ``2 * C * k * k`` output channels for ``C`` input
    channels. Train the network with this layer's weight frozen.
    """
    c, (kh, kw) = images.shape[1], conv.kernel_size
    if conv.out_channels != 2 * c * kh * kw:
        raise ValueError(f"a whitening conv for {c}x{kh}x{kw} patches needs {2 * c * kh * kw} output channels, "
                         f"got {conv.out_channels}")
    patches = images.float().unfold(2, kh, 1).unfold(3, kw, 1).transpose(1, 3).reshape(-1, c * kh * kw)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    filters = eigenvectors.T.reshape(-1, c, kh, kw) / torch.sqrt(eigenvalues + eps).view(-1, 1, 1, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.cat((filters, -filters)).flip(0))


class _ConvGroup(nn.Sequential):
    """conv -> max-pool -> BatchNorm -> GELU -> conv -> BatchNorm -> GELU (halves H and W)."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float) -> None:
        def norm() -> nn.BatchNorm2d:
            bn = nn.BatchNorm2d(c_out, eps=1e-12, momentum=bn_momentum)
            bn.weight.requires_grad_(False)  # a scale before a conv is redundant: only the bias trains
            return bn

        def conv(c: int) -> nn.Conv2d:
            layer = nn.Conv2d(c, c_out, kernel_size=3, padding="same", bias=False)
            with torch.no_grad():  # start as the identity on the first channels (Dirac init)
                nn.init.dirac_(layer.weight[: min(c, c_out)])
            return layer

        super().__init__(conv(c_in), nn.MaxPool2d(2), norm(), nn.GELU(), conv(c_out), norm(), nn.GELU())


class AirNet(nn.Module):
    """A small fast CIFAR-10 network after Keller Jordan's airbench94 (2024), at reduced width.

    Layout (``widths = (a, b, c)``; spatial size for 32x32 inputs)::

        whiten: Conv2d(3, 24, 2x2), frozen (see whiten_init), GELU   31x31
        group(24 -> a)                                                15x15
        group(a -> b)                                                 7x7
        group(b -> c)                                                 3x3
        max-pool 3x3, flatten                                         c
        fc: Linear(c, num_classes, bias=False), scores * 1/9

    The default ``(32, 128, 128)`` is half airbench94's width: about a quarter of its
    compute, which a 2-core CPU turns into about 150 s an epoch.
    """

    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (32, 128, 128),
                 bn_momentum: float = 0.4, logit_scale: float = 1 / 9) -> None:
        super().__init__()
        a, b, c = widths
        self.whiten = nn.Conv2d(3, 24, kernel_size=2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.features = nn.Sequential(
            nn.GELU(), _ConvGroup(24, a, bn_momentum), _ConvGroup(a, b, bn_momentum),
            _ConvGroup(b, c, bn_momentum), nn.MaxPool2d(3), nn.Flatten(),
        )
        self.fc = nn.Linear(c, num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(self.whiten(x))) * self.logit_scale


def tta_scores(model: nn.Module, x: torch.Tensor, level: int = 2) -> torch.Tensor:
    """Scores averaged over test-time augmentations: 0 none, 1 the mirror image, 2 also shifts.

    Level 2 (airbench's) weighs the image and its mirror by 1/2, and the two diagonal
    one-pixel shifts (reflect-padded), each with its mirror, by 1/4 each.
    """
    def mirrored(z: torch.Tensor) -> torch.Tensor:
        return 0.5 * model(z) + 0.5 * model(z.flip(-1))

    if level == 0:
        return model(x)
    if level == 1:
        return mirrored(x)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    h, w = x.shape[-2:]
    shifted = 0.5 * mirrored(padded[..., :h, :w]) + 0.5 * mirrored(padded[..., 2:, 2:])
    return 0.5 * mirrored(x) + 0.5 * shifted


@dataclass(frozen=True)
class AirRecipe:
    """Hyperparameters of :func:`fit_air` (airbench94's, per 1,024 examples; see its paper)."""

    batch_size: int = 1024
    lr: float = 11.5
    momentum: float = 0.85
    weight_decay: float = 0.0153
    bias_scaler: float = 64.0
    label_smoothing: float = 0.2
    whiten_bias_epochs: int = 3
    translate: int = 2


def fit_air(
    model: AirNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_epochs: float,
    *,
    recipe: AirRecipe = AirRecipe(),
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> list[EpochLog]:
    """Train an :class:`AirNet` on uint8 ``images`` with airbench94's recipe; one log per epoch.

    * the whitening layer is fitted to 5,000 training images (:func:`whiten_init`) and stays
      frozen; its bias trains for the first ``whiten_bias_epochs`` epochs;
    * every epoch shifts each image by up to ``translate`` pixels (reflect padding) and
      flips *alternate* halves: a random half in the first epoch, then the other half, and so on;
    * SGD with Nesterov momentum on the summed, label-smoothed loss; the learning rate rises
      from 0.2x to its peak over the first 23% of steps and falls to 0.07x; BatchNorm biases
      get ``bias_scaler`` times the learning rate;
    * every 5 steps the weights move to an exponential average of themselves (lookahead),
      and at the end they are the average.

    ``num_epochs`` may be fractional. Evaluation (``test``, uint8 images and labels) runs
    after each epoch, without test-time augmentation, and is not counted in ``seconds``.
    """
    device = next(model.parameters()).device
    x = normalize(images.to(device)).contiguous(memory_format=torch.channels_last)
    y = labels.to(device)
    pad = recipe.translate
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    whiten_init(model.whiten, x[:5000])
    model.to(memory_format=torch.channels_last)

    kilostep = 1024 * (1 + 1 / (1 - recipe.momentum))  # airbench's units: per 1,024 examples
    lr, wd = recipe.lr / kilostep, recipe.weight_decay * recipe.batch_size / kilostep
    lr_bias = lr * recipe.bias_scaler
    biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    others = [p for p in model.parameters() if p.requires_grad and all(p is not b for b in biases)]
    optimizer = torch.optim.SGD([dict(params=biases, lr=lr_bias, weight_decay=wd / lr_bias),
                                 dict(params=others, lr=lr, weight_decay=wd / lr)],
                                momentum=recipe.momentum, nesterov=True)
    steps_per_epoch = len(x) // recipe.batch_size
    total = max(1, math.ceil(steps_per_epoch * num_epochs))
    peak = int(0.23 * total)

    def schedule(step: int) -> float:
        if step < peak:
            return 0.2 + 0.8 * step / peak
        return 1.0 - 0.93 * (step - peak) / max(1, total - peak)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing, reduction="sum")
    average = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def lookahead(decay: float) -> None:
        with torch.no_grad():
            for (_, avg), current in zip(average.items(), model.state_dict().values(), strict=True):
                if current.is_floating_point():
                    avg.lerp_(current, 1 - decay)
                    current.copy_(avg)

    generator = torch.Generator().manual_seed(seed)
    flip_first = torch.rand(len(x), generator=generator) < 0.5
    grid, channels = torch.arange(x.shape[-1]), torch.arange(x.shape[1])[None, :, None, None]
    history: list[EpochLog] = []
    step, trained = 0, 0.0
    for epoch in range(math.ceil(num_epochs)):
        start = time.perf_counter()
        model.train()
        model.whiten.bias.requires_grad_(epoch < recipe.whiten_bias_epochs)
        order = torch.randperm(len(x), generator=generator)
        shifts = torch.randint(0, 2 * pad + 1, (len(x), 2), generator=generator)
        flips = flip_first ^ bool(epoch % 2)
        total_loss, correct, seen = 0.0, 0, 0
        for batch in range(steps_per_epoch):
            index = order[batch * recipe.batch_size:(batch + 1) * recipe.batch_size]
            rows = (grid + shifts[index, :1])[:, None, :, None]
            cols = grid + shifts[index, 1:]
            cols = torch.where(flips[index, None], cols.flip(1), cols)[:, None, None, :]
            xb = padded[index[:, None, None, None].to(device), channels.to(device), rows.to(device),
                        cols.to(device)].contiguous(memory_format=torch.channels_last)
            yb = y[index.to(device)]
            scores = model(xb)
            loss = loss_fn(scores, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            total_loss += float(loss.detach())
            correct += int((scores.argmax(1) == yb).sum())
            seen += len(yb)
            if step % 5 == 0:
                lookahead(0.95 ** 5 * (step / total) ** 3)
            if step >= total:
                lookahead(1.0)
                break
        trained += time.perf_counter() - start
        test_acc = None
        if test is not None:
            test_acc = evaluate(model, TensorLoader(*test, batch_size=1000, device=device, channels_last=True))
        history.append(EpochLog(epoch + 1, trained, total_loss / seen, correct / seen, test_acc))
        if log is not None:
            log(f"epoch {epoch + 1}/{math.ceil(num_epochs)}: {trained:6.1f} s, loss {total_loss / seen:.3f}, "
                f"train acc {correct / seen:.1%}" + ("" if test_acc is None else f", test acc {test_acc:.1%}"))
        if step >= total:
            break
    return history
