"""Checks of torch tensors, update steps and autograd, naming the classic PyTorch slips.

Parameters rebound instead of updated in place, updates recorded by autograd, gradients
never cleared, tensors of the wrong dtype or device, softmax before ``CrossEntropyLoss``,
labels of the wrong dtype, and a custom ``torch.autograd.Function`` whose backward forgets
the chain rule:

* :func:`param_snapshot`, :func:`check_updated_in_place`, :func:`check_grads_cleared` -
  an update step, before and after;
* :func:`check_tensor`, :func:`check_cross_entropy_inputs` - what goes into an operation;
* :func:`check_autograd_function` - a custom autograd function against ``gradcheck``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from course_utils.checks.core import CheckError, check_shape, describe, matching_mistake, passed, to_numpy
from course_utils.checks.errors import explained_error

__all__ = [
    "check_autograd_function",
    "check_cross_entropy_inputs",
    "check_grads_cleared",
    "check_tensor",
    "check_updated_in_place",
    "param_snapshot",
]


def _named_tensors(params: Any) -> dict[str, torch.Tensor]:
    if isinstance(params, torch.nn.Module):
        return dict(params.named_parameters())
    if isinstance(params, torch.Tensor):
        return {"tensor": params}
    if isinstance(params, Mapping):
        return dict(params)
    return {f"[{i}]": p for i, p in enumerate(params)}


def param_snapshot(params: Any) -> dict[str, torch.Tensor]:
    """Detached copies of parameters, to compare with after an update step.

    ``params`` is an ``nn.Module`` (its named parameters), a mapping of name to
    tensor, a single tensor or a sequence of tensors.
    """
    return {key: p.detach().clone() for key, p in _named_tensors(params).items()}


def check_updated_in_place(
    name: str, params: Any, before: Mapping[str, torch.Tensor], *, quiet: bool = False
) -> None:
    """Check that an update step changed every parameter in place, outside autograd.

    ``before`` comes from :func:`param_snapshot` taken before the step. Names
    the rebinding mistake (``param = param - lr * param.grad`` leaves the
    parameters untouched) and the update recorded by autograd (a parameter
    that is no longer a leaf, or lost ``requires_grad``).
    """
    current = _named_tensors(params)
    missing = [key for key in before if key not in current]
    if missing:
        raise CheckError(f"{name}: these parameters are missing after the step: {', '.join(missing)}.")
    recorded = [key for key in before if not current[key].is_leaf]
    if recorded:
        raise CheckError(
            f"{name}: {', '.join(recorded)} now have a grad_fn, so the update was recorded by "
            "autograd: the update was done outside `torch.no_grad()`. Wrap the step in "
            "`with torch.no_grad():` and update in place (`param -= lr * param.grad`)."
        )
    unchanged = [key for key in before if torch.equal(before[key].cpu(), current[key].detach().cpu())]
    if unchanged:
        raise CheckError(
            f"{name}: these parameters did not change after the update: {', '.join(unchanged)}. "
            "Either no step was taken (a forgotten `optimizer.step()`, or a gradient that was "
            "cleared before the step), or the step updated a copy: `param = param - lr * param.grad` "
            "(or `w = w - lr * grad`) binds the name to a new tensor and leaves the original "
            "parameter untouched, so the loss stays flat. Update in place with "
            "`param -= lr * param.grad` (for tensors that require grad, inside `torch.no_grad()`)."
        )
    if not quiet:
        passed(name, "every parameter changed in place")


def check_grads_cleared(name: str, params: Any, *, quiet: bool = False) -> None:
    """Check that every parameter's ``.grad`` is ``None`` or all zeros."""
    dirty = [
        key for key, p in _named_tensors(params).items()
        if p.grad is not None and bool(torch.any(p.grad != 0))
    ]
    if dirty:
        raise CheckError(
            f"{name}: the gradients of {', '.join(dirty)} were not cleared. backward() adds to "
            "`.grad`, so gradients never zeroed accumulate across steps: clear them after the "
            "update with `param.grad = None` (or `param.grad.zero_()`, `optimizer.zero_grad()`)."
        )
    if not quiet:
        passed(name, "gradients cleared")


