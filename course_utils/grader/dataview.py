"""What a student's kernel sees of the course's data sets while an assignment is graded.

A locked kernel cannot read the host's data folders or the course cache. It sees
a *view* instead: a folder the grader builds per assignment, with one symbolic
link per data file (each link's target shown read-only on its own), and the
cache's ``models/`` folder. Files the course withholds for that assignment
(``c.CourseGrade.withheld``, e.g. ``{"09_cifar10": ["cifar10:test_batch"]}``) are
neither linked nor shown, and ``COURSE_WITHHELD`` tells :mod:`course_utils.data`
to say so: the judge, a process of the grader, scores the student's model on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DataView", "build", "validate"]


@dataclass
class DataView:
    """A kernel's view of the data: the variables to set in its environment, the paths to show."""

    env: dict[str, str] = field(default_factory=dict)
    readonly: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)


def _entry(path: Path, target: Path, readonly: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    readonly.append(str(target))


def validate(withheld: Iterable[str]) -> list[str]:
    """``withheld``'s entries, sorted; a ValueError names any that is not ``dataset:file``."""
    from course_utils import data

    held = sorted(set(withheld))
    unknown = [e for e in held if e.partition(":")[0] not in data.DATASETS or not e.partition(":")[2]]
    if unknown:
        raise ValueError(f"CourseGrade.withheld: unknown entries {unknown} (expected 'dataset:file', "
                         f"dataset one of {sorted(data.DATASETS)})")
    for entry in held:
        key, _, name = entry.partition(":")
        if name not in data.DATASETS[key].files:
            raise ValueError(f"CourseGrade.withheld: {entry!r}: {data.DATASETS[key].name} has no file "
                             f"{name!r} (its files: {sorted(data.DATASETS[key].files) or 'none: a folder'})")
    return held


def build(folder: Path, withheld: Iterable[str] = ()) -> DataView:
    """Build the view in ``folder`` (created; must not exist) without the ``withheld`` files.

    ``withheld`` holds ``dataset:file`` entries (keys of :data:`course_utils.data.DATASETS`).
    A data set the grader cannot find is left out: the notebook reports it as usual.
    """
    from course_utils import data

    held = validate(withheld)
    view = DataView(withheld=held)
    readonly = [str(folder)]
    for key, spec in data.DATASETS.items():
        try:
            root = data.resolve(spec, download=False)
        except (data.DataNotFoundError, data.CorruptDataError):
            continue
        source = (root / spec.folder).resolve()
        if spec.files:
            for name in spec.files:
                if f"{key}:{name}" not in held:
                    _entry(folder / "data" / spec.folder / name, source / name, readonly)
        else:
            _entry(folder / "data" / spec.folder, source, readonly)
    models = data.cache_dir() / "models"
    if models.is_dir():
        _entry(folder / "models", models.resolve(), readonly)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    view.readonly = readonly
    view.env = {data.CACHE_ENV: str(folder), data.DATA_ENV: "", data.WITHHELD_ENV: ",".join(held)}
    return view
