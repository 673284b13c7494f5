"""The course's nbgrader gradebook: assignments generated into it, grades merged, rows read back.

* :func:`generate` puts assignments into the gradebook with nbgrader's
  ``GenerateAssignment`` (only those new or changed since);
* :func:`merge` writes one worker's result (scores, comments, late penalty) with
  nbgrader's API, as the client receives it;
* :func:`read_row` reads one submission's scores back as a score-table row.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from traitlets.config import Config

from course_utils.grader.assignment import AssignmentInfo
from course_utils.grader.course import Course, open_course, read_json, source_hash, state_file, write_json
from course_utils.grader.logs import quiet_logs
from course_utils.grader.report import SubmissionResult

__all__ = ["generate", "merge", "read_row"]

_ALEMBIC_HEAD: list[str] = []


def _alembic_head() -> str:
    """nbgrader's gradebook schema version, read in-process.

    nbgrader stamps every new gradebook by running ``alembic heads`` in a
    subprocess (seconds of interpreter start-up); this asks alembic's API the
    same question once per process.
    """
    if not _ALEMBIC_HEAD:
        import nbgrader
        from alembic.config import Config as AlembicConfig
        from alembic.script import ScriptDirectory

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(Path(nbgrader.__file__).parent / "alembic"))
        _ALEMBIC_HEAD.append(str(ScriptDirectory.from_config(cfg).get_current_head()))
    return _ALEMBIC_HEAD[0]


def _fast_gradebook_creation() -> None:
    import nbgrader.api

    nbgrader.api.get_alembic_version = _alembic_head


def generate_assignment(cfg: Config, root: Path, name: str, release_dir: Path, *, database: bool = True) -> None:
    """nbgrader's ``generate_assignment NAME --force`` with course configuration ``cfg``, in this process.

    The student version goes to ``release_dir``; ``database=False`` is ``--no-db`` (no
    gradebook is written). Raises :class:`RuntimeError` with nbgrader's own reasons.
    """
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory

    cfg.CourseDirectory.root = str(root)
    cfg.CourseDirectory.release_directory = str(release_dir)
    cfg.CourseDirectory.assignment_id = name
    if not database:
        cfg.GenerateAssignment.no_database = True
        cfg.SaveCells.enabled = False  # what --no-db sets: nothing is written to a gradebook
    converter = GenerateAssignment(coursedir=CourseDirectory(config=cfg), config=cfg)
    converter.force = True
    with quiet_logs() as capture:
        try:
            converter.start()
        except Exception as err:  # noqa: BLE001 - nbgrader's reasons are in its log
            reasons = "\n".join(capture.messages) or f"{type(err).__name__}: {err}"
            raise RuntimeError(f"nbgrader generate_assignment {name} failed:\n{reasons}") from err


def generate(course_dir: Path, assignments: Iterable[str], *, force: bool = False,
             release_dir: Path | None = None) -> list[str]:
    """Put assignments into the gradebook with nbgrader's GenerateAssignment.

    Only assignments missing from the gradebook or whose source notebooks
    changed since are generated, unless ``force``. The student version nbgrader
    writes goes to ``release_dir`` (default: a temporary folder, so the course's
    own release is never rewritten). Returns the assignments generated.
    """
    from nbgrader.api import Gradebook, MissingEntry

    _fast_gradebook_creation()
    course = open_course(course_dir)
    hashes_path = state_file(course, "sources.json")
    hashes = read_json(hashes_path)
    todo = []
    with Gradebook(course.db_url) as gb:
        for name in assignments:
            if not (course.source / name).is_dir():
                continue
            try:
                gb.find_assignment(name)
                known = True
            except MissingEntry:
                known = False
            if force or not known or hashes.get(name) != source_hash(course.source / name):
                todo.append(name)
    for name in todo:
        with tempfile.TemporaryDirectory() as scratch:
            generate_assignment(Config(course.config), course.root, name,
                                release_dir if release_dir is not None else Path(scratch))
        hashes[name] = source_hash(course.source / name)
    if todo:
        write_json(hashes_path, hashes)
    return todo


def merge(course: Course, result: dict[str, Any]) -> None:
    """Write one worker result into the course gradebook with nbgrader's API."""
    from nbgrader.api import Gradebook

    student, name, data = result["student"], result["assignment"], result.get("grades")
    with Gradebook(course.db_url) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbgrader's own SQLAlchemy warnings on a new submission
        gb.update_or_create_student(student)
        kwargs = {"timestamp": data["timestamp"]} if data and data.get("timestamp") else {}
        sub = gb.update_or_create_submission(name, student, **kwargs)
        for nb in sub.notebooks:
            saved = (data or {}).get("notebooks", {}).get(nb.name)
            for grade in nb.grades:
                score, manual = (saved["grades"].get(grade.name, [0.0, False]) if saved
                                 else [0.0, False])
                grade.auto_score = score
                grade.needs_manual_grade = bool(manual)
            for comment in nb.comments:
                comment.auto_comment = saved["comments"].get(comment.name) if saved else None
            nb.late_submission_penalty = saved.get("late_penalty") if saved else None
        gb.db.commit()


def read_row(course: Course, student: str, info: AssignmentInfo | None, name: str) -> SubmissionResult:
    """Student ``student``'s row for assignment ``name``, from the gradebook (zeros when not graded)."""
    from nbgrader.api import Gradebook, MissingEntry

    row = SubmissionResult(student=student, assignment=name)
    if info is None:
        return row
    for graded_cells in info.cells.values():
        row.max_scores.update(graded_cells)
    row.max_total = sum(row.max_scores.values())
    with Gradebook(course.db_url) as gb:
        try:
            sub = gb.find_submission(name, student)
        except MissingEntry:
            row.scores = dict.fromkeys(row.max_scores, 0.0)
            return row
        penalty = 0.0
        manual = False
        for nb in sub.notebooks:
            for grade in nb.grades:
                row.scores[grade.name] = float(grade.score or 0.0)
                manual = manual or bool(grade.needs_manual_grade)
            penalty += float(nb.late_submission_penalty or 0.0)
        if manual:
            row.codes.append("needs-manual")
    row.scores = {c: row.scores.get(c, 0.0) for c in row.max_scores}
    row.total = round(sum(row.scores.values()) - penalty, 6)
    return row


