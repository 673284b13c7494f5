"""Self-checks that explain themselves.

A failed check raises :class:`CheckError` (an ``AssertionError``, so nbgrader
and pytest count it as a failed test) whose message reads like a reviewer's
note: what was checked, what was expected, what came back, and, when the
answer matches a known classic mistake, the mistake by name.

Known mistakes are passed as data: ``mistakes={"forgot the ReLU": wrong_value}``.
When the student's answer is close to one of them, the message says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from course_utils.diagnosis import diagnose, format_diagnoses

# Helpers for graded cells that also run in the grader's judge (see course_utils.remote).
from course_utils.remote import (
    fetch,
    in_kernel,
    is_instance,
    run_in_kernel,
    seconds_since,
    secret_order,
    substitute,
)

__all__ = [
    "CheckError",
    "KNOWN_ERRORS",
    "check_autograd_function",
    "check_close",
    "check_cross_entropy_inputs",
    "check_forward_shape",
    "check_grads_cleared",
    "check_optimizer_tracks_model",
    "check_params_updated",
    "check_registered",
    "check_shape",
    "check_tensor",
    "check_true",
    "check_updated_in_place",
    "explain_errors",
    "fetch",
    "gradient_check",
    "in_kernel",
    "is_instance",
    "numeric_gradient",
    "param_snapshot",
    "passed",
    "rel_error",
    "run_in_kernel",
    "secret_order",
    "seconds_since",
    "substitute",
    "to_numpy",
    "unregistered",
]

_MAX_LISTED = 5


class CheckError(AssertionError):
    """A self-check failed; the message says what was wrong and what to try."""


def passed(name: str, detail: str = "") -> None:
    """Print the one-line success message every check uses."""
    print(f"\u2714 {name}: passed" + (f" ({detail})" if detail else ""))


def to_numpy(value: Any) -> np.ndarray:
    """Turn a tensor, array, list or number into a float64 NumPy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_complex():
            return value.numpy()
        return value.to(torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def rel_error(got: Any, expected: Any) -> float:
    """Largest relative error ``|a-b| / max(1e-8, |a|+|b|)`` over all entries."""
    a, b = to_numpy(got), to_numpy(expected)
    if a.size == 0 and b.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}, dtype {value.dtype}, device {value.device}"
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}, dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:120]


