"""A solution's .py and .ipynb are one source, editable either way (course_utils.pairing)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils import pairing, release

ROOT = release.project_root()
NAME = "04_nn"


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A course folder holding one assignment's pair, the Lab pairing file and the nbgrader config."""
    folder = tmp_path / "solutions" / NAME
    folder.mkdir(parents=True)
    for suffix in (".py", ".ipynb"):
        shutil.copy2(ROOT / "solutions" / NAME / f"{NAME}{suffix}", folder)
    shutil.copy2(ROOT / "solutions" / "jupytext.toml", tmp_path / "solutions")
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path)
    return tmp_path


def _pair(course: Path) -> pairing.Pair:
    return pairing.Pair.of(course / "solutions" / NAME / f"{NAME}.py")


def _changed_lines(before: str, after: str) -> int:
    import difflib

    return sum(
        1 for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )


def _edit_notebook(pair: pairing.Pair, old: str, new: str) -> None:
    nb = nbformat.read(pair.notebook, as_version=4)
    cell = next(c for c in nb.cells if old in c.source)
    cell.source = cell.source.replace(old, new)
    nbformat.write(nb, pair.notebook)


def test_committed_pairs_are_in_step():
    """Is every committed pair in step, so `course sync` on a fresh clone changes nothing?"""
    for pair in release.pairs():
        assert pairing.pair_state(pair) == "in sync", pair.notebook


def test_the_source_round_trips_exactly():
    """Does writing a solution notebook back as a percent source give the committed .py, byte for byte?"""
    for pair in release.pairs():
        nb = pairing.build_notebook(pair.source)
        assert pairing._source_from(nb, pair) == pair.source.read_text(), pair.source


def test_an_edited_source_rebuilds_the_notebook(course):
    """Edited .py (an editor, git pull): does sync rebuild the .ipynb from it?"""
    pair = _pair(course)
    pair.source.write_text(pair.source.read_text().replace("# # 04 ·", "# # 04 (edited) ·", 1))
    assert pairing.pair_state(pair) == "source changed"
    assert release.sync(course) == [(pair.notebook, "rebuilt from its source")]
    assert "04 (edited)" in nbformat.read(pair.notebook, as_version=4).cells[0].source
    assert pairing.pair_state(pair) == "in sync" and release.stale_notebooks(course) == []


def test_an_edited_notebook_rewrites_the_source_with_a_small_diff(course):
    """Edited .ipynb (Create Assignment in Lab without jupytext): is the .py rewritten, touching only the edit?"""
    pair = _pair(course)
    before = pair.source.read_text()
    nb = nbformat.read(pair.notebook, as_version=4)
    graded = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("points") == 2)
    graded.metadata["nbgrader"]["points"] = 3  # what the Create Assignment panel writes
    graded.metadata["scrolled"] = True  # and what Lab adds on its own
    nb.cells[0].source += "\nOne more line of introduction."
    nbformat.write(nb, pair.notebook)
    assert pairing.pair_state(pair) == "notebook changed"
    assert release.sync(course) == [(pair.source, "rewritten from its notebook")]
    after = pair.source.read_text()
    assert '"points": 3' in after and "One more line of introduction." in after
    assert _changed_lines(before, after) == 3, "only the marker line changes, and one line is added"
    assert pairing.pair_state(pair) == "in sync"


def test_a_save_in_lab_with_jupytext_keeps_both_files_in_step(course):
    """A save through jupytext's contents manager (what Lab's extension runs): in step, and a one-line diff?"""
    from jupytext import TextFileContentsManager

    pair = _pair(course)
    before = pair.source.read_text()
    manager = TextFileContentsManager(root_dir=str(course))
    path = f"solutions/{NAME}/{NAME}.ipynb"
    model = manager.get(path)
    cell = next(c for c in model["content"].cells if "build_mlp" in c.source and c.cell_type == "markdown")
    cell.source = cell.source.replace("build_mlp", "build_mlp (edited in Lab)", 1)
    manager.save(model, path)
    assert "build_mlp (edited in Lab)" in pair.source.read_text(), "the save did not reach the .py"
    assert pairing.pair_state(pair) == "in sync"
    after = pair.source.read_text()
    assert _changed_lines(before, after) == 2, "only the edited line should differ"
    release.sync(course)  # rewrites the notebook's record; no content changes
    assert pair.source.read_text() == after
    assert pairing.pair_state(pair) == "in sync" and release.stale_notebooks(course) == []


