"""Look at a submission before it runs: can it be graded, were locked cells edited, is anything odd?

Everything here reads files only; no student code runs.

* :func:`inspect_submission` finds the submitted notebooks of one assignment,
  reports missing, misnamed and malformed ones (bad JSON, not a notebook), and
  compares every locked cell with the gradebook using nbgrader's checksums to
  report edited and deleted cells (nbgrader then grades with the original cells).
* :func:`scan_source` flags code in student cells that has no business in an
  honest answer and is the usual tool for faking tests: patching ``numpy``,
  ``torch`` or the checks, rebinding ``np``/``torch``/``checks``, custom exception
  handlers, ``sys.excepthook``, IPython input or AST transformers, frame and
  ``gc`` introspection, ``ctypes``, ``exec``. The flags are reported for an
  instructor to review; they do not change a score (the guard does that).
* :func:`setup_bindings` reads which names the setup cell imports, so the grader
  can rebind them to the genuine modules before each test.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader import utils

from course_utils.grader.guard import Protection

__all__ = [
    "Binding",
    "Inspection",
    "expected_release_checksums",
    "hidden_removed",
    "inspect_submission",
    "scan_source",
    "setup_bindings",
]

Binding = tuple[str, str, "str | None"]

# Names the tests rely on, and the package each must come from; the course adds its own protected
# modules (``c.CourseGrade.protected_modules``: their top-level names) and the setup cell's bindings.
_PROTECTED_ROOTS = {"np": "numpy", "numpy": "numpy", "torch": "torch", "builtins": "builtins", "sys": "sys",
                    "nn": "torch", "F": "torch", "plt": "matplotlib"}
# A name an import binds to a protected module of the course, or to anything inside a protected
# package of it (by the guard's prefix rule), is watched like ``checks``: ``import
# course_utils.checks.core as c`` then ``c.check_close = ...`` is flagged as ``checks.check_close = ...`` is.
_SUSPICIOUS_ATTRS = {
    "set_custom_exc": "installs a custom exception handler",
    "excepthook": "touches sys.excepthook",
    "input_transformers_cleanup": "adds an IPython input transformer",
    "input_transformers_post": "adds an IPython input transformer",
    "input_transformer_manager": "adds an IPython input transformer",
    "ast_transformers": "adds an IPython AST transformer",
    "settrace": "sets a trace hook",
    "setprofile": "sets a profile hook",
    "_getframe": "inspects interpreter frames",
    "currentframe": "inspects interpreter frames",
    "f_back": "inspects interpreter frames",
    "f_locals": "inspects interpreter frames",
    "f_globals": "inspects interpreter frames",
    "get_objects": "walks the garbage collector",
    "get_referrers": "walks the garbage collector",
    "__code__": "rewrites function code",
    "shell_handlers": "touches the kernel's message handlers",
    "run_cell": "touches IPython's cell runner",
    "run_code": "touches IPython's cell runner",
    "showtraceback": "touches IPython's error display",
    "displayhook": "touches the display hook",
    "modules": None,  # only as sys.modules, see below
}
_SUSPICIOUS_NAMES = {
    "ctypes": "uses ctypes",
    "exec": "calls exec",
    "eval": "calls eval",
    "__import__": "calls __import__",
    "importlib": "uses importlib",
    "sqlite3": "opens a database",
    "__torch_function__": "overrides torch dispatch",
    "__array_function__": "overrides NumPy dispatch",
    "__array_ufunc__": "overrides NumPy dispatch",
}


@dataclass
class Inspection:
    """What :func:`inspect_submission` found; ``graded`` are the notebooks nbgrader can read."""

    graded: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def add(self, code: str, detail: str) -> None:
        if code not in self.codes:
            self.codes.append(code)
        self.details.append(detail)


def hidden_removed(source: str) -> str:
    """``source`` without its ``### BEGIN/END HIDDEN TESTS`` region (as nbgrader releases it)."""
    lines, hidden = [], False
    for line in source.split("\n"):
        if "BEGIN HIDDEN TESTS" in line:
            hidden = True
        elif "END HIDDEN TESTS" in line:
            hidden = False
        elif not hidden:
            lines.append(line)
    return "\n".join(lines)


