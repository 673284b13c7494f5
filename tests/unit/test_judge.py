"""The judge and its data-only boundary to the kernel (wire, agent, judge), without Jupyter.

A kernel is stood in for by :class:`course_utils.grader.agent.Agent` serving a
namespace of "student" code, in a thread (or, where signals matter, a child
process) on one end of a socket pair; the judge's :class:`Link` is the other end.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from course_utils import checks
from course_utils.grader import wire
from course_utils.grader.agent import Agent
from course_utils.grader.judge import KernelTimeout, Link, judge_namespace, run_test

STUDENT = '''
import numpy as np
import torch


def forward(x, w):
    return np.maximum(x @ w, 0)


def sgd_step(params, grads, lr):
    for p, g in zip(params, grads):
        p -= lr * g


def sgd_replaces(params, grads, lr):
    for i, (p, g) in enumerate(zip(params, grads)):
        params[i] = p - lr * g


def train(x, w, lr, steps):
    losses = []
    for _ in range(steps):
        out = forward(x, w)
        losses.append(float((out ** 2).sum()))
        sgd_step([w], [2 * x.T @ (out * (out > 0))], lr)
    return losses


def raises(kind):
    raise {"value": ValueError, "key": KeyError}[kind]("student message")


def noisy():
    import logging
    import sys
    import warnings
    logging.warning("a log line")
    warnings.warn("a warning")
    print("on stderr", file=sys.stderr)
    print("on stdout")
    return 3


W = torch.randn(3, requires_grad=True)
loss = (W * 2).sum()


def leaves(t):
    return [W]


class Anything:
    def __eq__(self, other):
        return True

    def __array__(self, dtype=None, copy=None):
        return np.zeros(3)


def tricky():
    return Anything()


def tensor_subclass():
    class Sneaky(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            return True
    return torch.zeros(3).as_subclass(Sneaky)


def nonleaf(t):
    return t * 2


def parameter():
    return torch.nn.Parameter(torch.ones(2))


def scale(t):
    return t * 3


def count(d):
    return len(d)


def build(act):
    return act()


def zero_grads(model):
    for p in model.parameters():
        p.grad = None
'''

OWN = [("np", "numpy", None), ("torch", "torch", None), ("checks", "course_utils", "checks")]


@pytest.fixture
def kernel():
    namespace: dict = {}
    exec(STUDENT, namespace)  # noqa: S102 - the stand-in student's code
    judge_end, kernel_end = socket.socketpair()
    thread = threading.Thread(target=lambda: Agent(kernel_end, namespace).serve(), daemon=True)
    thread.start()
    link = Link(judge_end, time.monotonic() + 30, interrupt=lambda: None)
    yield link, namespace
    link.end()
    thread.join(timeout=5)
    judge_end.close()
    kernel_end.close()


def _judge(link, source):
    return run_test(source, link, judge_namespace(OWN))


# -- values ------------------------------------------------------------------------------------

def _round_trip(value):
    kernel_side, judge_side = wire.Codec(owner=True), wire.Codec(owner=False)
    node, buffers = kernel_side.encode(value)
    return judge_side.decode(node, buffers)


@pytest.mark.parametrize("value", [
    None, True, 3, -2**70, 1.5, "text", [1, [2, (3, "x")]], {"a": 1, 2: [3.0]}, (),
    np.arange(6, dtype=np.int32).reshape(2, 3), np.array([True, False]), np.float32(2.5),
    np.dtype("float64"), torch.float16, torch.device("cpu"), torch.Size([2, 3]),
])
def test_plain_values_cross_unchanged(value):
    got = _round_trip(value)
    assert type(got) is type(value)
    if isinstance(value, np.ndarray):
        assert got.dtype == value.dtype and np.array_equal(got, value)
    else:
        assert got == value


def test_non_finite_floats_cross():
    got = _round_trip([math.nan, math.inf, -math.inf])
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.int64, torch.bool])
def test_tensors_cross_as_base_tensors(dtype):
    value = torch.arange(6).reshape(2, 3).to(dtype)
    got = _round_trip(value)
    assert type(got) is torch.Tensor and got.dtype == dtype and torch.equal(got, value)


def test_tensor_state_crosses_leaf_grad_and_parameter():
    leaf = torch.ones(3, requires_grad=True)
    leaf.grad = torch.full((3,), 2.0)
    got = _round_trip(leaf)
    assert got.is_leaf and got.requires_grad and torch.equal(got.grad, leaf.grad)
    nonleaf = _round_trip(leaf * 2)
    assert not nonleaf.is_leaf and nonleaf.requires_grad
    param = _round_trip(torch.nn.Parameter(torch.zeros(2)))
    assert type(param) is torch.nn.Parameter
    meta = _round_trip(torch.empty(2, 2, device="meta", dtype=torch.float16))
    assert meta.device.type == "meta" and meta.dtype == torch.float16


def test_objects_cross_as_references():
    class Thing:
        pass

    got = _round_trip(Thing())
    assert isinstance(got, wire.Ref) and got.type_name.endswith("Thing")


@pytest.mark.parametrize("node, buffers", [
    ({"nd": {"buf": 0, "dtype": "<f8", "shape": [2]}}, [b"1234"]),  # wrong buffer size
    ({"nd": {"buf": 0, "dtype": "|O", "shape": [1]}}, [b"12345678"]),  # object dtype
    ({"nd": {"buf": 3, "dtype": "<f8", "shape": [1]}}, []),  # missing buffer
    ({"pickle": "gASVAAAAAAAAAAB9lC4="}, []),  # no pickle, ever
    ({"tensor": {"buf": 0, "dtype": "int64", "shape": [1], "requires_grad": True}}, [b"\0" * 8]),
    ({"list": [1], "lid": 7}, []),  # claims to be a judge object the judge never sent
    ({"size": ["x"]}, []),
    ({"obj": 1, "type": "x", "exec": "boom"}, []),
    ({"list": [1], "dict": []}, []),
])
def test_malformed_values_are_wire_errors(node, buffers):
    with pytest.raises(wire.WireError):
        wire.Codec(owner=False).decode(node, buffers)


def test_deep_nesting_and_huge_frames_are_refused():
    node: object = 1
    for _ in range(wire.MAX_DEPTH + 5):
        node = {"list": [node]}
    with pytest.raises(wire.WireError):
        wire.Codec(owner=False).decode(node, [])
    a, b = socket.socketpair()
    a.sendall((10**9).to_bytes(8, "big"))
    with pytest.raises(wire.WireError, match="over the"):
        wire.recv_frame(b, limit=1000)
    a.close()
    b.close()


# -- the judge against a stand-in kernel ----------------------------------------------------------

def test_a_test_reads_like_notebook_code(kernel):
    link, _ = kernel
    verdict = _judge(link, '''
_x = np.array([[1.0, -2.0]]); _w = np.array([[1.0], [1.0]])
checks.check_close("forward", forward(_x, _w), [[0.0]])
checks.passed("forward")
''')
    assert verdict.passed, verdict.error
    assert "forward: passed" in verdict.output


def test_in_place_changes_come_back_and_replacements_are_seen(kernel):
    link, _ = kernel
    verdict = _judge(link, '''
_p = [np.ones(3)]
_ids = [id(v) for v in _p]
assert sgd_step(_p, [np.ones(3)], 0.25) is None
checks.check_close("in place", _p[0], np.full(3, 0.75))
assert [id(v) for v in _p] == _ids
_q = [np.ones(3)]
_q_ids = [id(v) for v in _q]
sgd_replaces(_q, [np.ones(3)], 0.5)
assert [id(v) for v in _q] != _q_ids, "a replaced array is a new object"
''')
    assert verdict.passed, verdict.error


def test_substitute_runs_reference_code_in_the_judge(kernel):
    link, namespace = kernel
    verdict = _judge(link, '''
_calls = []
def _reference(x, w):
    _calls.append(1)
    return x @ w
_x = np.ones((2, 2)); _w = np.full((2, 1), 1.0)
with checks.substitute(forward=_reference):
    _losses = train(_x, _w, 0.01, 3)
assert len(_calls) == 3 and _losses[0] == 8.0
assert not np.all(_w == 1.0), "the student's update of w reached the judge's array"
''')
    assert verdict.passed, verdict.error
    assert namespace["forward"].__name__ == "forward", "the student's own name is put back"


def test_kernel_objects_keep_their_identity(kernel):
    link, _ = kernel
    verdict = _judge(link, '''
assert [id(t) for t in leaves(loss)] == [id(W)]
_t = nonleaf(W)
assert not _t.is_leaf and _t.requires_grad
assert checks.is_instance(parameter(), torch.nn.Parameter)
''')
    assert verdict.passed, verdict.error


def test_drivers_run_in_the_kernel_on_its_own_objects(kernel):
    """run_in_kernel: backward through the student's graph, a model built there, its state back."""
    link, _ = kernel
    verdict = _judge(link, '''
def _grads(out, params):
    out.sum().backward()
    return [p.grad for p in params]

_ps = [torch.ones(2, requires_grad=True)]
_out = scale(_ps[0])
_g = checks.run_in_kernel(_grads, _out, _ps)
checks.check_close("grad", _g[0], torch.full((2,), 3.0))
checks.check_close("synced grad", _ps[0].grad, torch.full((2,), 3.0))

def _model():
    torch.manual_seed(0)
    m = nn.Linear(2, 1)
    m(torch.ones(1, 2)).sum().backward()
    return m

def _state(m):
    return {n: (p.detach().clone(), p.grad) for n, p in m.named_parameters()}

_m = checks.run_in_kernel(_model)
assert checks.is_instance(_m, torch.nn.Linear) and not isinstance(_m, torch.nn.Linear)
assert checks.run_in_kernel(_state, _m)["weight"][1] is not None
zero_grads(_m)
assert all(g is None for _, g in checks.run_in_kernel(_state, _m).values())
''')
    assert verdict.passed, verdict.error


