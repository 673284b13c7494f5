"""Autograde notebooks with real nbgrader, and build simulated submissions.

This module wraps nbgrader's own commands; it does not re-implement them:

* :func:`prepare_course` lays out a course directory (``source/``, ``release/``)
  from the repo's ``solutions/`` and registers the assignments in a gradebook;
* :func:`build_submission` fills a student notebook with the reference
  solution, optionally replacing some solution cells with other code (a
  typical mistake), the way a student would submit it;
* :func:`grade` grades a course directory with ``course grade`` (parallel,
  contained: :mod:`course_utils.grader`) and returns its score rows;
* :func:`autograde` runs plain, sequential ``nbgrader autograde`` (the
  benchmark's baseline) and :func:`cell_scores` reads scores back from the gradebook.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import nbformat

from course_utils.release import normalise, project_root

__all__ = [
    "autograde",
    "build_submission",
    "cell_scores",
    "grade",
    "max_scores",
    "prepare_course",
    "solution_code",
    "write_submission",
]

_SOLUTION_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")

COURSE_CONFIG = '''\
c = get_config()  # noqa: F821
c.Execute.timeout = {timeout}
{choices}{settings}'''


def solution_code(solution_nb: nbformat.NotebookNode) -> dict[str, str]:
    """The reference code of every solution cell, markers removed, by grade_id."""
    code = {}
    for cell in solution_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            lines = [ln for ln in cell.source.splitlines() if not _SOLUTION_MARKER.match(ln)]
            code[meta["grade_id"]] = "\n".join(lines)
    return code


def build_submission(
    release_nb: nbformat.NotebookNode,
    solution_nb: nbformat.NotebookNode,
    replace: Mapping[str, str] | None = None,
) -> nbformat.NotebookNode:
    """A student notebook with every solution cell answered.

    Cells named in ``replace`` (grade_id -> code) get that code instead of the
    reference solution. Unknown grade_ids raise ``KeyError`` so a typo in a
    test cannot silently submit the correct answer.
    """
    replace = dict(replace or {})
    answers = solution_code(solution_nb)
    unknown = set(replace) - set(answers)
    if unknown:
        raise KeyError(f"no solution cells named {sorted(unknown)}; known: {sorted(answers)}")
    answers.update(replace)
    submission = nbformat.from_dict(release_nb)
    for cell in submission.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id") in answers:
            cell.source = answers[meta["grade_id"]]
    return submission


def prepare_course(
    course_dir: Path, assignments: Sequence[str], *, root: Path | None = None, timeout: int = 600,
    settings: str = "",
) -> Path:
    """Create a course directory with the given assignments generated into it.

    The one sample-course builder (the tests, the demo and the benchmark use it): the
    config repeats the course's own choices (ignore list, judge coverage, withheld data),
    then ``settings`` (more config lines). nbgrader's ``GenerateAssignment`` runs
    in-process (no interpreter start per assignment) and writes the student versions
    to ``release/``.
    """
    from course_utils.grader.runner import course_choices, generate

    root = root or project_root()
    course_dir.mkdir(parents=True, exist_ok=True)
    config = COURSE_CONFIG.format(timeout=timeout, choices=course_choices(root), settings=settings)
    (course_dir / "nbgrader_config.py").write_text(config)
    for name in assignments:
        target = course_dir / "source" / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(root / "solutions" / name, target, ignore=shutil.ignore_patterns("*.py"))
    generate(course_dir, list(assignments), force=True, release_dir=course_dir / "release")
    return course_dir


def grade(course_dir: Path, assignments: list[str] | None = None, **options: object) -> list:
    """Grade every submission of ``course_dir`` with ``course grade``; return its rows.

    ``options`` are :class:`course_utils.grader.GradeOptions` fields (``workers``,
    ``feedback``, ``force``, ...). Each row (:class:`course_utils.grader.SubmissionResult`)
    has ``student``, ``assignment``, ``scores``, ``max_scores``, ``status``, ``details``.
    """
    from course_utils.grader import runner

    settings = {"progress": False, "force": True, **options}
    report = runner.grade(runner.GradeOptions(course_dir=course_dir, assignments=assignments,
                                              **settings))  # type: ignore[arg-type]
    return report.results


def write_submission(
    course_dir: Path, student: str, assignment: str, nb: nbformat.NotebookNode, name: str | None = None
) -> Path:
    """Place ``nb`` at ``submitted/<student>/<assignment>/<name>.ipynb``."""
    folder = course_dir / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name or assignment}.ipynb"
    nbformat.write(normalise(nb), path)
    return path


def tool_env() -> dict[str, str]:
    """The environment with this interpreter's ``bin/`` first on PATH.

    nbgrader runs helper executables (``alembic``) by name; in an unactivated
    virtual environment they would not be found.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _nbgrader(course_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"]
    result = subprocess.run(cmd, cwd=course_dir, capture_output=True, text=True, env=tool_env())
    if result.returncode != 0:
        raise RuntimeError(f"`nbgrader {' '.join(args)}` failed in {course_dir}:\n{result.stderr[-4000:]}")
    return result


def autograde(course_dir: Path, assignment: str, student: str | None = None) -> None:
    """Run ``nbgrader autograde`` on the submissions of ``assignment``."""
    args = ["autograde", assignment, "--create", "--force"]
    if student:
        args.append(f"--student={student}")
    _nbgrader(course_dir, *args)


def cell_scores(course_dir: Path, assignment: str, student: str) -> dict[str, float]:
    """Autograded score of every graded cell (grade_id -> points) of one submission."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        submission = gb.find_submission(assignment, student)
        return {grade.name: float(grade.score) for nb in submission.notebooks for grade in nb.grades}


def max_scores(course_dir: Path, assignment: str) -> dict[str, float]:
    """Points available per graded cell of ``assignment``."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        return {
            cell.name: float(cell.max_score)
            for nb in gb.find_assignment(assignment).notebooks
            for cell in nb.grade_cells
        }
