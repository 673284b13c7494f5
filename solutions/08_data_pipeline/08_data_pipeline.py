# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false}
# # 08 · The data pipeline: from files on disk to batches on the device
#
# A model only ever sees batches of tensors. Between the files on disk and those batches
# sits the data pipeline, and on a CPU it is often the slowest part of training. This
# notebook builds one for the real CIFAR-10 data set (60,000 colour images of 32x32 pixels
# in 10 classes), piece by piece, and then measures it.
#
# **Learning goals**
# 1. Write a map-style `Dataset` (`__len__` and `__getitem__`) and know when `TensorDataset` is enough.
# 2. Batch with `DataLoader`: `batch_size`, `shuffle`, `drop_last`, `num_workers`, `pin_memory`.
# 3. Split off a validation set reproducibly, and compute normalisation statistics on the training part only.
# 4. Preprocess and augment with torchvision transforms, and wrap a loader so batches arrive ready on the device.
# 5. Measure: per-image PIL transforms against operations on whole uint8 tensors.
# 6. Log a training run to TensorBoard: scalars, an image grid and the model graph.
#
# Every exercise has a **self-check** you can run as often as you like, and a graded cell
# (with hidden tests on other inputs) that the autograder runs.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup-md", "locked": true, "schema_version": 3, "solution": false}
# ## Setup
# `setup` seeds everything and prints the device and the mode. `COURSE_FAST=1` (used by the
# tests) works on a 4,000-image subset; the full run uses all 50,000 training images.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import copy
import os
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, random_split
from torch.utils.tensorboard import SummaryWriter
from torchvision.transforms import v2
from torchvision.utils import make_grid
from tqdm.auto import tqdm

from course_utils import budget, checks, cifar, plots, setup
from course_utils.data import cifar10

config = setup(seed=0)
device = config.device

# %% [markdown] nbgrader={"grade": false, "grade_id": "data-md", "locked": true, "schema_version": 3, "solution": false}
# ## The raw material: `torchvision.datasets.CIFAR10`
#
# `cifar10(train=True)` returns torchvision's `CIFAR10` data set. It finds the files in the
# course's data folder or cache, or downloads them once (163 MB); if it can find them
# nowhere it stops with a message saying where it looked and what to do.
#
# torchvision reads all 50,000 training images into memory at once: `train_set.data` is one
# NumPy array of shape `(N, H, W, C)` and dtype `uint8`, `train_set.targets` a list of class
# indices. Indexing `train_set[i]` turns one row into a PIL image (and applies a transform, if
# the data set has one).

# %% nbgrader={"grade": false, "grade_id": "data", "locked": true, "schema_version": 3, "solution": false}
train_set = cifar10(train=True)
print(train_set)
print(f"data:    {type(train_set.data).__name__} {train_set.data.shape} {train_set.data.dtype}")
print(f"targets: {type(train_set.targets).__name__} of {len(train_set.targets)}, first ten {train_set.targets[:10]}")
image, label = train_set[0]
print(f"train_set[0] -> {type(image).__name__} {image.size} {image.mode}, label {label} ({train_set.classes[label]})")

plots.show_images(train_set.data[:16], [train_set.classes[t] for t in train_set.targets[:16]])

N_IMAGES = budget(full=50_000, fast=4_000)
images_np = train_set.data[:N_IMAGES]
labels_np = np.array(train_set.targets[:N_IMAGES])
print(f"working with {N_IMAGES} training images")

# %% [markdown] nbgrader={"grade": false, "grade_id": "dataset-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 1 · A map-style `Dataset` (3 points)
#
# A map-style data set is any object with two methods: `__len__()`, the number of samples,
# and `__getitem__(i)`, sample `i`. Subclassing `torch.utils.data.Dataset` documents the
# intent. A `DataLoader` asks for one index at a time and stacks ("collates") the samples
# into a batch, so `__getitem__` decides what one sample looks like.
#
# Complete `CifarArrayDataset`, which serves images stored like `train_set.data`:
# `images` is a uint8 NumPy array `(N, H, W, C)` and `labels` an integer array `(N,)`.
# `dataset[i]` returns `(image, label)`:
# * `image`: a float32 tensor of shape `(C, H, W)` (channels first, as convolutions want)
#   with values in `[0, 1]` (pixel / 255), then passed through `transform` if one was given;
# * `label`: the class index as an integer.
#
# To move the channels to the front use `permute`, which moves axes. `view` or `reshape` to
# `(C, H, W)` also gives the right *shape*, but it reinterprets the same sequence of numbers
# with a new shape and scrambles the pixels: the classic bug that trains on noise.

# %% nbgrader={"grade": false, "grade_id": "dataset", "locked": false, "schema_version": 3, "solution": true}
class CifarArrayDataset(Dataset):
    """Images in a uint8 array (N, H, W, C) and their labels, one (image, label) at a time."""

    def __init__(self, images, labels, transform=None):
        ### BEGIN SOLUTION
        self.images = images
        self.labels = labels
        self.transform = transform
        ### END SOLUTION

    def __len__(self):
        ### BEGIN SOLUTION
        return len(self.images)
        ### END SOLUTION

    def __getitem__(self, index):
        ### BEGIN SOLUTION
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1).float() / 255
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
        ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "dataset-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** Two tiny images of 2x3 pixels whose values were worked out by hand
# (pixel `(h, w)` of image 1 has channel values `18 + 3 * (3h + w) + c`), then the real images
# against torchvision's own conversion.

# %% nbgrader={"grade": false, "grade_id": "dataset-check", "locked": true, "schema_version": 3, "solution": false}
tiny = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3)  # 2 images, H=2, W=3, C=3
tiny_labels = np.array([7, 1])
with checks.explain_errors("CifarArrayDataset"):
    tiny_set = CifarArrayDataset(tiny, tiny_labels)
    tiny_len = len(tiny_set)
    tiny_image, tiny_label = tiny_set[1]
checks.check_true("len", tiny_len == 2, f"len(dataset) should be the number of images, 2, got {tiny_len}."
                  + (" NumPy's .size is the number of ELEMENTS of the array: use len(self.images) (or .shape[0])."
                     if tiny_len == tiny.size else ""))
tiny_shape = tuple(getattr(tiny_image, "shape", ()))
checks.check_true("channels first", tiny_shape not in [(2, 3, 3), (3, 3, 2)],
                  f"the image has shape {tiny_shape}, expected (C, H, W) = (3, 2, 3): "
                  + ("the channels are still last (H, W, C): move them to the front with permute(2, 0, 1)."
                     if tiny_shape == (2, 3, 3) else
                     "height and width are swapped, (C, W, H) (permute(2, 1, 0) or transpose(0, 2)): move the "
                     "channels to the front and keep the order of the others, permute(2, 0, 1)."), quiet=True)
checks.check_tensor("image 1", tiny_image, shape=(3, 2, 3), dtype=torch.float32)
expected_image = np.array([[[18, 21, 24], [27, 30, 33]],
                           [[19, 22, 25], [28, 31, 34]],
                           [[20, 23, 26], [29, 32, 35]]]) / 255
