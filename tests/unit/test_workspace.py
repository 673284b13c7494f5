"""A student's work folder survives releases (course_utils.workspace)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from course_utils import release, workspace

ROOT = release.project_root()
NAME = "01_numpy_backprop"
ANSWER = "    # my answer, written in JupyterLab\n    return 42\n"


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A course folder with one released assignment."""
    shutil.copytree(ROOT / "notebooks" / NAME, tmp_path / "notebooks" / NAME)
    return tmp_path


def _released(course: Path) -> Path:
    return course / "notebooks" / NAME / f"{NAME}.ipynb"


def _mine(course: Path) -> Path:
    return course / "work" / NAME / f"{NAME}.ipynb"


def _answer_in_lab(course: Path) -> str:
    """Write an answer into the first exercise and a cell of one's own; return the exercise's grade_id."""
    nb = nbformat.read(_mine(course), as_version=4)
    index, cell = next((i, c) for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    cell.source = cell.source.replace("    # YOUR CODE HERE\n    raise NotImplementedError()\n", ANSWER)
    assert ANSWER in cell.source
    cell.outputs = [nbformat.v4.new_output("stream", text="my output\n")]
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell("print('my scratch cell')"))
    nbformat.write(nb, _mine(course))
    return cell.metadata["nbgrader"]["grade_id"]


def _new_release(course: Path) -> dict[str, str]:
    """What `git pull` or `course release` may bring: edited instructions and test, a new exercise, a removed cell."""
    nb = nbformat.read(_released(course), as_version=4)
    markdown = next(c for c in nb.cells if c.cell_type == "markdown" and c.metadata["nbgrader"]["grade_id"] != "intro")
    markdown.source += "\n\n**Clarified:** the loss is a sum, not a mean."
    test = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    test.source += "\nprint('one more visible check')"
    removed = nb.cells.pop(-1)
    exercise = nbformat.v4.new_code_cell("def bonus():\n    # YOUR CODE HERE\n    raise NotImplementedError()")
    exercise.metadata["nbgrader"] = {"grade": False, "grade_id": "bonus", "locked": False,
                                     "schema_version": 3, "solution": True, "task": False}
    nb.cells.append(exercise)
    nbformat.write(nb, _released(course))
    return {"instructions": markdown.metadata["nbgrader"]["grade_id"], "test": test.metadata["nbgrader"]["grade_id"],
            "removed": removed.metadata["nbgrader"]["grade_id"]}


def test_start_copies_once_and_never_overwrites(course):
    """Does `course start` copy the release, and leave a started assignment exactly as it is?"""
    folder, new = workspace.start(NAME, course)
    assert new and _mine(course).read_bytes() == _released(course).read_bytes()
    _answer_in_lab(course)
    before = _mine(course).read_bytes()
    assert workspace.start(NAME, course) == (folder, False)
    assert _mine(course).read_bytes() == before


def test_a_new_release_does_not_touch_the_work_and_says_what_changed(course):
    """After a pull or release (Generate even deletes notebooks/<a>), is the work intact and each change named?"""
    workspace.start(NAME, course)
    _answer_in_lab(course)
    before = _mine(course).read_bytes()
    saved = _released(course).read_bytes()
    shutil.rmtree(course / "notebooks" / NAME)  # what Formgrader's Generate does first
    (course / "notebooks" / NAME).mkdir()
    _released(course).write_bytes(saved)
    ids = _new_release(course)
    assert _mine(course).read_bytes() == before
    found = {str(c) for c in workspace.changes(NAME, course)[f"{NAME}.ipynb"]}
    assert found == {f"changed instructions: {ids['instructions']}", f"changed test: {ids['test']}",
                     "new exercise: bonus", f"removed instructions: {ids['removed']}"}, found


