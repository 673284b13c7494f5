"""A student's own copy of each assignment, which no release, pull or Generate overwrites.

The released notebooks in ``notebooks/`` belong to the course: ``git pull``, ``course
release`` and Formgrader's Generate rewrite them. A student works in ``work/<assignment>/``
instead (git-ignored, so ``git pull`` never touches it):

* :func:`start` copies the released assignment there, once, and keeps a copy of what was
  released (``work/<assignment>/.released/``) as the base of later updates;
* :func:`changes` compares that base with the release now in ``notebooks/``, cell by cell
  (nbgrader's ``grade_id``), and says what changed: instructions, tests, new or removed
  exercises;
* :func:`update` brings those changes into the student's notebook while keeping every
  answer (solution cells) and every cell the student added, after backing the file up in
  ``work/<assignment>/.backup/``. Nothing the student wrote is ever dropped: an answer to an
  exercise the release removed stays, as an ordinary cell, where it was.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

__all__ = ["Change", "WorkspaceError", "changes", "has_work", "rescue", "start", "update", "work_root"]

_BASE = ".released"
_BACKUP = ".backup"


class WorkspaceError(RuntimeError):
    """A work folder or release is missing, or a file cannot be read."""


@dataclass(frozen=True)
class Change:
    """One difference between the release a student started from and the current one."""

    kind: str  # "added", "removed", "changed"
    grade_id: str
    what: str  # "exercise", "instructions", "test", "cell"

    def __str__(self) -> str:
        verb = {"added": "new", "removed": "removed", "changed": "changed"}[self.kind]
        return f"{verb} {self.what}: {self.grade_id}"


@dataclass
class UpdateResult:
    """What :func:`update` did to one notebook."""

    notebook: Path
    backup: Path | None
    changes: list[Change] = field(default_factory=list)
    kept_answers: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


def work_root(root: Path | None = None) -> Path:
    """``work/`` beside ``notebooks/`` in the course folder."""
    from course_utils.release import project_root

    return (root or project_root()) / "work"


def _release_folder(name: str, root: Path | None) -> Path:
    from course_utils.release import assignments, project_root

    folder = (root or project_root()) / "notebooks" / name
    if not folder.is_dir():
        known = ", ".join(assignments(root)) or "none"
        raise WorkspaceError(f"no released assignment {name!r} in {folder.parent} (assignments: {known})")
    return folder


def _read(path: Path) -> nbformat.NotebookNode:
    try:
        return nbformat.read(path, as_version=4)
    except Exception as err:  # nbformat raises several types for a broken file
        raise WorkspaceError(f"cannot read {path}: {type(err).__name__}: {err}") from err


def start(name: str, root: Path | None = None) -> tuple[Path, bool]:
    """Copy a released assignment into the student's work folder; return it and whether it was new.

    An assignment already started is left exactly as it is.
    """
    release = _release_folder(name, root)
    target = work_root(root) / name
    if any(target.glob("*.ipynb")):
        return target, False
    target.mkdir(parents=True, exist_ok=True)
    for path in release.iterdir():
        if path.is_file():
            shutil.copy2(path, target / path.name)
    _set_base(release, target)
    return target, True


def _set_base(release: Path, target: Path) -> None:
    base = target / _BASE
    if base.exists():
        shutil.rmtree(base)
    base.mkdir()
    for path in release.glob("*.ipynb"):
        shutil.copy2(path, base / path.name)


def _grade_id(cell: nbformat.NotebookNode) -> str | None:
    return (cell.metadata.get("nbgrader") or {}).get("grade_id")


def _is_answer(cell: nbformat.NotebookNode) -> bool:
    return bool((cell.metadata.get("nbgrader") or {}).get("solution"))


def _kind_of(cell: nbformat.NotebookNode) -> str:
    meta = cell.metadata.get("nbgrader") or {}
    if meta.get("solution"):
        return "exercise"
    if meta.get("grade"):
        return "test"
    return "instructions" if cell.cell_type == "markdown" else "cell"


def _cells_by_id(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """Cells by grade_id; of a copy-pasted cell the first copy (the one nbgrader grades)."""
    cells: dict[str, nbformat.NotebookNode] = {}
    for cell in nb.cells:
        if (gid := _grade_id(cell)) is not None:
            cells.setdefault(gid, cell)
    return cells


def _content(cell: nbformat.NotebookNode, *, answered: bool) -> tuple[str, dict]:
    meta = dict(cell.metadata.get("nbgrader") or {})
    if answered and _is_answer(cell):  # the student's answer is not the release's stub
        meta.pop("checksum", None)
        return "", meta
    return cell.source, meta


def _diff(base: nbformat.NotebookNode, new: nbformat.NotebookNode, *, answered: bool = False) -> list[Change]:
    """Changes from ``base`` to ``new``; ``answered``: the base is the student's own notebook."""
    old, now = _cells_by_id(base), _cells_by_id(new)
    found = [Change("removed", gid, _kind_of(cell)) for gid, cell in old.items() if gid not in now]
    for gid, cell in now.items():
        if gid not in old:
            found.append(Change("added", gid, _kind_of(cell)))
        elif _content(cell, answered=answered) != _content(old[gid], answered=answered):
            found.append(Change("changed", gid, _kind_of(cell)))
    return found