checks.check_close(
    "image 1 values", tiny_image, expected_image, rtol=1e-6,
    mistakes={"view/reshape instead of permute: the shape is right but the pixels are scrambled":
                  np.arange(18, 36).reshape(3, 2, 3) / 255,
              "pixels not scaled to [0, 1]: divide by 255": expected_image * 255},
)
float_label = isinstance(tiny_label, float) or (torch.is_tensor(tiny_label) and tiny_label.is_floating_point())
integer_label = isinstance(tiny_label, int | np.integer) or (
    torch.is_tensor(tiny_label) and tiny_label.numel() == 1 and not float_label and not tiny_label.is_complex())
checks.check_true("label 1", integer_label and int(tiny_label) == 1,
                  f"expected the integer 1, got {tiny_label!r}"
                  + (": a float label. Class indices are integers: return int(label) (CrossEntropyLoss wants "
                     "int64 class indices)." if float_label else "."))
with checks.explain_errors("CifarArrayDataset with a transform"):
    shifted_image, _ = CifarArrayDataset(tiny, tiny_labels, transform=lambda t: t - 0.5)[1]
checks.check_close("transform applied to the [0, 1] image", shifted_image, expected_image - 0.5, rtol=1e-6,
                   mistakes={"the transform was applied to the uint8 image, before scaling to [0, 1]: scale "
                             "first, then transform": (expected_image * 255 - 0.5) / 255})

to_float = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])  # torchvision's way
with checks.explain_errors("CifarArrayDataset on the CIFAR-10 arrays"):
    real_image = CifarArrayDataset(images_np, labels_np)[0][0]
checks.check_close("real image 0 vs torchvision", real_image, to_float(train_set[0][0]), rtol=1e-6)

# %% nbgrader={"grade": true, "grade_id": "test-dataset", "locked": true, "points": 3, "schema_version": 3, "solution": false}
# Graded: the Dataset (hidden tests: other sizes, a non-square image, a transform, a DataLoader).
_ds = CifarArrayDataset(tiny, tiny_labels)
assert len(_ds) == 2, f"len should be 2, got {len(_ds)}"
checks.check_shape("image", _ds[0][0], (3, 2, 3), quiet=True)
### BEGIN HIDDEN TESTS
_rng = np.random.default_rng(808)
_imgs = _rng.integers(0, 256, size=(5, 4, 6, 3), dtype=np.uint8)
_labs = _rng.integers(0, 10, size=5)
_chw = torch.from_numpy(_imgs).permute(0, 3, 1, 2).double() / 255  # the expected images, channels first
_ds = CifarArrayDataset(_imgs, _labs)
assert len(_ds) == 5, "len should be the number of images"
for _i in range(5):
    _x, _y = _ds[_i]
    checks.check_tensor("hidden image", _x, shape=(3, 4, 6), dtype=torch.float32, quiet=True)
    checks.check_close("hidden image", _x, _chw[_i], rtol=1e-6, quiet=True)
    assert int(_y) == int(_labs[_i]) and not isinstance(_y, float), "the label should be the class index, an integer"
_seen = []
_ds = CifarArrayDataset(_imgs, _labs, transform=lambda t: (_seen.append(t.clone()), t * 2)[1])
_x, _ = _ds[3]
assert len(_seen) == 1, "the transform should be applied exactly once per sample"
checks.check_close("transform input", _seen[0], _chw[3], rtol=1e-6, quiet=True)
checks.check_close("transform output", _x, 2 * _chw[3], rtol=1e-6, quiet=True)


def _first_batch(dataset_class, images, labels):
    """The first batch of a real DataLoader over the student's Dataset, both in the kernel."""
    from torch.utils.data import DataLoader

    return next(iter(DataLoader(dataset_class(images, labels), batch_size=5)))


_xb, _yb = checks.run_in_kernel(_first_batch, CifarArrayDataset, _imgs, _labs)
checks.check_tensor("hidden batch", _xb, shape=(5, 3, 4, 6), dtype=torch.float32, quiet=True)
checks.check_tensor("hidden labels", _yb, shape=(5,), dtype=torch.int64, quiet=True)
checks.check_close("hidden batch", _xb, _chw, rtol=1e-6, quiet=True)
checks.check_close("hidden labels", _yb, _labs, quiet=True)
### END HIDDEN TESTS
checks.passed("CifarArrayDataset")

# %% [markdown] nbgrader={"grade": false, "grade_id": "loader-md", "locked": true, "schema_version": 3, "solution": false}
# ## `DataLoader` and `TensorDataset`
#
# `DataLoader(dataset, batch_size=64, shuffle=True)` turns a data set into an iterable of
# batches. Each `for` loop over it is one epoch:
#
# * `batch_size`: samples per batch; the last batch is smaller unless `drop_last=True`.
# * `shuffle=True`: a new random order every epoch (for training); `False` keeps the data
#   set's order (for evaluation, where the order does not matter and reproducibility does).
# * `drop_last=True`: drop the final incomplete batch, so every training step sees the same
#   batch size (a batch of 3 gives noisy BatchNorm statistics). Never drop evaluation data.
# * `num_workers=k`: `k` worker processes call `__getitem__` in parallel. It pays off when
#   per-sample work dominates (decoding JPEGs, PIL transforms); starting the workers costs
#   time every epoch (`persistent_workers=True` keeps them alive). On Windows and macOS the
#   workers are *spawned*, so a `Dataset` class must be importable from a `.py` file, not
#   defined in a notebook.
# * `pin_memory=True`: puts batches in page-locked host memory, which makes copies to a CUDA
#   GPU faster and lets `.to(device, non_blocking=True)` overlap them with compute. Without
#   CUDA it does nothing useful, so ask for it only when CUDA is present.
#
# When the whole data set already is a tensor, `TensorDataset(x, y)` is all the `Dataset`
# you need: `tensor_set[i]` is `(x[i], y[i])`.

# %% nbgrader={"grade": false, "grade_id": "loader-demo", "locked": true, "schema_version": 3, "solution": false}
array_set = CifarArrayDataset(images_np, labels_np)
loader = DataLoader(array_set, batch_size=64, shuffle=True)
x_batch, y_batch = next(iter(loader))
print(f"one batch: x {tuple(x_batch.shape)} {x_batch.dtype}, y {tuple(y_batch.shape)} {y_batch.dtype}")
print(f"{len(array_set)} images in batches of 64: {len(loader)} batches, the last one has "
      f"{len(array_set) % 64 or 64} images; with drop_last=True: "
      f"{len(DataLoader(array_set, batch_size=64, drop_last=True))} batches")
first_labels = [next(iter(loader))[1][:8].tolist() for _ in range(2)]
print(f"first labels of two epochs with shuffle=True: {first_labels[0]} / {first_labels[1]}")