def test_attributes_of_kernel_objects_read_and_write(kernel):
    link, _ = kernel
    verdict = _judge(link, '''
def _build():
    return nn.Linear(2, 1)

_m = checks.run_in_kernel(_build)
assert _m.in_features == 2 and _m.weight.shape == (1, 2)
_m.in_features = 5
assert _m.in_features == 5
''')
    assert verdict.passed, verdict.error


def test_drivers_see_the_same_names_in_a_notebook():
    """In a notebook a driver runs in the same bare namespace as in the kernel."""
    from course_utils import checks

    notebook_global = 3  # noqa: F841 - a driver must not see it

    def _uses_global():
        return notebook_global  # noqa: F821

    def _uses_modules(x):
        relu = nn.ReLU()  # noqa: F821 - the driver's namespace has nn
        return float(torch.as_tensor(np.asarray(x)).sum()) + math.pi * 0 + relu(torch.ones(1)).item()

    with pytest.raises(NameError):
        checks.run_in_kernel(_uses_global)
    assert checks.run_in_kernel(_uses_modules, [1.0, 2.0]) == 4.0


def test_library_classes_cross_by_name_and_test_built_modules_are_refused(kernel):
    link, _ = kernel
    verdict = _judge(link, '''
assert count(torch.nn.Linear(2, 1).state_dict()) == 2
assert checks.is_instance(build(torch.nn.Tanh), torch.nn.Tanh)
''')
    assert verdict.passed, verdict.error
    refused = _judge(link, "count(torch.nn.Linear(2, 1))")
    assert refused.error[0] == "TestError" and "run_in_kernel" in refused.error[1]


