"""Build solution notebooks from their sources and release student versions.

Each assignment lives in ``solutions/<assignment>/``. Its one source is a
jupytext percent file ``<assignment>.py`` whose ``# %%`` markers carry the
nbgrader cell metadata, so a diff reads like a code diff. From it:

* :func:`sync` writes ``solutions/<assignment>/<assignment>.ipynb`` (no outputs);
* :func:`release` runs ``nbgrader generate_assignment`` to write the student
  version into ``notebooks/<assignment>/``.

Both are deterministic, so tests can rebuild them and compare.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat

__all__ = [
    "assignments",
    "build_notebook",
    "normalise",
    "project_root",
    "release",
    "stale_notebooks",
    "sync",
]

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
# Metadata that changes between runs or tools and says nothing about content.
_VOLATILE_CELL_KEYS = ("execution", "collapsed", "scrolled", "lines_to_next_cell", "trusted")


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


def normalise(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop outputs and volatile metadata so equal content compares equal."""
    nb.metadata = nbformat.from_dict(
        {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    )
    for cell in nb.cells:
        cell.pop("id", None)
        for key in _VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.nbformat, nb.nbformat_minor = 4, 5
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index:03d}"
    return nb


def build_notebook(source: Path) -> nbformat.NotebookNode:
    """Read a jupytext percent source into a clean, output-free notebook."""
    return normalise(jupytext.read(source, fmt="py:percent"))


def _write(nb: nbformat.NotebookNode, path: Path) -> None:
    path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def _notebook_text(nb: nbformat.NotebookNode) -> str:
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def stale_notebooks(root: Path | None = None) -> list[Path]:
    """Solution notebooks whose content differs from their jupytext source."""
    root = root or project_root()
    stale = []
    for name in assignments(root):
        folder = root / "solutions" / name
        target = folder / f"{name}.ipynb"
        expected = _notebook_text(build_notebook(folder / f"{name}.py"))
        if not target.exists() or target.read_text() != expected:
            stale.append(target)
    return stale


def sync(root: Path | None = None) -> list[Path]:
    """Rewrite every solution ``.ipynb`` from its source; return those that changed."""
    root = root or project_root()
    changed = stale_notebooks(root)
    for target in changed:
        _write(build_notebook(target.with_suffix(".py")), target)
    return changed


def release(
    names: list[str] | None = None, *, root: Path | None = None, dest: Path | None = None
) -> Path:
    """Generate the student notebooks with nbgrader; return the release folder.

    ``dest`` (default ``notebooks/``) may point elsewhere, e.g. a temporary
    folder for a test that compares a fresh release with the committed one.
    """
    root = root or project_root()
    sync(root)
    dest = (dest or root / "notebooks").resolve()
    for name in names or assignments(root):
        cmd = [
            sys.executable, "-m", "nbgrader", "generate_assignment", name,
            "--force", "--no-db", "--log-level=WARN",
            f"--CourseDirectory.root={root}",
            f"--CourseDirectory.release_directory={dest}",
        ]
        result = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment {name} failed:\n{result.stderr}")
        for path in (dest / name).glob("*.ipynb"):
            _write(normalise(nbformat.read(path, as_version=4)), path)
    return dest
