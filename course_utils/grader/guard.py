"""Keep student code from faking the tests: restore before, verify after each graded cell.

Runs inside the kernel. :func:`take_snapshot` records, before any student code
runs, the state the tests rely on:

* every attribute of the protected modules (:class:`Protection`: ``numpy`` and
  ``torch`` with their submodules, and the modules the course names in its
  ``c.CourseGrade.protected_modules``; this course's are ``course_utils``,
  ``course_utils.runtime`` and ``course_utils.checks`` with every module of that
  package) and the ``sys.modules`` entries naming them;
* what the dicts, lists and sets of the course's modules hold (the checks' tables,
  ``KNOWN_ERRORS`` among them, can be changed without rebinding a name);
* the code, defaults and keyword defaults of every Python function in them,
  and the methods of a few classes the checks use (``torch.Tensor``, ...) and
  of every class the checks package defines (``CheckError``, ...);
* the ``builtins`` module.

:func:`install` adds the IPython side once the kernel is up: input and AST
transformers, event callbacks, custom exception handlers, ``sys.excepthook``,
trace and profile hooks, method overrides on the shell and kernel objects and
classes, and the message handlers. It registers a shell-channel message type,
``course_guard_request``, that the grader sends around graded cells; being a
message of its own, it reaches the guard even when student code has hooked
``run_cell`` or the input transformers.

* ``restore`` (before a graded cell) undoes every change to that state, rebinds
  the names the setup cell imported (``np``, ``torch``, ``checks``, ...) in the
  user namespace to the genuine objects and removes user-namespace functions
  that shadow builtins. The test then runs on honest tools; what was undone is
  reported.
* ``verify`` (after a graded cell) reports any change made *while the test ran*
  (e.g. a student function that patches ``checks.check_close`` when called); the
  grader then scores the cell zero.

This is defence in depth against the tampering students actually try, not a
proof: code in the same process can in principle reach anything (``gc``,
``ctypes``, frame objects). The grader's static scan (see
:mod:`course_utils.grader.integrity`) flags those tools for an instructor to review.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import importlib.util
import operator
import pkgutil
import sys
import threading
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

__all__ = [
    "Guard",
    "Protection",
    "Snapshot",
    "install",
    "take_snapshot",
]

MSG_TYPE = "course_guard_request"
REPLY_TYPE = "course_guard_reply"
_MISSING = object()
_CODE = operator.attrgetter("__code__")
_DEFAULTS = operator.attrgetter("__defaults__")
_KWDEFAULTS = operator.attrgetter("__kwdefaults__")
_SHELL_ATTRS = (
    "custom_exceptions", "CustomTB", "InteractiveTB", "SyntaxTB", "compile", "events",
    "input_transformer_manager", "display_pub", "displayhook", "builtin_trap", "user_ns",
    "user_global_ns", "excepthook",
)
_SHELL_LISTS = ("input_transformers_cleanup", "input_transformers_post", "ast_transformers")
_MANAGER_LISTS = ("cleanup_transforms", "line_transforms", "token_transformers")


@dataclass(frozen=True)
class Protection:
    """Which modules the guard protects: the course's ``c.CourseGrade.protected_modules`` and libraries.

    * ``packages``: libraries whose every loaded module is protected, public names only
      (numpy and torch keep private caches in their module globals);
    * ``modules``: the course's modules, compared in full (private names too); a name
      ending in ``.*`` is a package protected with every module in it, by prefix (a module
      added to it later is protected without being listed).
    """

    packages: tuple[str, ...] = ("numpy", "torch")
    modules: tuple[str, ...] = ()

    @classmethod
    def from_lists(cls, packages: Iterable[str], modules: Iterable[str]) -> Protection:
        """From plain lists (the config's values, or the JSON the fork server is sent)."""
        return cls(tuple(packages), tuple(modules))

    @property
    def course_packages(self) -> tuple[str, ...]:
        """The packages protected with every module in them (the ``pkg.*`` entries)."""
        return tuple(name[:-2] for name in self.modules if name.endswith(".*"))

    def in_course_package(self, name: str) -> bool:
        """Whether module ``name`` is a protected package of the course or a module inside one."""
        return any(name == package or name.startswith(package + ".") for package in self.course_packages)

    def is_course_module(self, name: str) -> bool:
        """Whether ``name`` is a protected module of the course (compared in full, private names too)."""
        return name in self.modules or self.in_course_package(name)

    def is_protected(self, name: str) -> bool:
        """Whether module ``name`` is protected at all."""
        return self.is_course_module(name) or name.split(".")[0] in self.packages

    def course_modules(self) -> list[str]:
        """Every protected module of the course: the single ones, then each package before its modules.

        A package's modules are found on disk, not in ``sys.modules``, so that one no other
        module has imported yet is still preloaded and recorded. A module that cannot be
        found is skipped.
        """
        names = [name for name in self.modules if not name.endswith(".*")]
        for package in self.course_packages:
            try:
                spec = importlib.util.find_spec(package)
            except (ImportError, ValueError):
                spec = None
            if spec is None:
                continue
            names.append(package)
            if spec.submodule_search_locations is not None:
                found = pkgutil.walk_packages(spec.submodule_search_locations, prefix=f"{package}.",
                                              onerror=lambda _name: None)
                names += sorted(info.name for info in found)
        return list(dict.fromkeys(names))


def _guarded_classes(protection: Protection) -> list[type]:
    classes: list[type] = []
    torch = sys.modules.get("torch")
    if torch is not None:
        classes += [torch.Tensor, torch.nn.Module, torch.nn.Parameter]
    for name, module in list(sys.modules.items()):  # the classes each module of a course package defines
        if isinstance(module, types.ModuleType) and protection.in_course_package(name):
            classes += [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == name]
    return classes


@dataclass
class Snapshot:
    """The protected state as it was before any student code ran."""

    modules: dict[str, tuple[types.ModuleType, dict[str, Any]]]
    all_modules: dict[str, types.ModuleType]
    protection: Protection
    functions: list[tuple[types.FunctionType, Any, Any, Any]]
    classes: list[tuple[type, dict[str, Any]]]
    builtins: dict[str, Any]
    extra_dicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (where, a dict, list or set in a course module, a copy of its contents): the tables the
    # checks read (KNOWN_ERRORS, ...), which a submission could change without rebinding them.
    containers: list[tuple[str, Any, Any]] = field(default_factory=list)


_CONTAINERS = (dict, list, set)
_NOT_TABLES = ("__builtins__", "__warningregistry__")  # dicts Python itself fills as code runs


def _contents(container: Any) -> Any:
    """What a dict, list or set holds, in order, for :meth:`Guard._check_containers`."""
    return list(container.items()) if type(container) is dict else list(container)


def _course_containers(modules: dict[str, tuple[types.ModuleType, dict[str, Any]]],
                       protection: Protection) -> list[tuple[str, Any, Any]]:
    """Every dict, list and set a course module holds (each once), with its contents."""
    seen: set[int] = set()
    found = []
    for name, (_, saved) in modules.items():
        if not protection.is_course_module(name):
            continue
        for key, value in saved.items():
            if type(value) in _CONTAINERS and key not in _NOT_TABLES and id(value) not in seen:
                seen.add(id(value))
                found.append((f"{name}.{key}", value, _contents(value)))
    return found


def _functions_in(values: Iterable[Any]) -> Iterable[types.FunctionType]:
    """Python functions among ``values``, looking one level inside known wrappers.

    Only types are inspected, never arbitrary attributes: a lazy module attribute
    (``torch.backends.cuda``) must not run, least of all initialise CUDA before a fork.
    """
    for value in values:
        kind = type(value)
        if kind is types.FunctionType:
            yield value
            inner = value.__dict__.get("__wrapped__")
            if type(inner) is types.FunctionType:
                yield inner
        elif kind in (staticmethod, classmethod):
            if type(value.__func__) is types.FunctionType:
                yield value.__func__
        elif kind.__name__ == "_ArrayFunctionDispatcher":  # numpy's public functions
            inner = getattr(value, "_implementation", None)
            if type(inner) is types.FunctionType:
                yield inner


def take_snapshot(extra_modules: Sequence[str] = (), protection: Protection | None = None) -> Snapshot:
    """Record the protected state; call after the preloads, before student code.

    ``protection`` says which modules (default: numpy and torch only; a course names its own
    in ``c.CourseGrade.protected_modules``).
    """
    protection = protection or Protection()
    for name in protection.course_modules():  # every module of a course package, imported or not yet
        with contextlib.suppress(Exception):  # one that cannot be imported cannot be used by a check either
            importlib.import_module(name)
    for name in protection.modules:  # resolve a package's lazy names (PEP 562) so they are recorded
        package = sys.modules.get(name)
        for attr in getattr(package, "__all__", ()):
            with contextlib.suppress(Exception):
                getattr(package, attr, None)
    modules = {
        name: (mod, dict(vars(mod)))
        for name, mod in list(sys.modules.items())
        if mod is not None and isinstance(mod, types.ModuleType) and protection.is_protected(name)
    }
    extra = {name: dict(vars(sys.modules[name])) for name in extra_modules if name in sys.modules}
    seen: set[int] = set()
    functions = []
    classes = [(cls, dict(vars(cls))) for cls in _guarded_classes(protection)]
    pools = [d.values() for _, d in modules.values()] + [d.values() for _, d in classes]
    for pool in pools:
        for fn in _functions_in(pool):
            if id(fn) not in seen:
                seen.add(id(fn))
                functions.append((fn, fn.__code__, fn.__defaults__, fn.__kwdefaults__))
    return Snapshot(
        modules=modules,
        all_modules=dict(sys.modules),
        protection=protection,
        functions=functions,
        classes=classes,
        builtins=dict(vars(builtins)),
        extra_dicts=extra,
        containers=_course_containers(modules, protection),
    )


_TRUSTED_CALLBACK_MODULES = ("matplotlib", "matplotlib_inline", "IPython", "ipykernel",
                              "ipywidgets", "tqdm", "comm")


def _trusted(callback: Any) -> bool:
    func = getattr(callback, "__func__", callback)
    module = vars(func).get("__module__") if hasattr(func, "__dict__") else None
    module = module or getattr(func, "__module__", "") or ""
    return module.split(".")[0] in _TRUSTED_CALLBACK_MODULES


def _same(a: Any, b: Any) -> bool:
    """Identity, treating two bound methods of the same function and object as the same."""
    if a is b:
        return True
    return (type(a) is types.MethodType and type(b) is types.MethodType
            and a.__func__ is b.__func__ and a.__self__ is b.__self__)


def _short(value: Any) -> str:
    text = getattr(value, "__qualname__", None) or type(value).__name__
    return str(text)[:40]


class Guard:
    """Restores and verifies the protected state inside a running kernel."""

    def __init__(self, snapshot: Snapshot, shell: Any, kernel: Any) -> None:
        self.snapshot = snapshot
        self.shell = shell
        self.kernel = kernel
        self.shell_attrs = {a: getattr(shell, a, _MISSING) for a in _SHELL_ATTRS}
        self.shell_lists = {a: list(getattr(shell, a, [])) for a in _SHELL_LISTS}
        manager = getattr(shell, "input_transformer_manager", None)
        self.manager_lists = {a: list(getattr(manager, a, [])) for a in _MANAGER_LISTS}
        self.events = {k: list(v) for k, v in getattr(shell.events, "callbacks", {}).items()}
        self.instances = [(obj, dict(vars(obj))) for obj in (shell, kernel)]
        self.class_dicts = []
        for obj in (shell, kernel):
            for cls in type(obj).__mro__:
                if cls is not object and not any(cls is c for c, _ in self.class_dicts):
                    self.class_dicts.append((cls, dict(vars(cls))))
        self.handlers = {
            name: dict(getattr(kernel, name)) for name in ("shell_handlers", "control_handlers")
            if isinstance(getattr(kernel, name, None), dict)
        }
        self.sys_hooks = {name: getattr(sys, name) for name in
                          ("excepthook", "displayhook", "stdout", "stderr", "breakpointhook")}
        self.user_builtins = {k: v for k, v in shell.user_ns.items() if k in snapshot.builtins}
        self._order = {name: (list(saved), list(saved.values()))
                       for name, (_, saved) in snapshot.modules.items()}
        self._functions = tuple(map(list, zip(*snapshot.functions, strict=True))) \
            if snapshot.functions else ([], [], [], [])

    # -- one check: compare every piece of state, optionally restoring it -------------------
    def check(self, restore: bool, bindings: Sequence[Sequence[Any]] = ()) -> list[str]:
        """Compare the state with the snapshot; restore it if asked. Returns what differed."""
        changes: list[str] = []
        self._check_modules(restore, changes)
        self._check_containers(restore, changes)
        self._check_functions(restore, changes)
        self._check_classes(restore, changes)
        self._check_builtins(restore, changes)
        self._check_ipython(restore, changes)
        self._check_user_ns(restore, bindings, changes)
        return changes

    def _check_modules(self, restore: bool, changes: list[str]) -> None:
        for name, (module, saved) in self.snapshot.modules.items():
            if sys.modules.get(name) is not module:
                changes.append(f"sys.modules[{name!r}] replaced")
                if restore:
                    sys.modules[name] = module
            current = vars(module)
            keys, values = self._order[name]
            count = len(keys)
            # Fast path, at C speed: nothing rebound or deleted (new names only append).
            if len(current) >= count and all(map(operator.is_, islice(current.values(), count), values)) \
                    and all(map(operator.is_, islice(current.keys(), count), keys)):
                continue
            # numpy and torch keep private caches and flags in module globals: only their
            # public names are compared. The course's own modules are compared in full.
            public_only = not self.snapshot.protection.is_course_module(name)
            for key, value in saved.items():
                if public_only and key.startswith("_"):
                    continue
                if current.get(key, _MISSING) is not value:
                    changes.append(f"{name}.{key} {'deleted' if key not in current else 'redefined'}")
                    if restore:
                        current[key] = value

    def _check_containers(self, restore: bool, changes: list[str]) -> None:
        for where, container, saved in self.snapshot.containers:
            current = _contents(container)
            if type(container) is set:
                same = set(current) == set(saved)
            elif type(container) is dict:  # in order: the first matching KNOWN_ERRORS entry wins
                same = len(current) == len(saved) and all(
                    key is old_key and value is old_value
                    for (key, value), (old_key, old_value) in zip(current, saved, strict=True))
            else:
                same = len(current) == len(saved) and all(map(operator.is_, current, saved))
            if same:
                continue
            changes.append(f"{where} changed in place")
            if restore:
                container.clear()
                if type(container) is list:
                    container.extend(saved)
                else:
                    container.update(saved)

    def _check_functions(self, restore: bool, changes: list[str]) -> None:
        fns, codes, defaults, kwdefaults = self._functions
        if all(map(operator.is_, map(_CODE, fns), codes)) and \
                all(map(operator.is_, map(_DEFAULTS, fns), defaults)) and \
                all(map(operator.is_, map(_KWDEFAULTS, fns), kwdefaults)):
            return
        for fn, code, default, kwdefault in self.snapshot.functions:
            if fn.__code__ is not code or fn.__defaults__ is not default or \
                    fn.__kwdefaults__ is not kwdefault:
                changes.append(f"code of {fn.__module__}.{fn.__qualname__} replaced")
                if restore:
                    fn.__code__, fn.__defaults__, fn.__kwdefaults__ = code, default, kwdefault

    def _check_classes(self, restore: bool, changes: list[str]) -> None:
        for cls, saved in self.snapshot.classes + self.class_dicts:
            current = vars(cls)
            for key, value in saved.items():
                if current.get(key, _MISSING) is not value:
                    changes.append(f"{cls.__qualname__}.{key} redefined")
                    if restore:
                        setattr(cls, key, value)
            for key in [k for k in current if k not in saved and callable(current[k])]:
                changes.append(f"{cls.__qualname__}.{key} added")
                if restore:
                    delattr(cls, key)

    def _check_builtins(self, restore: bool, changes: list[str]) -> None:
        current = vars(builtins)
        for key, value in self.snapshot.builtins.items():
            if current.get(key, _MISSING) is not value:
                changes.append(f"builtins.{key} redefined")
                if restore:
                    current[key] = value

    def _check_ipython(self, restore: bool, changes: list[str]) -> None:
        shell = self.shell
        for attr, value in self.shell_attrs.items():
            if not _same(getattr(shell, attr, _MISSING), value):
                changes.append(f"IPython shell.{attr} replaced")
                if restore and value is not _MISSING:
                    if attr in vars(shell) or type(value) is not types.MethodType:
                        setattr(shell, attr, value)
                    else:
                        vars(shell).pop(attr, None)
        for attr, saved in self.shell_lists.items():
            if list(getattr(shell, attr, [])) != saved:
                changes.append(f"IPython {attr} changed")
                if restore:
                    getattr(shell, attr)[:] = saved
        manager = getattr(shell, "input_transformer_manager", None)
        for attr, saved in self.manager_lists.items():
            if list(getattr(manager, attr, [])) != saved:
                changes.append(f"IPython input_transformer_manager.{attr} changed")
                if restore:
                    getattr(manager, attr)[:] = saved
        callbacks = getattr(shell.events, "callbacks", {})
        for event, saved in self.events.items():
            current = list(callbacks.get(event, []))
            # Libraries register callbacks as they are first used (matplotlib's inline
            # backend flushes figures after each cell); student code may not.
            kept = [cb for cb in current if cb in saved or _trusted(cb)]
            if kept != current or any(cb not in current for cb in saved):
                changes.append(f"IPython event callbacks for {event!r} changed")
                if restore:
                    callbacks[event][:] = saved + [cb for cb in kept if cb not in saved]
        for obj, saved in self.instances:
            current = vars(obj)
            for key in list(current):
                value = current[key]
                is_method_override = key not in saved and callable(getattr(type(obj), key, None))
                if is_method_override or (key in saved and callable(saved[key])
                                          and not _same(value, saved[key])
                                          and key not in _SHELL_ATTRS):
                    changes.append(f"{type(obj).__name__}.{key} overridden")
                    if restore:
                        if key in saved:
                            current[key] = saved[key]
                        else:
                            del current[key]
        for name, saved in self.handlers.items():
            current = getattr(self.kernel, name)
            if current != saved:
                changes.append(f"kernel {name} changed")
                if restore:
                    current.clear()
                    current.update(saved)
        for name, value in self.sys_hooks.items():
            if not _same(getattr(sys, name), value):
                changes.append(f"sys.{name} replaced")
                if restore:
                    setattr(sys, name, value)
        if sys.gettrace() is not None or sys.getprofile() is not None:
            changes.append("a trace or profile hook is set")
            if restore:
                sys.settrace(None)
                sys.setprofile(None)
                threading.settrace(None)  # type: ignore[arg-type]
                threading.setprofile(None)  # type: ignore[arg-type]

    def _genuine(self, module: str, attr: str | None) -> Any:
        mod = self.snapshot.all_modules.get(module)
        if mod is None:
            return _MISSING
        if attr is None:
            return mod
        saved = self.snapshot.modules.get(module, (None, None))[1] or \
            self.snapshot.extra_dicts.get(module) or {}
        return saved.get(attr, _MISSING)

    def _check_user_ns(self, restore: bool, bindings: Sequence[Sequence[Any]],
                       changes: list[str]) -> None:
        ns = self.shell.user_ns
        if ns.get("__builtins__", builtins) not in (builtins, vars(builtins)):
            changes.append("__builtins__ replaced in the notebook namespace")
            if restore:
                ns["__builtins__"] = builtins
        for name, module, attr in bindings:
            genuine = self._genuine(module, attr)
            if genuine is _MISSING:
                continue
            if ns.get(name, _MISSING) is not genuine:
                changes.append(f"name {name!r} rebound")
                if restore:
                    ns[name] = genuine
        for key in list(ns):
            if key.startswith("_") or key not in self.snapshot.builtins:
                continue
            value = ns[key]
            expected = self.user_builtins.get(key, _MISSING)
            if value is not expected and value is not self.snapshot.builtins[key] and callable(value):
                changes.append(f"builtin {key!r} shadowed by {_short(value)}")
                if restore:
                    if expected is _MISSING:
                        del ns[key]
                    else:
                        ns[key] = expected

    # -- the message handler --------------------------------------------------------------
    def handle(self, stream: Any, ident: Any, parent: dict[str, Any]) -> None:
        """Answer a ``course_guard_request`` (content: action, bindings)."""
        content = parent.get("content", {})
        try:
            changes = self.check(content.get("action") == "restore", content.get("bindings", []))
            reply = {"status": "ok", "changes": sorted(set(changes))}
        except Exception as err:  # noqa: BLE001 - a failure is itself a finding
            reply = {"status": "error", "changes": [f"guard failed: {type(err).__name__}: {err}"]}
        self.kernel.session.send(stream, REPLY_TYPE, reply, parent, ident)


def install(snapshot: Snapshot, app: Any) -> Guard:
    """Snapshot the IPython side of an initialised kernel app and register the handler."""
    guard = Guard(snapshot, app.shell, app.kernel)
    handler: Callable[..., None] = guard.handle
    app.kernel.shell_handlers[MSG_TYPE] = handler
    guard.handlers["shell_handlers"][MSG_TYPE] = handler
    return guard
