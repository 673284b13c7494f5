"""nbgrader's UI end to end for a course in a repo, through the server's real handlers.

The calls are what Formgrader's buttons and the Assignment List's buttons send; the
browser test (tests/browser) looks at the pages themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils import workspace
from course_utils.grader.sample import solution_code
from tests.jupyter_server import ROOT, course_copy, jupyter_server

pytestmark = pytest.mark.slow
NAME = "01_numpy_backprop"
COURSE = {"course_id": "pytorch-course", "assignment_id": NAME}


def _answer_everything(path: Path) -> None:
    """Fill every exercise of a work notebook with the reference answer, as a student would type it."""
    answers = solution_code(nbformat.read(ROOT / "solutions" / NAME / f"{NAME}.ipynb", as_version=4))
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[gid]
    nbformat.write(nb, path)


def test_formgrader_and_assignment_list_end_to_end(tmp_path):
    """Generate keeps student work; the exchange works in the course; Formgrader shows `course grade`'s scores."""
    course = course_copy(tmp_path / "course", [NAME])
    mine = course / "work" / NAME / f"{NAME}.ipynb"
    with jupyter_server(course) as server:
        # A student has started and answered the assignment.
        workspace.start(NAME, course)
        _answer_everything(mine)
        answered = mine.read_bytes()

        # Instructor: Formgrader lists the assignment; Generate writes what is committed, touching no work.
        assert server.request("formgrader/api/status") == {"status": True}
        assert [a["name"] for a in server.request("formgrader/api/assignments")] == [NAME]
        reply = server.request(f"formgrader/api/assignment/{NAME}/assign", {})
        assert reply["success"], reply["log"]
        released = course / "notebooks" / NAME / f"{NAME}.ipynb"
        assert released.read_bytes() == (ROOT / "notebooks" / NAME / f"{NAME}.ipynb").read_bytes(), \
            "Formgrader's Generate wrote another file than the committed release (git would show a change)"
        assert mine.read_bytes() == answered, "Generate touched the student's work"

        # Student: the Assignment List and Course List answer without exchange errors.
        for path in (f"assignments?course_id={COURSE['course_id']}", "courses"):
            reply = server.request(path)
            assert reply["success"], f"{path}: {reply['value']}"
        reply = server.request(f"formgrader/api/assignment/{NAME}/release", {})
        assert reply["success"], reply["log"]
        listed = server.request(f"assignments?course_id={COURSE['course_id']}")["value"]
        assert [(a["assignment_id"], a["status"]) for a in listed] == [(NAME, "fetched")], listed
        server.request("assignments/fetch", COURSE)  # Fetch again: never over the student's copy
        assert mine.read_bytes() == answered, "Fetch overwrote the student's work"

        # Submit, Collect, `course grade`, and Formgrader's gradebook shows the grade.
        assert server.request("assignments/submit", COURSE)["success"]
        reply = server.request(f"formgrader/api/assignment/{NAME}/collect", {})
        assert reply["success"], reply["log"]
        student = next(p.name for p in (course / "submitted").iterdir())
        graded = subprocess.run([sys.executable, "-m", "course_utils", "grade", str(course), "--workers", "1"],
                                capture_output=True, text=True, env={**os.environ, "COURSE_FAST": "1"})
        assert graded.returncode == 0, graded.stdout + graded.stderr
        (submission,) = server.request(f"formgrader/api/submissions/{NAME}")
        scores = (submission["student"], submission["score"], submission["max_score"])
        assert scores == (student, 10.0, 10.0), f"{submission}\n`course grade` said:\n{graded.stdout[-3000:]}"
        assert submission["autograded"] and not submission["needs_manual_grade"]

        # Feedback: Formgrader's Release Feedback, the student's Fetch Feedback, `course grade`'s HTML.
        reply = server.request(f"formgrader/api/assignment/{NAME}/release_feedback", {})
        assert reply["success"], reply["log"]
        assert server.request("assignments/fetch_feedback", COURSE)["success"]
        (html,) = (course / "work" / NAME / "feedback").glob(f"*/{NAME}.html")
        assert html.read_text() == (course / "feedback" / student / NAME / f"{NAME}.html").read_text()
        assert "10.0" in html.read_text() and "BEGIN HIDDEN TESTS" not in html.read_text()
    assert (course / ".exchange" / ".cache").is_dir(), "the student's submission record is outside the course"