def test_update_brings_changes_in_and_keeps_every_answer(course):
    """Does `course update --apply` keep answers, outputs and own cells, take the new cells, and back up first?"""
    workspace.start(NAME, course)
    answered = _answer_in_lab(course)
    before = _mine(course).read_bytes()
    ids = _new_release(course)
    (result,) = workspace.update(NAME, course)
    assert result.backup is not None and result.backup.read_bytes() == before
    assert answered in result.kept_answers
    merged = nbformat.read(_mine(course), as_version=4)
    nbformat.validate(merged)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): (i, c) for i, c in enumerate(merged.cells)}
    index, answer = by_id[answered]
    assert ANSWER in answer.source and answer.outputs[0]["text"] == "my output\n"
    assert merged.cells[index + 1].source == "print('my scratch cell')", "own cell moved or lost"
    assert "**Clarified:**" in by_id[ids["instructions"]][1].source
    assert "one more visible check" in by_id[ids["test"]][1].source
    assert "bonus" in by_id and ids["removed"] not in by_id
    assert workspace.changes(NAME, course) == {f"{NAME}.ipynb": []}, "the update is the new base"


def test_an_answer_to_a_removed_exercise_is_kept(course):
    """An exercise the release drops: does the student's answer stay, as an ordinary cell?"""
    workspace.start(NAME, course)
    answered = _answer_in_lab(course)
    nb = nbformat.read(_released(course), as_version=4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != answered]
    nbformat.write(nb, _released(course))
    (result,) = workspace.update(NAME, course)
    assert result.orphans == [answered]
    cells = nbformat.read(_mine(course), as_version=4).cells
    kept = [c for c in cells if ANSWER in c.source]
    assert len(kept) == 1 and "nbgrader" not in kept[0].metadata and answered in kept[0].source


def test_a_broken_work_notebook_is_a_clear_error_and_nothing_is_written(course):
    """A work notebook that no longer parses: a message naming it, and the file left alone?"""
    workspace.start(NAME, course)
    _mine(course).write_text('{"cells": [')
    _new_release(course)
    with pytest.raises(workspace.WorkspaceError, match="cannot read"):
        workspace.update(NAME, course)
    assert _mine(course).read_text() == '{"cells": ['
    with pytest.raises(workspace.WorkspaceError, match="no released assignment 'nope'"):
        workspace.start("nope", course)


def test_an_assignment_fetched_by_the_assignment_list_updates_too(course):
    """Fetched with nbgrader (no record of the release): are only the release's changes named, answers kept?"""
    (course / "work" / NAME).mkdir(parents=True)
    shutil.copy2(_released(course), _mine(course))  # what the Assignment List's Fetch does
    answered = _answer_in_lab(course)
    ids = _new_release(course)
    found = {str(c) for c in workspace.changes(NAME, course)[f"{NAME}.ipynb"]}
    assert found == {f"changed instructions: {ids['instructions']}", f"changed test: {ids['test']}",
                     "new exercise: bonus", f"removed instructions: {ids['removed']}"}, found
    (result,) = workspace.update(NAME, course)
    assert answered in result.kept_answers
    sources = "\n".join(c.source for c in nbformat.read(_mine(course), as_version=4).cells)
    assert ANSWER in sources and "**Clarified:**" in sources


def test_work_typed_into_notebooks_is_kept_before_a_release_overwrites_it(course):
    """Answers typed into notebooks/ by mistake: recognised, and copied to work/ (or its backups)?"""
    assert not workspace.has_work(nbformat.read(_released(course), as_version=4)), "a clean release is no one's work"
    assert workspace.rescue(course / "notebooks" / NAME, course / "work" / NAME) == []
    nb = nbformat.read(_released(course), as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    cell.source = cell.source.replace("raise NotImplementedError()", "return 42")
    nbformat.write(nb, _released(course))
    assert workspace.has_work(nb)
    (kept,) = workspace.rescue(course / "notebooks" / NAME, course / "work" / NAME)
    assert kept == _mine(course) and kept.read_bytes() == _released(course).read_bytes()
    (again,) = workspace.rescue(course / "notebooks" / NAME, course / "work" / NAME)
    assert again.parent.name == ".backup" and again.read_bytes() == _released(course).read_bytes()
