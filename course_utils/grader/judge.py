"""The judge: runs a graded cell's tests in the grader's process, against the student's kernel.

The student's kernel never sees a hidden test and never decides a verdict. For
each graded cell the grader asks the kernel's agent (:mod:`course_utils.grader.agent`)
to connect to a socket the judge listens on, and the judge runs the cell's
source (from the gradebook, hidden tests included) in a namespace of its own:

* the names the setup cell imports (``np``, ``torch``, ``checks``, ...) are the
  judge's own, genuine modules;
* every other name the cell does not define is read from the kernel through
  the data-only boundary (:mod:`course_utils.grader.wire`): plain values arrive
  as copies built by the judge, functions and other objects as :class:`Handle`
  objects whose calls run in the kernel and return plain values again (and
  update the judge's arguments in place when the student's code changed them).

So a test still reads ``y_pred, cache = two_layer_forward(x, w1, w2)`` followed
by checks, and the checks run on values in the judge. A cell passes when its
source runs to the end without an exception; nothing the kernel prints or
sends can change that. :func:`run_test` returns a :class:`Verdict` with what the
student may see: output of the visible part, and for a failure in the hidden
part a message without hidden values or source.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import inspect
import io
import linecache
import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from course_utils import remote
from course_utils.grader.wire import Codec, Ref, WireError, recv_frame, send_frame

__all__ = [
    "CELL_FILE",
    "Handle",
    "KernelGone",
    "KernelTimeout",
    "Link",
    "RemoteError",
    "TestError",
    "Verdict",
    "judge_namespace",
    "run_test",
]

CELL_FILE = "<graded cell>"
MAX_ANSWER = 256 * 1024 * 1024  # bytes of one answer from the kernel
MAX_SHOWN_OUTPUT = 20_000  # characters of output kept for the feedback per cell


class TestError(WireError):
    """The test asked for something the boundary cannot do (a bug in the test, not the answer)."""


def _library_name(value: Any) -> str | None:
    """``"module:qualname"`` for a class or function an installed library defines, else None."""
    if not (isinstance(value, type) or inspect.isfunction(value) or inspect.isbuiltin(value)):
        return None
    module = getattr(value, "__module__", None) or ""
    qualname = getattr(value, "__qualname__", "") or ""
    if not module or module in ("__main__", "__graded_cell__", "__test_driver__") or "<" in qualname:
        return None
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return f"{module}:{qualname}" if found is value else None


class KernelGone(Exception):
    """The kernel closed the connection or died while the judge waited."""


class KernelTimeout(Exception):
    """The student's code ran past the cell's time limit."""

    def __init__(self, message: str, stuck: bool) -> None:
        super().__init__(message)
        self.stuck = stuck  # True: it did not stop when interrupted


class RemoteError(Exception):
    """The student's code raised an exception in the kernel."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        self.type_name = str(info.get("type", "Exception"))[:100]
        self.remote_message = str(info.get("message", ""))[:2000]
        self.where = [str(w)[:120] for w in list(info.get("where", []))[:3]]
        self.protocol = bool(info.get("protocol"))
        super().__init__(f"{self.type_name}: {self.remote_message}")


_BUILTIN_ERRORS = {name: value for name, value in vars(builtins).items()
                   if isinstance(value, type) and issubclass(value, Exception)}
_ERROR_CLASSES: dict[str, type] = {}


def _remote_error(info: Mapping[str, Any]) -> RemoteError:
    """A :class:`RemoteError` that is also the builtin exception the kernel raised, if one was."""
    name = str(info.get("type", ""))
    base = _BUILTIN_ERRORS.get(name) if info.get("module") == "builtins" else None
    if base is None or base is RemoteError:
        return RemoteError(info)
    cls = _ERROR_CLASSES.get(name)
    if cls is None:
        cls = type(f"Kernel{name}", (RemoteError, base), {"__init__": RemoteError.__init__,
                                                          "__str__": RemoteError.__str__})
        _ERROR_CLASSES[name] = cls
    return cls(info)


