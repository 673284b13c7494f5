"""Grading round trips with real nbgrader, one test per assignment.

For each assignment: the reference solution gets full marks, the untouched
student version gets zero, each typical-mistake submission (from
``solutions/<assignment>/mistakes.py``) loses exactly the points of the cells
it names, keeps every other cell's points, and shows the words its ``says`` lists
(in its self-checks' and graded cells' outputs), and every correct alternative
(``ALTERNATIVES``) gets full marks.
"""

import pytest

from course_utils.release import assignments

from .conftest import alternative_packs, load_mistakes

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("assignment", assignments())
def test_scores_are_exact(round_trip, assignment):
    """Does every simulated submission get exactly the score it deserves?"""
    scores, max_points, _ = round_trip(assignment)
    assert max_points, f"{assignment} has no graded cells"
    assert scores["correct"] == max_points, "the reference solution must get full marks"
    assert sum(scores["untouched"].values()) == 0, f"untouched notebook scored {scores['untouched']}"
    for student, mistake in load_mistakes(assignment).items():
        expected = {cell: (0.0 if cell in mistake["loses"] else pts) for cell, pts in max_points.items()}
        assert scores[student] == expected, f"{student}: got {scores[student]}, expected {expected}"


@pytest.mark.parametrize("assignment", assignments())
def test_the_reference_runs_without_an_error_under_the_grader(round_trip, assignment):
    """Does every cell of the graded reference solution run cleanly in the grader's locked kernel?

    A lesson cell that fails only there (a cache it may not write, data it may not read) costs
    no points, but every student's feedback would show its error.
    """
    import nbformat

    trip = round_trip(assignment)
    (notebook,) = (trip.course / "autograded" / "correct" / assignment).glob("*.ipynb")
    errors = [(c.metadata.get("nbgrader", {}).get("grade_id", i), f"{o.ename}: {o.evalue}"[:300])
              for i, c in enumerate(nbformat.read(notebook, as_version=4).cells)
              for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"cells of the reference that fail under the grader: {errors}"


@pytest.mark.parametrize("assignment", assignments())
def test_only_cells_up_to_the_last_graded_one_run(round_trip, assignment):
    """Does the grader run every cell up to the last graded one, and none after it (they cannot change a grade)?"""
    import nbformat

    from course_utils.grader.execute import TRAILING_NOTE, last_graded_index

    trip = round_trip(assignment)
    (notebook,) = (trip.course / "autograded" / "correct" / assignment).glob("*.ipynb")
    nb = nbformat.read(notebook, as_version=4)
    cells, last = nb.cells, last_graded_index(nb)
    code = [(i, c) for i, c in enumerate(cells) if c.cell_type == "code" and c.source.strip()]
    skipped = [i for i, c in code if [o.get("text") for o in c.outputs] == [TRAILING_NOTE]]
    assert skipped == [i for i, _ in code if i > last], f"cells not run: {skipped}; the last graded cell is {last}"
    assert all(c.execution_count or c.metadata.get("nbgrader", {}).get("grade") for i, c in code if i <= last), \
        "a cell before the last graded one did not run"


@pytest.mark.parametrize("assignment", assignments())
def test_correct_alternatives_get_full_marks(round_trip, assignment):
    """Does every correct answer written differently (ALTERNATIVES) keep every point?"""
    trip = round_trip(assignment)
    for student, entries in alternative_packs(assignment).items():
        lost = {cell: pts for cell, pts in trip.scores[student].items() if pts < trip.max_points[cell]}
        assert not lost, f"correct alternatives {entries} lost points in {sorted(lost)}: a false zero"


@pytest.mark.parametrize("assignment", assignments())
def test_each_mistake_is_named_where_the_student_looks(round_trip, assignment):
    """Does each mistake's self-check (or graded feedback) show the words its entry promises?"""
    trip = round_trip(assignment)
    for student, mistake in load_mistakes(assignment).items():
        for cell, words in mistake.get("says", {}).items():
            text = trip.says(student, assignment, cell)
            assert words in text, f"{student}: cell {cell!r} should say {words!r}; it showed:\n{text[-1500:]}"


@pytest.mark.parametrize("assignment", assignments())
def test_every_graded_cell_has_a_losing_mistake(assignment):
    """Is there, for every graded cell, a typical mistake that costs its points?"""
    import nbformat

    from course_utils.release import project_root

    nb = nbformat.read(project_root() / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    graded = {c.metadata["nbgrader"]["grade_id"] for c in nb.cells
              if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"}
    covered = {cell for m in load_mistakes(assignment).values() for cell in m["loses"]}
    assert graded <= covered, f"graded cells without a losing wrong answer: {sorted(graded - covered)}"
