"""Reproducibility, device choice and the fast/full mode switch.

Every notebook starts with :func:`setup`, which seeds everything, picks a device
and prints what it chose, so a student (and a grader log) can see at a glance
how the notebook ran.

Fast mode is one switch, the environment variable ``COURSE_FAST=1``. CI sets it
to shrink epochs and subsets; notebooks read it through :func:`fast_mode` and
:func:`budget` only, never through ``os.environ`` directly.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

__all__ = ["FAST_ENV", "RunConfig", "budget", "fast_mode", "get_device", "set_seed", "setup"]

FAST_ENV = "COURSE_FAST"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}

T = TypeVar("T")


def fast_mode() -> bool:
    """Return True when ``COURSE_FAST`` asks for the small CI-sized run.

    Raises ``ValueError`` for a value that is neither true-ish nor false-ish, so
    a typo such as ``COURSE_FAST=ture`` does not silently run the full course.
    """
    raw = os.environ.get(FAST_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(
        f"{FAST_ENV}={os.environ[FAST_ENV]!r} is not understood: "
        f"use {FAST_ENV}=1 for fast mode or unset it for the full run."
    )


def budget(full: T, fast: T) -> T:
    """Pick a size for the current mode: ``budget(full=20, fast=2)`` epochs."""
    return fast if fast_mode() else full


def set_seed(seed: int = 0, deterministic: bool = True) -> None:
    """Seed ``random``, NumPy and torch (CPU and every CUDA device).

    With ``deterministic=True`` cuDNN picks deterministic kernels and torch
    warns (rather than fails) on the few ops that have none.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic and torch.cuda.is_available():
        # Needed by cuBLAS for deterministic matmuls on CUDA >= 10.2.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def get_device(prefer: str | None = None) -> torch.device:
    """Return ``cuda`` when a GPU is available, else ``cpu``.

    ``prefer`` (or the ``COURSE_DEVICE`` environment variable) forces a device,
    e.g. ``"cpu"`` to reproduce a CPU run on a GPU machine.
    """
    choice = prefer or os.environ.get("COURSE_DEVICE")
    if choice:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"Device {choice!r} was requested but torch sees no CUDA GPU. "
                "Unset COURSE_DEVICE or pass prefer='cpu'."
            )
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class RunConfig:
    """What :func:`setup` chose for this notebook run."""

    seed: int
    device: torch.device
    fast: bool

    @property
    def mode(self) -> str:
        return "fast (COURSE_FAST=1)" if self.fast else "full"


def setup(seed: int = 0, *, quiet: bool = False) -> RunConfig:
    """Seed everything, pick the device and print the choices in one line."""
    set_seed(seed)
    config = RunConfig(seed=seed, device=get_device(), fast=fast_mode())
    if not quiet:
        gpu = f" ({torch.cuda.get_device_name(config.device)})" if config.device.type == "cuda" else ""
        print(
            f"device: {config.device}{gpu} | seed: {seed} | mode: {config.mode} | "
            f"torch {torch.__version__}"
        )
    return config