def expected_release_checksums(source_cells: Iterable[Mapping[str, object]]) -> dict[str, str]:
    """nbgrader checksum of every locked cell as released (hidden tests removed), by grade_id.

    ``source_cells`` are the gradebook's source cells as dicts (name, cell_type,
    source, locked) plus, for graded cells, ``points``.
    """
    sums = {}
    for cell in source_cells:
        if not cell.get("locked"):
            continue
        meta: dict[str, object] = {"grade_id": cell["name"], "locked": True,
                                   "solution": False, "grade": cell.get("points") is not None}
        if cell.get("points") is not None:
            meta["points"] = cell["points"]
        node = nbformat.from_dict({"cell_type": cell["cell_type"], "metadata": {"nbgrader": meta},
                                   "source": hidden_removed(str(cell["source"]))})
        sums[str(cell["name"])] = utils.compute_checksum(node)
    return sums


def _read(path: Path) -> nbformat.NotebookNode:
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    nb = nbformat.reads(json.dumps(raw), as_version=4)
    nbformat.validate(nb)
    return nb


def inspect_submission(folder: Path, expected: Mapping[str, Mapping[str, str]]) -> Inspection:
    """Inspect ``submitted/<student>/<assignment>``.

    ``expected`` maps each notebook name of the assignment (no ``.ipynb``) to the
    release checksums of its locked cells (:func:`expected_release_checksums`).
    """
    found = Inspection()
    present = sorted(p.stem for p in folder.glob("*.ipynb"))
    extra = [name for name in present if name not in expected]
    for name in sorted(expected):
        path = folder / f"{name}.ipynb"
        if name not in present:
            if extra:
                found.add("misnamed-notebook",
                          f"{name}.ipynb not found; submitted {', '.join(e + '.ipynb' for e in extra)} "
                          "instead (not graded: rename it to be graded)")
            else:
                found.add("missing-notebook", f"{name}.ipynb not submitted")
            continue
        try:
            nb = _read(path)
        except Exception as err:  # noqa: BLE001 - whatever nbformat chokes on is "malformed"
            message = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            found.add("malformed-notebook", f"{name}.ipynb cannot be read: {message}")
            continue
        found.graded.append(name)
        _compare_locked(nb, expected[name], name, found)
    return found


def _compare_locked(nb: nbformat.NotebookNode, sums: Mapping[str, str], name: str,
                    found: Inspection) -> None:
    seen: set[str] = set()
    edited = []
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id not in sums or grade_id in seen:
            continue
        seen.add(grade_id)
        try:
            checksum = utils.compute_checksum(cell)
        except (KeyError, TypeError, ValueError):
            checksum = ""
        if checksum != sums[grade_id]:
            edited.append(grade_id)
    if edited:
        found.add("edited-cells", f"{name}: locked cells edited (graded with the originals): "
                  + ", ".join(edited))
    deleted = [grade_id for grade_id in sums if grade_id not in seen]
    if deleted:
        found.add("deleted-cells", f"{name}: locked cells deleted (put back from the source): "
                  + ", ".join(deleted))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{_dotted(node.func)}()"
    if isinstance(node, ast.Subscript):
        return f"{_dotted(node.value)}[...]"
    return "?"


def _targets(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, ast.AugAssign | ast.AnnAssign):
        return [node.target]
    if isinstance(node, ast.Delete):
        return list(node.targets)
    return []


def _course_aliases(tree: ast.AST, protection: Protection) -> set[str]:
    """Names the code's imports bind to a protected module of the course, or to something in a protected package."""
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {alias.asname for alias in node.names
                        if alias.asname and protection.is_course_module(alias.name)}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            aliases |= {alias.asname or alias.name for alias in node.names if alias.name != "*" and (
                protection.in_course_package(node.module)
                or protection.is_course_module(f"{node.module}.{alias.name}"))}
    return aliases


def scan_source(source: str, protected: Mapping[str, str] | Iterable[str] = (),
                protection: Protection | None = None) -> list[str]:
    """Reasons this student code looks like tampering (empty for ordinary code).

    ``protected`` names the setup cell binds, optionally mapped to the package
    each comes from (importing something else under that name is flagged);
    ``protection`` the course's protected modules (default: none of the course's).
    """
    try:
        return _scan(source, protected, protection or Protection())
    except (RecursionError, MemoryError, ValueError, OverflowError):
        # Code nested too deep for Python's parser: it is reported, never fatal to the run.
        return ["code nested too deeply to be read (could not be scanned)"]