class Handle:
    """An object that lives in the kernel; attribute access and calls go there."""

    __slots__ = ("_link", "_ref")

    def __init__(self, link: Link, ref: Ref) -> None:
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_ref", ref)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._link.request("getattr", obj=self, attr=name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._link.request("setattr", obj=self, attr=name, item=value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._link.request("call", obj=self, args=list(args), kwargs=kwargs)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._link.request("list", obj=self))

    def __len__(self) -> int:
        return int(self._link.request("len", obj=self))

    def __bool__(self) -> bool:
        return bool(self._link.request("bool", obj=self))

    def __getitem__(self, key: Any) -> Any:
        return self._link.request("getitem", obj=self, key=key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._link.request("setitem", obj=self, key=key, item=value)

    def __str__(self) -> str:
        return str(self._link.request("str", obj=self))

    def __repr__(self) -> str:
        return f"<kernel {self._ref.type_name} object>"


class Link:
    """The judge's connection to one kernel's agent, for one graded cell."""

    def __init__(self, sock: socket.socket, deadline: float, interrupt: Callable[[], None],
                 grace: float = 10.0) -> None:
        self.sock = sock
        self.deadline = deadline
        self.interrupt = interrupt
        self.grace = grace
        self.codec = Codec(owner=False, make_ref=lambda ref: Handle(self, ref), make_local=self._local)
        self.callbacks: dict[int, Callable[..., Any]] = {}
        self.on_output: Callable[[str, str], None] = lambda stdout, stderr: None
        self.calls = 0
        self.timed_out = False
        self.cell_starts: dict[str, float] = {}  # grade_id -> time.monotonic() when the grader started it

    # -- the codec's view of judge objects ----------------------------------------------------
    def _local(self, value: Any) -> dict[str, Any] | None:
        if type(value) is Handle:
            if value._link is not self:
                raise WireError("a handle from another kernel session")
            return {"obj": value._ref.number}
        path = _library_name(value)
        if path is not None:  # a library's class or function: the kernel uses its own copy
            return {"global": path}
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.nn.Module | torch.optim.Optimizer):
            raise TestError(f"a {type(value).__name__} built by the test cannot be sent to the kernel: "
                            "build it there with checks.run_in_kernel(driver)")
        if callable(value) and not isinstance(value, type):
            number = len(self.callbacks) + 1
            self.callbacks[number] = value
            return {"callback": number}
        return None

    def is_handle(self, value: Any) -> bool:
        return type(value) is Handle and value._link is self

    def reports_class(self, value: Handle, cls: type) -> bool:
        return f"{cls.__module__}.{cls.__qualname__}" in value._ref.mro

    # -- requests ---------------------------------------------------------------------------
    def _recv(self) -> tuple[dict[str, Any], list[bytes]]:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            return recv_frame(self.sock, MAX_ANSWER)
        except (ConnectionError, OSError) as err:
            if isinstance(err, TimeoutError | socket.timeout):
                raise TimeoutError from None
            raise KernelGone(f"the kernel went away ({type(err).__name__})") from None

    def _send(self, header: dict[str, Any], buffers: list[bytes] = ()) -> None:  # type: ignore[assignment]
        try:
            send_frame(self.sock, header, list(buffers))
        except OSError as err:
            raise KernelGone(f"the kernel went away ({type(err).__name__})") from None

    def request(self, op: str, name: str | None = None, **fields: Any) -> Any:
        """Send one request; answer callbacks until the kernel answers; return the result."""
        if self.timed_out:  # the time is up: nothing more runs in the kernel for this cell
            raise KernelTimeout("the student's code ran past the time limit and was interrupted", stuck=False)
        self.calls += 1
        header: dict[str, Any] = {"op": op}
        buffers: list[bytes] = []
        if name is not None:
            header["name"] = name
        if fields:
            try:
                header["value"], buffers = self.codec.encode(fields)
            except TestError:
                raise
            except WireError as err:
                raise TestError(f"the test cannot send this to the kernel: {err}") from None
        self._send(header, buffers)
        while True:
            try:
                reply, data = self._recv()
            except TimeoutError:
                reply, data = self._interrupted()
            kind = reply.get("op")
            if kind == "callback":
                self._run_callback(reply, data)
                continue
            if kind != "answer":
                raise WireError(f"unexpected answer {kind!r} from the kernel")
            self.on_output(str(reply.get("stdout", "")), str(reply.get("stderr", "")))
            if reply.get("error") is not None:
                error = reply["error"] if isinstance(reply["error"], dict) else {}
                if error.get("interrupted") and self.timed_out:
                    raise KernelTimeout("the student's code ran past the time limit and was interrupted",
                                        stuck=False)
                raise _remote_error(error)
            value = self.codec.decode(reply.get("value"), data)
            if type(value) is not dict or "result" not in value:
                raise WireError("an answer without a result")
            return value["result"]

    def _interrupted(self) -> tuple[dict[str, Any], list[bytes]]:
        """The deadline passed: interrupt the kernel and wait ``grace`` seconds for its answer."""
        self.timed_out = True
        self.interrupt()
        self.deadline = time.monotonic() + self.grace
        try:
            return self._recv()
        except TimeoutError:
            raise KernelTimeout("the student's code ran past the time limit and did not stop "
                                "when interrupted", stuck=True) from None

    def _run_callback(self, reply: dict[str, Any], data: list[bytes]) -> None:
        fn = self.callbacks.get(reply.get("fn"))  # type: ignore[arg-type]
        if fn is None:
            raise WireError("a callback the judge never sent")
        call = self.codec.decode(reply.get("value"), data)
        if type(call) is not dict:
            raise WireError("a malformed callback")
        args, kwargs = list(call.get("args", [])), dict(call.get("kwargs", {}))
        try:
            result = fn(*args, **kwargs)
            node, buffers = self.codec.encode({"result": result, "args": args, "kwargs": kwargs},
                                              sync=True)
            self._send({"op": "return", "value": node}, buffers)
        except (KernelGone, KernelTimeout):
            raise
        except Exception as err:  # noqa: BLE001 - the reference failed on the student's input
            self._send({"op": "return", "error": f"{type(err).__name__}: {err}"[:1000]})

    # -- what the helpers in course_utils.remote use ---------------------------------------------
    def get(self, name: str) -> Any:
        return self.request("get", name=name)

    def keep(self, value: Any) -> Any:
        return self.request("keep", obj=value)

    def fetch(self, value: Any) -> Any:
        return self.request("value", obj=value)

    def run(self, driver: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Run the test's ``driver`` function in the kernel (its source goes there, not its closure).

        A library's function (``checks.unregistered``) is called by name: the kernel uses its own.
        """
        if _library_name(driver) is not None:
            return self.request("call", obj=driver, args=list(args), kwargs=dict(kwargs))
        try:
            source = textwrap.dedent(inspect.getsource(driver))
        except (OSError, TypeError) as err:
            raise RuntimeError(f"run_in_kernel needs a function defined in the test cell: {err}") from None
        return self.request("run", source=source, function=driver.__name__, args=list(args),
                            kwargs=dict(kwargs))

    @contextlib.contextmanager
    def substitute(self, replacements: Mapping[str, Any]) -> Iterator[None]:
        missing = object()
        saved: dict[str, Any] = {}
        for name in replacements:
            try:
                saved[name] = self.request("getname", name=name)
            except RemoteError as err:
                if err.type_name != "NameError":
                    raise
                saved[name] = missing
        for name, value in replacements.items():
            self.request("setname", name=name, item=value)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is missing:
                    self.request("delname", name=name)
                else:
                    self.request("setname", name=name, item=value)

    def end(self) -> None:
        """Tell the agent to return from ``serve``."""
        with contextlib.suppress(KernelGone, TimeoutError, WireError, OSError):
            self._send({"op": "end"})
            self.deadline = time.monotonic() + self.grace
            self._recv()
        self.codec.forget()
        self.callbacks.clear()


# ---------------------------------------------------------------------------------------------
# The namespace a test runs in


class _Namespace(dict):  # type: ignore[type-arg]
    """The judge's globals for a test: own names first, then builtins, then the kernel's."""

    def __init__(self, link: Link, own: Mapping[str, Any]) -> None:
        super().__init__(own)
        self.link = link

    def __missing__(self, key: str) -> Any:
        if key in vars(builtins) or key.startswith("__"):
            raise KeyError(key)
        try:
            return self.link.get(key)
        except RemoteError as err:
            if err.type_name == "NameError":
                raise KeyError(key) from None
            raise


def judge_namespace(bindings: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """The genuine objects the setup cell imports: ``[("np", "numpy", None), ...]``."""
    names: dict[str, Any] = {"__name__": "__graded_cell__", "__builtins__": builtins}
    for name, module, attr in bindings:
        try:
            mod = importlib.import_module(module)
            if attr is None:
                names[name] = mod
                continue
            try:
                names[name] = getattr(mod, attr)
            except AttributeError:
                names[name] = importlib.import_module(f"{module}.{attr}")
        except Exception:  # noqa: BLE001, S112 - the kernel's own import error is the student's
            continue
    return names


# ---------------------------------------------------------------------------------------------
# Running one test


@dataclass
class Verdict:
    """The judge's decision on one graded cell and what the student may see of it."""

    passed: bool
    output: str = ""  # stdout of the visible part (the kernel's and the test's)
    error: tuple[str, str] | None = None  # (name, message) for a failed cell
    incident: str | None = None  # timeout, kernel-died or None
    stuck: bool = False  # the kernel ignored an interrupt and must be killed
    calls: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def hidden_lines(source: str) -> set[int]:
    """Line numbers (1-based) of the ``### BEGIN/END HIDDEN TESTS`` region, markers included."""
    lines, hidden = set(), False
    for number, line in enumerate(source.split("\n"), start=1):
        if "BEGIN HIDDEN TESTS" in line:
            hidden = True
        if hidden:
            lines.add(number)
        if "END HIDDEN TESTS" in line:
            hidden = False
    return lines


def _cell_line() -> int | None:
    """The line of the test cell's top-level code that is running now."""
    frame = sys._getframe(1)
    line = None
    while frame is not None:
        if frame.f_code.co_filename == CELL_FILE:
            line = frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return line


def _failed_line(tb: TracebackType | None) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == CELL_FILE:
            line = tb.tb_lineno
            break
        tb = tb.tb_next
    return line


def _literal_hint(source: str, line: int) -> str | None:
    """The instructor's literal message on ``line``: an assert's string or a check's label."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) != line:
            continue
        if isinstance(node, ast.Assert) and isinstance(node.msg, ast.Constant) and isinstance(node.msg.value, str):
            return node.msg.value
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and "check" in ast.unparse(node.func):
            return f"check {node.args[0].value!r} failed"
    return None


class _Output:
    """What the visible part printed (the test's prints and the kernel's output)."""

    def __init__(self, hidden: set[int]) -> None:
        self.hidden = hidden
        self.parts: list[str] = []
        self.size = 0
        self.dropped_hidden = False

    def add(self, text: str, line: int | None) -> None:
        if not text:
            return
        if line is not None and line in self.hidden:
            self.dropped_hidden = True
            return
        room = MAX_SHOWN_OUTPUT - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(room, len(text))

    def text(self) -> str:
        out = "".join(self.parts)
        if self.size >= MAX_SHOWN_OUTPUT:
            out += "\n[output cut]\n"
        return out


class _JudgeStdout(io.TextIOBase):
    def __init__(self, output: _Output) -> None:
        self.output = output

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.output.add(str(text), _cell_line())
        return len(text)


def _message(err: BaseException, source: str, hidden: set[int]) -> tuple[str, str]:
    line = _failed_line(err.__traceback__)
    in_hidden = line is not None and line in hidden
    if isinstance(err, RemoteError):
        where = f" (in {', '.join(err.where)})" if err.where else ""
        text = f"your code raised {err.type_name}: {err.remote_message}{where}"
        if err.protocol:
            text = f"the kernel sent something the grader cannot read: {err.remote_message}"
        return ("KernelError", text[:1500])
    if isinstance(err, TestError):
        return ("TestError", f"the grader's test failed on its own side (not your answer): {err}"[:1500])
    if isinstance(err, WireError):
        return ("AnswerError", f"your code returned something the grader cannot read: {err}"[:1500])
    if in_hidden:
        hint = _literal_hint(source, line) if line is not None else None
        return (type(err).__name__, f"a hidden test failed: {hint}" if hint else
                "a hidden test failed (its code and expected values are not shown)")
    text = str(err) or type(err).__name__
    return (type(err).__name__, text[:3000])


def run_test(source: str, link: Link, own: Mapping[str, Any]) -> Verdict:
    """Run a graded cell's ``source`` against the kernel behind ``link``."""
    started = time.monotonic()
    hidden = hidden_lines(source)
    output = _Output(hidden)
    link.on_output = lambda out, err: (output.add(out, _cell_line()), output.add(err, _cell_line()))
    namespace = _Namespace(link, own)
    verdict = Verdict(passed=False)
    remote._LINK.append(link)
    # inspect.getsource (run_in_kernel) reads the cell's functions from here.
    linecache.cache[CELL_FILE] = (len(source), None, source.splitlines(keepends=True), CELL_FILE)
    try:
        code = compile(source, CELL_FILE, "exec")
        with contextlib.redirect_stdout(_JudgeStdout(output)):
            exec(code, namespace)  # noqa: S102 - the instructor's test code, in the judge
        verdict.passed = True
    except KernelTimeout as err:
        verdict.error, verdict.incident, verdict.stuck = ("CellTimeoutError", str(err)), "timeout", err.stuck
    except KernelGone as err:
        verdict.error, verdict.incident = ("KernelDied", f"the kernel died while the test ran: {err}"), \
            "kernel-died"
    except NameError as err:  # a name the kernel does not have: the grader says which (upstream.py)
        verdict.error = ("NameError", f"name {err.name!r} is not defined" if err.name else str(err))
    except Exception as err:  # noqa: BLE001 - a failed test, whatever it raised
        verdict.error = _message(err, source, hidden)
    finally:
        remote._LINK.pop()
    verdict.output = output.text()
    if output.dropped_hidden:
        verdict.notes.append("output printed while the hidden tests ran is not shown")
    verdict.calls = link.calls
    verdict.seconds = round(time.monotonic() - started, 3)
    return verdict


def interrupter(pid: int | None) -> Callable[[], None]:
    """A function that sends SIGINT to the kernel's process group (or process)."""

    def interrupt() -> None:
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGINT)
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGINT)

    return interrupt