def _is_close(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> bool:
    return got.shape == expected.shape and bool(np.allclose(got, expected, rtol=rtol, atol=atol))


def _matching_mistake(
    got: np.ndarray, mistakes: Mapping[str, Any] | None, rtol: float, atol: float
) -> str | None:
    for description, wrong in (mistakes or {}).items():
        try:
            if _is_close(got, to_numpy(wrong), rtol, atol):
                return description
        except (TypeError, ValueError):
            continue
    return None


def _differences(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> str:
    if got.ndim == 0:
        return f"expected {float(expected):.6g}, got {float(got):.6g}."
    bad = ~np.isclose(got, expected, rtol=rtol, atol=atol)
    count = int(bad.sum())
    lines = [f"{count} of {got.size} entries differ; max relative error {rel_error(got, expected):.2e}."]
    for index in list(zip(*np.nonzero(bad), strict=True))[:_MAX_LISTED]:
        idx = tuple(int(i) for i in index)
        lines.append(f"  at {idx}: expected {expected[idx]:.6g}, got {got[idx]:.6g}")
    if count > _MAX_LISTED:
        lines.append(f"  ... and {count - _MAX_LISTED} more")
    return "\n".join(lines)


def check_close(
    name: str,
    got: Any,
    expected: Any,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    mistakes: Mapping[str, Any] | None = None,
    hint: str = "",
    quiet: bool = False,
    initial: Any = None,
    batch_size: int | None = None,
) -> None:
    """Check that ``got`` matches ``expected`` entry by entry.

    ``mistakes`` maps a description of a classic mistake to the value that
    mistake produces; a match is reported by name. Then the likely cause of
    any other mismatch is named (:func:`course_utils.diagnosis.diagnose`: a
    constant factor, swapped axes, a shift by one step, ...); ``initial`` (the
    value before an update) and ``batch_size`` help it name an update never
    applied and a factor of the batch size. ``hint`` is added to any failure
    message.
    """
    if got is None:
        raise CheckError(f"{name}: got None. Did your function forget to `return` its result?")
    if isinstance(got, tuple | list) and not isinstance(expected, tuple | list):
        raise CheckError(
            f"{name}: expected a single array, got a {type(got).__name__} of {len(got)} items."
        )
    try:
        g = to_numpy(got)
    except (TypeError, ValueError) as err:
        raise CheckError(f"{name}: expected an array or tensor, got {_describe(got)} ({err}).") from None
    e = to_numpy(expected)
    suffix = f"\nHint: {hint}" if hint else ""

    def likely_causes() -> str:
        return format_diagnoses(diagnose(got, expected, rtol=rtol, atol=atol, initial=initial, batch_size=batch_size))

    if g.shape != e.shape:
        message = f"{name}: expected shape {e.shape}, got shape {g.shape}."
        named = _matching_mistake(g, mistakes, rtol, atol)
        if named:
            message += f"\nThis looks like a known mistake: {named}."
        raise CheckError(message + likely_causes() + suffix)
    if not np.all(np.isfinite(g)) and np.all(np.isfinite(e)):
        raise CheckError(
            f"{name}: your result holds NaN or inf values. A learning rate that is too large, "
            "or a division by zero, usually causes this." + likely_causes() + suffix
        )
    if not np.allclose(g, e, rtol=rtol, atol=atol):
        message = f"{name}: values do not match.\n" + _differences(g, e, rtol, atol)
        named = _matching_mistake(g, mistakes, rtol, atol)
        if named:
            message += f"\nThis looks like a known mistake: {named}."
        raise CheckError(message + likely_causes() + suffix)
    if not quiet:
        passed(name, f"max relative error {rel_error(g, e):.1e}")


def check_shape(name: str, got: Any, expected_shape: Iterable[int], *, quiet: bool = False) -> None:
    """Check the shape of an array or tensor, explaining transposes."""
    expected = tuple(expected_shape)
    shape = tuple(getattr(got, "shape", ()))
    if not hasattr(got, "shape"):
        raise CheckError(f"{name}: expected an array of shape {expected}, got {_describe(got)}.")
    if shape != expected:
        message = f"{name}: expected shape {expected}, got {shape}."
        if len(shape) == 2 and shape == expected[::-1]:
            message += " It is transposed."
        raise CheckError(message)
    if not quiet:
        passed(name, f"shape {expected}")


def check_true(name: str, condition: bool, failure: str, *, quiet: bool = False) -> None:
    """Fail with ``failure`` (the diagnosis in words) unless ``condition`` holds."""
    if not condition:
        raise CheckError(f"{name}: {failure}")
    if not quiet:
        passed(name)


def check_params_updated(
    name: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    same_objects: Mapping[str, Any] | None = None,
    quiet: bool = False,
) -> None:
    """Check that an update step changed every parameter, in place.

    ``before`` holds copies taken before the step, ``after`` the parameters
    afterwards. ``same_objects`` (optional) holds the original objects; if the
    step rebound a name to a new object instead of updating it, the message
    names the classic ``param = param - lr * grad`` mistake.
    """
    unchanged = [key for key in before if np.array_equal(to_numpy(before[key]), to_numpy(after[key]))]
    if unchanged:
        raise CheckError(
            f"{name}: these parameters did not change after the update: {', '.join(unchanged)}. "
            "Did you write `param = param - lr * grad`? That makes a new array and leaves the "
            "original untouched: update in place with `param -= lr * grad`."
        )
    if same_objects is not None:
        rebound = [key for key in same_objects if same_objects[key] is not after[key]]
        if rebound:
            raise CheckError(
                f"{name}: {', '.join(rebound)} now point to new objects. Update the parameters in "
                "place (`param -= lr * grad`) so every other reference sees the change."
            )
    if not quiet:
        passed(name, "every parameter changed in place")


def numeric_gradient(
    f: Callable[[], Any], x: np.ndarray | torch.Tensor, h: float = 1e-5
) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` with respect to ``x``.

    ``f`` takes no arguments and reads ``x``, which is perturbed in place one
    entry at a time and restored afterwards. Works for NumPy arrays and torch
    tensors (without autograd); use float64 inputs for meaningful precision.
    """
    grad = np.zeros(tuple(x.shape), dtype=np.float64)
    with torch.no_grad():
        for index in np.ndindex(*x.shape):
            original = float(x[index])
            x[index] = original + h
            f_plus = float(to_numpy(f()))
            x[index] = original - h
            f_minus = float(to_numpy(f()))
            x[index] = original
            grad[index] = (f_plus - f_minus) / (2 * h)
    return grad


def gradient_check(
    name: str,
    f: Callable[[], Any],
    x: np.ndarray | torch.Tensor,
    analytic: Any,
    *,
    h: float = 1e-5,
    tol: float = 1e-6,
    mistakes: Mapping[str, Any] | None = None,
    quiet: bool = False,
) -> None:
    """Compare an analytic gradient with :func:`numeric_gradient`."""
    numeric = numeric_gradient(f, x, h)
    if analytic is None:
        raise CheckError(f"{name}: the analytic gradient is None. Did backward return it?")
    a = to_numpy(analytic)
    if a.shape != numeric.shape:
        check_close(name, a, numeric, mistakes=mistakes)
    error = rel_error(a, numeric)
    if error > tol:
        message = (
            f"{name}: analytic and numeric gradients disagree (max relative error {error:.2e}, "
            f"tolerance {tol:.0e})."
        )
        named = _matching_mistake(a, mistakes, rtol=1e-4, atol=1e-8)
        if named:
            message += f"\nThis looks like a known mistake: {named}."
        raise CheckError(message)
    if not quiet:
        passed(name, f"max relative error {error:.1e} against numeric differences")


# --- torch-specific checks -------------------------------------------------------------
# Named diagnoses for the classic PyTorch slips: parameters rebound instead of updated
# in place, gradients never cleared, updates recorded by autograd, softmax before
# CrossEntropyLoss, labels of the wrong dtype, tensors on different devices, and a
# custom autograd.Function whose backward forgets the chain rule.

# Fragments of torch error messages -> the classic mistake behind them.
KNOWN_ERRORS: dict[str, str] = {
    "a leaf Variable that requires grad is being used in an in-place operation": (
        "a parameter that requires grad was updated in place while autograd was recording. "
        "Do the update inside `with torch.no_grad():`"
    ),
    "view size is not compatible with input tensor's size and stride": (
        "`view` was called on a non-contiguous tensor (e.g. after `.t()`, `.permute()` or "
        "slicing). Use `.reshape(...)` (or `.contiguous().view(...)`) instead"
    ),
    "on the expected device": (
        "the tensors are on different devices. Move them to one device with `.to(device)` "
        "(e.g. the device of the weights)"
    ),
    "same device": (
        "the tensors are on different devices. Move them to one device with `.to(device)` "
        "(e.g. the device of the weights)"
    ),
    "shapes cannot be multiplied": (
        "the matrix shapes do not fit: a weight is transposed, or the operands are in the "
        "wrong order. Write the shapes next to the product and check the inner dimensions"
    ),
    "expected target dtype to be Long": (
        "the labels have the wrong dtype for the loss: CrossEntropyLoss wants class indices "
        "as int64 (`labels.long()`), not floats"
    ),
    "must have the same dtype": (
        "the operands have different dtypes (e.g. float64 data from NumPy and float32 "
        "weights). Convert one with `.to(dtype)` or `.float()`"
    ),
    "to have the same dtype": (
        "the operands have different dtypes (e.g. float64 data from NumPy and float32 "
        "weights). Convert one with `.to(dtype)` or `.float()`"
    ),
    "does not require grad and does not have a grad_fn": (
        "backward() was called on a result that autograd did not record: the inputs do not "
        "have `requires_grad=True`, or the loss was computed under `torch.no_grad()`"
    ),
    "grad can be implicitly created only for scalar outputs": (
        "backward() was called on a tensor with more than one element: reduce it to a "
        "scalar loss first (e.g. `.sum()` or `.mean()`)"
    ),
    "Trying to backward through the graph a second time": (
        "backward() ran twice through the same graph: recompute the forward pass for every "
        "step instead of reusing an old loss"
    ),
    "'NoneType'": (
        "a `.grad` is None where a tensor was expected. Either backward() was not called, or "
        "the tensor is no longer a leaf: an update outside `torch.no_grad()` such as "
        "`w = w - lr * w.grad` replaces the leaf by a computed tensor, whose .grad stays None"
    ),
}


class explain_errors:  # noqa: N801 - used as `with checks.explain_errors(...)`
    """Context manager that turns known torch errors into named mistakes.

    ``with checks.explain_errors("train"): train(...)`` re-raises a matching
    ``RuntimeError`` (or a ``TypeError``/``AttributeError`` about ``None``, as
    a missing ``.grad`` causes) as a :class:`CheckError` whose message names the
    classic mistake (see :data:`KNOWN_ERRORS`); other exceptions pass through.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> explain_errors:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> bool:
        if exc is None or isinstance(exc, CheckError):
            return False
        if not isinstance(exc, RuntimeError | TypeError | AttributeError):
            return False
        text = str(exc)
        for fragment, diagnosis in KNOWN_ERRORS.items():
            if fragment in text:
                first_line = text.splitlines()[0][:200]
                raise CheckError(
                    f"{self.name}: raised {type(exc).__name__} ({first_line}).\n"
                    f"This looks like a known mistake: {diagnosis}."
                ) from exc
        return False


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
            "Did you write `param = param - lr * param.grad` (or `w = w - lr * grad`)? That binds "
            "the name to a new tensor and leaves the original parameter untouched, so the loss "
            "stays flat: update in place with `param -= lr * param.grad` (for tensors that "
            "require grad, inside `torch.no_grad()`)."
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
        raise CheckError(f"{name}: expected a torch.Tensor, got {_describe(got)}.")
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
        passed(name, f"{_describe(got)}")


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
    except RuntimeError as err:
        raise CheckError(f"{name}: running forward/backward raised RuntimeError: "
                         f"{str(err).splitlines()[0][:300]}") from err
    if ok:
        if not quiet:
            passed(name, "torch.autograd.gradcheck in float64")
        return
    message = f"{name}: torch.autograd.gradcheck failed: backward does not match numeric differences."
    ignores_upstream = out.numel() > 1 and all(
        torch.allclose(s, g, rtol=1e-6, atol=1e-9) for s, g in zip(scaled, grads, strict=True)
    )
    named = _matching_mistake(to_numpy(grads[0]), mistakes, rtol=1e-4, atol=1e-8)
    if ignores_upstream:
        message += ("\nThis looks like a known mistake: backward ignores grad_output. It must "
                    "return grad_output times the local derivative (the chain rule).")
    elif named:
        message += f"\nThis looks like a known mistake: {named}."
    raise CheckError(message)


# --- Checks on nn.Module objects and optimizers (notebooks 05-07) -----------------

_MATMUL_SHAPES = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")


def unregistered(module: torch.nn.Module) -> tuple[list[str], list[str]]:
    """(layers kept in plain lists/tuples/dicts, plain tensors that require grad) on ``module``.

    Each entry names the attribute (``"blocks (list)"``, ``"scale"``); both lists are empty
    for a module whose layers and parameters are all registered. Graded cells call it in the
    kernel with ``checks.run_in_kernel(checks.unregistered, model)``.
    """
    in_containers, plain_tensors = [], []
    for prefix, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if attr.startswith("_"):
                continue
            full = f"{prefix}.{attr}" if prefix else attr
            if isinstance(value, list | tuple | dict):
                items = value.values() if isinstance(value, dict) else value
                if any(isinstance(v, torch.nn.Module | torch.nn.Parameter) for v in items):
                    in_containers.append(f"{full} ({type(value).__name__})")
            elif isinstance(value, torch.Tensor) and value.requires_grad:
                plain_tensors.append(full)
    return in_containers, plain_tensors


def check_registered(name: str, module: torch.nn.Module, *, quiet: bool = False) -> None:
    """Check that every layer and trainable tensor stored on ``module`` is registered.

    Layers kept in a plain Python ``list``/``tuple``/``dict`` attribute, and tensors
    with ``requires_grad`` that are not ``nn.Parameter``, are invisible to
    ``parameters()``, ``state_dict()`` and ``.to(device)``; the message names them.
    """
    in_containers, plain_tensors = unregistered(module)
    if in_containers:
        raise CheckError(
            f"{name}: layers kept in a plain Python list/tuple/dict are not registered: "
            f"{', '.join(in_containers)}. model.parameters() misses them, so the optimizer never "
            "trains them, and .to(device) and state_dict() skip them too. Use nn.ModuleList "
            "(or nn.Sequential / nn.ModuleDict)."
        )
    if plain_tensors:
        raise CheckError(
            f"{name}: {', '.join(plain_tensors)} require grad but are plain tensors, not registered "
            "parameters: model.parameters() misses them. Wrap them in nn.Parameter(...)."
        )
    if not quiet:
        passed(name, "every layer and parameter is registered")


def check_forward_shape(
    name: str, model: Callable[[Any], Any], x: Any, expected_shape: Iterable[int], *, quiet: bool = False
) -> Any:
    """Run ``model(x)``, check the output shape and return the output.

    Errors raised inside the forward pass are translated: a matrix-product shape
    error names a wrong flatten size before the fully connected layer, and a
    ``view`` error names ``view`` on a non-contiguous tensor.
    """
    try:
        out = model(x)
    except RuntimeError as err:
        text = str(err)
        match = _MATMUL_SHAPES.search(text)
        if match:
            got_features, wanted = int(match.group(2)), int(match.group(3))
            raise CheckError(
                f"{name}: the fully connected layer expects {wanted} input features but the "
                f"flattened tensor has {got_features}: wrong flatten size before the fc layer. "
                "After convolutions it is channels * height * width of the last feature map "
                f"(padding that keeps the size keeps height and width).\n(PyTorch said: {text})"
            ) from None
        if "view size is not compatible" in text:
            raise CheckError(
                f"{name}: `view` on a non-contiguous tensor. `view` only reinterprets memory that is "
                "laid out contiguously; after permute/transpose, or for a channels_last batch, it "
                "fails. Use torch.flatten(x, 1) or x.reshape(...).\n(PyTorch said: "
                f"{text.splitlines()[0]})"
            ) from None
        raise CheckError(f"{name}: the forward pass raised {type(err).__name__}: {text}") from None
    if isinstance(out, tuple | list):
        raise CheckError(f"{name}: forward returned a {type(out).__name__}; expected one tensor.")
    check_shape(name, out, expected_shape, quiet=quiet)
    return out


def check_optimizer_tracks_model(
    name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, quiet: bool = False
) -> None:
    """Check that ``optimizer`` updates exactly the trainable parameters ``model`` has now.

    Names an optimizer built before the model was moved (it holds the old
    tensors), trainable parameters the optimizer misses, and optimizer state
    (momentum buffers, Adam moments) left on another device than its parameter.
    """
    in_model = {id(p) for p in model.parameters()}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    stale = [p for p in held if id(p) not in in_model]
    if stale:
        devices = sorted({str(p.device) for p in stale})
        raise CheckError(
            f"{name}: the optimizer holds {len(stale)} of {len(held)} tensors that are not the "
            f"model's parameters (they live on {', '.join(devices)}): the optimizer built before the "
            "model was moved (or before the model was rebuilt) keeps updating the old tensors and "
            "the model never learns. Call model.to(device) first, then build the optimizer."
        )
    held_ids = {id(p) for p in held}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in held_ids]
    if missing:
        listed = ", ".join(missing[:_MAX_LISTED]) + (" ..." if len(missing) > _MAX_LISTED else "")
        raise CheckError(
            f"{name}: the optimizer does not update these trainable parameters: {listed}. "
            "Build it from model.parameters() after every layer exists."
        )
    for p in held:
        for key, value in optimizer.state.get(p, {}).items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.device != p.device:
                raise CheckError(
                    f"{name}: the optimizer state {key!r} is on {value.device} but its parameter is on "
                    f"{p.device}: the optimizer took steps before the model was moved. Move the model "
                    "first, then build the optimizer (or move its state with load_state_dict)."
                )
    if not quiet:
        passed(name, f"the optimizer updates all {len(held)} parameter tensors of the model")
