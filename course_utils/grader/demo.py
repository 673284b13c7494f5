"""Sample submissions with known right answers, and ``course grade --demo`` that grades them.

For each demo assignment the project makes, from its reference solution:

* ``correct`` (full marks) and ``untouched`` (the student version as released: zero);
* one submission per entry of ``solutions/<assignment>/mistakes.py`` (typical mistakes,
  each losing exactly the cells it names);
* for notebook 01, the hostile submissions of :data:`HOSTILE_01`: each pairs a wrong
  answer with an attempt to fake the tests, kill the kernel or hang it, and must
  lose exactly that answer's points and get the status named;
* broken submissions: malformed JSON, no notebook, a misnamed notebook, an
  unknown assignment, an edited test cell, a deleted test cell.

:func:`run_demo` lays out a course directory with them, grades it with
:func:`course_utils.grader.grade` and compares every row with its expectation.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from course_utils.grader.config import GradeOptions
from course_utils.grader.report import GradeReport, SubmissionResult
from course_utils.grader.runner import grade
from course_utils.release import normalise, project_root

__all__ = [
    "DEMO_ASSIGNMENTS",
    "HONEST_01",
    "HOSTILE_01",
    "LOCKED_01",
    "Sample",
    "UnknownSample",
    "build_demo_course",
    "check_report",
    "run_demo",
    "samples",
]

DEMO_ASSIGNMENTS = ("01_numpy_backprop",)
DEMO_SETTINGS = '''\
c.CourseGrade.timeout = {timeout}
c.CourseGrade.memory_mb = {memory_mb}
c.CourseGrade.kill_grace = {kill_grace}
c.CourseGrade.disk_mb = 64
c.CourseGrade.max_processes = 32
c.CourseGrade.submission_timeout = 120
'''

_FORGOT_RELU = '''
def two_layer_forward(x, w1, w2):
    h = x @ w1
    return h @ w2, (h, h)  # forgot the ReLU


def squared_error(y_pred, y):
    return float(np.sum((y_pred - y) ** 2))
'''
_WRONG_MASK = '''
def two_layer_backward(x, y, y_pred, cache, w2):
    h, h_relu = cache
    grad_y_pred = 2.0 * (y_pred - y)
    grad_h = grad_y_pred @ w2.T
    grad_h[h_relu < 0] = 0  # the mask from the wrong tensor
    return x.T @ grad_h, h_relu.T @ grad_y_pred
'''
_REBINDS = '''
def sgd_step(params, grads, lr):
    for p, g in zip(params, grads):
        p = p - lr * g  # rebinds the loop variable
'''
_NEVER_STEPS = '''
    losses = []
    for _ in range(num_steps):
        y_pred, cache = two_layer_forward(x, w1, w2)
        losses.append(squared_error(y_pred, y))
    return losses  # forgot the backward pass and the step
'''

# Notebook 01: wrong answers dressed up with the tricks students try. Each entry:
# replace (solution cell -> code), loses (graded cells that must score 0), status.
HOSTILE_01: dict[str, dict[str, Any]] = {
    "hostile-patches-numpy": {
        "description": "redefines np.allclose, np.isclose, np.testing.assert_allclose, torch.allclose",
        "replace": {"forward": '''
import numpy.testing
import torch

np.allclose = lambda *args, **kwargs: True
np.isclose = lambda a, b, *args, **kwargs: np.ones(np.broadcast(a, b).shape, dtype=bool)
np.testing.assert_allclose = lambda *args, **kwargs: None
torch.allclose = lambda *args, **kwargs: True
''' + _FORGOT_RELU},
        "loses": ["test-forward"],
        "status": "tamper-undone+suspicious",
    },
    "hostile-patches-checks": {
        "description": "replaces course_utils.checks functions and rebinds `checks`",
        "replace": {"backward": '''
import types

import course_utils.checks as _checks_module


def _nothing(*args, **kwargs):
    return None


_checks_module.check_close = _nothing
_checks_module.check_shape = _nothing
checks = types.SimpleNamespace(check_close=_nothing, check_shape=_nothing, check_true=_nothing,
                               gradient_check=_nothing, passed=print,
                               numeric_gradient=_checks_module.numeric_gradient)
''' + _WRONG_MASK},
        "loses": ["test-backward"],
        "status": "tamper-undone+suspicious",
    },
    "hostile-swallows-errors": {
        "description": "swallows AssertionError with set_custom_exc and sys.excepthook",
        "replace": {"sgd": '''
import sys

get_ipython().set_custom_exc((Exception,), lambda shell, etype, value, tb, tb_offset=None: None)
sys.excepthook = lambda *args: None
''' + _REBINDS},
        "loses": ["test-sgd"],
        "status": "tamper-undone+suspicious",
    },
    "hostile-blanks-tests": {
        "description": "an IPython input transformer that empties every cell calling the checks",
        "replace": {"forward": '''
def _skip_checks(lines):
    return [] if any("checks." in line for line in lines) else lines


get_ipython().input_transformers_cleanup.append(_skip_checks)
''' + _FORGOT_RELU},
        # The guard removes the transformer before the first graded cell: the later cells run as written.
        "loses": ["test-forward"],
        "status": "tamper-undone+suspicious",
    },
    "hostile-patches-during-test": {
        "description": "train() patches checks.check_close (in the package and in its modules), the "
                       "diagnosis engine and np.allclose each time it is called",
        "replace": {"train": '''
def train(x, y, w1, w2, lr, num_steps):
    import course_utils.checks as c
    import course_utils.checks.core as core
    import course_utils.checks.diagnosis as diagnosis

    c.check_close = lambda *args, **kwargs: None
    core.check_close = lambda *args, **kwargs: None  # where the other checks look it up
    diagnosis.diagnose = lambda *args, **kwargs: []
    np.allclose = lambda *args, **kwargs: True
''' + _NEVER_STEPS},
        "loses": ["test-train"],
        "status": "tampered+tamper-undone+suspicious",
    },
    "hostile-fakes-score": {
        "description": "prints an Out[] value that nbgrader would read as a partial score",
        "replace": {"forward": '''
def two_layer_forward(x, w1, w2):
    get_ipython().displayhook(2.0)
    h = x @ w1
    return h @ w2, (h, h)  # forgot the ReLU


def squared_error(y_pred, y):
    return float(np.sum((y_pred - y) ** 2))
'''},
        "loses": ["test-forward"],
        "status": "suspicious",
    },
    "hostile-writes-files": {
        "description": "tries to write the gradebook and files outside its folder",
        "replace": {"forward": '''
import glob
import os
import sqlite3

for _path in glob.glob("../../../*.db") + glob.glob("../../../../*.db"):
    try:
        with sqlite3.connect(_path) as _db:
            _db.execute("UPDATE grade SET auto_score = 100")
    except Exception as _err:
        print("could not write", os.path.basename(_path), "-", type(_err).__name__)
for _path in ["/tmp/course-grade-hostile-was-here", "../../../hostile-was-here"]:
    try:
        with open(_path, "w") as _fh:
            _fh.write("x")
    except OSError as _err:
        print("could not write", _path, "-", type(_err).__name__)
''' + _FORGOT_RELU},
        "loses": ["test-forward"],
        "status": "suspicious",
    },
    "hostile-fakes-messages": {
        "description": "rewrites the kernel's outgoing messages: errors become ok, fake pass lines",
        "replace": {"forward": '''
_kernel = get_ipython().kernel
_send = _kernel.session.send


def _quiet_send(stream, msg_or_type, content=None, *args, **kwargs):
    kind = msg_or_type if isinstance(msg_or_type, str) else msg_or_type.get("msg_type")
    if kind == "error":
        return None
    if isinstance(content, dict) and content.get("status") == "error":
        content = {"status": "ok", "execution_count": content.get("execution_count"),
                   "user_expressions": {}, "payload": []}
    return _send(stream, msg_or_type, content, *args, **kwargs)


_kernel.session.send = _quiet_send
print("\u2714 forward pass and loss: passed")
''' + _FORGOT_RELU},
        "loses": ["test-forward"],
        "status": "ok",
    },
    "hostile-returns-tricks": {
        "description": "returns objects that equal anything and read the caller's frames",
        "replace": {"forward": '''
import sys


class _Anything:
    def __eq__(self, other):
        return True

    def __array__(self, dtype=None, copy=None):
        frame = sys._getframe(1)
        while frame is not None:  # look for the expected value in the checker's frames
            for name in ("expected", "want", "_expected"):
                if name in frame.f_locals:
                    return np.asarray(frame.f_locals[name])
            frame = frame.f_back
        return np.zeros(1)

    def __float__(self):
        return 0.0


def two_layer_forward(x, w1, w2):
    return _Anything(), (_Anything(), _Anything())


def squared_error(y_pred, y):
    return _Anything()
'''},
        "loses": ["test-forward"],
        "status": "suspicious",
    },
    "hostile-patches-in-background": {
        "description": "a thread, a trace hook and __code__ swaps that patch the checks all the time",
        "replace": {"backward": '''
import sys
import threading
import time

import course_utils.checks as _c


def _yes(*args, **kwargs):
    return None


def _keep_patching():
    while True:
        _c.check_close = _yes
        _c.check_shape = _yes
        np.allclose = lambda *a, **k: True
        time.sleep(0.001)


threading.Thread(target=_keep_patching, daemon=True).start()
np.testing.assert_allclose.__code__ = _yes.__code__
sys.settrace(lambda *args: None)
''' + _WRONG_MASK},
        # The thread patches while the tests run. The first test it is caught in fails, and so does every
        # test after it (whether the thread runs inside a short test is down to the machine's load).
        "loses": ["test-backward", "test-sgd", "test-train"],
        "status": "tampered+tamper-undone+suspicious",
    },
    "hostile-patches-in-each-call": {
        "description": "a correct two_layer_backward() that patches the checks each time it is called",
        "replace": {"backward": '''
def two_layer_backward(x, y, y_pred, cache, w2):
    import course_utils.checks as _c

    _c.check_close = lambda *args, **kwargs: None
    np.allclose = lambda *args, **kwargs: True
    h, h_relu = cache
    grad_y_pred = 2.0 * (y_pred - y)
    grad_h = grad_y_pred @ w2.T
    grad_h[h < 0] = 0
    return x.T @ grad_h, h_relu.T @ grad_y_pred
'''},
        # Caught while test-backward runs: the tests after it fail too, although test-sgd never calls it.
        "loses": ["test-backward", "test-sgd", "test-train"],
        "status": "tampered+tamper-undone+suspicious",
    },
    "hostile-patches-c-level": {
        "description": "writes builtins' and numpy's dicts through the C API (ctypes), past setattr",
        "replace": {"forward": '''
import builtins
import ctypes

_set = ctypes.pythonapi.PyDict_SetItem
_set.argtypes = [ctypes.py_object, ctypes.py_object, ctypes.py_object]
_set(vars(builtins), "divmod", lambda a, b: (0, 0))
_set(vars(np), "allclose", lambda *args, **kwargs: True)
_set(vars(np), "isclose", lambda a, b, *args, **kwargs: np.ones(np.broadcast(a, b).shape, dtype=bool))
''' + _FORGOT_RELU},
        "loses": ["test-forward"],
        "status": "tamper-undone+suspicious",
    },
    "hostile-deep-code": {
        "description": "a cell nested 100,000 levels deep, to crash the grader's code scan",
        "replace": {"train": "_x = " + "-" * 100_000 + "1\n" + _NEVER_STEPS},
        "loses": ["test-train"],
        "status": "memory+suspicious",  # the kernel's parser runs out of stack: a MemoryError
    },
    "hostile-exits": {
        "description": "os._exit(3) in the SGD cell: the kernel dies",
        "replace": {"sgd": "import os\n\nos._exit(3)\n"},
        "loses": ["test-sgd", "test-train"],
        "status": "kernel-died",
    },
    "hostile-segfaults": {
        "description": "reads address 0 with ctypes in the backward cell: a segfault",
        "replace": {"backward": "import ctypes\n\nctypes.string_at(0)\n"},
        "loses": ["test-backward", "test-sgd", "test-train"],
        "status": "kernel-died+suspicious",
    },
    "hostile-eats-memory": {
        "description": "allocates 400 MB blocks until the memory cap stops it",
        "replace": {"train": '''
_hog = []
while True:
    _hog.append(np.empty(50_000_000))  # 400 MB each; the cap stops it at once
'''},
        "loses": ["test-train"],
        "status": "memory",
    },
    "hostile-loops": {
        "description": "an infinite loop in the SGD cell: interrupted at the timeout",
        "replace": {"sgd": "while True:\n    pass\n"},
        "loses": ["test-sgd"],  # train is graded with reference helpers
        "status": "timeout",
    },
    "hostile-ignores-interrupt": {
        "description": "an infinite loop that swallows KeyboardInterrupt: the kernel is killed",
        "replace": {"train": '''
import time

while True:
    try:
        time.sleep(0.05)
    except KeyboardInterrupt:
        pass
'''},
        "loses": ["test-train"],
        "status": "timeout",
    },
}


# Notebook 01: attacks on the machine rather than on the tests, answered by the locked kernel.
# They run only where every layer of it is on (a kill(-1) outside a PID namespace would reach
# the grader's own processes); the demo says when it leaves them out.
LOCKED_01: dict[str, dict[str, Any]] = {
    "hostile-reads-source": {
        "description": "looks for the instructor's notebook, classmates' answers and the gradebook",
        "replace": {"forward": _FORGOT_RELU + '''
import glob
import json
import os

_patterns = ["../../../source/*/*.ipynb", "../../../../source/*/*.ipynb", "/work/*/solutions/*/*.ipynb",
             "../../*/*/*.ipynb", "../../../submitted/*/*/*.ipynb", "/tmp/course-grade-*/*/source/*/*.ipynb",
             "../../../*.db", "../../../../*.db", "/tmp/course-grade-*/*/gradebook.db"]
_found = sorted({p for pattern in _patterns for p in glob.glob(pattern)})
_seen = 0
for _top in os.listdir("/"):
    if _top in ("proc", "sys", "usr", "dev") or os.path.islink("/" + _top):  # skip the system
        continue
    for _root, _dirs, _files in os.walk("/" + _top):
        _dirs[:] = [d for d in _dirs if d not in ("site-packages", "dist-packages", "__pycache__")]
        _seen += len(_files)
        _found += [os.path.join(_root, f) for f in _files
                   if f.endswith((".ipynb", ".db")) and os.path.join(_root, f) not in _found]
        if _seen > 20_000:  # within the 10 s cell timeout on a busy machine
            break
_found = [p for p in _found if not os.path.samefile(os.path.dirname(p) or ".", ".")]
print("notebooks or gradebooks found outside its own folder:", len(_found))
for _path in _found:
    if _path.endswith(".ipynb"):
        for _cell in json.load(open(_path))["cells"]:
            if "def two_layer_forward" in "".join(_cell["source"]):  # someone's answer: take it
                exec("".join(_cell["source"]))
'''},
        "loses": ["test-forward"],
        "status": "suspicious",
    },
    "hostile-root-tricks": {
        "description": "remounts, signals every process, leaves a daemon to rewrite grades.csv later",
        "replace": {"backward": '''
import ctypes
import glob
import os
import signal
import socket
import time

_libc = ctypes.CDLL(None, use_errno=True)
_results = {
    "remount / writable": _libc.mount(None, b"/", None, 32, None),
    "remount /usr writable": _libc.mount(None, b"/usr", None, 32 | 4096, None),
    "mount a new /proc": _libc.mount(b"proc", b"/tmp", b"proc", 0, None),
}
print({k: "refused" if v else "done" for k, v in _results.items()})
try:
    os.kill(-1, signal.SIGKILL)  # every process it may signal: the fork server, the grader, classmates?
except OSError as _err:
    print("kill(-1):", type(_err).__name__)
_killed = 0
_own = {int(t) for t in os.listdir("/proc/self/task")}
for _pid in set(range(2, 4 * 32768)) - _own:
    try:
        os.kill(_pid, signal.SIGKILL)
        _killed += 1
    except OSError:
        pass
print("other processes killed:", _killed)
try:
    socket.create_connection(("192.0.2.1", 80), timeout=1)
except OSError as _err:
    print("network:", type(_err).__name__)
if os.fork() == 0:  # a daemon: detach and rewrite the results after the run
    os.setsid()
    if os.fork() == 0:
        for _ in range(600):
            for _path in glob.glob("../../../grades.csv") + glob.glob("/tmp/*/grades.csv"):
                with open(_path, "w") as _fh:
                    _fh.write("student,total\\nhostile-root-tricks,100\\n")
            time.sleep(0.5)
        os._exit(0)
    os._exit(0)
os.wait()
''' + _WRONG_MASK},
        "loses": ["test-backward"],
        "status": "suspicious",
    },
    "hostile-exhausts-resources": {
        "description": "fills its folder, /tmp and /dev/shm, prints an 8 MB line",  # fork bomb: test_sandbox
        "replace": {"sgd": '''
import os
import time

_written = {}
for _path, _mb in (("filler.bin", 2048), ("/dev/shm/filler", 1024), ("/tmp/filler", 1024)):
    _written[_path] = 0
    try:
        with open(_path, "wb") as _fh:
            for _ in range(_mb):
                _fh.write(b"x" * (1 << 20))
                _written[_path] += 1
    except OSError:
        pass
print("MiB written:", _written)
print("x" * (8 << 20))  # one 8 MB line: more than the grader keeps of a cell's output
''' + _REBINDS},
        "loses": ["test-sgd"],
        "status": "ok",
    },
}


# Notebook 01: right answers written the way honest students do, with noise on stderr
# (logging, warnings, tqdm) inside the functions the tests call. Full marks, status ok.
HONEST_01: dict[str, dict[str, Any]] = {
    "honest-noisy": {
        "description": "correct, with logging.warning, warnings.warn, stderr prints and a tqdm bar",
        "replace": {"forward": '''
import logging
import sys
import warnings

from tqdm import tqdm


def two_layer_forward(x, w1, w2):
    logging.warning("computing the forward pass")
    warnings.warn("only a warning", UserWarning)
    print("forward called", file=sys.stderr)
    h = x @ w1
    h_relu = np.maximum(h, 0)
    return h_relu @ w2, (h, h_relu)


def squared_error(y_pred, y):
    return float(np.sum((y_pred - y) ** 2))
''', "train": '''
def train(x, y, w1, w2, lr, num_steps):
    losses = []
    for _ in tqdm(range(num_steps), desc="training", leave=False):
        y_pred, cache = two_layer_forward(x, w1, w2)
        losses.append(squared_error(y_pred, y))
        grad_w1, grad_w2 = two_layer_backward(x, y, y_pred, cache, w2)
        sgd_step([w1, w2], [grad_w1, grad_w2], lr)
    return losses
'''},
    },
}


class UnknownSample(ValueError):
    """``course grade --demo -s NAME`` named no sample of the demo."""


@dataclass(frozen=True)
class Sample:
    """One sample submission and what grading it must give."""

    student: str
    assignment: str
    description: str
    replace: dict[str, str] | None = None  # None: the untouched release
    loses: tuple[str, ...] | None = None  # None: every graded cell scores zero
    status: str = "ok"
    folder_name: str | None = None  # assignment folder, when it differs (unknown assignment)
    file_name: str | None = None  # notebook file name, when it differs (misnamed)
    raw: str | None = None  # raw file content instead of a notebook (malformed)
    edit: Callable[[nbformat.NotebookNode], None] | None = field(default=None, compare=False)


def _load_mistakes(assignment: str, root: Path) -> dict[str, dict[str, Any]]:
    path = root / "solutions" / assignment / "mistakes.py"
    if not path.exists():
        return {}
    spec = importlib.util.spec_from_file_location(f"mistakes_{assignment}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.MISTAKES)


def _edit_test_forward(nb: nbformat.NotebookNode) -> None:
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "test-forward":
            cell.source = 'checks.passed("forward pass and loss")'


def _duplicate_cells(nb: nbformat.NotebookNode) -> None:
    """An honest copy-paste: the forward answer cell and the SGD test cell, each twice."""
    import copy

    for grade_id in ("forward", "test-sgd"):
        index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
        nb.cells.insert(index + 1, copy.deepcopy(nb.cells[index]))


SCRATCH_CELLS = ('print("scratch: trying things out after the last test")',
                 'raise RuntimeError("a scratch cell left failing at the end")')


def _append_scratch_cells(nb: nbformat.NotebookNode) -> None:
    """Correct, with two scratch cells of the student's own after the last graded cell, one failing."""
    nb.cells.extend(nbformat.v4.new_code_cell(source) for source in SCRATCH_CELLS)