images_u8 = torch.from_numpy(images_np).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32) uint8
labels_t = torch.from_numpy(labels_np).long()
tensor_set = TensorDataset(images_u8, labels_t)
print(f"TensorDataset: {len(tensor_set)} samples, tensor_set[0] = "
      f"({tuple(tensor_set[0][0].shape)} {tensor_set[0][0].dtype}, {tensor_set[0][1]!r})")
print(f"memory: the uint8 tensor holds {images_u8.numel() / 1e6:.1f} MB; as float32 it would be "
      f"{4 * images_u8.numel() / 1e6:.1f} MB")

# %% [markdown] nbgrader={"grade": false, "grade_id": "stats-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 2 · Normalisation statistics (2 points)
#
# Networks train best on inputs with zero mean and unit variance per channel. Implement
# `channel_stats(images)`: for uint8 images `(N, C, H, W)`, the mean and standard deviation
# of each channel **over all pixels of all images**, on the `[0, 1]` scale (divide by 255).
# Return two float32 tensors of shape `(C,)`.
#
# Reduce over dimensions `(0, 2, 3)` in one go. The average of per-image standard deviations
# is *not* the standard deviation of the data set: it ignores how much images differ from
# each other. Compute in float64 and convert at the end; float32 sums over millions of
# pixels lose digits.

# %% nbgrader={"grade": false, "grade_id": "stats", "locked": false, "schema_version": 3, "solution": true}
def channel_stats(images):
    """Per-channel (mean, std) of uint8 images (N, C, H, W) on the [0, 1] scale, float32 (C,)."""
    ### BEGIN SOLUTION
    x = images.to(torch.float64) / 255
    return x.mean(dim=(0, 2, 3)).float(), x.std(dim=(0, 2, 3)).float()
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "stats-check", "locked": true, "schema_version": 3, "solution": false}
# Two 2x2 images: channel 0 black in both, channel 1 white in both, channel 2 black in the
# first image and white in the second. By hand: means (0, 1, 0.5), stds (0, 0, about 0.53).
stats_images = torch.zeros(2, 3, 2, 2, dtype=torch.uint8)
stats_images[:, 1] = 255
stats_images[1, 2] = 255
with checks.explain_errors("channel_stats"):
    stats_mean, stats_std = channel_stats(stats_images)
for what, value in [("mean", stats_mean), ("std", stats_std)]:
    checks.check_true(f"one {what} per channel", tuple(getattr(value, "shape", ())) != (2, 3),
                      f"the {what} has shape (2, 3), one value per image and channel: the batch dimension was "
                      "not reduced. Reduce over dimensions (0, 2, 3) in one go.", quiet=True)
checks.check_tensor("mean", stats_mean, shape=(3,), dtype=torch.float32)
checks.check_close("mean", stats_mean, [0.0, 1.0, 0.5], atol=1e-6,
                   mistakes={"pixels not scaled to [0, 1]: divide by 255": [0.0, 255.0, 127.5]})
# torch.std divides by n - 1 (0.535 here); dividing by n gives 0.5. On millions of pixels the two agree.
checks.check_close("std", stats_std, [0.0, 0.0, np.sqrt(2 / 7)], atol=0.04,
                   mistakes={"std averaged over images (mean of per-image stds), not over all pixels": [0.0, 0.0, 0.0],
                             "pixels not scaled to [0, 1]: divide by 255": [0.0, 0.0, 255 * np.sqrt(2 / 7)]},
                   hint="the standard deviation over all 8 values (0, 0, 0, 0, 1, 1, 1, 1) of channel 2.")
with checks.explain_errors("channel_stats on the CIFAR-10 images"):
    real_mean, real_std = channel_stats(images_u8)
print(f"on {len(images_u8)} CIFAR-10 training images: mean {real_mean.numpy().round(4)}, std {real_std.numpy().round(4)}")
checks.check_close("close to the published CIFAR-10 statistics", real_mean, cifar.MEAN, atol=0.01)

# %% nbgrader={"grade": true, "grade_id": "test-stats", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: channel statistics (hidden tests: other shapes, images of different brightness).
_m, _s = channel_stats(stats_images)
checks.check_close("mean", _m, [0.0, 1.0, 0.5], atol=1e-6, quiet=True)
### BEGIN HIDDEN TESTS
_gen = torch.Generator().manual_seed(88)
for _shape in [(40, 3, 16, 16), (7, 2, 30, 50), (300, 1, 8, 4)]:
    _imgs = torch.randint(0, 128, _shape, generator=_gen, dtype=torch.uint8)
    _imgs[::2] += 120  # every other image much brighter: per-image stds are far too small
    _ref = _imgs.double() / 255
    _m, _s = channel_stats(_imgs)
    checks.check_tensor("hidden mean", _m, shape=(_shape[1],), dtype=torch.float32, quiet=True)
    checks.check_tensor("hidden std", _s, shape=(_shape[1],), dtype=torch.float32, quiet=True)
    checks.check_close("hidden mean", _m, _ref.mean(dim=(0, 2, 3)), rtol=1e-4, quiet=True)
    checks.check_close("hidden std", _s, _ref.std(dim=(0, 2, 3)), rtol=1e-3, quiet=True)
### END HIDDEN TESTS
checks.passed("channel_stats")

# %% [markdown] nbgrader={"grade": false, "grade_id": "split-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 3 · A validation split and its loaders (3 points)
#
# The test set is for the very end. To choose learning rates, epochs and architectures we
# hold out part of the *training* set as a validation set. `torch.utils.data.random_split`
# does it; pass it a `torch.Generator` seeded with `seed`, so the split is the same every
# time the notebook runs (and on every machine). Without one it draws from the global random
# state, and each run validates on different images: results stop being comparable, and
# reloading a checkpoint quietly mixes validation images into training.
#
# Implement `make_loaders(dataset, val_fraction, batch_size, seed=0)` returning
# `(train_loader, val_loader)`:
# * the validation part has `int(len(dataset) * val_fraction)` samples, the training part the rest;
# * the training loader shuffles every epoch and drops the last incomplete batch;
# * the validation loader keeps a fixed order and keeps every sample (no shuffle, no drop);
# * both use `pin_memory=True` when, and only when, CUDA is available.

# %% nbgrader={"grade": false, "grade_id": "split", "locked": false, "schema_version": 3, "solution": true}
def make_loaders(dataset, val_fraction, batch_size, seed=0):
    """(train_loader, val_loader) over a seeded random split of dataset."""
    ### BEGIN SOLUTION
    n_val = int(len(dataset) * val_fraction)
    generator = torch.Generator().manual_seed(seed)
    train_part, val_part = random_split(dataset, [len(dataset) - n_val, n_val], generator=generator)
    pin = torch.cuda.is_available()
    train_loader = DataLoader(train_part, batch_size=batch_size, shuffle=True, drop_last=True, pin_memory=pin)
    val_loader = DataLoader(val_part, batch_size=batch_size, shuffle=False, drop_last=False, pin_memory=pin)
    return train_loader, val_loader
    ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "split-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check** on a data set of the numbers 0 to 102, so every sample says who it is.