def _scan(source: str, protected: Mapping[str, str] | Iterable[str], protection: Protection) -> list[str]:
    roots = dict(_PROTECTED_ROOTS)
    roots.update({top: top for top in (name.split(".")[0] for name in protection.modules)})
    if isinstance(protected, Mapping):
        roots.update({k: str(v).split(".")[0] for k, v in protected.items()})
    names = set(roots) | {"__builtins__"} | set(protected)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found: list[str] = []
    top_level = set(map(id, tree.body))
    watched = names | _course_aliases(tree, protection)  # whose attributes and items the code may not set
    for node in ast.walk(tree):
        for target in _targets(node):
            base = target
            while isinstance(base, ast.Attribute | ast.Subscript):
                base = base.value
            root = _dotted(base)
            if isinstance(target, ast.Attribute | ast.Subscript) and (
                    root in watched or root == "get_ipython()"):
                found.append(f"patches {_dotted(target)}")
            elif isinstance(target, ast.Name) and target.id in names and id(node) in top_level:
                found.append(f"rebinds {target.id}")
        if isinstance(node, ast.Global):
            found += [f"rebinds {n} (global)" for n in node.names if n in names]
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                module = node.module if isinstance(node, ast.ImportFrom) else alias.name
                root = (module or "").split(".")[0]
                expected = roots.get(bound)
                if bound in names and expected is not None and root != expected:
                    found.append(f"imports {module if isinstance(node, ast.Import) else alias.name}"
                                 f" as {bound}")
                if root in ("ctypes", "importlib", "sqlite3", "gc"):
                    found.append(f"imports {module}")
        if isinstance(node, ast.Call) and _dotted(node.func) in ("setattr", "delattr") and node.args:
            if _dotted(node.args[0]).split(".")[0] in watched:
                found.append(f"calls {_dotted(node.func)} on {_dotted(node.args[0])}")
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            caught = {_dotted(t) for t in (node.type.elts if isinstance(node.type, ast.Tuple)
                                           else [node.type])}
            if caught & {"AssertionError", "CheckError", "checks.CheckError"}:
                found.append("catches AssertionError")
        if isinstance(node, ast.Attribute):
            if node.attr == "modules" and _dotted(node.value) == "sys":
                found.append("touches sys.modules")
            elif _SUSPICIOUS_ATTRS.get(node.attr):
                found.append(str(_SUSPICIOUS_ATTRS[node.attr]))
        if isinstance(node, ast.Name) and node.id in _SUSPICIOUS_NAMES:
            found.append(_SUSPICIOUS_NAMES[node.id])
        if isinstance(node, ast.FunctionDef) and node.name in _SUSPICIOUS_NAMES:
            found.append(_SUSPICIOUS_NAMES[node.name])
    return sorted(set(found))


def scan_notebook(nb: nbformat.NotebookNode, protected: Mapping[str, str] | Iterable[str] = (),
                  protection: Protection | None = None) -> list[str]:
    """:func:`scan_source` over every cell a student may write (solution cells, added cells)."""
    flags = []
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") != "code" or meta.get("locked"):
            continue
        reasons = scan_source(cell.get("source", ""), protected, protection)
        if reasons:
            flags.append(f"{meta.get('grade_id') or f'added cell {index}'}: {', '.join(reasons)}")
    return flags


def setup_bindings(nb: nbformat.NotebookNode) -> list[Binding]:
    """Names the setup cell binds by import: ``[("np", "numpy", None), ("checks", "course_utils", "checks")]``.

    The setup cell is the one with ``grade_id == "setup"``, else the first code cell.
    """
    code = [c for c in nb.cells if c.cell_type == "code"]
    setup = next((c for c in code if c.metadata.get("nbgrader", {}).get("grade_id") == "setup"),
                 code[0] if code else None)
    if setup is None:
        return []
    try:
        tree = ast.parse(hidden_removed(setup.source))
    except SyntaxError:
        return []
    bindings: list[Binding] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bindings.append((alias.asname, alias.name, None))
                else:
                    top = alias.name.split(".")[0]
                    bindings.append((top, top, None))
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    bindings.append((alias.asname or alias.name, node.module, alias.name))
    return bindings
