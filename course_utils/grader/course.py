"""A course directory in nbgrader's layout, and ``course grade``'s own state in it.

:func:`open_course` reads the course's ``nbgrader_config.py`` and nbgrader's
``CourseDirectory`` for its folders and gradebook; ``course grade`` keeps its
bookkeeping (source hashes, each submission's status and timings) as JSON in
``autograded/.course_grade/`` (:func:`state_file`), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traitlets.config import Config

from course_utils.grader.config import load_config

__all__ = ["STATE", "Course", "open_course", "read_json", "source_hash", "state_file", "write_json"]

STATE = ".course_grade"


@dataclass
class Course:
    """A course directory: its config, folders, gradebook and files never released."""

    root: Path
    config: Config
    source: Path
    submitted: Path
    autograded: Path
    feedback: Path
    db_url: str
    ignore: list[str]


def open_course(root: Path) -> Course:
    """The course at ``root``, as nbgrader's configuration lays it out."""
    from nbgrader.coursedir import CourseDirectory

    root = root.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no course directory at {root}")
    cfg = load_config(root)
    cfg.CourseDirectory.root = str(root)
    cd = CourseDirectory(config=cfg)
    return Course(
        root=root, config=cfg,
        source=root / cd.source_directory, submitted=root / cd.submitted_directory,
        autograded=root / cd.autograded_directory, feedback=root / cd.feedback_directory,
        db_url=cd.db_url, ignore=list(cd.ignore),
    )


def source_hash(folder: Path) -> str:
    """A digest of an assignment's source notebooks (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.ipynb")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def state_file(course: Course, name: str) -> Path:
    """Where ``course grade`` keeps its bookkeeping file ``name``."""
    return course.autograded / STATE / name


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; empty when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)