# %% nbgrader={"grade": false, "grade_id": "split-check", "locked": true, "schema_version": 3, "solution": false}
def loader_items(loader):
    """Every sample id a loader yields, in order, and the batch sizes."""
    batches = [batch[0] for batch in loader]
    return [int(i) for b in batches for i in b], [len(b) for b in batches]


numbers = TensorDataset(torch.arange(103))
with checks.explain_errors("make_loaders"):
    tl, vl = make_loaders(numbers, val_fraction=0.2, batch_size=16, seed=0)
    train_ids, train_sizes = loader_items(tl)
    val_ids, val_sizes = loader_items(vl)
split_sizes = (len(tl.dataset), len(vl.dataset))
checks.check_true("split sizes", split_sizes == (83, 20),
                  f"expected 83 training and 20 validation samples, got {split_sizes[0]} and {split_sizes[1]}."
                  + (" The parts are swapped: random_split returns them in the order of the lengths you pass."
                     if split_sizes == (20, 83) else
                     " The validation part has int(len(dataset) * val_fraction) = int(20.6) = 20 samples: int() "
                     "rounds down, round() gives 21." if split_sizes == (82, 21) else ""))
checks.check_true("training batches", train_sizes == [16] * 5,
                  f"the training loader should give 5 full batches of 16 (drop_last=True), got {train_sizes}.")
checks.check_true("validation keeps every sample", sorted(val_sizes) == [4, 16],
                  f"the validation loader should give batches of 16 and 4, got {val_sizes}: "
                  "did you drop the last batch? Evaluation must see every sample.")
checks.check_true("disjoint parts", not set(train_ids) & set(val_ids),
                  "some samples are in both the training and the validation part.")
checks.check_true("validation order is fixed", loader_items(vl)[0] == val_ids,
                  "two passes over the validation loader gave different orders: use shuffle=False for evaluation.")
checks.check_true("training order is shuffled", loader_items(tl)[0] != train_ids,
                  "two epochs of the training loader gave the same order: use shuffle=True for training.")
checks.check_true("same seed, same split", loader_items(make_loaders(numbers, 0.2, 16, seed=0)[1])[0] == val_ids,
                  "calling make_loaders twice with seed=0 gave different validation sets: pass "
                  "generator=torch.Generator().manual_seed(seed) to random_split.")
checks.check_true("another seed, another split",
                  sorted(loader_items(make_loaders(numbers, 0.2, 16, seed=1)[1])[0]) != sorted(val_ids),
                  "seed=1 gave the same validation set as seed=0: the seed argument is ignored. Seed the "
                  "generator with it, torch.Generator().manual_seed(seed).")
checks.check_true("pin_memory only with CUDA", tl.pin_memory == vl.pin_memory == torch.cuda.is_available(),
                  "pin_memory should be True exactly when CUDA is available (torch.cuda.is_available()).")

# %% nbgrader={"grade": true, "grade_id": "test-loaders", "locked": true, "points": 3, "schema_version": 3, "solution": false}
# Graded: make_loaders (hidden tests: other sizes, fractions and seeds).
_tl, _vl = make_loaders(numbers, 0.2, 16, seed=0)
assert len(_vl.dataset) == 20, f"expected 20 validation samples, got {len(_vl.dataset)}"
### BEGIN HIDDEN TESTS
def _observe(make_loaders, n, val_fraction, batch_size, seed):
    """make_loaders on the numbers 0, 10, 20, ... (built in the kernel): what its loaders yield."""
    from torch.utils.data import TensorDataset

    def items(loader):  # every sample of one pass, in order, and the batch sizes
        batches = [batch[0] for batch in loader]
        return [int(i) for b in batches for i in b], [len(b) for b in batches]

    data = TensorDataset(torch.arange(n) * 10)
    train_loader, val_loader = make_loaders(data, val_fraction, batch_size, seed=seed)
    seen = {
        "sizes": (len(train_loader.dataset), len(val_loader.dataset)),
        "parts": [int(d[0]) for d in train_loader.dataset] + [int(d[0]) for d in val_loader.dataset],
        "train": items(train_loader),
        "val": items(val_loader),
        "val again": items(val_loader)[0],
        "train again": [items(train_loader)[0] for _ in range(3)],
        "pin_memory": (train_loader.pin_memory, val_loader.pin_memory, torch.cuda.is_available()),
        "val, same seed": items(make_loaders(data, val_fraction, batch_size, seed=seed)[1])[0],
    }
    torch.manual_seed(seed + 1)  # the split must not depend on the global random state
    seen["val, global RNG reseeded"] = items(make_loaders(data, val_fraction, batch_size, seed=seed)[1])[0]
    return seen


