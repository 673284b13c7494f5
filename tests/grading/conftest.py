"""Fixtures for nbgrader round trips, graded with ``course grade`` (parallel, contained).

``round_trip(assignment) -> RoundTrip(scores, max_points, course)`` is the harness every
assignment's round-trip test uses. The first call grades, in one
``course grade`` run over the machine's cores, every assignment the session's
round-trip tests ask for (one course, one worker pool, one ``import torch`` per
worker); later calls return their part. A grader problem (an nbgrader error, a
dead or hung kernel, tampering reported for an honest submission) fails the
test with the grader's explanation instead of a bare score mismatch.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import nbformat
import pytest

from course_utils.grader import sample
from course_utils.release import project_root

Scores = dict[str, dict[str, float]]
# Statuses that mean the grading itself went wrong for an honest submission.
_BROKEN = {"grader-error", "kernel-died", "timeout", "memory", "tampered", "missing-notebook",
           "malformed-notebook", "misnamed-notebook", "unknown-assignment"}


@functools.cache
def _kernels_locked() -> bool:
    """Whether this machine gives ``course grade`` every protection of the locked kernel."""
    from course_utils.grader import sandbox

    return not sandbox.probe(sandbox.SandboxSpec())


def _catalogue_module(assignment: str) -> Any:
    path = project_root() / "solutions" / assignment / "mistakes.py"
    spec = importlib.util.spec_from_file_location(f"mistakes_{assignment}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_mistakes(assignment: str) -> dict[str, dict[str, Any]]:
    """The MISTAKES table of ``solutions/<assignment>/mistakes.py``.

    Entries marked ``"locked": True`` attack the machine and lose their points only in a
    locked kernel: they are left out where the sandbox probe finds a protection missing.
    """
    mistakes = _catalogue_module(assignment).MISTAKES
    return {name: m for name, m in mistakes.items() if not m.get("locked") or _kernels_locked()}


def load_alternatives(assignment: str) -> dict[str, dict[str, Any]]:
    """The ALTERNATIVES table: correct answers written differently, each owed full marks."""
    return dict(getattr(_catalogue_module(assignment), "ALTERNATIVES", {}))


def alternative_packs(assignment: str) -> dict[str, list[str]]:
    """ALTERNATIVES packed into few submissions: entries replacing disjoint cells share one.

    Returns ``{student: [entry, ...]}``; every pack must get full marks.
    """
    packs: list[tuple[set[str], list[str]]] = []
    for name, entry in load_alternatives(assignment).items():
        cells = set(entry["replace"])
        home = next((pack for pack in packs if not pack[0] & cells), None)
        if home is None:
            packs.append((set(cells), [name]))
        else:
            home[0].update(cells)
            home[1].append(name)
    return {f"alternatives-{index}": names for index, (_, names) in enumerate(packs, start=1)}


def load_stand_ins(assignment: str) -> dict[str, str]:
    """The STAND_INS table: cheaper correct answers for cells a submission does not test."""
    return dict(getattr(_catalogue_module(assignment), "STAND_INS", {}))


def _write_submissions(course: Path, assignment: str) -> list[str]:
    """correct, untouched, one per mistakes.py entry, and the packs of ALTERNATIVES; the students.

    Every submission but "correct" and "untouched" answers the cells it does not replace with
    the STAND_INS where there are some (so "correct" alone pays for the reference's slow cells).
    """
    release_dir = course / "release" / assignment
    students: dict[str, dict[str, str] | None] = {"correct": {}, "untouched": None}
    students.update({name: m["replace"] for name, m in load_mistakes(assignment).items()})
    alternatives = load_alternatives(assignment)
    for student, names in alternative_packs(assignment).items():
        students[student] = {cell: code for name in names for cell, code in alternatives[name]["replace"].items()}
    stand_ins = load_stand_ins(assignment)
    for student, replace in students.items():
        if replace and student != "correct":
            students[student] = {**stand_ins, **replace}
    for nb_path in sorted(release_dir.glob("*.ipynb")):
        release_nb = nbformat.read(nb_path, as_version=4)
        solution_nb = nbformat.read(course / "source" / assignment / nb_path.name, as_version=4)
        for student, replace in students.items():
            nb = release_nb if replace is None else sample.build_submission(release_nb, solution_nb, replace)
            sample.write_submission(course, student, assignment, nb, nb_path.stem)
    return list(students)


def cell_text(notebook: Path, grade_id: str) -> str:
    """Everything a cell of a graded notebook showed: printed text, error names and messages."""
    nb = nbformat.read(notebook, as_version=4)
    cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    if not cells:
        raise KeyError(f"{notebook} has no cell {grade_id!r}")
    parts = []
    for out in cells[0].get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}\n" + "\n".join(out.get("traceback", [])))
        elif "text/plain" in out.get("data", {}):
            parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


class RoundTrip(NamedTuple):
    """One assignment's round trip: scores per student per graded cell, max points, the graded course."""

    scores: dict[str, dict[str, float]]
    max_points: dict[str, float]
    course: Path

    def says(self, student: str, assignment: str, grade_id: str) -> str:
        """What cell ``grade_id`` of ``student``'s autograded notebook showed."""
        (notebook,) = (self.course / "autograded" / student / assignment).glob("*.ipynb")
        return cell_text(notebook, grade_id)


def _check(name: str, students: list[str], rows: list[Any]) -> tuple[Scores, dict[str, float]]:
    mine = {r.student: r for r in rows if r.assignment == name}
    for student in students:
        row = mine.get(student)
        if row is None:
            raise RuntimeError(f"{name}/{student} was not graded")
        if _BROKEN & set(row.codes):
            raise RuntimeError(f"{name}/{student}: the grader reports {row.status}: "
                               + " | ".join(row.details))
        if set(row.codes) - {"needs-manual"}:
            warnings.warn(f"{name}/{student}: grader status {row.status}: " + " | ".join(row.details),
                          stacklevel=3)
    return {s: mine[s].scores for s in students}, mine["correct"].max_scores


def grade_round_trips(course_dir: Path, assignments: list[str]) -> dict[str, RoundTrip | Exception]:
    """Autograde correct, untouched and every typical-mistake submission of each assignment.

    Returns, per assignment, (scores per student per graded cell, max points per
    graded cell), or the exception explaining why its grading went wrong.
    """
    course = sample.prepare_course(course_dir, assignments)
    students = {name: _write_submissions(course, name) for name in assignments}
    rows = sample.grade(course, assignments, feedback=False)
    found: dict[str, RoundTrip | Exception] = {}
    for name in assignments:
        try:
            found[name] = RoundTrip(*_check(name, students[name], rows), course)
        except Exception as err:  # noqa: BLE001 - reported by that assignment's test
            found[name] = err
    return found


def grade_round_trip(tmp_path: Path, assignment: str) -> RoundTrip:
    """One assignment's round trip in its own course directory."""
    result = grade_round_trips(tmp_path / "course", [assignment])[assignment]
    if isinstance(result, Exception):
        raise result
    return result


class _RoundTrips:
    """Grades the session's round-trip assignments together, on first use."""

    def __init__(self, wanted: list[str], tmp_path_factory: pytest.TempPathFactory) -> None:
        self.wanted = wanted
        self.factory = tmp_path_factory
        self.results: dict[str, RoundTrip | Exception] = {}

    def __call__(self, assignment: str) -> RoundTrip:
        if assignment not in self.results:
            batch = [a for a in self.wanted if a not in self.results]
            if assignment not in batch:
                batch = [assignment]
            self.results.update(grade_round_trips(self.factory.mktemp("course"), batch))
        result = self.results[assignment]
        if isinstance(result, Exception):
            raise result
        return result


@pytest.fixture(scope="session")
def _round_trips(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> _RoundTrips:
    wanted = sorted({
        item.callspec.params["assignment"]
        for item in request.session.items
        if "round_trip" in getattr(item, "fixturenames", ())
        and "assignment" in getattr(getattr(item, "callspec", None), "params", {})
    })
    return _RoundTrips(wanted, tmp_path_factory)


@pytest.fixture
def round_trip(_round_trips: _RoundTrips):
    """``round_trip(assignment) -> RoundTrip(scores, max_points, course)``."""
    return _round_trips