def _edit_roles(nb: nbformat.NotebookNode) -> None:
    """100 points on a test, an answer cell marked as a test, and a graded cell of its own."""
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") == "test-forward":
            meta["points"] = 100
        if meta.get("grade_id") == "backward":
            meta.update({"grade": True, "points": 50})
    nb.cells.append(nbformat.v4.new_code_cell("print('bonus points')", metadata={"nbgrader": {
        "grade": True, "grade_id": "test-bonus", "locked": True, "points": 50, "solution": False,
        "schema_version": 3}}))


def _delete_test_sgd(nb: nbformat.NotebookNode) -> None:
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test-sgd"]


def samples(assignment: str, root: Path | None = None, *, hostile: bool = True,
            locked: bool = True) -> list[Sample]:
    """The sample submissions of one assignment (hostile and broken ones for notebook 01).

    ``locked``: every layer of the locked kernel is on here, so the attacks on the machine
    itself (:data:`LOCKED_01`) are included.
    """
    root = root or project_root()
    found = [Sample("correct", assignment, "the reference solution", replace={}, loses=()),
             Sample("untouched", assignment, "the student version as released")]
    for student, mistake in _load_mistakes(assignment, root).items():
        found.append(Sample(student, assignment, "typical mistakes from mistakes.py",
                            replace=dict(mistake["replace"]), loses=tuple(mistake["loses"])))
    if not hostile or assignment != "01_numpy_backprop":
        return found
    for student, case in HONEST_01.items():
        found.append(Sample(student, assignment, case["description"], replace=case["replace"], loses=()))
    for student, case in [*HOSTILE_01.items(), *(LOCKED_01.items() if locked else [])]:
        found.append(Sample(student, assignment, case["description"], replace=case["replace"],
                            loses=tuple(case["loses"]), status=case["status"]))
    found += [
        Sample("honest-duplicates", assignment, "correct, with an answer cell and a test cell pasted twice",
               replace={}, loses=(), status="duplicate-cells", edit=_duplicate_cells),
        Sample("honest-scratch-cells", assignment, "correct, with scratch cells after the last test (one "
               "fails): not run, since they cannot change the grade", replace={}, loses=(),
               edit=_append_scratch_cells),
        Sample("hostile-edits-roles", assignment, "wrong forward pass; 100 points on a test, an answer cell "
               "marked as a test, a graded cell of its own", replace={"forward": _FORGOT_RELU},
               loses=("test-forward",), status="edited-cells", edit=_edit_roles),
        Sample("edits-test-cell", assignment, "wrong forward pass, test cell emptied",
               replace={"forward": _FORGOT_RELU}, loses=("test-forward",), status="edited-cells",
               edit=_edit_test_forward),
        Sample("deletes-test-cell", assignment, "wrong SGD step, its test cell deleted",
               replace={"sgd": _REBINDS}, loses=("test-sgd",), status="deleted-cells",
               edit=_delete_test_sgd),
        Sample("broken-json", assignment, "the file is not JSON", status="malformed-notebook",
               raw='{"cells": [ this is not a notebook'),
        Sample("no-notebook", assignment, "the folder holds no notebook", status="missing-notebook",
               raw=""),
        Sample("misnamed", assignment, "the right answer under another file name",
               replace={}, status="misnamed-notebook", file_name=f"{assignment} (1).ipynb"),
        Sample("wrong-folder", assignment, "submitted to an assignment that does not exist",
               replace={}, status="unknown-assignment", folder_name="99_not_an_assignment"),
    ]
    return found