for _n, _frac, _bs, _seed in [(50, 0.1, 8, 3), (64, 0.25, 10, 11), (9, 0.5, 4, 0)]:
    _seen = checks.run_in_kernel(_observe, make_loaders, _n, _frac, _bs, _seed)
    _n_val = int(_n * _frac)
    (_t_ids, _t_sizes), (_v_ids, _v_sizes) = _seen["train"], _seen["val"]
    assert tuple(_seen["sizes"]) == (_n - _n_val, _n_val), "wrong split sizes"
    assert _t_sizes == [_bs] * ((_n - _n_val) // _bs), "training batches should all be full (drop_last=True)"
    assert sum(_v_sizes) == _n_val, "the validation loader lost samples"
    assert sorted(_seen["parts"]) == list(range(0, 10 * _n, 10)), "the two parts together must hold every sample exactly once"
    assert not set(_t_ids) & set(_v_ids), "training and validation parts overlap"
    assert _seen["val again"] == _v_ids, "the validation order changed between passes"
    assert _seen["train again"] != [_t_ids] * 3, "the training loader does not shuffle"
    assert _seen["val, same seed"] == _v_ids, "the split is not reproducible"
    assert _seen["val, global RNG reseeded"] == _v_ids, "the split uses the global RNG"
    _pin_train, _pin_val, _cuda = _seen["pin_memory"]
    assert _pin_train == _pin_val == _cuda, "pin_memory only with CUDA"
_v1 = checks.run_in_kernel(_observe, make_loaders, 200, 0.5, 10, 1)["val"][0]
_v2 = checks.run_in_kernel(_observe, make_loaders, 200, 0.5, 10, 2)["val"][0]
assert _v1 != _v2, "different seeds should give different splits"
### END HIDDEN TESTS
checks.passed("make_loaders")

# %% [markdown] nbgrader={"grade": false, "grade_id": "split-use-md", "locked": true, "schema_version": 3, "solution": false}
# Now on CIFAR-10: 10% of our images for validation, and the normalisation statistics from
# the **training part only**. Statistics computed on validation or test images leak
# information about them into training, a small but real form of cheating.

# %% nbgrader={"grade": false, "grade_id": "split-use", "locked": true, "schema_version": 3, "solution": false}
BATCH_SIZE = 128
train_loader, val_loader = make_loaders(tensor_set, val_fraction=0.1, batch_size=BATCH_SIZE, seed=config.seed)
train_indices = train_loader.dataset.indices  # random_split returns Subsets that know their indices
mean, std = channel_stats(images_u8[train_indices])
print(f"{len(train_loader.dataset)} training / {len(val_loader.dataset)} validation images; "
      f"{len(train_loader)} training batches of {BATCH_SIZE}")
print(f"training-part statistics: mean {mean.numpy().round(4)}, std {std.numpy().round(4)}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "device-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 4 · A loader that delivers batches ready on the device (2 points)
#
# Our loaders yield uint8 images on the CPU. The model wants normalised float32 on its
# device. Rather than repeating `x = x.to(device)...` in every loop, wrap the loader.
# Moving the **uint8** batch first and converting on the device sends a quarter of the bytes
# of float32 over the bus, and lets a GPU do the arithmetic.
#
# Complete `DeviceLoader(loader, device, preprocess=None)`:
# * iterating over it yields `(x, y)` with **both** moved to `device` (use `non_blocking=True`,
#   which overlaps the copy with compute when memory is pinned), then `x = preprocess(x)` if
#   `preprocess` is given;
# * `len()` is the number of batches of the wrapped loader;
# * it can be iterated again and again (one pass per epoch). Write `__iter__` as a generator
#   (a method with `yield`): every call starts a fresh pass. Creating one iterator in
#   `__init__` and returning it from `__iter__` gives one epoch and then nothing.

# %% nbgrader={"grade": false, "grade_id": "device-loader", "locked": false, "schema_version": 3, "solution": true}
class DeviceLoader:
    """Wraps a loader of (x, y) batches: moves both to device, then applies preprocess to x."""

    def __init__(self, loader, device, preprocess=None):
        ### BEGIN SOLUTION
        self.loader = loader
        self.device = device
        self.preprocess = preprocess
        ### END SOLUTION

    def __len__(self):
        ### BEGIN SOLUTION
        return len(self.loader)
        ### END SOLUTION

    def __iter__(self):
        ### BEGIN SOLUTION
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            if self.preprocess is not None:
                x = self.preprocess(x)
            yield x, y
        ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "device-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check.** `len` on a real `DataLoader` (6 samples in batches of 4), two epochs over a
# list of batches, then the `meta` device: it holds shapes and dtypes but no data, so moving
# to it costs nothing, and we can check "is everything on the device, and did preprocess run
# there?" even on a machine without a GPU.

# %% nbgrader={"grade": false, "grade_id": "device-check", "locked": true, "schema_version": 3, "solution": false}
six_samples = DataLoader(TensorDataset(torch.zeros(6, 2, dtype=torch.uint8), torch.arange(6)), batch_size=4)
with checks.explain_errors("DeviceLoader"):
    batches_len = len(DeviceLoader(six_samples, torch.device("cpu")))
checks.check_true("len counts batches", batches_len == 2,
                  f"6 samples in batches of 4 are 2 batches, but len(DeviceLoader) is {batches_len}"
                  + (": that is the number of samples, len(loader.dataset). Return len(self.loader)."
                     if batches_len == 6 else "."))
three_batches = [(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8), torch.tensor([1, 2])) for _ in range(3)]
with checks.explain_errors("DeviceLoader"):
    wrapped = DeviceLoader(three_batches, torch.device("cpu"), preprocess=lambda x: x.float() / 255)
    wrapped_len = len(wrapped)
    first_epoch, second_epoch = list(wrapped), list(wrapped)
checks.check_true("len", wrapped_len == 3, f"len(DeviceLoader) should be the wrapped loader's 3, got {wrapped_len}.")
checks.check_true("two epochs", len(first_epoch) == len(second_epoch) == 3,
                  f"the first pass gave {len(first_epoch)} batches and the second {len(second_epoch)}: "
                  "__iter__ must start a fresh pass each time (write it as a generator with `yield`).")
checks.check_true("preprocess applied", first_epoch[0][0].dtype != torch.uint8,
                  "x is still the uint8 batch: preprocess was not applied. Call x = self.preprocess(x) when one "
                  "is given.")
checks.check_tensor("preprocessed x", first_epoch[0][0], shape=(2, 3, 4, 4), dtype=torch.float32)
checks.check_close("preprocessed x", first_epoch[0][0], torch.ones(2, 3, 4, 4))
preprocess_devices = []


def note_device(x):
    """A preprocess step that notes where it ran."""
    preprocess_devices.append(x.device.type)
    return x.float() / 255


with checks.explain_errors("DeviceLoader to another device"):
    on_meta = next(iter(DeviceLoader(three_batches, torch.device("meta"))))
    on_meta_preprocessed = next(iter(DeviceLoader(three_batches, torch.device("meta"), preprocess=note_device)))
checks.check_true("x on the device", on_meta[0].device.type == "meta",
                  f"x stayed on {on_meta[0].device}. tensor.to() is not in place: it returns the moved tensor, "
                  "so keep the result, x = x.to(device, non_blocking=True).")
checks.check_true("y on the device", on_meta[1].device.type == "meta",
                  f"y stayed on {on_meta[1].device}: move the labels too, or the loss will fail with "
                  "'tensors on different devices' on a GPU.")
checks.check_true("preprocess on the device", preprocess_devices == ["meta"],
                  f"preprocess ran on {preprocess_devices}: it ran before the move. Move x first, then "
                  "preprocess it, so the arithmetic runs on the device (and the bus carries uint8).")

# %% nbgrader={"grade": true, "grade_id": "test-device-loader", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: DeviceLoader (hidden tests: a real DataLoader, preprocess on the device, several epochs).
assert len(DeviceLoader(three_batches, torch.device("cpu"))) == 3, "len should be the number of batches of the loader"
### BEGIN HIDDEN TESTS
def _epochs(loader_class, device, epochs):
    """DeviceLoader over a real DataLoader (both in the kernel), with a preprocess that records its input's device."""
    from torch.utils.data import DataLoader, TensorDataset

    base = DataLoader(TensorDataset(torch.arange(24, dtype=torch.uint8).view(6, 4), torch.arange(6)), batch_size=4)
    calls = []

    def preprocess(x):
        calls.append(x.device.type)
        return x.float() * 2

    wrapped = loader_class(base, device, preprocess=preprocess)
    passes = [[(x.device.type, y.device.type, x.dtype) for x, y in wrapped] for _ in range(epochs)]
    return len(wrapped), passes, calls, list(loader_class(base, torch.device("cpu")))


_len, _passes, _calls, _plain = checks.run_in_kernel(_epochs, DeviceLoader, torch.device("meta"), 3)
assert _len == 2, "len should be the number of batches of the wrapped loader"
for _batches in _passes:
    assert len(_batches) == 2, "every epoch should give every batch: __iter__ must start a fresh pass"
    for _x_device, _y_device, _x_dtype in _batches:
        assert _x_device == "meta" and _y_device == "meta", "x and y must both be moved to the device"
        assert _x_dtype == torch.float32, "preprocess was not applied"
assert _calls == ["meta"] * 6, "preprocess should run once per batch, on the device"
assert torch.equal(_plain[1][0], torch.arange(16, 24, dtype=torch.uint8).view(2, 4)), "without preprocess x must be unchanged"
assert torch.equal(_plain[1][1], torch.tensor([4, 5])), "labels must be unchanged"
### END HIDDEN TESTS
checks.passed("DeviceLoader")

# %% [markdown] nbgrader={"grade": false, "grade_id": "transforms-md", "locked": true, "schema_version": 3, "solution": false}
# ## torchvision transforms
#
# `torchvision.transforms.v2` holds the standard steps as small callable objects chained
# with `v2.Compose`. For CIFAR-10 the usual evaluation pipeline turns a PIL image into a
# normalised float tensor; the training pipeline adds **augmentation**: a random crop of the
# image padded by 4 pixels (small shifts) and a random horizontal flip. Each epoch then sees
# slightly different versions of every image, which fights overfitting.

# %% nbgrader={"grade": false, "grade_id": "transforms", "locked": true, "schema_version": 3, "solution": false}
eval_transform = v2.Compose([
    v2.ToImage(),                           # PIL image -> uint8 tensor (C, H, W)
    v2.ToDtype(torch.float32, scale=True),  # -> float32 in [0, 1]
    v2.Normalize(mean.tolist(), std.tolist()),
])
train_transform = v2.Compose([
    v2.ToImage(),
    v2.RandomCrop(32, padding=4, padding_mode="reflect"),
    v2.RandomHorizontalFlip(),
    v2.ToDtype(torch.float32, scale=True),
    v2.Normalize(mean.tolist(), std.tolist()),
])
pil_image = train_set[7][0]
views = torch.stack([v2.Compose(train_transform.transforms[:3])(pil_image) for _ in range(15)])
plt.figure(figsize=(8, 2.2))
plt.imshow(make_grid(torch.cat([v2.ToImage()(pil_image)[None], views]), nrow=8, padding=1).permute(1, 2, 0))
plt.title("an image and 15 random crops and flips of it")
plt.axis("off")
plt.show()
print("eval_transform(pil) ->", tuple(eval_transform(pil_image).shape), eval_transform(pil_image).dtype)

# %% [markdown] nbgrader={"grade": false, "grade_id": "batch-transforms-md", "locked": true, "schema_version": 3, "solution": false}
# v2 transforms also accept a whole batch `(N, C, H, W)`, but a random transform then draws
# **one** random choice for the whole batch: all 64 images are flipped, or none is. That
# is still augmentation, only far less varied. `course_utils.cifar.random_crop_flip` draws a
# shift and a coin flip per image, for a whole uint8 batch at once:

# %% nbgrader={"grade": false, "grade_id": "batch-transforms", "locked": true, "schema_version": 3, "solution": false}
batch = images_u8[:64]
flipped = v2.RandomHorizontalFlip()(batch)
per_image = cifar.random_crop_flip(batch, padding=0, generator=torch.Generator().manual_seed(0))
print(f"v2.RandomHorizontalFlip on a batch flipped {sum(torch.equal(f, b.flip(-1)) for f, b in zip(flipped, batch))} of 64 images")
print(f"cifar.random_crop_flip flipped {sum(torch.equal(f, b.flip(-1)) for f, b in zip(per_image, batch))} of 64 images")

# %% [markdown] nbgrader={"grade": false, "grade_id": "speed-md", "locked": true, "schema_version": 3, "solution": false}
# ## How fast is the pipeline?
#
# One epoch of data only, no model, five ways:
# 1. the classic: PIL images through `eval_transform`, one at a time, in a `DataLoader`;
# 2. the same with 2 worker processes;
# 3. the classic training pipeline (random crop and flip per PIL image);
# 4. preloaded uint8 tensors: slice a batch, normalise the whole batch at once
#    (`cifar.TensorLoader`, which is `DeviceLoader`'s idea with the indexing built in);
# 5. the same with per-image random crops and flips done on the whole batch.
#
# Timings depend on the machine and on what else runs on it: read them as orders of
# magnitude. The model's work per epoch is the same whichever pipeline feeds it.

# %% nbgrader={"grade": false, "grade_id": "speed", "locked": true, "schema_version": 3, "solution": false}
def time_epoch(loader):
    """Seconds for one full pass over loader, and the number of samples seen."""
    start = time.perf_counter()
    seen = 0
    for _, y in loader:
        seen += len(y)
    return time.perf_counter() - start, seen


def with_transform(dataset, transform):
    """A shallow copy of a torchvision data set with another transform (shares the image array)."""
    clone = copy.copy(dataset)
    clone.transform = transform
    return clone


N_SPEED = budget(full=50_000, fast=2_000)
subset = range(N_SPEED)
workers = min(2, os.cpu_count() or 1)
pipelines = {
    "PIL + ToTensor/Normalize, 0 workers": DataLoader(Subset(with_transform(train_set, eval_transform), subset), batch_size=256),
    f"PIL + ToTensor/Normalize, {workers} workers": DataLoader(
        Subset(with_transform(train_set, eval_transform), subset), batch_size=256, num_workers=workers),
    "PIL + crop/flip/Normalize, 0 workers": DataLoader(Subset(with_transform(train_set, train_transform), subset), batch_size=256),
    "uint8 tensor, normalise per batch": cifar.TensorLoader(images_u8[:N_SPEED], labels_t[:N_SPEED], 256, shuffle=True),
    "uint8 tensor, crop/flip/normalise per batch": cifar.TensorLoader(
        images_u8[:N_SPEED], labels_t[:N_SPEED], 256, shuffle=True, augment=True),
}
timings = {}
for name, pipeline in pipelines.items():
    seconds, seen = time_epoch(pipeline)
    timings[name] = seconds * 50_000 / seen
    print(f"{name:<46} {seconds:6.2f} s for {seen} images -> {timings[name]:6.2f} s per 50,000")

fig, ax = plt.subplots(figsize=(7, 2.8))
ax.barh(list(timings), list(timings.values()))
ax.set(xscale="log", xlabel="seconds per epoch of 50,000 images (log scale)", title="Data loading only")
ax.invert_yaxis()
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "speed-after-md", "locked": true, "schema_version": 3, "solution": false}
# Per-image work in Python (build a PIL image, convert, normalise; repeated 50,000 times) costs
# seconds per epoch; the same arithmetic on whole batches costs a fraction of a second. On a
# CPU with few cores workers help less than one hopes, since they compete with the training
# itself for the same cores. When the data set fits in memory, as CIFAR-10 does (150 MB as
# uint8), keep it as one uint8 tensor, on the GPU if there is one, and do the preprocessing
# on batches. Notebook 09 trains this way. When it does not fit (ImageNet), decoding JPEGs
# dominates, and worker processes (or GPU decoding) are the answer.

