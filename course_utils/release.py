"""Build solution notebooks from their sources and release student versions.

Each assignment lives in ``solutions/<assignment>/``: a jupytext percent source
``<assignment>.py`` (the reviewed file, whose ``# %%`` markers carry the nbgrader cell
metadata) paired with ``<assignment>.ipynb`` (see :mod:`course_utils.pairing`: an edit
on either side is kept). From them:

* :func:`sync` brings every pair in step (refusing, with the file's name, when both
  sides changed differently);
* :func:`release` runs ``nbgrader generate_assignment`` to write the student
  version into ``notebooks/<assignment>/``.

Both are deterministic, so tests can rebuild them and compare.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import nbformat

from course_utils.pairing import (
    KERNELSPEC,
    Pair,
    SyncConflict,
    build_notebook,
    canonical_source,
    normalise,
    notebook_text,
    pair_state,
    recorded,
    sync_pair,
)

__all__ = [
    "KERNELSPEC",
    "SyncConflict",
    "assignments",
    "build_notebook",
    "normalise",
    "pairs",
    "project_root",
    "release",
    "stale_notebooks",
    "sync",
]


def project_root() -> Path:
    """The repository root (the folder holding ``solutions/``)."""
    here = Path(__file__).resolve().parent.parent
    if (here / "solutions").is_dir():
        return here
    return Path.cwd()


def assignments(root: Path | None = None) -> list[str]:
    """Assignment names: every ``solutions/<name>/<name>.py`` source, sorted."""
    root = root or project_root()
    return sorted(p.parent.name for p in (root / "solutions").glob("*/*.py") if p.stem == p.parent.name)


def pairs(root: Path | None = None, names: list[str] | None = None) -> list[Pair]:
    """The source/notebook pair of each assignment (all, or those in ``names``)."""
    root = root or project_root()
    return [Pair.of(root / "solutions" / name / f"{name}.py") for name in names or assignments(root)]


def stale_notebooks(root: Path | None = None) -> list[Path]:
    """Solution notebooks that are not exactly what :func:`sync` would leave."""
    stale = []
    for pair in pairs(root):
        try:
            fine = (pair_state(pair) == "in sync" and pair.notebook.read_text() == notebook_text(recorded(pair))
                    and pair.source.read_text() == canonical_source(pair))
        except SyncConflict:
            fine = False
        if not fine:
            stale.append(pair.notebook)
    return stale


def sync(
    root: Path | None = None, names: list[str] | None = None, *, prefer: dict[Path, str] | None = None
) -> list[tuple[Path, str]]:
    """Bring every pair in step; return ``(file written, what changed)`` for each change.

    Pairs without a conflict are synced even when another has one; then the conflicts
    are raised together (one :class:`SyncConflict`, naming every file). ``prefer`` maps a
    pair's source or notebook path to the side (``"source"``/``"notebook"``) to keep.
    """
    prefer = {Path(k).resolve().with_suffix(""): v for k, v in (prefer or {}).items()}
    done, conflicts = [], []
    for pair in pairs(root, names):
        try:
            state, _ = sync_pair(pair, prefer=prefer.get(pair.source.resolve().with_suffix("")))
        except SyncConflict as err:
            conflicts.append(err)
            continue
        if state == "notebook changed":
            done.append((pair.source, "rewritten from its notebook"))
        elif state in ("source changed", "new"):
            done.append((pair.notebook, "rebuilt from its source"))
        elif state == "rewritten":
            done.append((pair.notebook, "rewritten (no change of content: canonical form)"))
    if conflicts:
        raise SyncConflict.combine(conflicts)
    return done


def release(
    names: list[str] | None = None, *, root: Path | None = None, dest: Path | None = None
) -> Path:
    """Generate the student notebooks with nbgrader; return the release folder.

    ``dest`` (default ``notebooks/``) may point elsewhere, e.g. a temporary
    folder for a test that compares a fresh release with the committed one.
    A released notebook someone worked in (answers typed into ``notebooks/`` rather than
    ``work/``) is moved to ``work/`` first (:func:`course_utils.workspace.rescue`).
    """
    from course_utils import workspace
    from course_utils.grader.config import load_config
    from course_utils.grader.gradebook import generate_assignment

    root = root or project_root()
    names = names or assignments(root)
    sync(root, names)
    dest = (dest or root / "notebooks").resolve()
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp:
        for name in names:
            # nbgrader generate_assignment NAME --force --no-db, in this process (no start-up per notebook)
            generate_assignment(load_config(root), root, name, Path(tmp), database=False)
            fresh = Path(tmp) / name
            for path in fresh.glob("*.ipynb"):
                path.write_text(notebook_text(normalise(nbformat.read(path, as_version=4))))
            for saved in workspace.rescue(dest / name, workspace.work_root(root) / name):
                print(f"{dest / name} held someone's work: kept in {saved}", file=sys.stderr)
            if (dest / name).exists():
                shutil.rmtree(dest / name)
            shutil.copytree(fresh, dest / name)
    return dest
