"""The release pipeline: sources -> solution notebooks -> student notebooks."""

import json

import nbformat
import pytest

from course_utils import release

ROOT = release.project_root()
ASSIGNMENTS = release.assignments()


def test_every_assignment_has_source_solution_and_student_version():
    """Does each solutions/<a>/<a>.py have its .ipynb and a released student notebook?"""
    assert ASSIGNMENTS, "no assignments found"
    for name in ASSIGNMENTS:
        assert (ROOT / "solutions" / name / f"{name}.ipynb").is_file()
        assert (ROOT / "notebooks" / name / f"{name}.ipynb").is_file()


def test_solution_notebooks_match_their_sources():
    """Are the committed solution notebooks rebuilt from the current .py sources (`course sync`)?"""
    assert release.stale_notebooks() == [], "run `course sync` and commit the result"


def test_solution_notebooks_have_no_outputs():
    """Are solution notebooks committed without outputs?"""
    for path in ROOT.glob("solutions/*/*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            assert not cell.get("outputs"), f"{path} has outputs"


_RUN_LEFTOVERS = {"runs", ".ipynb_checkpoints", "__pycache__"}


@pytest.mark.slow
def test_committed_student_notebooks_match_a_fresh_release(tmp_path):
    """Is every committed student notebook exactly what `course release` generates now?"""
    fresh = release.release(dest=tmp_path / "release")
    for name in ASSIGNMENTS:
        for new in sorted((fresh / name).glob("*.ipynb")):
            committed = ROOT / "notebooks" / name / new.name
            assert committed.is_file(), f"{committed} missing: run `course release`"
            a = release.normalise(nbformat.read(committed, as_version=4))
            b = release.normalise(nbformat.read(new, as_version=4))
            assert a == b, f"{committed} is stale or hand-edited: run `course release {name}`"
        released = {p.name for p in (fresh / name).iterdir()}
        # What running a notebook in place leaves behind (git-ignored) is not part of the release.
        committed_files = {p.name for p in (ROOT / "notebooks" / name).iterdir()} - _RUN_LEFTOVERS
        assert released == committed_files, f"notebooks/{name} holds other files than the release"


def test_student_notebooks_hold_no_solutions_or_hidden_tests():
    """Do the student notebooks keep solutions and hidden tests out?"""
    for path in ROOT.glob("notebooks/*/*.ipynb"):
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text, path
        assert "raise NotImplementedError" in text, f"{path} has no exercise stubs"


def test_mistake_tables_name_real_cells():
    """Does every mistakes.py entry replace real solution cells and name real graded cells?"""
    from course_utils.grader.sample import solution_code
    from tests.grading.conftest import load_alternatives, load_mistakes, load_stand_ins

    for name in ASSIGNMENTS:
        nb = nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", as_version=4)
        solutions = set(solution_code(nb))
        graded = {c.metadata["nbgrader"]["grade_id"] for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
        every = {c.metadata["nbgrader"]["grade_id"] for c in nb.cells if c.metadata.get("nbgrader")}
        for student, mistake in load_mistakes(name).items():
            assert set(mistake["replace"]) <= solutions, f"{name}/{student}: unknown solution cells"
            assert set(mistake["loses"]) <= graded, f"{name}/{student}: unknown graded cells"
            assert set(mistake.get("says", {})) <= every, f"{name}/{student}: 'says' names unknown cells"
        for entry, alternative in load_alternatives(name).items():
            assert set(alternative["replace"]) <= solutions, f"{name}/{entry}: unknown solution cells"
        assert set(load_stand_ins(name)) <= solutions, f"{name}: STAND_INS for unknown solution cells"
