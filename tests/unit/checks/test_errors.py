"""explain_errors: every error a student's code really raises comes back as the mistake behind it.

Each case triggers the real error with real NumPy/torch code (no hand-written message
strings) inside ``checks.explain_errors`` and asserts that the CheckError names the likely
mistake and keeps the first line of the original error.
"""

import os
import pickle
import traceback
import warnings

import numpy as np
import pytest
import torch
import torch.distributed
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from course_utils import checks
from course_utils.checks import CheckError
from course_utils.distributed import LaunchError

STUB_MESSAGE = ("not implemented yet: replace `raise NotImplementedError()` in the exercise's cell with your "
                "code, then run this check again.")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


# --- the real code behind each error --------------------------------------------------------

def two_layer_forward(x, w1, w2):
    """An exercise as nbgrader hands it out."""
    # YOUR CODE HERE
    raise NotImplementedError()


class StubNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        # YOUR CODE HERE
        raise NotImplementedError()


class MisspelledForward(nn.Module):
    def foward(self, x):
        return x


class AssignsBeforeInit(nn.Module):
    def __init__(self):
        self.fc = nn.Linear(3, 2)
        super().__init__()


class ParameterBeforeInit(nn.Module):
    def __init__(self):
        self.w = nn.Parameter(torch.ones(3))
        super().__init__()


class NoSuperInit(nn.Module):
    def __init__(self):
        self.scale = 2.0

    def forward(self, x):
        return self.scale * x


class ListNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = [nn.Linear(3, 4), nn.Linear(4, 2)]


