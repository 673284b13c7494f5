"""Keep each solution's jupytext source and its notebook in step, whichever side was edited.

An assignment's ``solutions/<a>/<a>.py`` (a jupytext percent file, the reviewed file) and
``solutions/<a>/<a>.ipynb`` (what JupyterLab, nbgrader's Create Assignment panel and
Formgrader's Generate work on) are a **pair**. The notebook records what it was last
synced from (``metadata.course_sync``: a digest of the source text and of its own cells),
so :func:`sync_pair` knows which side changed since:

* neither, or both in the same way (a save in Lab with jupytext's extension): in sync;
* only the source (an editor, ``git pull``): the notebook is rebuilt from it;
* only the notebook (Lab without the extension, a tool): the source is rewritten from it,
  and read back to prove nothing was lost;
* both, differently: :class:`SyncConflict` names the file, and nothing is written.

:class:`SyncWithSource` runs the same sync at the start of ``nbgrader generate_assignment``,
so Formgrader's Generate and ``course release`` always release the same notebook.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jupytext
import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

__all__ = [
    "KERNELSPEC",
    "Pair",
    "SyncConflict",
    "SyncWithSource",
    "build_notebook",
    "canonical_source",
    "normalise",
    "notebook_text",
    "pair_state",
    "recorded",
    "sync_pair",
]

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
SOURCE_FORMAT = "py:percent"
# How the source is written: no YAML header, and of the cell metadata only nbgrader's and
# tags on the `# %%` markers (solutions/jupytext.toml says the same to the Lab extension).
TEXT_FILTERS = {"notebook_metadata_filter": "-all", "cell_metadata_filter": "nbgrader,tags,-all"}
SYNC_KEY = "course_sync"
# Metadata that changes between runs or tools and says nothing about content.
_VOLATILE_CELL_KEYS = ("execution", "collapsed", "scrolled", "trusted", "ExecuteTime")
# Blank lines between cells in the source: kept in solution notebooks so a source written
# back from one keeps its layout, but not content (and dropped from student versions).
_LAYOUT_KEY = "lines_to_next_cell"


class SyncConflict(RuntimeError):
    """Both files of a pair changed since their last sync, and differently."""

    def __init__(self, pair: Pair, detail: str) -> None:
        self.pairs = [pair]
        super().__init__(
            f"{pair.notebook} and {pair.source} were both edited since they were last synced, "
            f"and they differ ({detail}). Nothing was written. Keep the side you want: "
            f"`course sync --from-source {pair.source}` or `course sync --from-notebook "
            f"{pair.notebook}` (or copy the edit across by hand and run `course sync`)."
        )

    @classmethod
    def combine(cls, errors: list[SyncConflict]) -> SyncConflict:
        """One error for several conflicting pairs, naming each."""
        combined = cls.__new__(cls)
        RuntimeError.__init__(combined, "\n\n".join(str(err) for err in errors))
        combined.pairs = [pair for err in errors for pair in err.pairs]
        return combined


@dataclass(frozen=True)
class Pair:
    """A solution's jupytext source and its notebook."""

    source: Path
    notebook: Path

    @classmethod
    def of(cls, path: Path) -> Pair:
        """The pair that ``path`` (either side) belongs to."""
        path = Path(path)
        return cls(path.with_suffix(".py"), path.with_suffix(".ipynb"))


def normalise(nb: nbformat.NotebookNode, *, keep_layout: bool = False) -> nbformat.NotebookNode:
    """Drop outputs and volatile metadata, number the cells, so equal content compares equal."""
    nb.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    for cell in nb.cells:
        cell.pop("id", None)
        for key in _VOLATILE_CELL_KEYS if keep_layout else (*_VOLATILE_CELL_KEYS, _LAYOUT_KEY):
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.nbformat, nb.nbformat_minor = 4, 5
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index:03d}"
    return nb


def _read_source(text: str) -> nbformat.NotebookNode:
    return normalise(jupytext.reads(text, fmt=SOURCE_FORMAT), keep_layout=True)


def build_notebook(source: Path) -> nbformat.NotebookNode:
    """Read a jupytext percent source into a clean, output-free notebook (layout kept)."""
    return _read_source(source.read_text())


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """The notebook as JupyterLab and nbgrader write it (so their saves do not reflow it)."""
    return nbformat.writes(nb) + "\n"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _cells_digest(nb: nbformat.NotebookNode) -> str:
    """A digest of what the cells say (types, sources, metadata), not of layout or outputs."""
    cells = [
        {
            "type": cell.cell_type,
            "source": cell.source,
            "metadata": {k: v for k, v in cell.metadata.items() if k not in (*_VOLATILE_CELL_KEYS, _LAYOUT_KEY)},
        }
        for cell in nb.cells
    ]
    return _digest(json.dumps(cells, sort_keys=True, ensure_ascii=False))


def canonical_source(pair: Pair) -> str:
    """The source text :func:`sync_pair` leaves: jupytext's percent layout, the cells' own blank lines."""
    return _source_from(build_notebook(pair.source), pair)