def test_both_sides_edited_is_refused_and_nothing_is_written(course):
    """Both edited differently: does sync refuse, name the file, write nothing, and resolve when told a side?"""
    pair = _pair(course)
    pair.source.write_text(pair.source.read_text().replace("# # 04 ·", "# # 04 (from the .py) ·", 1))
    _edit_notebook(pair, "# 04 ·", "# 04 (from the .ipynb) ·")
    before = (pair.source.read_bytes(), pair.notebook.read_bytes())
    with pytest.raises(pairing.SyncConflict) as caught:
        release.sync(course)
    message = str(caught.value)
    assert str(pair.notebook) in message and "both edited" in message and "intro" in message
    assert (pair.source.read_bytes(), pair.notebook.read_bytes()) == before
    release.sync(course, prefer={pair.notebook: "notebook"})
    assert "04 (from the .ipynb)" in pair.source.read_text()


def test_release_refuses_a_conflict(course):
    """Does `course release` refuse (naming the file) instead of releasing either side?"""
    pair = _pair(course)
    pair.source.write_text(pair.source.read_text() + "\n# %%\nprint('from the .py')\n")
    _edit_notebook(pair, "# 04 ·", "# 04 (from the .ipynb) ·")
    with pytest.raises(pairing.SyncConflict, match=NAME):
        release.release([NAME], root=course, dest=course / "release")
    assert not (course / "release" / NAME).exists()


def test_an_unreadable_notebook_is_a_clear_error(course):
    """A notebook broken by a bad merge: a message naming it, not a JSON traceback?"""
    pair = _pair(course)
    pair.notebook.write_text("<<<<<<< HEAD\n{}\n")
    with pytest.raises(pairing.SyncConflict, match="cannot be read"):
        release.sync(course)


def _generate(course: Path) -> subprocess.CompletedProcess:
    """nbgrader's own Generate (what Formgrader's button runs), with the course's config."""
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", NAME, "--force", "--no-db",
         "--log-level=ERROR", "--CourseDirectory.release_directory=release"],
        cwd=course, capture_output=True, text=True,
    )


@pytest.mark.slow
def test_formgraders_generate_uses_the_edited_source_and_matches_course_release(course):
    """Does nbgrader's Generate sync first (an edited .py is released) and write what `course release` writes?"""
    pair = _pair(course)
    pair.source.write_text(pair.source.read_text().replace("# # 04 ·", "# # 04 (edited) ·", 1))
    result = _generate(course)
    assert result.returncode == 0, result.stderr
    generated = (course / "release" / NAME / f"{NAME}.ipynb").read_text()
    assert "04 (edited)" in generated and pairing.SYNC_KEY not in generated
    ours = release.release([NAME], root=course, dest=course / "ours") / NAME / f"{NAME}.ipynb"
    assert ours.read_text() == generated, "Generate and `course release` write different files"

    _edit_notebook(pair, "04 (edited)", "04 (edited twice)")
    pair.source.write_text(pair.source.read_text() + "\n# %%\nprint('from the .py')\n")
    result = _generate(course)
    assert result.returncode != 0 and "both edited" in result.stdout + result.stderr


@pytest.mark.slow
def test_course_release_keeps_answers_typed_into_notebooks(course):
    """`course release` over a notebooks/ copy someone answered in: the answers end up in work/, not lost."""
    released = release.release([NAME], root=course, dest=course / "notebooks")
    path = released / NAME / f"{NAME}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    cell.source = cell.source.replace("raise NotImplementedError()", "return 'my answer'")
    nbformat.write(nb, path)
    answered = path.read_bytes()
    release.release([NAME], root=course, dest=course / "notebooks")
    assert (course / "work" / NAME / f"{NAME}.ipynb").read_bytes() == answered
    assert path.read_bytes() == (ROOT / "notebooks" / NAME / f"{NAME}.ipynb").read_bytes()
