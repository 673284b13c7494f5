"""Self-check messages: what was checked, expected, got, and the mistake by name."""

from pathlib import Path

import numpy as np
import pytest
import torch

from course_utils import checks
from course_utils.checks import core

PACKAGE = Path(checks.__file__).resolve().parent


def test_passing_check_prints_one_line(capsys):
    """Does a passing check say so in one line?"""
    checks.check_close("y", np.ones(3), np.ones(3))
    assert capsys.readouterr().out.startswith("\u2714 y: passed")


def test_check_error_is_an_assertion_error():
    """Do failed checks count as failed tests for nbgrader and pytest?"""
    assert issubclass(checks.CheckError, AssertionError)


def test_value_mismatch_lists_differing_entries():
    """Does a mismatch report the count, the relative error and the first entries?"""
    with pytest.raises(checks.CheckError) as err:
        checks.check_close("y", [1.0, 2.0, 3.0], [1.0, 2.5, 3.0])
    message = str(err.value)
    assert "1 of 3 entries differ" in message and "at (1,): expected 2.5, got 2" in message


def test_known_mistake_is_named():
    """Is an answer equal to a registered mistake reported by that mistake's name?"""
    with pytest.raises(checks.CheckError, match="known mistake: you forgot the ReLU"):
        checks.check_close("y", [-1.0, 2.0], [0.0, 2.0], mistakes={"you forgot the ReLU": [-1.0, 2.0]})


def test_transposed_shape_is_explained():
    """Does a transposed result get called transposed?"""
    with pytest.raises(checks.CheckError, match="transposed"):
        checks.check_close("grad", np.zeros((3, 2)), np.zeros((2, 3)))


def test_none_result_suggests_missing_return():
    """Does a None result point at a missing return statement?"""
    with pytest.raises(checks.CheckError, match="forget to `return`"):
        checks.check_close("y", None, [1.0])


def test_nan_result_is_diagnosed():
    """Are NaNs called out with their usual causes?"""
    with pytest.raises(checks.CheckError, match="NaN"):
        checks.check_close("loss", float("nan"), 1.0)


def test_tensors_and_scalars_are_compared():
    """Do tensors (with grad, any dtype) and scalars compare like arrays?"""
    checks.check_close("t", torch.ones(2, requires_grad=True) * 2, [2.0, 2.0], quiet=True)
    checks.check_close("s", 3, 3.0, quiet=True)


def test_rebinding_update_is_named():
    """Does an update that left parameters unchanged name `param = param - lr * grad`?"""
    w = np.ones(3)
    with pytest.raises(checks.CheckError, match=r"param = param - lr \* grad"):
        checks.check_params_updated("step", {"w": w.copy()}, {"w": w})


def test_numeric_gradient_matches_analytic_for_numpy_and_torch():
    """Is the numeric gradient accurate for NumPy arrays and torch tensors?"""
    x = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(checks.numeric_gradient(lambda: np.sum(x**3), x), 3 * x**2, rtol=1e-6)
    t = torch.tensor([0.5, 1.5], dtype=torch.float64)
    np.testing.assert_allclose(checks.numeric_gradient(lambda: (t**2).sum(), t), 2 * t.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(x, [1.0, -2.0, 3.0])  # restored after perturbation


def test_gradient_check_names_the_missing_factor():
    """Does gradient_check recognise a gradient that is half the true one?"""
    x = np.array([1.0, 2.0])
    with pytest.raises(checks.CheckError, match="factor 2"):
        checks.gradient_check("g", lambda: np.sum(x**2), x, x, mistakes={"factor 2": x})


def test_a_failed_check_shows_its_message_first_in_a_real_kernel():
    """In Jupyter: message first, the notebook's lines, no library frames, and still an error output?"""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import torch\nfrom course_utils import checks"),
        nbformat.v4.new_code_cell("checks.check_close('the loss', 2.0, 1.0)"),
        nbformat.v4.new_code_cell("def forward(x):\n    return x @ torch.ones(3, 2)\n\n"
                                  "with checks.explain_errors('forward'):\n    forward(torch.ones(2, 2))"),
    ])
    NotebookClient(nb, timeout=120, allow_errors=True, kernel_name="python3").execute()
    for cell, started, line in ((nb.cells[1], None, "line 1: checks.check_close('the loss', 2.0, 1.0)"),
                                (nb.cells[2], "It started as RuntimeError", "line 2 (in forward): return x @")):
        (error,) = [out for out in cell.outputs if out.output_type == "error"]
        text = "\n".join(error.traceback)
        assert error.ename == "CheckError" and "CheckError" in error.traceback[0], text
        assert ("the loss" if started is None else "forward") in error.traceback[0], text
        assert "course_utils" not in text and "site-packages" not in text, text
        assert line in text and (started is None or started in text), text


# --- which frames a CheckError shows -------------------------------------------------------

def _frames(tb) -> list[str]:
    """The file of each frame of ``tb``."""
    files = []
    while tb is not None:
        files.append(str(Path(tb.tb_frame.f_code.co_filename).resolve()))
        tb = tb.tb_next
    return files


def test_every_file_of_the_package_is_library_code():
    """Is each module of course_utils.checks (and the rest of course_utils) in the hidden folders?"""
    files = sorted(PACKAGE.glob("*.py")) + sorted(PACKAGE.parent.glob("*.py"))
    assert len(files) > 5 and all(str(f.resolve()).startswith(core._LIBRARY_FOLDERS) for f in files)


@pytest.mark.parametrize("module", sorted(p.name for p in PACKAGE.glob("*.py")))
def test_a_frame_in_any_file_of_the_package_is_hidden(module):
    """A frame whose code comes from a file of the package: hidden, while the student's line is shown?"""
    namespace: dict = {}
    exec(compile("def deep():\n    raise RuntimeError('deep in the library')\n", str(PACKAGE / module), "exec"),
         namespace)
    try:
        namespace["deep"]()  # the student's line
    except RuntimeError as err:
        error = checks.CheckError("step: failed")
        error.__cause__ = err
    text = "\n".join(error._render_traceback_())
    assert "It started as RuntimeError: deep in the library" in text, text
    assert 'namespace["deep"]()  # the student\'s line' in text, text
    assert "(in deep)" not in text, text


def _explained_forward():
    with checks.explain_errors("forward"):
        torch.ones(2, 3) @ torch.ones(2, 3)


@pytest.mark.parametrize("fail", [
    lambda: checks.check_close("y", [1.0, 2.0], [1.0, 3.0]),  # core (and diagnosis)
    lambda: checks.gradient_check("g", lambda: 0.0, np.ones(2), np.ones(2)),  # core
    lambda: checks.check_tensor("t", torch.ones(2), dtype=torch.int64),  # tensors
    lambda: checks.check_forward_shape("net", torch.nn.Linear(3, 2), torch.ones(1, 4), (1, 2)),  # modules
    _explained_forward,  # errors
], ids=["core", "gradients", "tensors", "modules", "errors"])
def test_real_failures_show_only_the_callers_frames(fail):
    """Does a real failure of each module of the checks show this file's frames and none of the package's?"""
    with pytest.raises(checks.CheckError) as info:
        fail()
    here = str(Path(__file__).resolve())
    for tb in (info.value.__traceback__, getattr(info.value.__cause__, "__traceback__", None)):
        files = _frames(tb)
        assert len(core._own_frames(tb)) == files.count(here), files
    assert any(f.startswith(str(PACKAGE)) for f in _frames(info.value.__traceback__)), "a frame of the package"
    assert info.value._render_traceback_()[0].startswith("\x1b[1;31mCheckError")

