"""What the grader does to a submitted notebook's cells before nbgrader sees them.

Reads and rewrites notebooks only; no student code runs.

* :func:`skeleton` - every cell of the source notebook that has a grade_id, with its
  nbgrader role and, for locked cells, the cell as released;
* :func:`sanitize` - give every cell the role the source gives its grade_id: copies of
  a cell (a copy-paste) become ordinary cells, unknown grade_ids ordinary cells, edited
  points or roles the source's;
* :func:`put_back_deleted` - re-insert locked cells the student deleted.
"""

from __future__ import annotations

from typing import Any

import nbformat

from course_utils.grader import integrity

__all__ = ["ROLE_KEYS", "put_back_deleted", "sanitize", "skeleton"]

def skeleton(source_nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    cells = []
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade_id"):
            continue
        entry: dict[str, Any] = {"grade_id": meta["grade_id"], "locked": bool(meta.get("locked"))
                                 and not meta.get("solution"),
                                 "meta": {k: meta[k] for k in ROLE_KEYS if k in meta}}
        if entry["locked"]:
            released = nbformat.from_dict(dict(cell))
            released.source = integrity.hidden_removed(released.source)
            if released.cell_type == "code":
                released.outputs, released.execution_count = [], None
            released.pop("id", None)
            entry["cell"] = dict(released)
        cells.append(entry)
    return cells


ROLE_KEYS = ("grade", "solution", "locked", "points", "grade_id")


def sanitize(nb: nbformat.NotebookNode, skeleton: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Make the cells' nbgrader roles the source's; return (codes, notes) of what changed.

    A second copy of a cell (a copy-paste) keeps its code but loses its role, so the
    first copy is the one graded; a cell claiming a grade_id the assignment does not
    have runs as an ordinary cell; a cell whose points or role were edited gets the
    source's back.
    """
    roles = {entry["grade_id"]: entry.get("meta", {}) for entry in skeleton}
    seen: set[str] = set()
    codes: list[str] = []
    notes: list[str] = []
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader")
        if not isinstance(meta, dict):
            continue
        grade_id = meta.get("grade_id")
        if grade_id not in roles or grade_id in seen:
            del cell.metadata["nbgrader"]
            cell["id"] = f"ordinary-{index}"
            if grade_id in seen:
                codes.append("duplicate-cells")
                notes.append(f"cell {grade_id!r} appears more than once (a copy-paste?): the first "
                             "copy is graded, the others run as ordinary cells")
            else:
                codes.append("edited-cells")
                notes.append(f"a cell claims to be {grade_id!r}, which the assignment does not have: "
                             "it runs as an ordinary cell")
            continue
        seen.add(grade_id)
        wanted = roles[grade_id]
        if any(meta.get(k) != wanted.get(k) for k in ROLE_KEYS):
            for key in ROLE_KEYS:
                if key in wanted:
                    meta[key] = wanted[key]
                else:
                    meta.pop(key, None)
            codes.append("edited-cells")
            notes.append(f"the nbgrader role or points of {grade_id!r} were edited: the source's restored")
    return codes, notes


def put_back_deleted(nb: nbformat.NotebookNode, skeleton: list[dict[str, Any]]) -> list[str]:
    """Re-insert locked cells missing from ``nb`` where the source has them; return their ids."""
    present = {c.metadata.get("nbgrader", {}).get("grade_id"): i for i, c in enumerate(nb.cells)}
    restored = []
    anchor = -1  # index in nb of the last source cell seen so far
    for entry in skeleton:
        grade_id = entry["grade_id"]
        if grade_id in present:
            anchor = nb.cells.index(next(c for c in nb.cells
                                         if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id))
            continue
        if not entry["locked"]:
            continue
        cell = nbformat.from_dict(entry["cell"])
        cell["id"] = f"restored-{grade_id}"[:64]
        nb.cells.insert(anchor + 1, cell)
        anchor += 1
        restored.append(grade_id)
    return restored
