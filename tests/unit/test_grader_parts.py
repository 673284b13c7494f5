"""The parts of ``course grade`` that need no kernel: inspection, scanning, feedback, guard, sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import nbformat
import pytest

from course_utils.grader import integrity
from course_utils.grader.kernel import describe_returncode
from course_utils.release import project_root

A = "01_numpy_backprop"


def _release() -> nbformat.NotebookNode:
    return nbformat.read(project_root() / "notebooks" / A / f"{A}.ipynb", as_version=4)


def _expected() -> dict[str, dict[str, str]]:
    """Release checksums computed from the solution notebook, as the grader does from the gradebook."""
    source = nbformat.read(project_root() / "solutions" / A / f"{A}.ipynb", as_version=4)
    cells = []
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("locked") and not meta.get("solution"):
            cells.append({"name": meta["grade_id"], "cell_type": cell.cell_type,
                          "source": cell.source, "locked": True, "points": meta.get("points")})
    return {A: integrity.expected_release_checksums(cells)}


# What a setup cell of this course binds (integrity.setup_bindings reads it from the notebook).
SETUP_BINDS = {"np": "numpy", "torch": "torch", "checks": "course_utils"}


def _course_protection():
    """This course's protected modules, from its nbgrader_config.py (c.CourseGrade.protected_modules)."""
    from course_utils.grader.config import CourseGrade, course_protection, load_config

    return course_protection(CourseGrade(config=load_config(project_root())))


@pytest.mark.parametrize("source, flag", [
    ("np.allclose = lambda *a, **k: True", "patches np.allclose"),
    ("import fake as np", "imports fake as np"),
    ("checks = None", "rebinds checks"),
    ("get_ipython().set_custom_exc((Exception,), None)", "installs a custom exception handler"),
    ("import sys\nsys.excepthook = print", "patches sys.excepthook"),
    ("get_ipython().input_transformers_cleanup.append(f)", "adds an IPython input transformer"),
    ("try:\n    f()\nexcept AssertionError:\n    pass", "catches AssertionError"),
    ("import ctypes", "imports ctypes"),
    ("f.__code__ = g.__code__", "rewrites function code"),
    ("setattr(torch, 'allclose', f)", "calls setattr on torch"),
    # any module of the checks package, under any name an import gives it
    ("import course_utils.checks.core as c\nc.check_close = f", "patches c.check_close"),
    ("from course_utils.checks import diagnosis\ndiagnosis.diagnose = f", "patches diagnosis.diagnose"),
    ("from course_utils.checks.errors import KNOWN_ERRORS\nKNOWN_ERRORS['.*'] = 'x'", "patches KNOWN_ERRORS[...]"),
    ("def f():\n    from course_utils import checks as c\n    setattr(c.core, 'passed', print)",
     "calls setattr on c.core"),
])
def test_scan_flags_tampering_tools(source, flag):
    assert flag in integrity.scan_source(source, SETUP_BINDS, protection=_course_protection())


def test_scan_leaves_honest_code_alone():
    honest = textwrap.dedent('''
        import numpy as np
        import torch
        from torch import nn

        from course_utils.checks import check_close, core

        def forward(x, w):
            check_close("x", x, core.to_numpy(x))
            h = np.maximum(x @ w, 0)
            model = nn.Linear(3, 2)
            with torch.no_grad():
                model.weight.zero_()
            return h, model
        ''')
    assert integrity.scan_source(honest, SETUP_BINDS, protection=_course_protection()) == []


def test_setup_bindings_read_the_setup_cell():
    source = nbformat.read(project_root() / "solutions" / A / f"{A}.ipynb", as_version=4)
    bindings = integrity.setup_bindings(source)
    assert ("np", "numpy", None) in bindings
    assert ("checks", "course_utils", "checks") in bindings
    assert ("plt", "matplotlib.pyplot", None) in bindings


def test_untouched_release_matches_its_checksums(tmp_path):
    folder = tmp_path / "sub"
    folder.mkdir()
    nbformat.write(_release(), folder / f"{A}.ipynb")
    found = integrity.inspect_submission(folder, _expected())
    assert (found.graded, found.codes) == ([A], [])


