"""Checks of ``nn.Module`` objects and optimizers (notebooks 05-07).

* :func:`unregistered`, :func:`check_registered` - layers and trainable tensors that
  ``parameters()`` cannot see;
* :func:`check_forward_shape` - a forward pass, its errors named, and its output shape;
* :func:`check_optimizer_tracks_model` - an optimizer that updates the model's own parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import torch

from course_utils.checks.core import MAX_LISTED, CheckError, check_shape, passed
from course_utils.checks.errors import explained_error

__all__ = ["check_forward_shape", "check_optimizer_tracks_model", "check_registered", "unregistered"]

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
    errors of :data:`~course_utils.checks.errors.KNOWN_ERRORS` (an exercise's
    stub among them) are named too.
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
        explained = explained_error(name, err, what=f"the forward pass raised {type(err).__name__}: {text}")
        if explained is not None:
            raise explained[0] from explained[1]
        raise CheckError(f"{name}: the forward pass raised {type(err).__name__}: {text}") from None
    except Exception as err:
        explained = explained_error(name, err)
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
        listed = ", ".join(missing[:MAX_LISTED]) + (" ..." if len(missing) > MAX_LISTED else "")
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
