"""Self-checks that explain themselves.

A failed check raises :class:`CheckError` (an ``AssertionError``, so nbgrader
and pytest count it as a failed test) whose message reads like a reviewer's
note: what was checked, what was expected, what came back, and, when the
answer matches a known classic mistake, the mistake by name.

Known mistakes are passed as data: ``mistakes={"forgot the ReLU": wrong_value}``.
When the student's answer is close to one of them, the message says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckError",
    "check_close",
    "check_params_updated",
    "check_shape",
    "check_true",
    "gradient_check",
    "numeric_gradient",
    "passed",
    "rel_error",
    "to_numpy",
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
) -> None:
    """Check that ``got`` matches ``expected`` entry by entry.

    ``mistakes`` maps a description of a classic mistake to the value that
    mistake produces; a match is reported by name. ``hint`` is added to any
    failure message.
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
    if g.shape != e.shape:
        message = f"{name}: expected shape {e.shape}, got shape {g.shape}."
        if g.ndim == 2 and g.shape == e.shape[::-1]:
            message += " The shape is transposed: check the order of the matrix product or a missing `.T`."
        named = _matching_mistake(g, mistakes, rtol, atol)
        if named:
            message += f"\nThis looks like a known mistake: {named}."
        raise CheckError(message + suffix)
    if not np.all(np.isfinite(g)) and np.all(np.isfinite(e)):
        raise CheckError(
            f"{name}: your result holds NaN or inf values. A learning rate that is too large, "
            "or a division by zero, usually causes this." + suffix
        )
    if not np.allclose(g, e, rtol=rtol, atol=atol):
        message = f"{name}: values do not match.\n" + _differences(g, e, rtol, atol)
        named = _matching_mistake(g, mistakes, rtol, atol)
        if named:
            message += f"\nThis looks like a known mistake: {named}."
        raise CheckError(message + suffix)
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
