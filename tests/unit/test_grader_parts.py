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
])
def test_scan_flags_tampering_tools(source, flag):
    assert flag in integrity.scan_source(source)


def test_scan_leaves_honest_code_alone():
    honest = textwrap.dedent('''
        import numpy as np
        import torch
        from torch import nn

        def forward(x, w):
            h = np.maximum(x @ w, 0)
            model = nn.Linear(3, 2)
            with torch.no_grad():
                model.weight.zero_()
            return h, model
        ''')
    assert integrity.scan_source(honest) == []


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
