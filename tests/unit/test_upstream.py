"""A graded cell's missing name is traced to the earlier cell that failed (grader/upstream.py)."""

import nbformat

from course_utils.grader import upstream


def _ran(source: str, error: tuple[str, str] | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if error:
        cell.outputs = [nbformat.v4.new_output("error", ename=error[0], evalue=error[1], traceback=[])]
    return cell


def test_defined_names_cover_the_usual_bindings():
    """def, class, assignments (tuples, annotated, augmented), imports, for and with targets."""
    source = ("import numpy as np\nfrom torch import nn\nimport os.path\ndef f(): pass\nclass C: pass\n"
              "a, (b, *c) = 1, (2, 3)\nd: int = 4\nd += 1\nfor i in []: pass\nwith open('x') as fh: pass\n"
              "if True:\n    hidden = 1\n")
    assert upstream.defined_names(source) == {"np", "nn", "os", "f", "C", "a", "b", "c", "d", "i", "fh"}


def test_a_cell_that_does_not_parse_still_names_what_it_meant_to_define():
    """A syntax error: the def and assignment lines still say what the cell was for."""
    assert upstream.defined_names("def sgd_step(p, g, lr):\n    for x in p\n        pass\nrate = 3\n") == {
        "sgd_step", "rate"}


def test_the_failed_cell_that_defines_the_name_is_named():
    """NameError after a failed cell: the message names that cell and its error, not the test."""
    log = upstream.CellLog()
    log.record("setup", _ran("import numpy as np"))
    log.record("sgd", _ran("def sgd_step(p, g, lr)\n    pass", ("SyntaxError", "expected ':' (1.py, line 1)")))
    log.record("check-sgd", _ran("sgd_step([], [], 1)", ("NameError", "name 'sgd_step' is not defined")))
    missing = upstream.missing_name("name 'sgd_step' is not defined")
    assert missing == "sgd_step"
    text = log.explain(missing)
    assert "cell 'sgd', which defines it, failed" in text and "SyntaxError: expected ':'" in text


def test_a_name_nobody_defines_says_so_and_a_typo_in_student_code_is_left_alone():
    """Renamed function: say so; a typo inside the student's own function: no guess."""
    log = upstream.CellLog()
    log.record("forward", _ran("def my_forward(x):\n    return x"))
    assert "no cell of your notebook defines it" in log.explain("two_layer_forward")
    assert log.explain("W1", asked_by_test=False) is None
    assert log.explain("my_forward") is None, "defined by a cell that ran: nothing to explain"


def test_hostile_sources_cannot_crash_the_scan():
    """100,000-deep code and huge cells: a result, not a RecursionError in the grader."""
    assert upstream.defined_names("_x = " + "-" * 100_000 + "1\n") == {"_x"}
    assert "big" in upstream.defined_names("big = 1\n" + "#" * 1_000_000)
    log = upstream.CellLog()
    log.record("train", _ran("_x = " + "(" * 100_000, ("MemoryError", "")))
    assert "cell 'train'" in log.explain("_x")