class DiesInWorker(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        os._exit(1)  # the worker process dies, as it does when it runs out of shared memory


class HoldsLambda(Dataset):
    def __init__(self):
        self.transform = lambda x: 2 * x

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return self.transform(index)


def _backward_twice():
    x = torch.ones(2, requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    loss.backward()


def _modified_after_saved():
    x = torch.ones(2, requires_grad=True)
    s = torch.sigmoid(x * 2)
    s.mul_(2)  # sigmoid's backward needs its output, which this changed
    s.sum().backward()


def _grad_of_unused_input():
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    torch.autograd.grad((a * 2).sum(), [b])


def _rebind_parameter():
    layer = nn.Linear(2, 2)
    layer.weight = layer.weight - 0.1 * torch.ones(2, 2)


def _int_tensor_updated_with_floats():
    counts = torch.tensor([1, 2])
    counts += 0.5


def _assign_into_a_row():
    table = torch.zeros(2, 2)
    table[0] = torch.ones(3)


def _dim_1_of_a_vector():
    scores = torch.tensor([0.1, 0.7, 0.2])  # one prediction, no batch dimension
    return scores.argmax(dim=1)


def _update_without_no_grad_then_grad():
    w = torch.ones(3, requires_grad=True)
    w = w - 0.1 * torch.ones(3)  # now w is computed: not a leaf
    (w * w).sum().backward()
    g = w.grad  # None, with PyTorch's non-leaf warning
    g.zero_()


def _forgot_return(x):
    x * 2


# (id, action that raises the real error, words the diagnosis must contain)
_two = nn.Linear(2, 2)


class _TupleSaved(torch.autograd.Function):
    """A custom Function whose backward forgets that ctx.saved_tensors is a tuple."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        x = ctx.saved_tensors  # the slip: a tuple
        return grad_output * (x > 0)


CASES = [
    # nn.Module and optimizers
    ("forward misspelled", lambda: MisspelledForward()(torch.ones(1)), "`MisspelledForward` has no `forward`"),
    ("module before super().__init__", AssignsBeforeInit, "super().__init__()"),
    ("parameter before super().__init__", ParameterBeforeInit, "super().__init__()"),
    ("super().__init__ never called", lambda: NoSuperInit()(torch.ones(1)), "super().__init__()"),
    ("tensor assigned to a parameter", _rebind_parameter, "assigned to the parameter `weight`"),
    ("optimizer of no parameters", lambda: torch.optim.SGD([], lr=0.1), "given no parameters"),
    ("optimizer of unregistered layers", lambda: torch.optim.SGD(ListNet().parameters(), lr=0.1),
     "`nn.ModuleList`"),
    ("state dict of a DataParallel wrapper",
     lambda: nn.Linear(2, 2).load_state_dict(nn.DataParallel(nn.Linear(2, 2)).state_dict()), "`module.`"),
    ("state dict of other sizes",
     lambda: nn.Linear(3072, 10).load_state_dict(nn.Linear(784, 10).state_dict()),
     "`weight` has shape [10, 784] in the saved state but [10, 3072] in your model"),
    ("state dict of another model",
     lambda: nn.Sequential(nn.Linear(2, 2)).load_state_dict(nn.Linear(2, 2).state_dict()), "names differ"),
    ("BatchNorm on one sample", lambda: nn.BatchNorm1d(3).train()(torch.ones(1, 3)), "model.eval()"),
    # autograd
    ("in-place on a view of a leaf", lambda: torch.ones(3, requires_grad=True)[0].add_(1),
     "slice or view of a tensor that requires grad"),
    ("in-place on a leaf", lambda: torch.ones(3, requires_grad=True).sub_(1), "torch.no_grad()"),
    ("saved tensor modified in place", _modified_after_saved, "changed in place afterwards"),
    ("backward twice", _backward_twice, "recompute the forward pass"),
    ("backward without grad_fn", lambda: torch.ones(3).sum().backward(), "requires_grad=True"),
    ("backward of a non-scalar", lambda: torch.ones(3, requires_grad=True).mul(2).backward(), "scalar loss"),
    ("grad of an unused input", _grad_of_unused_input, "does not depend on the tensor"),
    ("numpy() of a tensor that requires grad", lambda: torch.ones(3, requires_grad=True).numpy(),
     "`.detach()` first"),
    ("numpy() of a tensor off the CPU", lambda: torch.ones(2, device="meta").numpy(), "on meta"),
    # truth values
    ("if on a tensor", lambda: bool(torch.tensor([1.0, 2.0]) > 0), "`.all()` or `.any()`"),
    ("if on an array", lambda: bool(np.array([1.0, 2.0]) > 0), "`.all()` or `.any()`"),
    # cross-entropy inputs
    ("labels of another batch size", lambda: F.cross_entropy(torch.randn(4, 3), torch.tensor([0, 1, 2])),
     "the model output has 4 rows but there are 3 labels"),
    ("label out of range", lambda: F.cross_entropy(torch.randn(4, 3), torch.tensor([0, 1, 5, 1])),
     "label 5 is not a class index"),
    ("labels of shape (N, 1)", lambda: F.cross_entropy(torch.randn(4, 3), torch.tensor([[0], [1], [2], [1]])),
     "`labels.squeeze(1)`"),
    ("one-hot integer labels",
     lambda: F.cross_entropy(torch.randn(4, 3), F.one_hot(torch.tensor([0, 1, 2, 1]), 3)), "argmax"),
    ("float labels", lambda: F.cross_entropy(torch.randn(4, 3), torch.tensor([0.0, 1, 2, 1])), "int64"),
    ("float labels, multi-margin loss", lambda: F.multi_margin_loss(torch.ones(5, 4), torch.ones(5)), "int64"),
    # convolutions
    ("channels-last images into a conv", lambda: nn.Conv2d(3, 8, 3)(torch.ones(2, 32, 32, 3)),
     "expects 3 input channels but the input [2, 32, 32, 3] has 32"),
    ("flattened images into a conv", lambda: nn.Conv2d(3, 8, 3)(torch.ones(4, 3072)),
     "`conv2d` needs a 4D batch (N, C, ...) but got shape [4, 3072]"),
    # shapes
    ("missing flatten before nn.Linear", lambda: nn.Linear(784, 10)(torch.ones(64, 3072)),
     "your input has 3072 features per sample but the layer expects 784: a missing flatten"),
    ("wrong in_features with F.linear", lambda: F.linear(torch.ones(64, 3072), torch.ones(10, 784)),
     "your input has 3072 features per sample but the layer expects 784"),
    ("torch matmul of mismatched shapes", lambda: torch.ones(2, 3) @ torch.ones(2, 3),
     "the left operand has 3 columns but the right one has 2 rows. A weight is transposed"),
    ("torch matrix times vector", lambda: torch.ones(2, 3) @ torch.ones(2),
     "the matrix has 3 columns but the vector has 2 entries"),
    ("torch batched matmul", lambda: torch.ones(2, 2, 3) @ torch.ones(2, 2, 3),
     "should start with [2, 3] but has [2, 2]"),
    ("numpy matmul of mismatched shapes", lambda: np.ones((2, 3)) @ np.ones((2, 3)),
     "the left operand has 3 columns but the right one has 2 rows"),
    ("numpy dot of mismatched shapes", lambda: np.ones((2, 3)).dot(np.ones((2, 3))),
     "shapes (2,3) and (2,3) do not fit a matrix product"),
    ("torch shapes that do not broadcast", lambda: torch.ones(3, 4) - torch.ones(3),
     "at dimension 1 one has size 4, the other 3"),
    ("numpy shapes that do not broadcast", lambda: np.ones((3, 4)) - np.ones(3),
     "arrays of shapes (3,4) (3,) do not broadcast"),
    ("assignment of another shape into a slice", _assign_into_a_row, "[3] cannot be stretched to [2]"),
    ("addmv with a bias of the wrong size", lambda: torch.addmv(torch.ones(3), torch.ones(2, 3), torch.ones(3)),
     "print the `.shape` of each operand"),
    ("in-place update of another shape", lambda: torch.ones(3, 4).add_(torch.ones(3, 1, 4)),
     "grow its left side from [3, 4] to [3, 3, 4]"),
    ("reshape to a hard-coded size", lambda: torch.ones(2, 3).reshape(4, 2), "[4, 2] does not fit"),
    ("view of a transposed tensor", lambda: torch.ones(2, 3).t().view(6), "non-contiguous"),
    ("dim=1 of a vector", _dim_1_of_a_vector, "`dim=1` does not exist"),
    # dtypes
    ("integer labels for BCE", lambda: F.binary_cross_entropy(torch.rand(3), torch.tensor([0, 1, 1])),
     "`.float()`"),
    ("integer labels for BCE with logits",
     lambda: F.binary_cross_entropy_with_logits(torch.rand(3), torch.tensor([0, 1, 1])), "integer dtype"),
    ("float update of an integer tensor", _int_tensor_updated_with_floats, "integer dtype"),
    ("mean of a comparison", lambda: (torch.tensor([1, 2]) == torch.tensor([1, 3])).long().mean(),
     ".float().mean()"),
    ("expected scalar type Float but found Double",
     lambda: torch.ones(1, 2, 2) @ torch.ones(1, 2, 2, dtype=torch.float64), "different dtypes"),
    ("Found dtype Double but expected Float",
     lambda: F.binary_cross_entropy(torch.rand(3), torch.rand(3, dtype=torch.float64)), "different dtypes"),
    ("float64 data into nn.Linear", lambda: nn.Linear(3, 2)(torch.ones(4, 3, dtype=torch.float64)),
     "different dtypes"),
    ("float64 data into a conv", lambda: nn.Conv2d(3, 2, 3)(torch.ones(1, 3, 5, 5, dtype=torch.float64)),
     "different dtypes"),
    ("float64 data into LayerNorm", lambda: nn.LayerNorm(3)(torch.ones(4, 3, dtype=torch.float64)),
     "different dtypes"),
    # devices
    ("tensors on two devices", lambda: torch.ones(2, device="meta") + torch.ones(2), "different devices"),
    # values that are not tensors
    ("numpy array into F.relu", lambda: F.relu(np.ones(2)), "`torch.from_numpy(a)`"),
    ("numpy array into nn.Linear", lambda: nn.Linear(2, 2)(np.ones((1, 2))), "`torch.from_numpy(a)`"),
    ("numpy array into a conv", lambda: nn.Conv2d(1, 1, 1)(np.ones((1, 1, 2, 2))), "`torch.from_numpy(a)`"),
    ("numpy array in torch.stack", lambda: torch.stack([torch.ones(2), np.ones(2)]), "`torch.from_numpy(a)`"),
    ("list in torch.stack", lambda: torch.stack([torch.ones(2), [1.0, 2.0]]),
     "element 1 of the list is a list, not a tensor"),
    ("torch.from_numpy of a tensor", lambda: torch.from_numpy(torch.ones(2)), "it already is a tensor"),
    ("list into F.relu", lambda: F.relu([1.0, 2.0]), "a list was passed where PyTorch needs a tensor"),
    ("all_reduce of a None gradient", lambda: torch.distributed.all_reduce(None),
     "skip parameters whose `.grad` is None"),
    ("a parameter in two groups", lambda: torch.optim.SGD(
        [{"params": list(_two.parameters())}, {"params": [_two.weight]}], lr=0.1), "exactly one learning rate"),
    ("loss arguments swapped", lambda: nn.CrossEntropyLoss()(torch.tensor([0, 2]), torch.randn(2, 3)),
     "`loss_fn(scores, labels)`"),
    ("ctx.saved_tensors not unpacked", lambda: _TupleSaved.apply(torch.ones(2, requires_grad=True)).sum().backward(),
     "`(x,) = ctx.saved_tensors`"),
    ("a (value, cache) tuple used as a tensor", lambda: F.relu((torch.ones(2), None)), "returns a tuple"),
    # None where a value was expected
    ("unpacking what a function returned", lambda: [a for a, b in [_forgot_return(torch.ones(2))]],
     "a `return` is missing"),
    ("using what a function returned", lambda: _forgot_return(torch.ones(2)).sum(),
     "a function without `return`"),
    (".grad of a non-leaf after an update outside no_grad", _update_without_no_grad_then_grad,
     "not a leaf: it was computed from other tensors"),
    (".grad never filled", lambda: 0.1 * torch.ones(3).grad, "`.grad` is None"),
]


@pytest.mark.parametrize(("action", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_real_errors_name_their_mistake(action, words):
    """Is each real error a student's code raises translated into the mistake behind it, with the
    original error's first line kept?"""
    with pytest.raises(CheckError) as info:
        with checks.explain_errors("step"):
            action()
    message = str(info.value)
    original = info.value.__cause__
    assert original is not None and not isinstance(original, CheckError)
    assert message.startswith(f"step: raised {type(original).__name__} (")
    assert "This looks like a known mistake: " in message
    assert words in message, message
    first_line = str(original).strip().splitlines()[0][:200].rstrip(".")
    assert first_line in message


@pytest.mark.parametrize(
    ("action", "words"),
    [
        (lambda: torch.ones(2, 3).t().view(6), "non-contiguous"),
        (lambda: torch.ones(3, requires_grad=True).sub_(1), "torch.no_grad()"),
        (lambda: torch.ones(2, device="meta") + torch.ones(2), "different devices"),
        (lambda: torch.ones(2, 3) @ torch.ones(2, 3), "transposed"),
        (lambda: torch.ones(2, 3, dtype=torch.float64) @ torch.ones(3, 2), "different dtypes"),
        (lambda: F.cross_entropy(torch.randn(4, 3), torch.tensor([0.0, 1, 2, 1])), "wrong dtype"),
        (lambda: torch.ones(3).sum().backward(), "requires_grad=True"),
        (lambda: torch.ones(3, requires_grad=True).mul(2).backward(), "scalar"),
        (lambda: 0.1 * torch.ones(3).grad, "`.grad` is None"),
        (lambda: torch.ones(3).grad.zero_(), "w = w - lr * w.grad"),
    ],
)
def test_explain_errors_names_the_mistake(action, words):
    with pytest.raises(CheckError, match="known mistake") as info:
        with checks.explain_errors("step"):
            action()
    assert words in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError | TypeError | AttributeError)


def test_the_most_specific_entry_wins():
    """Where two entries match, is the specific one used (a view of a leaf, not just a leaf; a layer's
    input width, not just a matrix product)?"""
    with pytest.raises(CheckError, match="slice or view"):
        with checks.explain_errors("step"):
            torch.ones(3, requires_grad=True)[:2].mul_(2)
    with pytest.raises(CheckError, match="the layer expects 10") as info:
        with checks.explain_errors("step"):
            nn.Sequential(nn.Linear(10, 4))(torch.ones(2, 5))
    assert "left operand" not in str(info.value)


def test_shapes_in_the_error_are_named():
    """Does the message use the shapes the error carries, e.g. (64x3072 and 784x10)?"""
    with pytest.raises(CheckError) as info:
        with checks.explain_errors("forward"):
            nn.Sequential(nn.Linear(784, 10))(torch.randn(64, 3, 32, 32).reshape(64, -1))
    assert "(mat1 and mat2 shapes cannot be multiplied (64x3072 and 784x10))" in str(info.value)
    assert "your input has 3072 features per sample but the layer expects 784: a missing flatten" in str(info.value)


def _stub_in_a_worker():
    try:
        two_layer_forward(None, None, None)
    except NotImplementedError:
        raise LaunchError(f"a worker raised an exception:\n[rank 0] {traceback.format_exc()}") from None


def _non_leaf_grad_as_error():
    w = torch.ones(3, requires_grad=True) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w.grad  # noqa: B018 - the access is what warns


def _lambda_to_spawned_workers():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own hint about pickling errors
        list(DataLoader(HoldsLambda(), num_workers=1, multiprocessing_context="spawn"))


# Entries only some machines can raise for real: the GPU ones are tested on a GPU (below), and a
# CPU-only build of torch is simulated in test_torch_built_without_cuda.
_HARDWARE_ONLY = ("device-side assert", "CUDA out of memory")
EXTRA_ACTIONS = [
    lambda: two_layer_forward(None, None, None),
    lambda: StubNet()(torch.ones(2, 3)),
    _stub_in_a_worker,
    _non_leaf_grad_as_error,
    lambda: list(DataLoader(DiesInWorker(), num_workers=1)),
    _lambda_to_spawned_workers,
    lambda: pickle.dumps(HoldsLambda().transform),
]
if torch.cuda.is_available():
    EXTRA_ACTIONS.append(lambda: torch.ones(1, device=f"cuda:{torch.cuda.device_count()}"))
else:
    EXTRA_ACTIONS.append(lambda: torch.ones(1).cuda())


def test_every_entry_is_proven_by_a_real_error():
    """Does every KNOWN_ERRORS entry (but those only a GPU can raise) match a real error in these
    tests, so that no entry is dead or shadowed by a more general one above it?"""
    matched = set()
    for action in [case[1] for case in CASES] + EXTRA_ACTIONS:
        with pytest.raises(CheckError) as info:
            with checks.explain_errors("step"):
                action()
        matched.add(info.value.known_error)
    unproven = [p for p in checks.KNOWN_ERRORS if p not in matched and not any(h in p for h in _HARDWARE_ONLY)]
    assert unproven == []


# --- an exercise not done yet --------------------------------------------------------------

def test_a_stub_says_which_exercise_is_not_done():
    """Does nbgrader's `raise NotImplementedError()` stub say that the exercise is not done yet,
    without chaining the stub's traceback?"""
    with pytest.raises(CheckError) as info:
        with checks.explain_errors("two_layer_forward"):
            two_layer_forward(np.ones((2, 3)), np.ones((3, 4)), np.ones((4, 1)))
    assert str(info.value) == f"two_layer_forward: {STUB_MESSAGE}\n(The stub is in `two_layer_forward`.)"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_stub_in_a_method_is_named_by_its_class():
    """Is a stub in a module's forward reported as that exercise, naming Class.method?"""
    with pytest.raises(CheckError) as info:
        with checks.explain_errors("StubNet"):
            StubNet()(torch.ones(2, 3))
    assert str(info.value).startswith(f"StubNet: {STUB_MESSAGE}")
    assert "`StubNet.forward`" in str(info.value)


def test_a_stub_in_a_worker_is_named():
    """Is a stub that raised in a torchrun worker (its traceback inside a LaunchError) reported as
    not implemented yet?"""
    try:
        two_layer_forward(None, None, None)
    except NotImplementedError:
        details = f"[rank 0] {traceback.format_exc()}"
    with pytest.raises(CheckError) as info:
        with checks.explain_errors("train_step"):
            raise LaunchError(f"a worker raised an exception:\n{details}")
    assert str(info.value).startswith(f"train_step: {STUB_MESSAGE}")
    assert "`two_layer_forward`" in str(info.value)


def test_checks_that_run_student_code_report_stubs_too():
    """Do check_forward_shape and check_autograd_function, which catch errors themselves, report a
    stub as not implemented yet?"""
    with pytest.raises(CheckError, match="^net: not implemented yet"):
        checks.check_forward_shape("net", StubNet(), torch.ones(2, 3), (2, 2))

    class StubBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad_output):
            raise NotImplementedError()

    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(CheckError, match="^fn backward: not implemented yet"):
        checks.check_autograd_function("fn backward", StubBackward.apply, [x])


