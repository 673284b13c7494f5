"""Self-checks that explain themselves.

A failed check raises :class:`CheckError` (an ``AssertionError``, so nbgrader
and pytest count it as a failed test) whose message reads like a reviewer's
note: what was checked, what was expected, what came back, and, when the
answer matches a known classic mistake, the mistake by name.

Known mistakes are passed as data: ``mistakes={"forgot the ReLU": wrong_value}``.
When the student's answer is close to one of them, the message says so.
"""

from __future__ import annotations

import linecache
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
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
            lines += ["", f"It started as {type(cause).__name__}: {_error_line(cause)}",
                      *_own_frames(cause.__traceback__)]
        else:
            lines += ["", *_own_frames(self.__traceback__)]
        return lines


_LIBRARY_FOLDERS = tuple(
    str(Path(folder).resolve()) + os.sep
    for folder in {Path(__file__).parent, Path(np.__file__).parent.parent, Path(os.__file__).parent}
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
        named = _matching_mistake(g, mistakes, rtol, atol)
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

# --- explain_errors: the error a student's code raised -> the classic mistake behind it ---
# KNOWN_ERRORS maps a regular expression (searched with re.MULTILINE) to a diagnosis, a
# str.format template over the pattern's named groups. The first matching entry wins, so
# the table runs from specific to general. A pattern is searched in "<ExceptionType>:
# <message>"; a pattern that names one of the context lines "^warning: " (a warning the
# code raised before it failed), "^where: " (file and function of the innermost frame) or
# "^line: " (the source line that raised) is searched in those lines too.

_STUB = ("not implemented yet: replace `raise NotImplementedError()` in the exercise's cell with your "
         "code, then run this check again")
_DIFFERENT_DEVICES = (
    "the tensors are on different devices. Move them to one device with `.to(device)` "
    "(e.g. the device of the weights)"
)
_DIFFERENT_DTYPES = (
    "the operands have different dtypes (e.g. float64 data from NumPy and float32 "
    "weights). Convert one with `.to(dtype)` or `.float()`"
)
_HARD_CODED_GPU = (
    "the code asks for a GPU by name (`.cuda()`, `device=\"cuda\"`, `.to(\"cuda\")`) that this machine "
    "does not have: use the notebook's `device` (from `config.device`) instead of hard-coding it"
)
_NOT_BROADCASTABLE = (
    "Print both `.shape`s: typical causes are a reduction without `keepdim=True`, a missing transpose, "
    "or a missing `unsqueeze`/`reshape`"
)
_NUMPY_NOT_TENSOR = (
    "a NumPy array was passed where PyTorch needs a tensor: convert it with `torch.from_numpy(a)` "
    "(then `.float()` for float32 weights) or `torch.as_tensor(a, dtype=torch.float32)`"
)
_NO_SUPER_INIT = (
    "your module's `__init__` does not start with `super().__init__()`: call it first, before any "
    "layer or parameter is assigned to `self`"
)

KNOWN_ERRORS: dict[str, str] = {
    # --- an exercise not done yet: nbgrader's stub (here, or in a worker's traceback) ---
    r"\ANotImplementedError: *$|^NotImplementedError\s*$": _STUB,
    r"Module \[(?P<cls>\w+)\] is missing the required \"forward\" function": (
        "`{cls}` has no `forward` method: check its spelling (`def forward(self, x):`) and that it is "
        "indented inside the class"
    ),
    # --- GPUs ---
    r"device-side assert triggered": (
        "a GPU kernel met an index out of range, usually a label outside 0..C-1 for the loss (or an "
        "embedding index). Run the same code on the CPU for a readable error, then restart the kernel "
        "(the GPU is unusable after this error)"
    ),
    r"CUDA out of memory|CUDA error: out of memory": (
        "the GPU ran out of memory: use a smaller batch, keep losses as `loss.item()` (a loss tensor "
        "keeps its whole graph alive), evaluate under `torch.no_grad()`, and `del` what you no longer need"
    ),
    r"Torch not compiled with CUDA enabled|Found no NVIDIA driver|no CUDA GPUs are available|"
    r"CUDA driver initialization failed|invalid device ordinal|CUDA error": _HARD_CODED_GPU,
    # --- DataLoader workers ---
    r"DataLoader worker \(pid(?:\(s\))? [^)]*\) (?:exited unexpectedly|is killed by signal)": (
        "a DataLoader worker process died (`num_workers > 0`): the Dataset failed or crashed in the "
        "worker (in containers often for lack of shared memory). Run with `num_workers=0` to see the real "
        "error, then fix it or keep `num_workers=0`"
    ),
    r"Can't pickle local object|Can't pickle <function <lambda>|attribute lookup <lambda> on __main__ failed|"
    r"Can't get attribute '[^']*' on <module '__main__'": (
        "the Dataset could not be sent to the DataLoader's worker processes: with the spawn or "
        "forkserver start method it is pickled, with its transform and collate_fn, and a lambda or a "
        "function or class defined inside another function cannot be. Define them with `def`/`class` "
        "in a .py module that you import, or use `num_workers=0`"
    ),
    # --- nn.Module and optimizers ---
    r"cannot assign (?:module|parameters?|buffers?) before Module\.__init__\(\) call": _NO_SUPER_INIT,
    r"object has no attribute '_(?:modules|parameters|buffers|non_persistent_buffers_set|\w*hooks)'":
        _NO_SUPER_INIT,
    r"cannot assign '[^']*' as parameter '(?P<param>\w+)' \(torch\.nn\.Parameter or None expected\)": (
        "a computed tensor was assigned to the parameter `{param}` (e.g. `layer.{param} = layer.{param} - "
        "lr * grad`): update the parameter in place inside `torch.no_grad()` (`p -= lr * p.grad`)"
    ),
    r"optimizer got an empty parameter list": (
        "the optimizer was given no parameters: the model has no registered parameters (layers kept "
        "in a plain list instead of `nn.ModuleList`, or created in `forward`), or the generator "
        "`model.parameters()` was already used up. Pass `model.parameters()` straight to the optimizer"
    ),
    r"Unexpected key\(s\) in state_dict: \"module\.": (
        "the state dict was saved from a DistributedDataParallel/DataParallel wrapper, whose keys start "
        "with `module.`: save `model.module.state_dict()` (or strip the prefix before loading)"
    ),
    r"size mismatch for (?P<param>[\w.]+): copying a param with shape torch\.Size\(\[(?P<saved>[^\]]*)\]\) "
    r"from checkpoint, the shape in current model is torch\.Size\(\[(?P<model>[^\]]*)\]\)": (
        "`{param}` has shape [{saved}] in the saved state but [{model}] in your model: build the model "
        "with the same sizes (e.g. the same number of classes) before `load_state_dict`"
    ),
    r"(?:Missing|Unexpected) key\(s\) in state_dict": (
        "the state dict does not fit the model: their parameter names differ (other attribute names or "
        "another architecture). Load it into a model built by the same code that saved it"
    ),
    r"Expected more than 1 value per channel when training": (
        "BatchNorm in training mode got a batch of one sample: call `model.eval()` before predicting "
        "single examples, or drop a last batch of one (`drop_last=True`)"
    ),
    # --- autograd ---
    r"a view of a leaf Variable that requires grad is being used in an in-place operation": (
        "a slice or view of a tensor that requires grad (e.g. `w[0] = ...`, `w[:, 0] += ...`) was changed "
        "in place while autograd was recording. Do it inside `with torch.no_grad():`"
    ),
    r"a leaf Variable that requires grad is being used in an in-place operation": (
        "a parameter that requires grad was updated in place while autograd was recording. "
        "Do the update inside `with torch.no_grad():`"
    ),
    r"one of the variables needed for gradient computation has been modified by an inplace operation": (
        "a tensor that autograd saved for backward was changed in place afterwards (`x += ...`, "
        "`x[...] = ...`, `relu_()`, `nn.ReLU(inplace=True)`, or a parameter updated before `backward()`). "
        "Use the out-of-place form (`x = x + ...`), or update parameters only after `backward()`"
    ),
    r"Trying to backward through the graph a second time": (
        "backward() ran twice through the same graph: recompute the forward pass for every "
        "step instead of reusing an old loss"
    ),
    r"does not require grad and does not have a grad_fn": (
        "backward() was called on a result that autograd did not record: the inputs do not "
        "have `requires_grad=True`, or the loss was computed under `torch.no_grad()` (or from a "
        "`.detach()`ed or `.item()` value)"
    ),
    r"grad can be implicitly created only for scalar outputs": (
        "backward() was called on a tensor with more than one element: reduce it to a "
        "scalar loss first (e.g. `.sum()` or `.mean()`)"
    ),
    r"appears to not have been used in the graph": (
        "the output does not depend on the tensor you differentiate with respect to: it was computed "
        "from a detached copy (`.detach()`, `.item()`, `.numpy()`, `torch.tensor(x)`) or from another tensor"
    ),
    r"Can't call numpy\(\) on Tensor that requires grad": (
        "`.numpy()` on a tensor that autograd is tracking: call `.detach()` first "
        "(`t.detach().cpu().numpy()`), or compute the value under `torch.no_grad()`"
    ),
    r"can't convert (?P<device>\w+)(?::\d+)? device type tensor to numpy": (
        "`.numpy()` works only for tensors in CPU memory, and this one is on {device}: "
        "call `t.detach().cpu().numpy()`"
    ),
    # --- Python truth values of many elements ---
    r"(?:Boolean|truth) value of (?:an? )?(?:Tensor|array) with more than one (?:value|element) is ambiguous": (
        "a tensor or array with several elements was used as one True/False value (in `if`, `while`, "
        "`and`/`or`/`not`, `assert` or `max(a, b)`). Reduce it first with `.all()` or `.any()`, or compare "
        "one number (`.item()`); for choices per element use `torch.where` or a mask"
    ),
    # --- cross-entropy inputs ---
    r"Expected input batch_size \((?P<n>\d+)\) to match target batch_size \((?P<m>\d+)\)": (
        "the model output has {n} rows but there are {m} labels: a reshape mixed up the batch dimension "
        "(flatten with `torch.flatten(x, 1)` or `x.reshape(x.size(0), -1)`, not a hard-coded "
        "`view(-1, ...)`), or the outputs and labels come from different batches"
    ),
    r"Target (?P<target>-?\d+) is out of bounds": (
        "label {target} is not a class index: CrossEntropyLoss wants labels in 0..C-1 for C outputs. "
        "The last layer has too few outputs (`out_features` must be the number of classes), or the "
        "labels start at 1"
    ),
    r"0D or 1D target tensor expected, multi-target not supported": (
        "the labels are not a 1-D tensor of class indices: labels of shape (N, 1) need `labels.squeeze(1)`, "
        "one-hot labels `labels.argmax(dim=1)`"
    ),
    r"Expected floating point type for target with class probabilities, got \w+": (
        "the labels have the shape of the scores (one-hot?) but are integers: CrossEntropyLoss wants class "
        "indices of shape (N,) (`labels.argmax(dim=1)`), or float class probabilities"
    ),
    r"expected target dtype to be Long|expected scalar type Long but found \w+": (
        "the labels have the wrong dtype for the loss: CrossEntropyLoss wants class indices "
        "as int64 (`labels.long()`), not floats"
    ),
    # --- convolutions ---
    r"Given groups=\d+, weight of size \[[^\]]*\], expected input\[(?P<input>[^\]]*)\] to have "
    r"(?P<want>\d+) channels, but got (?P<got>\d+) channels instead": (
        "the conv layer expects {want} input channels but the input [{input}] has {got} in dimension 1: "
        "images must be (N, C, H, W), so a channels-last batch (N, H, W, C) needs `x.permute(0, 3, 1, 2)`; "
        "otherwise fix the layer's `in_channels`"
    ),
    r"Expected [^(\n]*\(unbatched\) or (?P<dims>\w+) \(batched\) input to (?P<op>\w+), but got input of "
    r"size: \[(?P<size>[^\]]*)\]": (
        "`{op}` needs a {dims} batch (N, C, ...) but got shape [{size}]: the input was flattened before the "
        "convolutions, or a single example lacks its batch dimension (`x.unsqueeze(0)`)"
    ),
    # --- shapes of products, broadcasting, reshapes ---
    r"mat1 and mat2 shapes cannot be multiplied \((?P<rows>\d+)x(?P<got>\d+) and (?P<want>\d+)x(?P<out>\d+)\)"
    r"[\s\S]*^(?:where: .*linear\.py|line: .*\blinear\()": (
        "your input has {got} features per sample but the layer expects {want}: a missing flatten "
        "(`torch.flatten(x, 1)` before the layer), or the wrong `in_features` (after convolutions: "
        "channels * height * width of the last feature map)"
    ),
    r"mat1 and mat2 shapes cannot be multiplied \((?P<rows>\d+)x(?P<got>\d+) and (?P<want>\d+)x(?P<out>\d+)\)": (
        "the inner dimensions of a matrix product do not match: the left operand has {got} columns but the "
        "right one has {want} rows. A weight is transposed, or the operands are in the wrong order: write "
        "the shapes next to the product, (n, k) @ (k, m)"
    ),
    r"size mismatch, got input \(\d+\), mat \(\d+x(?P<cols>\d+)\), vec \((?!(?P=cols)\))(?P<vec>\d+)\)": (
        "a matrix-vector product whose sizes do not fit: the matrix has {cols} columns but the vector has "
        "{vec} entries. A transpose is missing, or the operands are in the wrong order"
    ),
    r"Expected size for first two dimensions of batch2 tensor to be: \[(?P<want>[^\]]*)\] but got: "
    r"\[(?P<got>[^\]]*)\]": (
        "a batched matrix product whose inner dimensions do not match: the right operand should start "
        "with [{want}] but has [{got}]. Transpose its last two dimensions (`.transpose(-2, -1)`) or swap the "
        "operands"
    ),
    r"matmul: Input operand 1 has a mismatch in its core dimension 0, with gufunc signature \S+ "
    r"\(size (?P<rows>\d+) is different from (?P<cols>\d+)\)": (
        "the inner dimensions of a matrix product do not match: the left operand has {cols} columns but "
        "the right one has {rows} rows. A weight is transposed (`w.T`), or the operands are in the wrong "
        "order: `x @ w` needs `x.shape[-1] == w.shape[0]`"
    ),
    r"shapes \((?P<a>[\d, ]*)\) and \((?P<b>[\d, ]*)\) not aligned": (
        "shapes ({a}) and ({b}) do not fit a matrix product: the inner dimensions differ. A transpose is "
        "missing, or the operands are in the wrong order"
    ),
    r"size mismatch": (
        "the sizes of two tensors do not fit together: print the `.shape` of each operand and "
        "compare the dimensions that must agree"
    ),
    r"The size of tensor a \((?P<a>\d+)\) must match the size of tensor b \((?P<b>\d+)\) at non-singleton "
    r"dimension (?P<dim>\d+)": (
        "two tensors whose shapes do not broadcast: at dimension {dim} one has size {a}, the other {b}. "
        + _NOT_BROADCASTABLE
    ),
    r"operands could not be broadcast together with shapes (?P<shapes>.*?) *$": (
        "arrays of shapes {shapes} do not broadcast. " + _NOT_BROADCASTABLE
    ),
    r"The expanded size of the tensor \((?P<want>\d+)\) must match the existing size \((?P<got>\d+)\) at "
    r"non-singleton dimension (?P<dim>\d+)\.\s+Target sizes: \[(?P<target>[^\]]*)\]\.\s+Tensor sizes: "
    r"\[(?P<sizes>[^\]]*)\]": (
        "a tensor of shape [{sizes}] cannot be stretched to [{target}] (size {got} against {want} at dimension "
        "{dim}): the value assigned into a slice (`t[...] = value`), or given to `expand`, has the wrong shape"
    ),
    r"output with shape \[(?P<out>[^\]]*)\] doesn't match the broadcast shape \[(?P<full>[^\]]*)\]": (
        "an in-place update (`+=`, `-=`, `add_`) would have to grow its left side from [{out}] to [{full}]: "
        "the right side has extra or mismatched dimensions (an update or gradient of the wrong shape)"
    ),
    r"shape '\[(?P<shape>[^\]]*)\]' is invalid for input of size (?P<size>\d+)": (
        "`view`/`reshape` to [{shape}] does not fit a tensor of {size} elements: compute the size from the "
        "input (`x.reshape(x.size(0), -1)`, `torch.flatten(x, 1)`) instead of hard-coding it"
    ),
    r"view size is not compatible with input tensor's size and stride": (
        "`view` was called on a non-contiguous tensor (e.g. after `.t()`, `.permute()` or "
        "slicing). Use `.reshape(...)` (or `.contiguous().view(...)`) instead"
    ),
    r"Dimension out of range \(expected to be in range of \[-?\d+, (?P<last>-?\d+)\], but got (?P<dim>-?\d+)\)": (
        "`dim={dim}` does not exist: the tensor has fewer dimensions than you think (the last one is "
        "{last}). Print its `.shape`: a single example without its batch dimension, or a reduction "
        "that already removed a dimension"
    ),
    # --- devices ---
    r"Expected all tensors to be on the same device|is not on the expected device|on the expected device|"
    r"same device|Input type \([^)]*(?i:cuda)[^)]*\) and (?:weight|bias) type \((?![^)]*(?i:cuda))|"
    r"Input type \((?![^)]*(?i:cuda))[^)]*\) and (?:weight|bias) type \([^)]*(?i:cuda)": _DIFFERENT_DEVICES,
    # --- dtypes ---
    r"Found dtype (?:Long|Int|Short|Char|Byte|Bool) but expected (?:Float|Double|Half|BFloat16)": (
        "an integer (or bool) tensor where floats are expected, e.g. 0/1 labels for `BCELoss` or "
        "`BCEWithLogitsLoss`: convert it with `.float()`"
    ),
    r"result type (?P<got>\w+) can't be cast to the desired output type (?P<kept>\w+)": (
        "a {got} result cannot be stored in a {kept} tensor: an in-place update (`+=`, `-=`, `/=`) of a "
        "tensor created with an integer dtype (e.g. `torch.tensor([1, 2])`), or integer labels given to a "
        "loss that wants floats (`.float()`)"
    ),
    r"mean\(\): could not infer output dtype": (
        "`.mean()` of an integer or bool tensor (e.g. `(preds == labels).mean()`): convert it first, "
        "`(preds == labels).float().mean()`"
    ),
    r"expected scalar type \w+ but found \w+|Found dtype \w+ but expected \w+|must have the same dtype|"
    r"to have the same dtype|to have same dtype|Input type \([^)]*\) and (?:weight|bias) type \([^)]*\) should "
    r"be the same|mixed dtype|must have the same scalar type|does not match weight dtype|"
    r"source and destination dtypes match|Expected self\.dtype to be equal to src\.dtype": _DIFFERENT_DTYPES,
    # --- values that are not tensors ---
    r"must be Tensor, not numpy\.ndarray|but got numpy\.ndarray|got \(numpy\.ndarray": _NUMPY_NOT_TENSOR,
    r"expected np\.ndarray \(got (?P<got>\w+)\)": (
        "`torch.from_numpy` takes a NumPy array but got a {got}: it already is a tensor, use it as it is "
        "(or `.clone()` it for a copy)"
    ),
    r"\"log_softmax\w*\" not implemented for 'Long'|\"nll_loss\w*\" not implemented for 'Long'": (
        "the loss got the labels where the scores belong: the order is `loss_fn(scores, labels)`, "
        "scores (float, shape (N, C)) first"
    ),
    r"Expected parameter `tensor` of type torch\.Tensor\s+but got <class 'NoneType'>": (
        "a collective (all_reduce, broadcast, ...) got None instead of a tensor: a frozen or unused "
        "parameter's `.grad` is None; skip parameters whose `.grad` is None"
    ),
    r"some parameters appear in more than one parameter group": (
        "a parameter is in two parameter groups: build the groups from disjoint lists (e.g. the head's "
        "parameters, and every other parameter), so each parameter has exactly one learning rate"
    ),
    r"must be Tensor, not tuple|for [^:]*: 'tuple' and 'Tensor'|instances of 'tuple' and|"
    r"'tuple' object has no attribute '(?:clamp|shape|size|view|reshape|mul|sum|t|T|detach|to|numel)'": (
        "a tuple was used where a tensor was needed: `ctx.saved_tensors` is a tuple even when one tensor "
        "was saved (unpack it: `(x,) = ctx.saved_tensors`), and a function that returns several values "
        "returns a tuple (unpack it: `out, cache = f(...)`)"
    ),
    r"must be Tensor, not (?P<got>[\w.]+)": (
        "a {got} was passed where PyTorch needs a tensor: convert it with `torch.tensor(...)` (or "
        "`torch.stack` for a list of tensors)"
    ),
    r"expected Tensor as element (?P<index>\d+) in argument \d+, but got (?P<got>[\w.]+)": (
        "element {index} of the list is a {got}, not a tensor: `torch.stack`/`torch.cat` need a list of "
        "tensors"
    ),
    # --- None where a value was expected ---
    r"cannot unpack non-iterable NoneType object": (
        "a function returned None where values were expected: a `return` is missing"
    ),
    r"(?:'NoneType'[\s\S]*^warning: |\A\w*Warning: )The \.grad attribute of a Tensor that is not a leaf": (
        "a `.grad` is None because the tensor is not a leaf: it was computed from other tensors (by an "
        "update `w = w - lr * w.grad` outside `torch.no_grad()`, or by `.to(device)` or `* scale` after "
        "`requires_grad=True`), and autograd fills `.grad` only for leaves. Make parameters leaves "
        "(`requires_grad_()` last) and update them in place inside `torch.no_grad()`"
    ),
    r"'NoneType'[\s\S]*^line: .*\.grad\b": (
        "a `.grad` is None where a tensor was expected. Either backward() was not called, or "
        "the tensor is no longer a leaf: an update outside `torch.no_grad()` such as "
        "`w = w - lr * w.grad` replaces the leaf by a computed tensor, whose .grad stays None"
    ),
    r"'NoneType'": (
        "a value is None where a tensor or number was expected: a function without `return` (it returns "
        "None), or a `.grad` read before backward() or on a tensor that is not a leaf"
    ),
}

_CONTEXT_LINES = ("warning: ", "where: ", "line: ")


def _error_line(exc: BaseException) -> str:
    """The line of an error worth quoting: its first, or the last of a traceback it carries."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        return lines[-1][:200]
    return lines[0][:200].rstrip(".")


def _innermost_frame(exc: BaseException) -> Any:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def _evidence(exc: BaseException, warned: Iterable[str]) -> tuple[str, str]:
    """(``"<Type>: <message>"``, the same plus the context lines) for matching KNOWN_ERRORS."""
    text = f"{type(exc).__name__}: {exc}"
    context = [f"warning: {w}" for w in warned]
    tb = _innermost_frame(exc)
    if tb is not None:
        code = tb.tb_frame.f_code
        line = linecache.getline(code.co_filename, tb.tb_lineno).strip()
        context += [f"where: {code.co_filename} in {code.co_name}", f"line: {line}"]
    return text, "\n".join([text, *context])


def _stub_function(exc: BaseException) -> str | None:
    """The function whose stub raised ``exc``: from a worker's traceback text, or the innermost frame."""
    named = re.findall(r'^\s*File "[^"]*", line \d+, in (\S+)', str(exc), re.MULTILINE)
    if named:
        name = named[-1]
    else:
        tb = _innermost_frame(exc)
        name = getattr(tb.tb_frame.f_code, "co_qualname", tb.tb_frame.f_code.co_name) if tb else None
    return None if name is None or name.startswith("<") else name


def _known_mistake(exc: BaseException, warned: Iterable[str] = ()) -> tuple[str, str] | None:
    """(the KNOWN_ERRORS pattern that matches ``exc`` first, its filled-in diagnosis), or None."""
    if isinstance(exc, CheckError | MemoryError) or not isinstance(exc, Exception):
        return None
    text, everything = _evidence(exc, warned)
    for pattern, template in KNOWN_ERRORS.items():
        uses_context = any(marker in pattern for marker in _CONTEXT_LINES)
        match = re.search(pattern, everything if uses_context else text, re.MULTILINE)
        if match:
            return pattern, template.format_map(match.groupdict())
    return None


def _explained(name: str, exc: BaseException, warned: Iterable[str] = (), *,
               what: str | None = None) -> tuple[CheckError, BaseException | None] | None:
    """The CheckError that names the mistake behind ``exc`` and the cause to chain, or None.

    ``what`` replaces "raised <Type> (<first line>)" in the message. An exercise's stub gets
    a message of its own, chained to nothing (the stub's traceback tells nothing more). The
    error's ``known_error`` is the KNOWN_ERRORS pattern that matched.
    """
    found = _known_mistake(exc, warned)
    if found is None:
        return None
    pattern, diagnosis = found
    if KNOWN_ERRORS[pattern] is _STUB:
        function = _stub_function(exc)
        error = CheckError(f"{name}: {diagnosis}." + (f"\n(The stub is in `{function}`.)" if function else ""))
        cause = None
    else:
        what = what or f"raised {type(exc).__name__} ({_error_line(exc)})"
        error, cause = CheckError(f"{name}: {what}.\nThis looks like a known mistake: {diagnosis}."), exc
    error.known_error = pattern
    return error, cause


class explain_errors:  # noqa: N801 - used as `with checks.explain_errors(...)`
    """Context manager that turns the errors students run into into named mistakes.

    ``with checks.explain_errors("train"): train(...)`` re-raises an exception whose message
    matches :data:`KNOWN_ERRORS` (shape and dtype mismatches, autograd misuse, labels the loss
    rejects, a hard-coded GPU, an exercise's ``raise NotImplementedError()`` stub, ...) as a
    :class:`CheckError` that names the likely mistake and keeps the original error's first
    line. Warnings raised in the block are shown as usual and taken into account (a non-leaf
    ``.grad`` warning before a ``NoneType`` error); every other exception passes through.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._warned: list[str] = []
        self._showwarning: Callable[..., Any] | None = None

    def __enter__(self) -> explain_errors:
        self._warned = []
        self._showwarning = shown = warnings.showwarning

        def record(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                   line: str | None = None) -> None:
            self._warned.append(str(message))
            shown(message, category, filename, lineno, file, line)

        warnings.showwarning = record
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> bool:
        if self._showwarning is not None:
            warnings.showwarning = self._showwarning
            self._showwarning = None
        if exc is None:
            return False
        explained = _explained(self.name, exc, self._warned)
        if explained is None:
            return False
        error, cause = explained
        raise error from cause


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
    except (RuntimeError, TypeError) as err:  # TypeError: e.g. an un-unpacked ctx.saved_tensors
        first_line = (str(err).splitlines() or [""])[0][:300]
        explained = _explained(name, err, what=f"running forward/backward raised {type(err).__name__}: "
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
    error names a wrong flatten size before the fully connected layer, a
    ``view`` error names ``view`` on a non-contiguous tensor, and the other
    errors of :data:`KNOWN_ERRORS` (an exercise's stub among them) are named too.
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
        explained = _explained(name, err, what=f"the forward pass raised {type(err).__name__}: {text}")
        if explained is not None:
            raise explained[0] from explained[1]
        raise CheckError(f"{name}: the forward pass raised {type(err).__name__}: {text}") from None
    except Exception as err:
        explained = _explained(name, err)
        if explained is not None:
            raise explained[0] from explained[1]
        raise
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