def _base(target: Path, name: str) -> tuple[nbformat.NotebookNode, bool] | None:
    """The release the student started from, else (fetched by the Assignment List) their notebook."""
    if (target / _BASE / name).is_file():
        return _read(target / _BASE / name), False
    if (target / name).is_file():
        return _read(target / name), True
    return None


def changes(name: str, root: Path | None = None) -> dict[str, list[Change]]:
    """What changed in each notebook of ``name`` since the student started (or last updated) it."""
    release = _release_folder(name, root)
    target = work_root(root) / name
    if not any(target.glob("*.ipynb")):
        raise WorkspaceError(f"{name} is not started: run `course start {name}`")
    found = {}
    for path in sorted(release.glob("*.ipynb")):
        base = _base(target, path.name)
        if base is None:
            found[path.name] = [Change("added", path.stem, "notebook")]
            continue
        found[path.name] = _diff(base[0], _read(path), answered=base[1])
    return found


def _merge(
    mine: nbformat.NotebookNode, new: nbformat.NotebookNode, base: nbformat.NotebookNode
) -> tuple[nbformat.NotebookNode, list[str], list[str]]:
    """The new release with the student's answers and own cells in it; also (kept, orphans)."""
    new_ids = _cells_by_id(new)
    base_cells = _cells_by_id(base)
    my_cells = _cells_by_id(mine)
    # The student's own cells (and answers to exercises no longer released) follow the
    # released cell they followed before.
    following: dict[str | None, list[nbformat.NotebookNode]] = {}
    anchor: str | None = None
    orphans = []
    seen: set[str] = set()
    for cell in mine.cells:
        gid = _grade_id(cell)
        if gid in new_ids and gid not in seen:
            seen.add(gid)
            anchor = gid
            continue
        if gid not in new_ids and gid in base_cells and not _is_answer(cell):
            continue  # a released cell the new release dropped, not the student's work
        cell = nbformat.from_dict(cell)
        if gid is not None and gid not in new_ids:
            orphans.append(gid)
            cell.metadata.pop("nbgrader", None)
            if cell.cell_type == "code":
                cell.source = f"# Your answer to {gid!r}, an exercise this release no longer has:\n{cell.source}"
        following.setdefault(anchor, []).append(cell)
    merged = nbformat.from_dict(new)
    merged.cells = []
    kept = []
    for cell in following.get(None, []):
        merged.cells.append(cell)
    for cell in new.cells:
        gid = _grade_id(cell)
        if gid in my_cells and _is_answer(cell):
            mine_cell = nbformat.from_dict(my_cells[gid])
            mine_cell.metadata["nbgrader"] = cell.metadata["nbgrader"]
            merged.cells.append(mine_cell)
            kept.append(gid)
        elif gid in my_cells and base_cells.get(gid) is not None and base_cells[gid].source == cell.source:
            merged.cells.append(nbformat.from_dict(my_cells[gid]))  # unchanged: keep its outputs
        else:
            merged.cells.append(nbformat.from_dict(cell))
        merged.cells.extend(following.get(gid, []))
    return merged, kept, orphans


def update(name: str, root: Path | None = None) -> list[UpdateResult]:
    """Bring the current release of ``name`` into the student's notebooks, keeping their work."""
    release = _release_folder(name, root)
    target = work_root(root) / name
    if not any(target.glob("*.ipynb")):
        raise WorkspaceError(f"{name} is not started: run `course start {name}`")
    results = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in sorted(release.glob("*.ipynb")):
        new, mine_path = _read(path), target / path.name
        if not mine_path.exists():
            shutil.copy2(path, mine_path)
            results.append(UpdateResult(mine_path, None, [Change("added", path.stem, "notebook")]))
            continue
        base, answered = _base(target, path.name) or (new, False)
        found = _diff(base, new, answered=answered)
        if not found:
            results.append(UpdateResult(mine_path, None))
            continue
        mine = _read(mine_path)
        merged, kept, orphans = _merge(mine, new, base)
        backup = target / _BACKUP / f"{mine_path.stem}.{stamp}.ipynb"
        backup.parent.mkdir(exist_ok=True)
        shutil.copy2(mine_path, backup)
        nbformat.write(merged, mine_path)
        results.append(UpdateResult(mine_path, backup, found, kept, orphans))
    _set_base(release, target)
    return results


def has_work(nb: nbformat.NotebookNode) -> bool:
    """Did someone work in this released notebook: outputs, or an answer cell changed since release?"""
    from nbgrader.utils import compute_checksum

    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("outputs"):
            return True
        meta = cell.metadata.get("nbgrader") or {}
        if meta.get("solution") and meta.get("checksum") and compute_checksum(cell) != meta["checksum"]:
            return True
    return False


def rescue(release: Path, target: Path) -> list[Path]:
    """Copy the notebooks of ``release`` that hold someone's work into the work folder ``target``.

    Called before a release overwrites ``notebooks/<assignment>/``. A notebook goes to
    ``target`` when the student has no copy there yet (it then updates like a fetched one),
    else to ``target/.backup/``. Returns where each was kept.
    """
    kept = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in sorted(release.glob("*.ipynb")) if release.is_dir() else []:
        try:
            worked = has_work(nbformat.read(path, as_version=4))
        except Exception:  # noqa: BLE001 - unreadable: keep it, it may be someone's
            worked = True
        if not worked:
            continue
        place = target / path.name
        if place.exists():
            place = target / _BACKUP / f"{path.stem}.from-notebooks.{stamp}.ipynb"
        place.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, place)
        kept.append(place)
    return kept