def test_check_forward_shape_names_known_mistakes():
    """Does check_forward_shape name a known mistake in its forward pass (channels-last images into a
    conv; a numpy array) and keep its own wording?"""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    with pytest.raises(CheckError, match="forward pass raised RuntimeError") as info:
        checks.check_forward_shape("net", net, torch.ones(2, 8, 8, 3), (2, 5))
    assert "x.permute(0, 3, 1, 2)" in str(info.value)
    with pytest.raises(CheckError, match="torch.from_numpy"):
        checks.check_forward_shape("net", net, np.ones((2, 3, 8, 8)), (2, 5))


# --- what passes through unchanged -------------------------------------------------------

def test_explain_errors_lets_other_errors_through():
    with pytest.raises(ValueError):
        with checks.explain_errors("step"):
            raise ValueError("unrelated")
    with pytest.raises(RuntimeError, match="something else"):
        with checks.explain_errors("step"):
            raise RuntimeError("something else")
    with checks.explain_errors("step"):
        pass


def test_unrelated_exceptions_pass_through_unchanged():
    """Do exceptions no entry knows leave the block as they are, the same object?"""
    for make in [lambda: ValueError("unrelated"), lambda: KeyError("w1")]:
        raised = make()
        with pytest.raises(type(raised)) as info:
            with checks.explain_errors("step"):
                raise raised
        assert info.value is raised
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar") as info:
        with checks.explain_errors("step"):
            torch.ones(2).item()
    assert not isinstance(info.value, CheckError)
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):  # torch's own, not a stub
        with checks.explain_errors("step"):
            torch.ones(2, device="meta").cpu()