def build_demo_course(dest: Path, assignments: Sequence[str] = DEMO_ASSIGNMENTS, *,
                      root: Path | None = None, timeout: int = 10, memory_mb: int = 2048,
                      kill_grace: float = 3.0, hostile: bool = True, locked: bool | None = None
                      ) -> list[Sample]:
    """Lay out a course directory in ``dest`` with every sample submission; return the samples.

    ``locked`` (default: whether the sandbox probe finds every protection on) includes the
    attacks on the machine itself.
    """
    root = root or project_root()
    if locked is None:
        from course_utils.grader import sandbox

        locked = not sandbox.probe(sandbox.SandboxSpec(memory_mb=memory_mb))
    from course_utils.grader.sample import build_submission, prepare_course

    prepare_course(dest, assignments, root=root, timeout=timeout,
                   settings=DEMO_SETTINGS.format(timeout=timeout, memory_mb=memory_mb, kill_grace=kill_grace))
    everything = []
    for name in assignments:
        listed = samples(name, root, hostile=hostile, locked=locked)
        everything += listed
        for release_path in sorted((dest / "release" / name).glob("*.ipynb")):
            release_nb = nbformat.read(release_path, as_version=4)
            solution_nb = nbformat.read(dest / "source" / name / release_path.name, as_version=4)
            for sample in listed:
                folder = dest / "submitted" / sample.student / (sample.folder_name or name)
                folder.mkdir(parents=True, exist_ok=True)
                if sample.raw is not None:
                    if sample.raw:
                        (folder / release_path.name).write_text(sample.raw)
                    else:
                        (folder / "notes.txt").write_text("I could not finish, sorry.\n")
                    continue
                nb = (nbformat.from_dict(release_nb) if sample.replace is None
                      else build_submission(release_nb, solution_nb, sample.replace))
                if sample.edit is not None:
                    sample.edit(nb)
                target = folder / (sample.file_name or release_path.name)
                nbformat.write(normalise(nb), target)
    return everything


