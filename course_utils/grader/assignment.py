"""What ``course grade`` knows of an assignment, read from the gradebook; a submission inspected before it runs.

:func:`assignment_info` gathers, once per run, an assignment's notebooks, graded
cells and points, the release checksums of its locked cells, the setup cells'
bindings, its graded cells' tests (for the judge), extra files and limits.
:func:`inspect` checks one submission's files, locked cells and code without running it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from course_utils.grader import cells as roles
from course_utils.grader import integrity
from course_utils.grader.config import CourseGrade, GradeOptions
from course_utils.grader.course import Course
from course_utils.grader.guard import Protection

__all__ = ["AssignmentInfo", "assignment_info", "inspect", "submission_mtime"]


@dataclass
class AssignmentInfo:
    """One assignment, as the grader's workers need it."""

    name: str
    notebooks: dict[str, dict[str, str]]  # notebook -> locked cell -> release checksum
    cells: dict[str, dict[str, float]]  # notebook -> graded cell -> points, in notebook order
    bindings: list[tuple[str, str, str | None]]
    extra_files: list[str]
    timeout: int
    memory_mb: int
    submission_timeout: int = 0
    run_trailing: bool = False  # also run the cells after the last graded cell
    # notebook -> every cell of the source notebook that has a grade_id, in order, with
    # locked cells as released (hidden tests removed): used to put back deleted cells.
    skeleton: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # graded cell -> its source in the gradebook (hidden tests included): what the judge runs.
    tests: dict[str, str] = field(default_factory=dict)
    judged: bool = True
    withheld: list[str] = field(default_factory=list)  # data files the kernel may not read ("dataset:file")


def assignment_info(course: Course, name: str, limits: CourseGrade, options: GradeOptions) -> AssignmentInfo:
    """Everything the run needs of assignment ``name`` (it is in the gradebook)."""
    from nbgrader.api import Gradebook

    notebooks: dict[str, dict[str, str]] = {}
    cells: dict[str, dict[str, float]] = {}
    bindings: list[tuple[str, str, str | None]] = []
    skeleton: dict[str, list[dict[str, Any]]] = {}
    tests: dict[str, str] = {}
    with Gradebook(course.db_url) as gb:
        for nb in gb.find_assignment(name).notebooks:
            points = {c.name: float(c.max_score) for c in nb.grade_cells}
            tests.update({c.name: c.source for c in nb.source_cells
                          if c.name in points and c.cell_type == "code"})
            source = [{"name": c.name, "cell_type": c.cell_type, "source": c.source,
                       "locked": c.locked, "points": points.get(c.name)} for c in nb.source_cells]
            notebooks[nb.name] = integrity.expected_release_checksums(source)
            path = course.source / name / f"{nb.name}.ipynb"
            order = []
            if path.exists():
                source_nb = nbformat.read(path, as_version=4)
                order = [c.metadata.get("nbgrader", {}).get("grade_id") for c in source_nb.cells]
                bindings += [b for b in integrity.setup_bindings(source_nb) if b not in bindings]
                skeleton[nb.name] = roles.skeleton(source_nb)
            ranked = sorted(points, key=lambda c: order.index(c) if c in order else len(order))
            cells[nb.name] = {c: points[c] for c in ranked}
    extra = sorted(
        str(p.relative_to(course.source / name)) for p in (course.source / name).rglob("*")
        if p.is_file() and p.suffix != ".ipynb"
        and not any(fnmatch.fnmatch(part, pat) for pat in course.ignore for part in p.parts)
    )
    override = dict(limits.per_assignment.get(name, {}))
    execute_timeout = course.config.get("Execute", {}).get("timeout", 600)
    timeout = options.timeout or override.get("timeout") or limits.timeout or execute_timeout or 600
    memory = options.memory_mb if options.memory_mb is not None else \
        override.get("memory_mb", limits.memory_mb)
    return AssignmentInfo(name=name, notebooks=notebooks, cells=cells, bindings=bindings,
                       extra_files=extra, timeout=int(timeout), memory_mb=int(memory),
                       skeleton=skeleton, tests=tests, judged=name not in limits.in_kernel_tests,
                       withheld=list(limits.withheld.get(name, [])),
                       submission_timeout=int(override.get("submission_timeout", limits.submission_timeout)),
                       run_trailing=bool(override.get("run_trailing_cells", limits.run_trailing_cells)))


def inspect(folder: Path, info: AssignmentInfo, protection: Protection | None = None) -> integrity.Inspection:
    """Files, locked cells and a static scan of one submission, before anything runs."""
    found = integrity.inspect_submission(folder, info.notebooks)
    protected = {b[0]: b[1] for b in info.bindings}
    for nb_name in found.graded:
        nb = nbformat.read(folder / f"{nb_name}.ipynb", as_version=4)
        flags = integrity.scan_notebook(nb, protected, protection)
        if flags:
            found.add("suspicious", f"{nb_name}: review " + "; ".join(flags))
    return found


def submission_mtime(folder: Path) -> float:
    """The newest modification time of a submission's files (a re-run re-grades a changed one)."""
    times = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()]
    return max(times, default=0.0)