def test_course_helpers_run_in_the_kernel_by_name(kernel):
    link, _ = kernel
    verdict = _judge(link, '''
def _build():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = [nn.Linear(2, 2)]
    return Net()

assert checks.run_in_kernel(checks.unregistered, checks.run_in_kernel(_build)) == (["layers (list)"], [])
''')
    assert verdict.passed, verdict.error


def test_student_exceptions_are_catchable_as_themselves(kernel):
    link, _ = kernel
    verdict = _judge(link, '''
try:
    raises("value")
except ValueError as err:
    assert "student message" in str(err)
else:
    raise AssertionError("no error")
''')
    assert verdict.passed, verdict.error
    failed = _judge(link, 'raises("key")')
    assert not failed.passed and "KeyError" in failed.error[1] and "student message" in failed.error[1]


def test_stderr_noise_does_not_fail_and_is_shown_as_output(kernel):
    link, _ = kernel
    verdict = _judge(link, 'assert noisy() == 3\nprint("visible line")')
    assert verdict.passed, verdict.error
    assert "on stderr" in verdict.output and "on stdout" in verdict.output and "visible line" in verdict.output


@pytest.mark.parametrize("call", ["tricky()", "tensor_subclass()"])
def test_returned_objects_cannot_pose_as_the_answer(kernel, call):
    link, _ = kernel
    verdict = _judge(link, f'checks.check_close("answer", {call}, np.ones(3) * 7)')
    assert not verdict.passed