def check_tensor(
    name: str,
    got: Any,
    *,
    shape: Iterable[int] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    quiet: bool = False,
) -> None:
    """Check the type, shape, dtype and device of a tensor, naming the usual slips."""
    if not isinstance(got, torch.Tensor):
        raise CheckError(f"{name}: expected a torch.Tensor, got {describe(got)}.")
    if shape is not None:
        check_shape(name, got, shape, quiet=True)
    if dtype is not None and got.dtype != dtype:
        message = f"{name}: wrong dtype: expected {dtype}, got {got.dtype}."
        if got.dtype == torch.float64 and dtype == torch.float32:
            message += (" NumPy arrays are float64 and `torch.from_numpy` keeps that dtype: "
                        "convert with `.float()` or `.to(torch.float32)`.")
        elif dtype.is_floating_point and not got.dtype.is_floating_point:
            message += (" An integer tensor (from integer data, a comparison summed up, or "
                        "`//`) cannot hold fractions: convert with `.float()` before dividing.")
        elif dtype == torch.int64 and got.dtype.is_floating_point:
            message += (" Class labels must be integers (int64): use `.long()`; "
                        "CrossEntropyLoss rejects labels of the wrong dtype.")
        raise CheckError(message)
    if device is not None and got.device.type != torch.device(device).type:
        raise CheckError(
            f"{name}: the tensor is on device {got.device}, expected {torch.device(device)}. "
            "Create it with `device=...` or move it with `.to(device)`; tensors on different "
            "devices cannot be combined in one operation."
        )
    if not quiet:
        passed(name, f"{describe(got)}")


def check_cross_entropy_inputs(
    name: str, logits: Any, labels: Any, *, quiet: bool = False
) -> None:
    """Check what is about to go into ``nn.CrossEntropyLoss`` / ``F.cross_entropy``.

    The loss applies log-softmax itself and wants raw scores (logits) of shape
    ``(N, C)`` and int64 class indices of shape ``(N,)``. Names softmax or
    log-softmax applied before the loss, and labels of the wrong dtype.
    """
    check_tensor(f"{name} logits", logits, quiet=True)
    check_tensor(f"{name} labels", labels, quiet=True)
    if logits.dim() != 2:
        raise CheckError(f"{name}: logits should have shape (N, num_classes), got {tuple(logits.shape)}.")
    if labels.shape != logits.shape[:1]:
        raise CheckError(
            f"{name}: labels should have shape ({logits.shape[0]},), one class index per row, "
            f"got {tuple(labels.shape)}."
        )
    if labels.dtype != torch.int64:
        raise CheckError(
            f"{name}: labels have dtype {labels.dtype}; CrossEntropyLoss wants class indices of "
            "dtype torch.int64 (labels of the wrong dtype for the loss). Convert them with "
            "`.long()` (float labels would be read as class probabilities or rejected)."
        )
    values = logits.detach().to(torch.float64)
    if values.shape[1] > 1 and values.numel():
        ones = torch.ones(values.shape[0], dtype=torch.float64, device=values.device)
        if bool(torch.all(values >= 0)) and torch.allclose(values.sum(dim=1), ones, atol=1e-4):
            raise CheckError(
                f"{name}: every row of the model output is non-negative and sums to 1: softmax "
                "was applied before CrossEntropyLoss. The loss applies log-softmax itself; feed "
                "it the raw scores (remove the final `nn.Softmax` / `softmax` call)."
            )
        if bool(torch.all(values <= 0)) and torch.allclose(values.exp().sum(dim=1), ones, atol=1e-4):
            raise CheckError(
                f"{name}: the model output is log-probabilities (exp of each row sums to 1): "
                "log-softmax was applied before CrossEntropyLoss, which applies it again. Feed "
                "raw scores, or use `nn.NLLLoss` after `log_softmax`."
            )
    labels_cpu = labels.detach().cpu()
    if labels_cpu.numel() and (int(labels_cpu.min()) < 0 or int(labels_cpu.max()) >= logits.shape[1]):
        raise CheckError(
            f"{name}: labels must be class indices in 0..{logits.shape[1] - 1}, got values from "
            f"{int(labels_cpu.min())} to {int(labels_cpu.max())}."
        )
    if not quiet:
        passed(name, "raw logits and int64 class indices")


