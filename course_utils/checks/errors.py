"""explain_errors: the error a student's code raised -> the classic mistake behind it.

* :data:`KNOWN_ERRORS` - the table: a regular expression over an error's text, and the
  diagnosis it earns;
* :class:`explain_errors` - the context manager that re-raises a known error as a
  :class:`~course_utils.checks.core.CheckError` naming the mistake;
* :func:`explained_error` - the same translation for the other checks of the package
  (``check_forward_shape``, ``check_autograd_function``), which catch errors themselves.
"""

from __future__ import annotations

import linecache
import re
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from course_utils.checks.core import CheckError, error_line

__all__ = ["KNOWN_ERRORS", "explain_errors"]

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


def explained_error(name: str, exc: BaseException, warned: Iterable[str] = (), *,
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
        what = what or f"raised {type(exc).__name__} ({error_line(exc)})"
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
        explained = explained_error(self.name, exc, self._warned)
        if explained is None:
            return False
        error, cause = explained
        raise error from cause
