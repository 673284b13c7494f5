"""Seeding, device choice and the fast-mode switch."""

import random

import numpy as np
import pytest
import torch

from course_utils import runtime


def test_set_seed_makes_every_generator_repeat():
    """Does set_seed reproduce random, NumPy and torch draws?"""
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    runtime.set_seed(123)
    first = draw()
    runtime.set_seed(123)
    assert draw() == first
    runtime.set_seed(124)
    assert draw() != first


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("", False), ("0", False)])
def test_fast_mode_reads_course_fast(monkeypatch, value, expected):
    """Is COURSE_FAST read the same way everywhere?"""
    monkeypatch.setenv("COURSE_FAST", value)
    assert runtime.fast_mode() is expected
    assert runtime.budget(full=10, fast=1) == (1 if expected else 10)


def test_fast_mode_rejects_typos(monkeypatch):
    """Does a typo such as COURSE_FAST=ture fail loudly instead of running the full course?"""
    monkeypatch.setenv("COURSE_FAST", "ture")
    with pytest.raises(ValueError, match="COURSE_FAST"):
        runtime.fast_mode()


def test_get_device_falls_back_to_cpu_and_refuses_missing_cuda(monkeypatch):
    """Is CPU chosen without a GPU, and is a forced CUDA device refused clearly?"""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert runtime.get_device().type == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        runtime.get_device("cuda")


def test_setup_prints_its_choices(capsys):
    """Does setup print device, seed and mode in one line?"""
    config = runtime.setup(seed=5)
    out = capsys.readouterr().out
    assert "seed: 5" in out and f"device: {config.device}" in out and "mode:" in out
