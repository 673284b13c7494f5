"""Fixtures for nbgrader round trips."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import nbformat
import pytest

from course_utils import grading
from course_utils.release import project_root


def load_mistakes(assignment: str) -> dict[str, dict[str, Any]]:
    """The MISTAKES table of ``solutions/<assignment>/mistakes.py``."""
    path = project_root() / "solutions" / assignment / "mistakes.py"
    spec = importlib.util.spec_from_file_location(f"mistakes_{assignment}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MISTAKES


def grade_round_trip(tmp_path: Path, assignment: str) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Autograde correct, untouched and every typical-mistake submission of one assignment.

    Returns (scores per student per graded cell, max points per graded cell).
    """
    course = grading.prepare_course(tmp_path / "course", [assignment])
    release_dir = course / "release" / assignment
    students: dict[str, dict[str, str] | None] = {"correct": {}, "untouched": None}
    students.update({name: m["replace"] for name, m in load_mistakes(assignment).items()})
    for nb_path in sorted(release_dir.glob("*.ipynb")):
        release_nb = nbformat.read(nb_path, as_version=4)
        solution_nb = nbformat.read(course / "source" / assignment / nb_path.name, as_version=4)
        for student, replace in students.items():
            nb = release_nb if replace is None else grading.build_submission(release_nb, solution_nb, replace)
            grading.write_submission(course, student, assignment, nb, nb_path.stem)
    grading.autograde(course, assignment)
    scores = {s: grading.cell_scores(course, assignment, s) for s in students}
    return scores, grading.max_scores(course, assignment)


@pytest.fixture
def round_trip(tmp_path):
    return lambda assignment: grade_round_trip(tmp_path, assignment)