# %% [markdown] nbgrader={"grade": false, "grade_id": "logging-md", "locked": true, "schema_version": 3, "solution": false}
# ## Exercise 5 · A training epoch that logs to TensorBoard (2 points)
#
# `torch.utils.tensorboard.SummaryWriter(log_dir)` writes event files that the TensorBoard
# web app plots. `writer.add_scalar(tag, value, global_step)` records one point of the
# curve `tag`; the `global_step` is its x coordinate.
#
# Implement `train_one_epoch(model, loader, optimizer, loss_fn, writer, epoch)`: one pass
# over `loader` (forward, loss, `zero_grad`, `backward`, `step`), logging after every batch
# `writer.add_scalar("loss/train", loss_value, global_step)` with the loss as a Python float
# and `global_step = epoch * len(loader) + batch_index` (epochs count from 0). Return the
# mean of the batch losses. Logging with `batch_index` alone restarts the x axis every
# epoch: each epoch draws over the previous one and the curve turns into a zigzag.

# %% nbgrader={"grade": false, "grade_id": "train-epoch", "locked": false, "schema_version": 3, "solution": true}
def train_one_epoch(model, loader, optimizer, loss_fn, writer, epoch):
    """One epoch of training; logs every batch's loss at its global step; returns the mean loss."""
    model.train()
    losses = []
    ### BEGIN SOLUTION
    for batch_index, (x, y) in enumerate(loader):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        writer.add_scalar("loss/train", losses[-1], epoch * len(loader) + batch_index)
    ### END SOLUTION
    return sum(losses) / len(losses)