def test_edited_and_deleted_locked_cells_are_reported(tmp_path):
    nb = _release()
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "test-forward":
            cell.source = "pass"
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test-sgd"]
    folder = tmp_path / "sub"
    folder.mkdir()
    nbformat.write(nb, folder / f"{A}.ipynb")
    found = integrity.inspect_submission(folder, _expected())
    assert found.codes == ["edited-cells", "deleted-cells"]
    assert "test-forward" in found.details[0] and "test-sgd" in found.details[1]


@pytest.mark.parametrize("files, code", [
    ({f"{A}.ipynb": "{not json"}, "malformed-notebook"),
    ({f"{A}.ipynb": json.dumps({"cells": 3})}, "malformed-notebook"),
    ({"notes.txt": "sorry"}, "missing-notebook"),
    ({f"{A} (1).ipynb": "{}"}, "misnamed-notebook"),
])
def test_unreadable_submissions_get_a_status(tmp_path, files, code):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    found = integrity.inspect_submission(tmp_path, _expected())
    assert found.graded == [] and found.codes == [code]


def test_feedback_hides_hidden_tests_and_their_traceback_frames():
    from course_utils.grader.execute import HideHiddenTests

    cell = nbformat.v4.new_code_cell(
        "visible()\n### BEGIN HIDDEN TESTS\nsecret_check()\n### END HIDDEN TESTS\n", execution_count=7)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "locked": True, "points": 1,
                                 "solution": False, "schema_version": 3}
    cell.outputs = [nbformat.v4.new_output(
        "error", ename="CheckError", evalue="hidden h: values differ",
        traceback=["---", "\x1b[0;32mCell In[7], line 3\x1b[0m\n----> 3 secret_check()",
                   "File checks.py:10, in check_close()", "CheckError: hidden h: values differ"])]
    out, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
    text = out.source + "".join(out.outputs[0].traceback)
    assert "secret_check" not in text and "visible()" in out.source
    assert "(test code not shown)" in text and "checks.py" in text


def test_returncodes_are_described():
    assert describe_returncode(3) == "exit code 3"
    assert describe_returncode(-11) == "killed by signal SIGSEGV"
    assert "out of memory" in describe_returncode(-9)


def test_sandbox_probe_reports_in_words():
    from course_utils.grader import sandbox

    missing = sandbox.probe()
    assert isinstance(missing, list) and all(isinstance(m, str) for m in missing)


GUARD_SCRIPT = '''
import types, numpy as np
from course_utils.grader import guard
snapshot = guard.take_snapshot(["numpy"])
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
kernel = types.SimpleNamespace(shell_handlers={}, control_handlers={})
g = guard.Guard(snapshot, shell, kernel)
genuine = np.allclose
bindings = [("np", "numpy", None)]
shell.user_ns["np"] = np
assert g.check(restore=False, bindings=bindings) == [], g.check(restore=False, bindings=bindings)
np.allclose = lambda *a, **k: True
shell.user_ns["np"] = types.SimpleNamespace()
shell.user_ns["isinstance"] = lambda *a: True
shell.input_transformers_cleanup.append(lambda lines: [])
shell.set_custom_exc((AssertionError,), lambda *a, **k: None)
changes = g.check(restore=True, bindings=bindings)
assert np.allclose is genuine and shell.user_ns["np"] is np and "isinstance" not in shell.user_ns
assert shell.custom_exceptions == () and g.check(restore=False, bindings=bindings) == []
print("\\n".join(sorted(changes)))
'''