def test_hidden_failures_show_no_values_or_source(kernel):
    link, _ = kernel
    verdict = _judge(link, '''
print("shown")
### BEGIN HIDDEN TESTS
noisy()
_secret = np.array([4.25, 9.5])
checks.check_close("hidden secret", forward(np.ones((1, 2)), np.ones((2, 2))), _secret, quiet=True)
### END HIDDEN TESTS
''')
    assert not verdict.passed
    assert verdict.error[1] == "a hidden test failed: check 'hidden secret' failed"
    assert "4.25" not in verdict.output + verdict.error[1]
    assert "on stderr" not in verdict.output and "shown" in verdict.output
    literal = _judge(link, '### BEGIN HIDDEN TESTS\nassert 1 == 2, f"got {1} expected {2}"\n### END HIDDEN TESTS')
    assert literal.error[1] == "a hidden test failed (its code and expected values are not shown)"


def test_a_kernel_that_sends_garbage_fails_the_test_only():
    judge_end, kernel_end = socket.socketpair()

    def liar():
        wire.recv_frame(kernel_end)
        wire.send_frame(kernel_end, {"op": "answer", "value": {"nd": {"buf": 0, "dtype": "|O", "shape": [1]}}},
                        [b"x" * 8])

    threading.Thread(target=liar, daemon=True).start()
    verdict = run_test("forward(1, 2)", Link(judge_end, time.monotonic() + 5, lambda: None),
                       judge_namespace(OWN))
    assert not verdict.passed and verdict.error[0] == "AnswerError"


_CHILD = '''
import signal, socket, sys, time
from course_utils.grader.agent import Agent
# As ipykernel does while a cell runs. A process started in the background by a shell without
# job control (e.g. `cmd &` in a script) inherits SIGINT ignored, and Python then installs no
# KeyboardInterrupt handler: the spinning child would never stop.
signal.signal(signal.SIGINT, signal.default_int_handler)
def spin():
    while True:
        pass
def stubborn():
    while True:
        try:
            time.sleep(0.01)
        except KeyboardInterrupt:
            pass
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
Agent(sock, {"spin": spin, "stubborn": stubborn}).serve()
'''


@pytest.mark.parametrize("function, stuck", [("spin", False), ("stubborn", True)])
def test_time_limit_interrupts_and_reports_a_stuck_kernel(tmp_path, function, stuck):
    path = str(tmp_path / "j.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, path])
    try:
        conn, _ = server.accept()
        # A spinning loop stops at the interrupt: a long grace, which it uses only as long as it
        # needs; the stubborn one waits it out.
        grace = 1.0 if stuck else 15.0
        link = Link(conn, time.monotonic() + 1.0, lambda: os.kill(child.pid, signal.SIGINT), grace=grace)
        verdict = run_test(f"{function}()", link, {})
        assert not verdict.passed and verdict.incident == "timeout" and verdict.stuck is stuck
    finally:
        child.kill()
        child.wait()
        server.close()


def test_judge_modules_are_genuine():
    names = judge_namespace(OWN + [("missing", "no_such_module_xyz", None)])
    from course_utils import checks

    assert names["np"] is np and names["torch"] is torch and names["checks"] is checks
    assert "missing" not in names
    with pytest.raises(KernelTimeout):
        raise KernelTimeout("x", stuck=False)


def test_time_limits_use_the_graders_clock_not_the_kernels(kernel):
    """Does seconds_since read the grader's cell start times under the judge, and the fallback in a notebook?"""
    link, _ = kernel
    link.cell_starts = {"config": time.monotonic() - 100.0}
    verdict = _judge(link, '''
_seconds = checks.seconds_since("config", fallback=1.0)  # the kernel claims 1 s
assert 100.0 <= _seconds < 130.0, "the grader's clock"
checks.seconds_since("never-ran", fallback=1.0)
''')
    assert not verdict.passed and "never-ran" in verdict.error[1], verdict.error
    assert checks.seconds_since("config", fallback=7.5) == 7.5


def test_secret_orders_differ_between_calls_and_are_permutations():
    """Is secret_order a permutation that a fixed seed in the kernel cannot reproduce?"""
    first, second = checks.secret_order(1000), checks.secret_order(1000)
    assert sorted(first.tolist()) == list(range(1000))
    assert not torch.equal(first, second)
    torch.manual_seed(0)
    assert not torch.equal(first, torch.randperm(1000))