def check_autograd_function(
    name: str,
    fn: Callable[..., Any],
    inputs: Iterable[torch.Tensor],
    *,
    mistakes: Mapping[str, Any] | None = None,
    quiet: bool = False,
) -> None:
    """Verify a custom ``torch.autograd.Function`` with ``torch.autograd.gradcheck``.

    ``fn`` is usually ``MyFunction.apply``; ``inputs`` must be float64 tensors
    with ``requires_grad=True`` (in float32 the numeric differences are too
    coarse and gradcheck fails on correct code). On failure, names a backward
    that ignores ``grad_output`` (the chain rule) or returns ``None``;
    ``mistakes`` maps descriptions to the wrong gradient of the first input
    (for an all-ones ``grad_output``) that a known mistake produces.
    """
    inputs = tuple(inputs)
    for i, x in enumerate(inputs):
        if x.dtype != torch.float64:
            raise CheckError(
                f"{name}: input {i} is {x.dtype}. Run gradcheck in double precision "
                "(`dtype=torch.float64`): in float32 the numeric gradient is too coarse."
            )
        if not x.requires_grad:
            raise CheckError(f"{name}: input {i} needs `requires_grad=True` for gradcheck.")
    try:
        out = fn(*inputs)
        if not isinstance(out, torch.Tensor) or out.grad_fn is None:
            raise CheckError(
                f"{name}: the output has no grad_fn. Call the function through `.apply(...)`, "
                "not `forward(...)` directly."
            )
        grads = torch.autograd.grad(out, inputs, torch.ones_like(out), allow_unused=True)
        if any(g is None for g in grads):
            raise CheckError(f"{name}: backward returned None for an input. It must return one "
                             "gradient per input of forward.")
        ok = torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3,
                                      raise_exception=False)
        generator = torch.Generator().manual_seed(0)
        upstream = (torch.rand(out.shape, generator=generator, dtype=out.dtype) + 0.5).to(out.device)
        scaled = torch.autograd.grad(fn(*inputs), inputs, upstream)
    except (RuntimeError, TypeError) as err:  # TypeError: e.g. an un-unpacked ctx.saved_tensors
        first_line = (str(err).splitlines() or [""])[0][:300]
        explained = explained_error(name, err, what=f"running forward/backward raised {type(err).__name__}: "
                                                    f"{first_line}")
        if explained is not None:
            raise explained[0] from explained[1]
        raise CheckError(f"{name}: running forward/backward raised {type(err).__name__}: {first_line}") from err
    if ok:
        if not quiet:
            passed(name, "torch.autograd.gradcheck in float64")
        return
    message = f"{name}: torch.autograd.gradcheck failed: backward does not match numeric differences."
    ignores_upstream = out.numel() > 1 and all(
        torch.allclose(s, g, rtol=1e-6, atol=1e-9) for s, g in zip(scaled, grads, strict=True)
    )
    named = matching_mistake(to_numpy(grads[0]), mistakes, rtol=1e-4, atol=1e-8)
    if ignores_upstream:
        message += ("\nThis looks like a known mistake: backward ignores grad_output. It must "
                    "return grad_output times the local derivative (the chain rule).")
    elif named:
        message += f"\nThis looks like a known mistake: {named}."
    raise CheckError(message)