# %% [markdown] nbgrader={"grade": false, "grade_id": "train-epoch-check-md", "locked": true, "schema_version": 3, "solution": false}
# **Self-check** with a stand-in writer that only records the calls, two epochs of three
# batches; then two one-batch epochs of plain SGD whose steps we predict from gradients
# computed on a copy of the model (as in notebook 05).

# %% nbgrader={"grade": false, "grade_id": "train-epoch-check", "locked": true, "schema_version": 3, "solution": false}
torch.manual_seed(0)
rec_model = nn.Linear(4, 3)
rec_batches = [(torch.randn(5, 4), torch.randint(0, 3, (5,))) for _ in range(3)]
rec_writer = checks.RecordingWriter()  # SummaryWriter's add_scalar; records (tag, value, step), writes no files
rec_optimizer = torch.optim.SGD(rec_model.parameters(), lr=0.1)
rec_before = checks.param_snapshot(rec_model)
with checks.explain_errors("train_one_epoch"):
    rec_losses = [train_one_epoch(rec_model, rec_batches, rec_optimizer, nn.CrossEntropyLoss(), rec_writer, epoch)
                  for epoch in range(2)]
rec_steps = [step for _, _, step in rec_writer.calls]
checks.check_true("one point per batch", len(rec_writer.calls) == 6,
                  f"expected 6 add_scalar calls (2 epochs x 3 batches), got {len(rec_writer.calls)}.")
checks.check_true("tag", all(tag == "loss/train" for tag, _, _ in rec_writer.calls),
                  f"log under the tag 'loss/train', got {sorted({t for t, _, _ in rec_writer.calls})}.")
wrong_steps = {
    (0, 1, 2, 0, 1, 2): "The second epoch restarted at 0: use epoch * len(loader) + batch_index.",
    (0, 1, 2, 1, 2, 3): "epoch + batch_index moves one step per epoch: multiply, epoch * len(loader) + batch_index.",
    (0, 0, 0, 0, 1, 2): "epoch * batch_index is not a position: use epoch * len(loader) + batch_index.",
    (1, 2, 3, 4, 5, 6): "The steps start at 1: batch_index and epoch both count from 0.",
    (3, 4, 5, 6, 7, 8): "The first epoch starts at len(loader): epochs count from 0, (epoch + 1) is one too many.",
}
checks.check_true("global steps", rec_steps == list(range(6)),
                  f"the steps were {rec_steps}, expected [0, 1, 2, 3, 4, 5]. "
                  + wrong_steps.get(tuple(s if isinstance(s, int) else -1 for s in rec_steps), ""))
checks.check_true("values are Python floats", all(isinstance(v, float) for _, v, _ in rec_writer.calls),
                  "log loss.item(), a Python float, not the loss tensor.")
step_model = nn.Linear(4, 3)
step_optimizer = torch.optim.SGD(step_model.parameters(), lr=0.1)
one_batch = rec_batches[:1]
x1, y1 = one_batch[0]
w0, g1 = step_model.weight.detach().clone(), checks.grad_on_copy(step_model, nn.CrossEntropyLoss(), x1, y1).grad
with checks.explain_errors("train_one_epoch"):
    train_one_epoch(step_model, one_batch, step_optimizer, nn.CrossEntropyLoss(), checks.RecordingWriter(), 0)
    w1, g2 = step_model.weight.detach().clone(), checks.grad_on_copy(step_model, nn.CrossEntropyLoss(), x1, y1).grad
    train_one_epoch(step_model, one_batch, step_optimizer, nn.CrossEntropyLoss(), checks.RecordingWriter(), 1)
checks.check_close("weight after epoch 0 (one batch)", w1, w0 - 0.1 * g1, quiet=True,
                   mistakes={"the weights did not move: optimizer.step() is missing, or runs before backward()": w0})
checks.check_close("weight after epoch 1 (one batch)", step_model.weight, w1 - 0.1 * g2, quiet=True,
                   mistakes={"gradients never zeroed: backward() adds to .grad, so this step used g1 + g2. "
                             "Call optimizer.zero_grad() before loss.backward()": w1 - 0.1 * (g1 + g2)})
checks.check_updated_in_place("the model trained", rec_model, rec_before)
checks.check_true("mean loss returned", abs(rec_losses[1] - np.mean([v for _, v, _ in rec_writer.calls[3:]])) < 1e-6,
                  "train_one_epoch should return the mean of this epoch's batch losses.")

# %% nbgrader={"grade": true, "grade_id": "test-logging", "locked": true, "points": 2, "schema_version": 3, "solution": false}
# Graded: train_one_epoch (hidden tests: a later epoch, other sizes, values against a reference loop).
assert len(rec_writer.calls) == 6, "expected one add_scalar call per batch"
### BEGIN HIDDEN TESTS
def _logged_epoch(train_one_epoch, writer_class, state, batches, epoch):
    """One epoch in the kernel: a model loaded with state, SGD, and a writer that records add_scalar calls."""
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    model.load_state_dict(state)
    writer = writer_class()
    mean = train_one_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.05), nn.CrossEntropyLoss(),
                           writer, epoch)
    return writer.calls, mean, [p.detach().clone() for p in model.parameters()]