def test_interrupts_memory_errors_and_check_errors_pass_through():
    """Do KeyboardInterrupt, MemoryError (the grader counts it) and a failing check inside the block
    pass through unchanged?"""
    for raised in [KeyboardInterrupt(), MemoryError(), CheckError("y: values do not match")]:
        with pytest.raises(type(raised)) as info:
            with checks.explain_errors("step"):
                raise raised
        assert info.value is raised
    with checks.explain_errors("step"):
        pass


def test_warnings_are_still_shown_and_the_hook_restored():
    """Does a warning raised in the block still reach the caller, and is warnings.showwarning
    restored afterwards (also after an error)?"""
    before = warnings.showwarning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with checks.explain_errors("step"):
            warnings.warn("learning rate is large", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["learning rate is large"]
    with pytest.raises(CheckError):
        with checks.explain_errors("step"):
            torch.ones(2, 3) @ torch.ones(2, 3)
    assert warnings.showwarning is before


def test_a_non_leaf_grad_warning_turned_into_an_error_is_named():
    """With warnings turned into errors, is PyTorch's non-leaf `.grad` warning itself named?"""
    w = torch.ones(3, requires_grad=True) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckError, match="not a leaf"):
            with checks.explain_errors("step"):
                w.grad  # noqa: B018 - the access is what warns