def recorded(pair: Pair) -> nbformat.NotebookNode:
    """The solution notebook built from ``pair``'s source, with the record of that sync."""
    nb = build_notebook(pair.source)
    nb.metadata[SYNC_KEY] = {"source_sha256": _digest(pair.source.read_text()), "cells_sha256": _cells_digest(nb)}
    return nb


def _read_notebook(pair: Pair) -> nbformat.NotebookNode:
    try:
        return nbformat.read(pair.notebook, as_version=4)
    except Exception as err:  # nbformat raises several types for a broken file
        raise SyncConflict(pair, f"the notebook cannot be read: {type(err).__name__}: {err}") from err


def _source_from(nb: nbformat.NotebookNode, pair: Pair) -> str:
    """The source text for ``nb``, checked to read back to the same cells."""
    text_nb = copy.deepcopy(nb)
    text_nb.metadata = nbformat.from_dict({"jupytext": dict(TEXT_FILTERS)})
    text = jupytext.writes(text_nb, fmt=SOURCE_FORMAT)
    back = _read_source(text)
    if _cells_digest(back) != _cells_digest(nb):
        raise SyncConflict(pair, "the notebook holds something a percent source cannot represent "
                                 "(cell types or metadata outside nbgrader's and tags)")
    return text


def _same_time(*paths: Path) -> None:
    """Give both files one modification time (jupytext refuses a notebook newer than its text)."""
    now = max(p.stat().st_mtime for p in paths)
    for path in paths:
        os.utime(path, (now, now))


def pair_state(pair: Pair) -> str:
    """``"in sync"``, ``"source changed"``, ``"notebook changed"``, ``"new"`` or ``"conflict"``.

    ``"in sync"`` also covers a notebook whose cells match but whose file is not canonical
    (outputs, a tool's metadata); :func:`sync_pair` then rewrites it, changing no content.
    """
    built = build_notebook(pair.source)
    if not pair.notebook.exists():
        return "new"
    raw = _read_notebook(pair)
    record = raw.metadata.get(SYNC_KEY, {})
    current = normalise(raw, keep_layout=True)
    if _cells_digest(current) == _cells_digest(built):
        return "in sync"
    source_changed = record.get("source_sha256") != _digest(pair.source.read_text())
    notebook_changed = record.get("cells_sha256") != _cells_digest(current)
    if source_changed and notebook_changed:
        return "conflict"
    return "source changed" if source_changed else "notebook changed"


def sync_pair(pair: Pair, *, prefer: str | None = None) -> tuple[str, nbformat.NotebookNode]:
    """Bring one pair in step; return what was done and the synced solution notebook.

    ``prefer`` (``"source"`` or ``"notebook"``) resolves a conflict by keeping that side.
    Files are only written when their content changes.
    """
    state = pair_state(pair)
    if state == "conflict":
        if prefer is None:
            current = normalise(_read_notebook(pair), keep_layout=True)
            raise SyncConflict(pair, _first_difference(current, build_notebook(pair.source)))
        state = "source changed" if prefer == "source" else "notebook changed"
    if state == "notebook changed":
        current = normalise(_read_notebook(pair), keep_layout=True)
        pair.source.write_text(_source_from(current, pair))
    elif (canonical := canonical_source(pair)) != pair.source.read_text():
        # Same cells, other spelling (another tool's layout or metadata order): back to the
        # canonical text, so the next commit's diff is only the edit.
        pair.source.write_text(canonical)
        state = "rewritten" if state == "in sync" else state
    nb = recorded(pair)
    text = notebook_text(nb)
    if not pair.notebook.exists() or pair.notebook.read_text() != text:
        pair.notebook.write_text(text)
        _same_time(pair.source, pair.notebook)
        if state == "in sync":
            state = "rewritten"
    return state, nb


def _first_difference(a: nbformat.NotebookNode, b: nbformat.NotebookNode) -> str:
    """Where two notebooks first differ, in words (the notebook is ``a``, the source ``b``)."""
    for index, (x, y) in enumerate(zip(a.cells, b.cells, strict=False)):
        if (x.cell_type, x.source, x.metadata.get("nbgrader")) != (y.cell_type, y.source, y.metadata.get("nbgrader")):
            name = (y.metadata.get("nbgrader") or {}).get("grade_id", f"#{index}")
            return f"first at cell {index} ({name})"
    return f"the notebook has {len(a.cells)} cells, the source {len(b.cells)}"


class SyncWithSource(Preprocessor):
    """nbgrader preprocessor: generate from the synced pair, never from a stale notebook.

    Listed first in ``GenerateAssignment.preprocessors`` (``nbgrader_config.py``), so
    Formgrader's Generate and ``course release`` release the same notebook; a conflict
    stops the generation with :class:`SyncConflict`'s message.
    """

    enabled = Bool(True)

    def preprocess(self, nb: nbformat.NotebookNode, resources: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        folder = Path(resources.get("metadata", {}).get("path") or ".")
        pair = Pair.of(folder / f"{resources['unique_key']}.ipynb")
        if not pair.source.is_file():
            return nb, resources
        _, synced = sync_pair(pair)
        return normalise(synced), resources
