"""The generic self-checks: values, shapes, conditions, update steps and gradients.

A failed check raises :class:`CheckError` (an ``AssertionError``, so nbgrader and pytest
count it as a failed test) whose message says what was checked, what was expected, what
came back, and, when the answer matches a known mistake, the mistake by name.

* :class:`CheckError`, :func:`passed` - how every check of the package fails and succeeds;
* :func:`to_numpy`, :func:`rel_error` - the conversions and the error measure they share;
* :func:`check_close`, :func:`check_shape`, :func:`check_true` - values, shapes, conditions;
* :func:`check_params_updated` - an update step that changed every parameter in place;
* :func:`numeric_gradient`, :func:`gradient_check` - analytic against numeric gradients.

:func:`describe`, :func:`matching_mistake`, :func:`error_line` and :data:`MAX_LISTED` are
the helpers the other checks of the package build their messages with.
"""

from __future__ import annotations

import linecache
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course_utils.checks.diagnosis import diagnose, format_diagnoses

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

MAX_LISTED = 5  # entries (or parameter names) a message lists before "... and N more"


class CheckError(AssertionError):
    """A self-check failed; the message says what was wrong and what to try.

    In Jupyter it shows as its message first, then the lines of the notebook (or the
    student's own files) it came from, without the frames of this library, NumPy or torch.
    It is still an error output, so nbgrader's Validate and autograder count the cell as failed.
    """

    def _render_traceback_(self) -> list[str]:
        """The traceback IPython shows for this error (IPython's hook for custom tracebacks)."""
        message = str(self).splitlines() or [""]
        lines = [f"\x1b[1;31mCheckError\x1b[0m: {message[0]}", *message[1:]]
        cause = self.__cause__
        if cause is not None:
            lines += ["", f"It started as {type(cause).__name__}: {error_line(cause)}",
                      *_own_frames(cause.__traceback__)]
        else:
            lines += ["", *_own_frames(self.__traceback__)]
        return lines


# Frames from these folders are not the student's: the course library (``course_utils``, every
# module of this package included), the installed packages and the standard library.
_LIBRARY_FOLDERS = tuple(
    str(Path(folder).resolve()) + os.sep
    for folder in {Path(__file__).resolve().parents[1], Path(np.__file__).parent.parent, Path(os.__file__).parent}
)


def _own_frames(tb: Any) -> list[str]:
    """``line N: code`` for each frame of ``tb`` in the notebook or the student's own files."""
    shown = []
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not str(Path(filename).resolve()).startswith(_LIBRARY_FOLDERS) and not filename.startswith("<frozen"):
            code = linecache.getline(filename, tb.tb_lineno).strip()
            function = tb.tb_frame.f_code.co_name
            place = "" if function == "<module>" else f" (in {function})"
            shown.append(f"  line {tb.tb_lineno}{place}: {code}")
        tb = tb.tb_next
    return shown


def error_line(exc: BaseException) -> str:
    """The line of an error worth quoting: its first, or the last of a traceback it carries."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        return lines[-1][:200]
    return lines[0][:200].rstrip(".")


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


def describe(value: Any) -> str:
    """``tensor of shape (2, 3), dtype torch.float32, device cpu``: a value as a message names it."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}, dtype {value.dtype}, device {value.device}"
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}, dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:120]


def _is_close(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> bool:
    return got.shape == expected.shape and bool(np.allclose(got, expected, rtol=rtol, atol=atol))


def matching_mistake(
    got: np.ndarray, mistakes: Mapping[str, Any] | None, rtol: float, atol: float
) -> str | None:
    """The description of the first of ``mistakes`` whose wrong value ``got`` matches, or None."""
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
    for index in list(zip(*np.nonzero(bad), strict=True))[:MAX_LISTED]:
        idx = tuple(int(i) for i in index)
        lines.append(f"  at {idx}: expected {expected[idx]:.6g}, got {got[idx]:.6g}")
    if count > MAX_LISTED:
        lines.append(f"  ... and {count - MAX_LISTED} more")
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
    any other mismatch is named (:func:`course_utils.checks.diagnosis.diagnose`: a
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
        raise CheckError(f"{name}: expected an array or tensor, got {describe(got)} ({err}).") from None
    e = to_numpy(expected)
    suffix = f"\nHint: {hint}" if hint else ""

    def likely_causes() -> str:
        return format_diagnoses(diagnose(got, expected, rtol=rtol, atol=atol, initial=initial, batch_size=batch_size))

    if g.shape != e.shape:
        message = f"{name}: expected shape {e.shape}, got shape {g.shape}."
        named = matching_mistake(g, mistakes, rtol, atol)
        if named:  # the named mistake is the diagnosis: generic causes could contradict it
            raise CheckError(message + f"\nThis looks like a known mistake: {named}." + suffix)
        raise CheckError(message + likely_causes() + suffix)
    if not np.all(np.isfinite(g)) and np.all(np.isfinite(e)):
        raise CheckError(
            f"{name}: your result holds NaN or inf values. A learning rate that is too large, "
            "or a division by zero, usually causes this." + likely_causes() + suffix
        )
    if not np.allclose(g, e, rtol=rtol, atol=atol):
        message = f"{name}: values do not match.\n" + _differences(g, e, rtol, atol)
        named = matching_mistake(g, mistakes, rtol, atol)
        if named:
            raise CheckError(message + f"\nThis looks like a known mistake: {named}." + suffix)
        raise CheckError(message + likely_causes() + suffix)
    if not quiet:
        passed(name, f"max relative error {rel_error(g, e):.1e}")


def check_shape(name: str, got: Any, expected_shape: Iterable[int], *, quiet: bool = False) -> None:
    """Check the shape of an array or tensor, explaining transposes."""
    expected = tuple(expected_shape)
    shape = tuple(getattr(got, "shape", ()))
    if not hasattr(got, "shape"):
        raise CheckError(f"{name}: expected an array of shape {expected}, got {describe(got)}.")
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
        named = matching_mistake(a, mistakes, rtol=1e-4, atol=1e-8)
        if named:
            message += f"\nThis looks like a known mistake: {named}."
        raise CheckError(message)
    if not quiet:
        passed(name, f"max relative error {error:.1e} against numeric differences")
