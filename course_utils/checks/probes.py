"""Probe models and recording stand-ins for the notebooks' self-checks and graded cells.

A check often needs a model whose answers it knows, or a stand-in for a library object that
notes how the student's code used it. They live here rather than in the notebooks so that the
student reads the check, not its scaffolding, and so that the grader's guard protects them
(every module of :mod:`course_utils.checks` is protected). Notebooks call them as
``checks.<name>``.

* :class:`RecordingMSE` - notebook 05, ``train_epochs``: the learning rate of every batch;
* :class:`CountingLinear` - notebook 07, ``train_dynamic``: a ``DynamicNet`` whose depths are known;
* :class:`RecordingWriter` - notebook 08, ``train_one_epoch``: TensorBoard's ``add_scalar`` calls;
* :class:`ProbeModel` and :func:`probe_batches` - notebook 09, ``check_accuracy``: known predictions;
* :class:`ModeRecorder` - notebook 10, ``train_model``: training mode and autograd at every call;
* :func:`grad_on_copy` - notebooks 05, 07, 08: the gradient the next step must use, without touching
  the model;
* :func:`parameter_copies` and :func:`with_new_parameter_objects` - drivers for
  :func:`course_utils.remote.run_in_kernel` (a function of the course is called by name in the kernel).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CountingLinear",
    "GradOnCopy",
    "ModeRecorder",
    "ProbeModel",
    "RecordingMSE",
    "RecordingWriter",
    "grad_on_copy",
    "parameter_copies",
    "probe_batches",
    "with_new_parameter_objects",
]


class RecordingMSE(nn.MSELoss):
    """``nn.MSELoss`` that records ``(learning rate, loss value)`` at every call.

    The learning rate is ``optimizer.param_groups[0]["lr"]`` when the loss is computed, i.e. the
    rate the batch trains with. Notebook 05 (``train_epochs``) checks with it that a ``StepLR``
    schedule steps once per epoch, after the optimizer, and that every batch is trained once.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        super().__init__()
        self.optimizer = optimizer
        self.calls: list[tuple[float, float]] = []

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = super().forward(input, target)
        self.calls.append((self.optimizer.param_groups[0]["lr"], loss.item()))
        return loss


class CountingLinear(nn.Linear):
    """A stand-in for notebook 07's ``DynamicNet``: one ``nn.Linear`` that reports a depth per call.

    ``forward(x, depth=None)`` has ``DynamicNet``'s signature, ignores ``depth`` and sets
    ``last_depth`` to 0, 1, ..., ``cycle - 1``, 0, ... call after call; ``calls`` counts the calls.
    Notebook 07 (``train_dynamic``) checks with it that the depth is read after the forward pass
    and that the steps are plain optimizer steps (the model is one linear layer).
    """

    def __init__(self, in_features: int, out_features: int, cycle: int = 4) -> None:
        super().__init__(in_features, out_features)
        self.cycle = cycle
        self.calls = 0
        self.last_depth: int | None = None

    def forward(self, input: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        self.last_depth = self.calls % self.cycle
        self.calls += 1
        return super().forward(input)


class RecordingWriter:
    """A stand-in for ``torch.utils.tensorboard.SummaryWriter`` that writes no files.

    ``add_scalar`` and ``add_scalars`` take SummaryWriter's arguments (keywords included) and
    record ``(tag, scalar_value, global_step)`` in ``calls``, one tuple per scalar;
    ``flush`` and ``close`` do nothing. Notebook 08 (``train_one_epoch``) checks the tags, values
    and global steps the training loop logs.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, int | None]] = []

    def add_scalar(self, tag: str, scalar_value: Any, global_step: int | None = None,
                   walltime: float | None = None, new_style: bool = False,
                   double_precision: bool = False) -> None:
        """Record ``(tag, scalar_value, global_step)``."""
        self.calls.append((tag, scalar_value, global_step))

    def add_scalars(self, main_tag: str, tag_scalar_dict: dict[str, Any], global_step: int | None = None,
                    walltime: float | None = None) -> None:
        """Record ``(f"{main_tag}/{tag}", value, global_step)`` for every entry of the dict."""
        for tag, value in tag_scalar_dict.items():
            self.calls.append((f"{main_tag}/{tag}", value, global_step))

    def flush(self) -> None:
        """Nothing to flush."""

    def close(self) -> None:
        """Nothing to close."""


class ProbeModel(nn.Module):
    """A classifier whose predictions are known: class ``int(x[:, 0])`` in eval mode.

    In training mode it predicts the next class, ``(int(x[:, 0]) + 1) % num_classes``, so an
    evaluation that forgot ``model.eval()`` gets other samples right. Every call appends
    ``torch.is_grad_enabled()`` to ``grad_enabled``. Its one parameter, ``scale`` (1.0), makes it an
    ordinary trainable module. Notebook 09 (``check_accuracy``) uses it with :func:`probe_batches`.
    """

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scale = nn.Parameter(torch.ones(()))
        self.grad_enabled: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad_enabled.append(torch.is_grad_enabled())
        cls = x[:, 0].long()
        if self.training:
            cls = (cls + 1) % self.num_classes
        return F.one_hot(cls, self.num_classes).to(x.dtype) * self.scale


def probe_batches(guesses: Sequence[int], labels: Sequence[int],
                  sizes: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` batches of the given sizes for :class:`ProbeModel`: it predicts ``guesses[i]`` for sample i."""
    x, y = torch.tensor(list(guesses), dtype=torch.float32)[:, None], torch.tensor(list(labels))
    return list(zip(x.split(list(sizes)), y.split(list(sizes)), strict=True))


class ModeRecorder(nn.Module):
    """Wraps a network; records ``(batch size, training mode, autograd on)`` at every forward call.

    The calls are in ``calls``; the output is the wrapped network's. Notebook 10 (``train_model``)
    checks with it that training runs in train mode every epoch and validation in eval mode
    without autograd (told apart by their batch sizes).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.calls: list[tuple[int, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((len(x), self.training, torch.is_grad_enabled()))
        return self.net(x)


class GradOnCopy(NamedTuple):
    """What :func:`grad_on_copy` returns."""

    loss: float
    grad: torch.Tensor | None


def grad_on_copy(model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 x: torch.Tensor, y: torch.Tensor, name: str = "weight") -> GradOnCopy:
    """The loss and the gradient of parameter ``name`` at the model's current weights, on a copy.

    ``loss_fn(model(x), y)`` is backpropagated through a deep copy of ``model`` (its gradients
    cleared first), so the model itself, its ``.grad`` and an optimizer holding it are untouched:
    the check knows where the next plain-SGD step must land (notebooks 05, 07 and 08).
    """
    twin = copy.deepcopy(model)
    twin.zero_grad()
    loss = loss_fn(twin(x), y)
    loss.backward()
    grad = twin.get_parameter(name).grad
    return GradOnCopy(loss.item(), grad)


def parameter_copies(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the model's parameters, by name (a driver for ``run_in_kernel``)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def with_new_parameter_objects(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with module conversions creating new ``Parameter`` objects.

    Some backends do that on ``model.to(device)``; PyTorch's opt-in flag
    ``torch.__future__.set_overwrite_module_params_on_conversion`` does it on any machine. An
    optimizer built before the move then holds the old tensors (notebook 05, exercise 3).
    The flag is restored afterwards.
    """
    previous = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(previous)
