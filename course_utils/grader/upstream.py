"""Why a graded cell found a name missing: the earlier cell meant to define it failed.

A graded cell reads the student's functions and values from the kernel. When one is
missing (``NameError``), the reason is rarely the graded cell: an earlier cell raised (a
syntax error in an answer, a crash in a demo cell) before defining it. :class:`CellLog`
records, while the notebook runs, which names each cell defines and whether it failed;
:meth:`CellLog.explain` turns the ``NameError`` into a message naming that cell, so the
student fixes the right one. Reads sources and outputs only; no student code runs here.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from nbformat import NotebookNode

__all__ = ["CellLog", "defined_names", "missing_name"]

# "name 'x' is not defined" (Python), as the judge or the kernel reports it.
_NOT_DEFINED = re.compile(r"name '([A-Za-z_]\w*)' is not defined")
# Definitions a cell that does not parse (a syntax error) was still meant to make.
_LOOSE_DEFINITION = re.compile(r"^(?:async\s+def|def|class)\s+([A-Za-z_]\w*)|^([A-Za-z_]\w*)\s*(?::[^=]*)?=[^=]",
                               re.MULTILINE)

_MAX_PARSED = 200_000  # characters of one cell's source looked at


def _targets(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Tuple | ast.List):
        return {name for elt in node.elts for name in _targets(elt)}
    if isinstance(node, ast.Starred):
        return _targets(node.value)
    return set()


def defined_names(source: str) -> set[str]:
    """Names a cell's top level binds: functions, classes, assignments, imports, loop and with targets."""
    try:
        if len(source) > _MAX_PARSED:
            raise ValueError("too long to parse")
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # broken, huge or 100,000 deep
        return {a or b for a, b in _LOOSE_DEFINITION.findall(source[:_MAX_PARSED])}
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(n for target in node.targets for n in _targets(target))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            names.update(_targets(node.target))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.For | ast.AsyncFor):
            names.update(_targets(node.target))
        elif isinstance(node, ast.With | ast.AsyncWith):
            names.update(n for item in node.items if item.optional_vars for n in _targets(item.optional_vars))
    return names


def missing_name(message: str) -> str | None:
    """The name a ``NameError`` message says is not defined, or None."""
    found = _NOT_DEFINED.search(message)
    return found.group(1) if found else None


@dataclass(frozen=True)
class _Ran:
    name: str
    source: str
    error: str | None

    @property
    def defines(self) -> set[str]:
        return defined_names(self.source)  # parsed only when a NameError needs explaining


class CellLog:
    """The cells the kernel ran, in order: what each defines and how it failed."""

    def __init__(self) -> None:
        self.cells: list[_Ran] = []

    def record(self, name: str, cell: NotebookNode) -> None:
        """Note one cell after it ran (its outputs tell whether it failed)."""
        error = next((f"{out.get('ename', 'Error')}: {str(out.get('evalue', '')).splitlines()[0][:200]}"
                      if str(out.get("evalue", "")).strip() else str(out.get("ename", "Error"))
                      for out in cell.get("outputs", []) if out.get("output_type") == "error"), None)
        self.cells.append(_Ran(name, cell.source, error))

    def explain(self, missing: str, *, asked_by_test: bool = True) -> str | None:
        """Why ``missing`` is not defined, naming the cell to fix; None when no cell explains it.

        ``asked_by_test``: the test itself looked the name up (so the exercise asks for it by
        that name), rather than the student's own code (where it may be a typo).
        """
        for ran in reversed(self.cells):
            if missing in ran.defines:
                if ran.error is None:
                    return None
                return (f"`{missing}` is not defined: cell {ran.name!r}, which defines it, failed when "
                        f"your notebook ran ({ran.error}). Fix that cell first: this test cannot run "
                        "without it.")
        if not self.cells or not asked_by_test:
            return None
        return (f"`{missing}` is not defined: no cell of your notebook defines it. The exercise asks "
                "for it by this name: was it renamed, or its cell deleted?")
