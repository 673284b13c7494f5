"""Sample courses: a course directory built from the repository's solutions, and simulated submissions.

The one sample-course builder that the demo (:mod:`course_utils.grader.demo`), the
grading tests and the benchmarks share:

* :func:`prepare_course` lays out a course directory (``source/``, ``release/``,
  a config repeating the course's own grading choices) from ``solutions/`` and
  generates its assignments into a gradebook;
* :func:`build_submission` fills a student notebook with the reference solution,
  optionally replacing some solution cells with other code (a typical mistake, a
  correct alternative), the way a student would submit it; :func:`write_submission`
  puts it where nbgrader expects it;
* :func:`grade` grades the course with ``course grade`` and returns its rows.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import nbformat

from course_utils.grader.config import GradeOptions, course_choices
from course_utils.grader.gradebook import generate
from course_utils.grader.report import SubmissionResult
from course_utils.release import normalise, project_root

__all__ = ["build_submission", "grade", "prepare_course", "solution_code", "tool_env", "write_submission"]

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


def grade(course_dir: Path, assignments: list[str] | None = None, **options: object) -> list[SubmissionResult]:
    """Grade every submission of ``course_dir`` with ``course grade`` (forced, quiet); return its rows.

    ``options`` are :class:`~course_utils.grader.config.GradeOptions` fields (``workers``,
    ``feedback``, ``force``, ``scheduler``, ...). Each row has ``student``, ``assignment``,
    ``scores``, ``max_scores``, ``status``, ``details``.
    """
    from course_utils.grader.runner import grade as run

    settings = {"progress": False, "force": True, **options}
    report = run(GradeOptions(course_dir=course_dir, assignments=assignments, **settings))  # type: ignore[arg-type]
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