torch.manual_seed(123)
_ref = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
_batches = [(torch.randn(7, 6), torch.randint(0, 4, (7,))) for _ in range(4)]
_state = {name: value.clone() for name, value in _ref.state_dict().items()}
_calls, _mean, _params = checks.run_in_kernel(_logged_epoch, train_one_epoch, checks.RecordingWriter, _state, _batches, 3)
_opt = torch.optim.SGD(_ref.parameters(), lr=0.05)
_expected = []
for _x, _y in _batches:
    _loss = nn.functional.cross_entropy(_ref(_x), _y)
    _opt.zero_grad()
    _loss.backward()
    _opt.step()
    _expected.append(_loss.item())
assert [c[0] for c in _calls] == ["loss/train"] * 4, "log every batch under the tag loss/train"
assert [c[2] for c in _calls] == [12, 13, 14, 15], "epoch 3 of 4 batches should log at steps 12, 13, 14, 15"
assert all(isinstance(c[1], float) for c in _calls), "log the loss as a Python float (loss.item()), not a tensor"
checks.check_close("hidden logged losses", [float(c[1]) for c in _calls], _expected, rtol=1e-5, quiet=True)
checks.check_close("hidden mean loss", _mean, np.mean(_expected), rtol=1e-5, quiet=True)
assert len(_params) == 4, "the model's parameters"
for _p, _q in zip(_params, _ref.parameters()):
    checks.check_close("hidden parameters after the epoch", _p, _q, rtol=1e-5, atol=1e-7, quiet=True)
### END HIDDEN TESTS
checks.passed("train_one_epoch")

# %% [markdown] nbgrader={"grade": false, "grade_id": "tensorboard-md", "locked": true, "schema_version": 3, "solution": false}
# ## A logged run
#
# Everything together: the validation split, training-part statistics, batches preprocessed
# on the device (normalised, and for training randomly cropped and flipped, per image), a
# small convnet, and a `SummaryWriter` writing to a run folder this notebook names under
# `runs/` (git ignores it). Besides the training loss we log the validation loss and
# accuracy per epoch, a grid of training images (`add_image`) and the model graph
# (`add_graph`, which traces one forward pass).
#
# Note the order: the model moves to its device **before** the optimizer is built, so the
# optimizer holds the tensors that actually train.

# %% nbgrader={"grade": false, "grade_id": "tensorboard-run", "locked": true, "schema_version": 3, "solution": false}
def small_convnet():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),   # 16x16
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # 8x8
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


@torch.no_grad()
def validate(model, loader, loss_fn):
    """Mean loss and accuracy over every sample of loader, in eval mode."""
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        scores = model(x)
        total_loss += loss_fn(scores, y).item() * len(y)
        correct += (scores.argmax(dim=1) == y).sum().item()
        seen += len(y)
    return total_loss / seen, correct / seen


def augment_and_normalize(x):
    return cifar.normalize(cifar.random_crop_flip(x), mean, std)


fast_train = DeviceLoader(train_loader, device, preprocess=augment_and_normalize)
fast_val = DeviceLoader(val_loader, device, preprocess=lambda x: cifar.normalize(x, mean, std))

num_epochs = budget(full=5, fast=2)
RUN_DIR = Path("runs") / "08_data_pipeline" / time.strftime("small_convnet-%Y%m%d-%H%M%S")
writer = SummaryWriter(log_dir=str(RUN_DIR))
model = small_convnet().to(device)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
loss_fn = nn.CrossEntropyLoss()

example_x, _ = next(iter(fast_train))
writer.add_image("train/first_images", make_grid(images_u8[train_indices[:32]], nrow=8), 0)
with warnings.catch_warnings():  # add_graph uses torch.jit.trace, which warns that it is deprecated
    warnings.simplefilter("ignore")
    writer.add_graph(model, example_x[:2])

for epoch in tqdm(range(num_epochs), desc="epochs"):
    train_loss = train_one_epoch(model, fast_train, optimizer, loss_fn, writer, epoch)
    val_loss, val_acc = validate(model, fast_val, loss_fn)
    writer.add_scalar("loss/val", val_loss, (epoch + 1) * len(fast_train))
    writer.add_scalar("accuracy/val", val_acc, epoch + 1)
    print(f"epoch {epoch + 1}: train loss {train_loss:.3f}, val loss {val_loss:.3f}, val accuracy {val_acc:.1%}")
writer.close()
print(f"logged to {RUN_DIR}; chance level is 10%")

# %% [markdown] nbgrader={"grade": false, "grade_id": "readback-md", "locked": true, "schema_version": 3, "solution": false}
# ## What is in the run folder?
#
# To look at it, start TensorBoard from a terminal in this folder with
# `tensorboard --logdir runs` and open the address it prints, or inside Jupyter run
# `%load_ext tensorboard` and then `%tensorboard --logdir runs`. Each subfolder of `runs/`
# is one run; TensorBoard overlays their curves.
#
# Here we read the event file back with TensorBoard's own reader, to see that everything
# arrived and to plot the logged curve.

# %% nbgrader={"grade": false, "grade_id": "readback", "locked": true, "schema_version": 3, "solution": false}
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

events = EventAccumulator(str(RUN_DIR))
events.Reload()
tags = events.Tags()
print("scalars:", tags["scalars"], "| images:", tags["images"], "| graph:", tags["graph"])
train_points = events.Scalars("loss/train")
steps = [p.step for p in train_points]
checks.check_true("every batch logged", len(train_points) == num_epochs * len(fast_train),
                  f"{len(train_points)} points for {num_epochs} epochs of {len(fast_train)} batches.")
checks.check_true("steps increase", steps == sorted(set(steps)),
                  "the logged steps repeat or go backwards: the global step must keep growing across epochs.")

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(steps, [p.value for p in train_points], lw=0.8, label="training batches")
ax.plot([p.step for p in events.Scalars("loss/val")], [p.value for p in events.Scalars("loss/val")], "o-", label="validation")
ax.set(xlabel="global step (batches)", ylabel="cross-entropy", title="Read back from the TensorBoard event file")
ax.legend()
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "recap", "locked": true, "schema_version": 3, "solution": false}
# ## Recap
#
# * A `Dataset` is `__len__` plus `__getitem__`; the `DataLoader` batches, shuffles and
#   parallelises it. `TensorDataset` covers data that already is a tensor.
# * Training loaders shuffle and may drop the last batch; evaluation loaders do neither.
#   Split with a seeded generator, and compute statistics on the training part only.
# * Channels go first with `permute`, never `view`.
# * Pin memory and use `non_blocking=True` only where there is a CUDA device to copy to.
# * Per-image Python work is slow; when the data fits in memory, keep it as a uint8 tensor
#   and transform whole batches, on the device.
# * TensorBoard needs a growing `global_step`; name each run's folder so runs can be compared.
#
# **Further exercises** (not graded): time the PIL pipeline with `num_workers=2,
# persistent_workers=True` over three epochs; log a histogram of the first layer's weights
# each epoch with `writer.add_histogram`; start a second run with another learning rate and
# compare the two in TensorBoard.