def test_guard_restores_what_students_patch():
    result = subprocess.run([sys.executable, "-c", GUARD_SCRIPT], capture_output=True, text=True,
                            cwd=project_root(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for expected in ("numpy.allclose redefined", "name 'np' rebound", "builtin 'isinstance' shadowed",
                     "input_transformers_cleanup changed", "shell.custom_exceptions replaced"):
        assert expected in out, out


CHECKS_GUARD_SCRIPT = '''
import sys, types
from course_utils.grader import guard
from course_utils.grader.config import CourseGrade, course_protection, load_config
from course_utils.release import project_root
protection = course_protection(CourseGrade(config=load_config(project_root())))  # the course's nbgrader_config.py
snapshot = guard.take_snapshot(protection=protection)  # records every module of the checks package, imported or not
assert set(protection.course_modules()) <= set(snapshot.modules), sorted(snapshot.modules)
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
kernel = types.SimpleNamespace(shell_handlers={}, control_handlers={})
g = guard.Guard(snapshot, shell, kernel)
assert g.check(restore=False) == [], g.check(restore=False)
import course_utils.checks.core as c
import course_utils.checks.diagnosis as diagnosis
import course_utils.checks.errors as errors
import course_utils.checks.modules as modules
genuine = (c.check_close, diagnosis.diagnose, list(errors.KNOWN_ERRORS.items()), modules.unregistered.__code__,
           c.CheckError._render_traceback_, c._LIBRARY_FOLDERS)
c.check_close = lambda *args, **kwargs: None
diagnosis.diagnose = lambda *args, **kwargs: []
errors.KNOWN_ERRORS[next(iter(errors.KNOWN_ERRORS))] = "nothing to see here"
modules.unregistered.__code__ = (lambda module: ([], [])).__code__
c.CheckError._render_traceback_ = lambda self: []
c._LIBRARY_FOLDERS = ("/",)
changes = g.check(restore=False)  # what verify reports after a test that did this
assert g.check(restore=True) == changes and g.check(restore=False) == [], g.check(restore=False)
assert (c.check_close, diagnosis.diagnose, list(errors.KNOWN_ERRORS.items()), modules.unregistered.__code__,
        c.CheckError._render_traceback_, c._LIBRARY_FOLDERS) == genuine
sys.modules["course_utils.checks.tensors"] = types.ModuleType("course_utils.checks.tensors")
print("\\n".join(sorted(set(changes + g.check(restore=True)))))
assert g.check(restore=False) == []
'''


def test_guard_catches_tampering_with_any_module_of_the_checks():
    """Is a patch of a submodule of course_utils.checks (a function, its code, a class, a table entry,
    a private name, its sys.modules entry) reported and undone, as a patch of the package itself is?"""
    result = subprocess.run([sys.executable, "-c", CHECKS_GUARD_SCRIPT], capture_output=True, text=True,
                            cwd=project_root(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for expected in ("course_utils.checks.core.check_close redefined",
                     "course_utils.checks.diagnosis.diagnose redefined",
                     "course_utils.checks.errors.KNOWN_ERRORS changed in place",
                     "code of course_utils.checks.modules.unregistered replaced",
                     "CheckError._render_traceback_ redefined",
                     "course_utils.checks.core._LIBRARY_FOLDERS redefined",
                     "sys.modules['course_utils.checks.tensors'] replaced"):
        assert expected in out, out


def test_the_checks_package_is_protected_by_rule():
    """Is every module file of course_utils.checks protected and preloaded without being listed?"""
    import pkgutil

    from course_utils import checks

    protection = _course_protection()
    on_disk = {f"course_utils.checks.{info.name}" for info in pkgutil.iter_modules(checks.__path__)}
    assert set(protection.course_modules()) == on_disk | {"course_utils", "course_utils.runtime", "course_utils.checks",
                                                          "course_utils.cifar", "course_utils.distributed"}
    assert all(protection.is_course_module(name) for name in on_disk | {"course_utils.checks.added_later"})
    assert not protection.is_course_module("course_utils.checksum")
    assert not protection.is_course_module("course_utils.data")


def _test_cell_imports() -> dict[str, set[str]]:
    """Module -> the notebooks whose graded test cells (drivers included) import it."""
    import ast

    found: dict[str, set[str]] = {}
    for path in sorted((project_root() / "solutions").glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
                continue
            source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                for name in names:
                    found.setdefault(name, set()).add(path.stem)
    return found


def test_every_module_a_test_cell_imports_is_protected():
    """Is every course module and library a graded test cell imports (in the judge or, through
    ``checks.run_in_kernel``, in the student's kernel) restored and verified by the guard?

    A driver that imports an unprotected module in the kernel would run whatever the student put
    there (e.g. a patched ``distributed.launch`` answering for the student's gradient averaging).
    """
    import importlib.util

    protection = _course_protection()
    imports = _test_cell_imports()
    assert "course_utils.distributed" in imports and "torchvision" in imports  # the scan sees drivers
    unprotected = {}
    for name, notebooks in imports.items():
        top = name.split(".")[0]
        if top in sys.stdlib_module_names:
            continue
        if top == "course_utils":
            if importlib.util.find_spec(name) is None:  # ``from course_utils import checks``'s "checks" part
                continue
            ok = protection.is_course_module(name)
        else:
            ok = protection.is_protected(name)
        if not ok:
            unprotected[name] = sorted(notebooks)
    assert not unprotected, f"imported by graded test cells but not protected: {unprotected}"


def test_protection_comes_from_the_course_config_alone():
    """Does a course that configures no protected modules get none of this one's (the grader is course-agnostic)?"""
    from course_utils.grader.guard import Protection

    bare = Protection()
    assert bare.packages == ("numpy", "torch") and bare.course_modules() == []
    assert not bare.is_protected("course_utils.checks.core") and bare.is_protected("torch.nn.functional")
    assert integrity.scan_source("import course_utils.checks.core as c\nc.check_close = f") == []
    assert integrity.scan_source("import course_utils.checks.core as c\nc.check_close = f",
                                 protection=_course_protection()) == ["patches c.check_close"]


def test_workers_share_one_fork_server_and_replace_it_when_it_dies(tmp_path):
    """Do attached workers get the shared fork server, and a private one once it is gone (or missing)?"""
    import os
    import signal

    from course_utils.grader.kernel import Zygote

    env = dict(os.environ)
    shared = Zygote(tmp_path / "shared", [], env, listen=str(tmp_path / "server.sock"))
    worker = Zygote(tmp_path / "worker", [], env, attach=shared.listen)
    lost = Zygote(tmp_path / "lost", [], env, attach=str(tmp_path / "nobody.sock"))
    try:
        assert worker.proc is None and worker.pid == shared.pid, "attached to the shared server"
        assert lost.proc is not None and lost.pid != shared.pid, "no server there: a private one"
        os.kill(shared.pid, signal.SIGKILL)
        shared.proc.wait()
        with pytest.raises((OSError, RuntimeError)):  # what spawn() catches before it restarts
            worker._send({"id": 1})
            worker._read()
        assert not worker._alive()
        worker._restart()
        assert worker.proc is not None and worker.pid not in (shared.pid, lost.pid)
    finally:
        for zygote in (worker, lost, shared):
            zygote.close()


def test_a_worker_that_dies_with_an_answer_unread_leaves_the_shared_fork_server_up(tmp_path):
    """A worker killed right after it asked for a kernel resets its socket: do the others keep their server?"""
    import json
    import os
    import socket
    import time

    from course_utils.grader.kernel import Zygote
    from course_utils.grader.sandbox import SandboxSpec

    env = dict(os.environ)
    shared = Zygote(tmp_path / "shared", [], env, listen=str(tmp_path / "server.sock"))
    other = Zygote(tmp_path / "other", [], env, attach=shared.listen)

    def request(n: int) -> dict:
        return {"id": n, "args": ["--version"], "cwd": str(tmp_path), "env": env,
                "sandbox": dict(SandboxSpec(filesystem=False, network=False).__dict__),
                "log": str(tmp_path / f"k{n}.log"), "status": str(tmp_path / f"k{n}.status")}

    try:
        assert other.pid == shared.pid
        dying = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dying.connect(shared.listen)
        dying.sendall((json.dumps(request(1)) + "\n").encode())
        time.sleep(1.0)  # the server has answered (and said it is ready); nobody reads either
        dying.close()  # unread data: the server's next read is a reset, not an end of file
        other._sock.settimeout(30)
        other._send(request(2))
        assert other._read()["id"] == 2, "the shared server still forks kernels for the other workers"
        assert shared.proc.poll() is None, (tmp_path / "shared" / "zygote.log").read_text()
    finally:
        for zygote in (other, shared):
            zygote.close()