# --- DataLoader workers -------------------------------------------------------------------

def test_a_dead_dataloader_worker_is_named():
    """Does a DataLoader worker that died say to run with num_workers=0 to see the real error?"""
    with pytest.raises(CheckError, match="num_workers=0") as info:
        with checks.explain_errors("loader"):
            list(DataLoader(DiesInWorker(), num_workers=1))
    assert "exited unexpectedly" in str(info.value)


def test_a_lambda_in_a_dataset_with_spawned_workers_is_named():
    """Does a Dataset holding a lambda, sent to spawned workers, name the lambda?"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own hint about pickling errors
        with pytest.raises(CheckError, match="a lambda or a function or class defined inside"):
            with checks.explain_errors("loader"):
                list(DataLoader(HoldsLambda(), num_workers=1, multiprocessing_context="spawn"))


def test_a_lambda_defined_at_top_level_is_named():
    """Is the pickling error of a lambda at the top level of a module (a notebook's) named too?"""
    with pytest.raises(CheckError, match="a lambda"):
        with checks.explain_errors("loader"):
            pickle.dumps(HoldsLambda().transform)


# --- GPUs ---------------------------------------------------------------------------------

@needs_no_cuda
def test_a_hard_coded_cuda_on_a_machine_without_gpu_is_named():
    """Does `.cuda()` on a machine without a GPU say to use the notebook's device?"""
    with pytest.raises(CheckError, match="config.device"):
        with checks.explain_errors("step"):
            torch.ones(1).cuda()


def test_torch_built_without_cuda_is_named(monkeypatch):
    """On a CPU-only build of torch (its CUDA entry point removed), does `.cuda()` say to use the
    notebook's device?"""
    if torch.cuda.is_initialized():
        pytest.skip("CUDA is already initialised in this process")
    monkeypatch.delattr(torch._C, "_cuda_getDeviceCount", raising=False)
    with pytest.raises(CheckError, match="config.device") as info:
        with checks.explain_errors("step"):
            torch.ones(1).cuda()
    assert "Torch not compiled with CUDA enabled" in str(info.value)


@needs_cuda
def test_tensors_on_cpu_and_gpu_are_named():
    """On a GPU, are a CPU tensor and a GPU tensor in one operation named, also in a conv?"""
    with pytest.raises(CheckError, match="different devices"):
        with checks.explain_errors("step"):
            torch.ones(2, 2, device="cuda") @ torch.ones(2, 2)
    with pytest.raises(CheckError, match="different devices"):
        with checks.explain_errors("step"):
            nn.Conv2d(3, 2, 3).cuda()(torch.ones(1, 3, 5, 5))


@needs_cuda
def test_a_gpu_out_of_memory_is_named():
    """Does a CUDA out-of-memory error name the batch size?"""
    with pytest.raises(CheckError, match="smaller batch"):
        with checks.explain_errors("step"):
            torch.empty(2**50, device="cuda")


@needs_cuda
def test_an_invalid_gpu_is_named():
    """Does asking for a GPU this machine lacks say to use the notebook's device?"""
    with pytest.raises(CheckError, match="config.device"):
        with checks.explain_errors("step"):
            torch.ones(1, device=f"cuda:{torch.cuda.device_count()}")


@needs_cuda
def test_a_device_side_assert_is_named(tmp_path):
    """Does a label out of range on the GPU (a device-side assert, which breaks the process's CUDA
    context, so it runs in a process of its own) name the label?"""
    import subprocess
    import sys

    script = tmp_path / "assert.py"
    script.write_text(
        "import torch, torch.nn.functional as F\n"
        "from course_utils import checks\n"
        "try:\n"
        "    with checks.explain_errors('loss'):\n"
        "        F.cross_entropy(torch.randn(4, 3, device='cuda'), torch.tensor([0, 1, 7, 1], device='cuda'))\n"
        "        torch.cuda.synchronize()\n"
        "except checks.CheckError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120).stdout
    assert "label outside 0..C-1" in out, out