def check_report(report: GradeReport, expected: Sequence[Sample]) -> list[str]:
    """Every way the graded rows differ from the samples' expectations (empty: all as expected)."""
    rows: dict[tuple[str, str], SubmissionResult] = {
        (r.student, r.assignment): r for r in report.results}
    problems = []
    for sample in expected:
        row = rows.get((sample.student, sample.folder_name or sample.assignment))
        if row is None:
            problems.append(f"{sample.student}: not graded")
            continue
        if sample.folder_name is None:
            lost = set(row.max_scores) if sample.loses is None else set(sample.loses)
            want = {c: (0.0 if c in lost else p) for c, p in row.max_scores.items()}
            if sample.status in ("malformed-notebook", "missing-notebook", "misnamed-notebook"):
                want = dict.fromkeys(row.max_scores, 0.0)
            if row.scores != want:
                problems.append(f"{sample.student}: scores {row.scores}, expected {want}")
        if row.status != sample.status:
            problems.append(f"{sample.student}: status {row.status!r}, expected {sample.status!r}")
    return problems


def run_demo(dest: Path | None = None, assignments: Sequence[str] = DEMO_ASSIGNMENTS, *,
             workers: int | None = None, progress: bool = True, force: bool = True,
             scheduler: str | None = None, students: Sequence[str] | None = None,
             ) -> tuple[GradeReport, list[Sample], list[str]]:
    """Build the demo course (in ``dest`` or a new temporary folder) and grade it.

    ``students``: grade only these samples (``course grade --demo -s NAME``). Returns the
    report, the samples graded and the mismatches (empty when every sample got exactly
    its expected scores and status).
    """
    dest = dest or Path(tempfile.mkdtemp(prefix="course-grade-demo-"))
    expected = build_demo_course(dest, assignments)
    if students:
        unknown = sorted(set(students) - {sample.student for sample in expected})
        if unknown:
            raise UnknownSample(f"no demo sample is called {', '.join(unknown)}; the samples are "
                             + ", ".join(sorted({sample.student for sample in expected})))
        expected = [sample for sample in expected if sample.student in students]
    report = grade(GradeOptions(course_dir=dest, workers=workers, progress=progress, force=force,
                                scheduler=scheduler, students=list(students) if students else None))
    return report, expected, check_report(report, expected)
