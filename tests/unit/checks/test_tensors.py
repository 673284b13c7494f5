"""The torch-specific self-checks name each classic mistake in their message."""

import pytest
import torch
from torch import nn

from course_utils import checks
from course_utils.checks import CheckError


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model(torch.randn(5, 3)).pow(2).sum().backward()
    return model


# --- check_updated_in_place -----------------------------------------------------------

def test_updated_in_place_passes_a_real_step(capsys):
    model = _model()
    before = checks.param_snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    checks.check_updated_in_place("sgd", model, before)
    assert "passed" in capsys.readouterr().out


def test_updated_in_place_names_rebinding():
    model = _model()
    before = checks.param_snapshot(model)
    with torch.no_grad():
        for param in model.parameters():
            param = param - 0.1 * param.grad  # noqa: F841 - the bug under test
    with pytest.raises(CheckError, match=r"param = param - lr \* param.grad") as info:
        checks.check_updated_in_place("sgd", model, before)
    assert "0.weight" in str(info.value) and "flat" in str(info.value)


def test_updated_in_place_names_update_recorded_by_autograd():
    w = torch.ones(3, requires_grad=True)
    before = checks.param_snapshot({"w": w})
    w = w - 0.1  # outside no_grad: w is now a non-leaf with a grad_fn
    with pytest.raises(CheckError, match=r"outside `torch.no_grad\(\)`"):
        checks.check_updated_in_place("step", {"w": w}, before)


def test_updated_in_place_accepts_lists_and_single_tensors():
    a, b = torch.zeros(2), torch.zeros(3)
    before = checks.param_snapshot([a, b])
    a += 1
    with pytest.raises(CheckError, match=r"\[1\]"):
        checks.check_updated_in_place("step", [a, b], before)
    t = torch.zeros(2)
    snap = checks.param_snapshot(t)
    t += 1
    checks.check_updated_in_place("step", t, snap, quiet=True)


# --- check_grads_cleared --------------------------------------------------------------

def test_grads_cleared_names_accumulation():
    model = _model()
    with pytest.raises(CheckError, match="accumulate across steps"):
        checks.check_grads_cleared("sgd", model)
    for p in model.parameters():
        p.grad = None
    checks.check_grads_cleared("sgd", model, quiet=True)
    model(torch.randn(2, 3)).sum().backward()
    for p in model.parameters():
        p.grad.zero_()
    checks.check_grads_cleared("sgd", model, quiet=True)


# --- check_tensor ---------------------------------------------------------------------

def test_check_tensor_names_dtype_device_and_shape_slips():
    checks.check_tensor("t", torch.zeros(2, 3), shape=(2, 3), dtype=torch.float32, device="cpu",
                        quiet=True)
    with pytest.raises(CheckError, match="expected a torch.Tensor"):
        checks.check_tensor("t", [1.0, 2.0])
    with pytest.raises(CheckError, match="float64 and `torch.from_numpy`"):
        checks.check_tensor("t", torch.zeros(2, dtype=torch.float64), dtype=torch.float32)
    with pytest.raises(CheckError, match="integer tensor"):
        checks.check_tensor("t", torch.zeros(2, dtype=torch.int64), dtype=torch.float32)
    with pytest.raises(CheckError, match=r"\.long\(\)"):
        checks.check_tensor("t", torch.zeros(2), dtype=torch.int64)
    with pytest.raises(CheckError, match="different devices"):
        checks.check_tensor("t", torch.zeros(2), device="meta")
    with pytest.raises(CheckError, match="transposed"):
        checks.check_tensor("t", torch.zeros(3, 2), shape=(2, 3))


# --- check_cross_entropy_inputs -------------------------------------------------------

def test_cross_entropy_inputs_accepts_logits_and_long_labels(capsys):
    logits = torch.randn(6, 4)
    checks.check_cross_entropy_inputs("loss", logits, torch.tensor([0, 1, 2, 3, 0, 1]))
    assert "passed" in capsys.readouterr().out


def test_cross_entropy_inputs_names_softmax_before_the_loss():
    probs = torch.randn(6, 4).softmax(dim=1)
    with pytest.raises(CheckError, match="softmax was applied before CrossEntropyLoss"):
        checks.check_cross_entropy_inputs("loss", probs, torch.zeros(6, dtype=torch.long))
    log_probs = torch.randn(6, 4).log_softmax(dim=1)
    with pytest.raises(CheckError, match="log-softmax was applied before CrossEntropyLoss"):
        checks.check_cross_entropy_inputs("loss", log_probs, torch.zeros(6, dtype=torch.long))


def test_cross_entropy_inputs_names_wrong_label_dtype_and_shape():
    logits = torch.randn(6, 4)
    with pytest.raises(CheckError, match="labels of the wrong dtype for the loss"):
        checks.check_cross_entropy_inputs("loss", logits, torch.zeros(6))
    with pytest.raises(CheckError, match="wrong dtype"):
        checks.check_cross_entropy_inputs("loss", logits, torch.zeros(6, dtype=torch.int32))
    with pytest.raises(CheckError, match="one class index per row"):
        checks.check_cross_entropy_inputs("loss", logits, torch.zeros(6, 1, dtype=torch.long))
    with pytest.raises(CheckError, match="class indices in 0..3"):
        checks.check_cross_entropy_inputs("loss", logits, torch.full((6,), 4))


# --- check_autograd_function ----------------------------------------------------------

class _Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * 3 * x**2


class _CubeNoChainRule(_Cube):
    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return 3 * x**2


class _CubeWrongDerivative(_Cube):
    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * x**2


class _CubeNone(_Cube):
    @staticmethod
    def backward(ctx, grad_output):
        return None


def _x(dtype=torch.float64):
    return torch.randn(3, 2, dtype=dtype, generator=torch.Generator().manual_seed(1)).requires_grad_()


def test_autograd_function_passes_correct_backward(capsys):
    checks.check_autograd_function("cube", _Cube.apply, [_x()])
    assert "gradcheck" in capsys.readouterr().out


def test_autograd_function_names_missing_chain_rule():
    with pytest.raises(CheckError, match="ignores grad_output"):
        checks.check_autograd_function("cube", _CubeNoChainRule.apply, [_x()])


def test_autograd_function_names_listed_mistake():
    x = _x()
    with pytest.raises(CheckError, match="forgot the factor 3"):
        checks.check_autograd_function("cube", _CubeWrongDerivative.apply, [x],
                                       mistakes={"forgot the factor 3": x.detach() ** 2})


def test_autograd_function_names_float32_none_and_plain_forward():
    with pytest.raises(CheckError, match="double precision"):
        checks.check_autograd_function("cube", _Cube.apply, [_x(torch.float32)])
    with pytest.raises(CheckError, match="requires_grad=True"):
        checks.check_autograd_function("cube", _Cube.apply, [_x().detach()])
    with pytest.raises(CheckError, match="returned None"):
        checks.check_autograd_function("cube", _CubeNone.apply, [_x()])
    with pytest.raises(CheckError, match="no grad_fn"):
        checks.check_autograd_function("cube", lambda x: x.detach() ** 3, [_x()])
