"""course_utils.cifar: tensors from CIFAR-10, the batch loader and augmentation, ResNet9, fit.

Everything runs on small synthetic tensors in a few seconds; one test reads the real
offline copy when ``COURSE_DATA`` provides it, and two check that missing data gives the
clear :class:`~course_utils.data.DataNotFoundError` through the notebook-facing loader.
"""

from __future__ import annotations

import os
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import cifar, data

REAL_DATA = os.environ.get("COURSE_DATA")


def _images(n: int = 8, h: int = 6, w: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# --------------------------------------------------------------------------- augmentation


def test_random_crop_flip_is_a_reflect_padded_crop_or_its_mirror():
    """Is every augmented image a crop of the reflect-padded original, possibly mirrored?"""
    images = _images(16)
    out = cifar.random_crop_flip(images, padding=2, generator=torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = F.pad(images.float(), (2, 2, 2, 2), mode="reflect")
    for image, result in zip(padded, out.float(), strict=True):
        candidates = [image[:, dy:dy + 6, dx:dx + 7] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(c, result) or torch.equal(c.flip(2), result) for c in candidates)


def test_random_crop_flip_draws_per_image_and_is_reproducible():
    """Does each image get its own flip, and does a seeded generator repeat the draw?"""
    images = _images(64, 5, 5)
    flipped = cifar.random_crop_flip(images, padding=0, generator=torch.Generator().manual_seed(0))
    n_flipped = sum(torch.equal(f, i.flip(2)) for f, i in zip(flipped, images, strict=True))
    assert 10 < n_flipped < 54, f"{n_flipped} of 64 flipped: the flip should be drawn per image"
    again = cifar.random_crop_flip(images, padding=0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(flipped, again)


def test_normalize_matches_the_formula():
    images = _images(4)
    out = cifar.normalize(images, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    expected = (images.double() / 255 - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor(
        [0.5, 0.25, 1.0]
    ).view(1, 3, 1, 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- loader


def test_tensor_loader_batches_like_a_dataloader():
    """len, batch shapes and dtypes, drop_last, every sample once per epoch, a new shuffle each epoch."""
    images, labels = _images(10, 4, 4), torch.arange(10)
    loader = cifar.TensorLoader(images, labels, batch_size=4, shuffle=True, seed=3)
    assert len(loader) == 3 and loader.num_samples == 10
    epochs = [[y.tolist() for _, y in loader] for _ in range(3)]
    for epoch in epochs:
        assert [len(b) for b in epoch] == [4, 4, 2]
        assert sorted(sum(epoch, [])) == list(range(10))
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2], "shuffle=True must reshuffle every epoch"
    x, y = next(iter(loader))
    assert x.dtype == torch.float32 and x.shape == (4, 3, 4, 4) and y.dtype == torch.int64
    dropping = cifar.TensorLoader(images, labels, batch_size=4, drop_last=True)
    assert len(dropping) == 2 and dropping.num_samples == 8
    assert [y.tolist() for _, y in dropping] == [[0, 1, 2, 3], [4, 5, 6, 7]], "no shuffle: data set order"


def test_tensor_loader_is_reproducible_from_its_seed_and_pairs_images_with_labels():
    images = _images(12, 3, 3)
    labels = torch.arange(12)
    first = list(cifar.TensorLoader(images, labels, 5, shuffle=True, seed=7))
    second = list(cifar.TensorLoader(images, labels, 5, shuffle=True, seed=7))
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        torch.testing.assert_close(x1, cifar.normalize(images[y1]))


def test_tensor_loader_channels_last_and_device():
    loader = cifar.TensorLoader(_images(4, 8, 8), torch.zeros(4, dtype=torch.long), 2, channels_last=True,
                                augment=True, device="cpu")
    x, y = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert x.device.type == "cpu" and y.device.type == "cpu"


def test_tensor_loader_rejects_float_images_and_mismatched_labels():
    with pytest.raises(TypeError, match="uint8"):
        cifar.TensorLoader(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        cifar.TensorLoader(_images(3), torch.zeros(2, dtype=torch.long))


# --------------------------------------------------------------------------- model and training


def test_resnet9_shape_parameters_and_head():
    """About 0.41 M parameters at width 16; features + fc head, works channels-last."""
    model = cifar.ResNet9()
    assert sum(p.numel() for p in model.parameters()) == 412_954
    assert model.feature_dim == 128 and model.fc.in_features == 128
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)
    assert model.features(x).shape == (2, 128)
    model.eval()
    cl = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(cl(x.contiguous(memory_format=torch.channels_last)), model(x))
    assert cifar.ResNet9(num_classes=2, width=4)(x).shape == (2, 2)


def test_one_cycle_rises_then_falls_even_for_tiny_runs():
    for total in (1, 3, 40):
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler = cifar.one_cycle(optimizer, total)
        lrs = []
        for _ in range(total):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert lrs[0] == pytest.approx(0.04)
        assert max(lrs) <= 1.0 + 1e-9 and all(lr >= 0 for lr in lrs)
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 10 and lrs[-1] < 0.05


def _separable(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class (0 or 1) is their brightness: easy to learn."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = torch.randint(0, 100, (n, 3, 8, 8), generator=g, dtype=torch.uint8) + 150 * labels.view(-1, 1, 1, 1).to(
        torch.uint8
    )
    return images, labels


def test_fit_learns_and_logs_every_epoch():
    torch.manual_seed(0)
    images, labels = _separable(128)
    train_loader = cifar.TensorLoader(images, labels, 16, shuffle=True, drop_last=True)
    model = cifar.ResNet9(num_classes=2, width=2)
    lines: list[str] = []
    history = cifar.fit(model, train_loader, num_epochs=2, test_loader=cifar.TensorLoader(images, labels, 64),
                        progress=False, log=lines.append)
    assert [h.epoch for h in history] == [1, 2] and len(lines) == 2
    assert history[-1].test_acc > 0.8
    assert history[-1].seconds >= history[0].seconds > 0
    assert not any(h.stopped_early for h in history)


def test_fit_stops_at_the_time_limit():
    images, labels = _separable(512)
    loader = cifar.TensorLoader(images, labels, 16)
    start = time.perf_counter()
    history = cifar.fit(cifar.ResNet9(num_classes=2, width=4), loader, num_epochs=50, time_limit=0.2, progress=False,
                        log=None)
    assert history[-1].stopped_early and len(history) < 50
    assert time.perf_counter() - start < 30


def test_fit_needs_a_positive_num_epochs():
    images, labels = _separable(32)
    with pytest.raises(ValueError, match="num_epochs must be positive"):
        cifar.fit(cifar.ResNet9(num_classes=2, width=2), cifar.TensorLoader(images, labels, 16), num_epochs=0,
                  progress=False, log=None)


def test_evaluate_uses_eval_mode_no_grad_and_restores_the_mode():
    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[bool, bool]] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.append((self.training, torch.is_grad_enabled()))
            return F.one_hot(x[:, 0, 0, 0].long(), 3).float()

    x = torch.tensor([0, 1, 2, 2, 1], dtype=torch.float32).view(5, 1, 1, 1)
    y = torch.tensor([0, 1, 0, 2, 1])
    probe = Probe()
    probe.train()
    assert cifar.evaluate(probe, [(x[:3], y[:3]), (x[3:], y[3:])]) == pytest.approx(4 / 5)
    assert probe.seen == [(False, False), (False, False)] and probe.training
    preds, labels = cifar.predict(probe, [(x, y)])
    assert preds.tolist() == [0, 1, 2, 2, 1] and labels.tolist() == y.tolist()


# --------------------------------------------------------------------------- the fast recipe


def test_whiten_init_decorrelates_the_patches():
    """The first half of the filters maps 2x2 patches to uncorrelated unit-variance features."""
    x = cifar.normalize(_images(64, 12, 12)).add(torch.linspace(0, 1, 12))  # correlated pixels
    conv = nn.Conv2d(3, 24, kernel_size=2, bias=False)
    cifar.whiten_init(conv, x, eps=0.0)
    features = conv(x)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
    covariance = features.T @ features / len(features)
    assert torch.allclose(covariance, torch.eye(12, dtype=torch.float64), atol=1e-3)
    assert torch.equal(conv.weight[12:], -conv.weight[:12])
    with pytest.raises(ValueError, match="needs 24 output channels"):
        cifar.whiten_init(nn.Conv2d(3, 16, kernel_size=2), x)


def test_airnet_shape_frozen_parts_and_tta():
    model = cifar.AirNet(widths=(4, 8, 8)).eval()
    x = torch.randn(5, 3, 32, 32)
    assert model(x).shape == (5, 10)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "whiten.weight" in frozen and all("weight" in n for n in frozen)
    with torch.no_grad():
        assert torch.allclose(cifar.tta_scores(model, x, level=0), model(x))
        flipped = cifar.tta_scores(model, x.flip(-1), level=1)
        assert torch.allclose(cifar.tta_scores(model, x, level=1), flipped, atol=1e-5)  # mirror-symmetric
        assert cifar.tta_scores(model, x, level=2).shape == (5, 10)


def test_fit_air_learns_and_logs_every_epoch():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (512,), generator=g)
    images = (torch.randint(0, 100, (512, 3, 32, 32), generator=g) + 150 * labels.view(-1, 1, 1, 1)).to(torch.uint8)
    lines: list[str] = []
    model = cifar.AirNet(num_classes=2, widths=(4, 8, 8))
    history = cifar.fit_air(model, images, labels, 2, recipe=cifar.AirRecipe(batch_size=64),
                            test=(images[:128], labels[:128]), log=lines.append)
    assert [h.epoch for h in history] == [1, 2] and len(lines) == 2
    assert history[-1].test_acc > 0.9
    half = cifar.fit_air(cifar.AirNet(num_classes=2, widths=(4, 8, 8)), images, labels, 0.5,
                         recipe=cifar.AirRecipe(batch_size=64), log=None)
    assert len(half) == 1  # a fractional epoch stops after its share of the steps


# --------------------------------------------------------------------------- real data and missing data


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """No COURSE_DATA, an empty cache, and a network that fails at once."""
    monkeypatch.delenv("COURSE_DATA", raising=False)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable (simulated)")

    monkeypatch.setattr("torchvision.datasets.CIFAR10.download", offline)
    return tmp_path


def test_missing_cifar10_gives_the_clear_error_not_a_torchvision_traceback(no_data):
    with pytest.raises(data.DataNotFoundError) as err:
        cifar.load_tensors(train=False, download=False)
    message = str(err.value)
    assert "CIFAR-10" in message and "COURSE_DATA" in message and "course fetch" in message
    assert str(no_data / "cache" / "data" / "cifar-10-batches-py") in message


def test_missing_cifar10_with_a_failing_download_still_gives_the_clear_error(no_data):
    with pytest.raises(data.DataNotFoundError) as err:
        cifar.load_tensors(train=True)
    assert "download from" in str(err.value) and "simulated" in str(err.value)


@pytest.mark.skipif(not REAL_DATA, reason="COURSE_DATA does not point at the offline data sets")
def test_load_tensors_on_the_real_test_set(monkeypatch):
    monkeypatch.setenv("COURSE_DATA", REAL_DATA)
    images, labels = cifar.load_tensors(train=False, n=105, seed=1)
    assert images.shape == (105, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    assert sorted(torch.bincount(labels, minlength=10).tolist()) == [10] * 5 + [11] * 5, "stratified"
    again, _ = cifar.load_tensors(train=False, n=105, seed=1)
    assert torch.equal(images, again)
    full_images, full_labels = cifar.load_tensors(train=False)
    assert full_images.shape == (10_000, 3, 32, 32) and torch.bincount(full_labels).tolist() == [1000] * 10
