"""The kernel's side of the judge's boundary: answer requests about the student's objects.

Runs inside the student's kernel, so nothing here is trusted: a student can
replace any of it. That is fine by design. The agent only *describes* the
kernel's state and *calls* the student's code; the judge
(:mod:`course_utils.grader.judge`) decides, in its own process, from the plain
data that comes back (:mod:`course_utils.grader.wire`). A forged answer is just
a wrong (or right) value.

``serve(path)`` connects to the judge's Unix socket and answers one request
per frame until the judge says ``end``. Requests (``op``):

* ``get`` ``name``: a name of the notebook's namespace;
* ``call`` ``fn``, ``args``, ``kwargs``: call a function, class or method and
  return its result and the state of the arguments after the call;
* ``getattr``/``setattr``/``getitem``/``setitem``/``len``/``list``/``str``/``bool``
  on an object the judge holds a reference to;
* ``end``: return from ``serve``.

Arguments that are the judge's functions (``{"callback": n}``) become stubs
that ask the judge to run them and wait for the answer, so a test can hand
the student's ``train`` a reference ``forward``. What the student's code prints
while it runs is captured and sent with each answer (stdout and stderr apart).
"""

from __future__ import annotations

import io
import socket
import sys
import traceback
from typing import Any

from course_utils.grader.wire import Codec, WireError, recv_frame, send_frame

__all__ = ["Agent", "serve"]

MAX_OUTPUT = 64 * 1024  # characters of captured output per answer
MAX_LIST = 100_000  # items of one ``list`` request


class _Capped(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters written to it."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = str(text)
        room = self.limit - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(room, len(text))
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def getvalue(self) -> str:
        text = "".join(self.parts)
        if self.dropped:
            text += f"\n[{self.dropped} more characters of output not kept]\n"
        return text


def _describe_error(err: BaseException) -> dict[str, Any]:
    cls = type(err)
    try:
        message = str(err)
    except Exception:  # noqa: BLE001 - a hostile __str__
        message = "(the error's message could not be read)"
    frames = traceback.extract_tb(err.__traceback__)
    where = [f"{f.name} line {f.lineno}" for f in frames
             if "course_utils/grader" not in f.filename.replace("\\", "/")][-3:]
    mro = [f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__][:10]
    return {"type": cls.__name__, "module": cls.__module__, "mro": mro, "message": message[:4000],
            "where": where}


class _Kept:
    """A result to send as a reference even when it is data."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj


class Agent:
    """Answers the judge's requests on one connection."""

    def __init__(self, sock: socket.socket, namespace: dict[str, Any]) -> None:
        self.sock = sock
        self.ns = namespace
        self.codec = Codec(owner=True, resolve_local=self._callback)

    # -- callbacks into the judge -----------------------------------------------------------
    def _callback(self, tag: str, number: Any) -> Any:
        if tag == "global":  # a class or function of an installed library, by its name
            return _global(number)
        if type(number) is not int:
            raise WireError("a callback without a number")
        agent = self

        def judge_function(*args: Any, **kwargs: Any) -> Any:
            node, buffers = agent.codec.encode({"args": list(args), "kwargs": kwargs})
            send_frame(agent.sock, {"op": "callback", "fn": number, "value": node}, buffers)
            while True:
                header, buffers = recv_frame(agent.sock)
                if header.get("op") == "return":
                    if header.get("error"):
                        raise RuntimeError(f"the reference function failed: {header['error']}"[:2000])
                    # Decoding updates the arguments the reference changed, in place.
                    value = agent.codec.decode(header.get("value"), buffers)
                    return value.get("result") if type(value) is dict else None
                agent._answer(header, buffers)  # the judge may ask things while it runs

        judge_function.__name__ = judge_function.__qualname__ = f"reference_{number}"
        return judge_function

    # -- one request ------------------------------------------------------------------------
    def _target(self, node: Any, buffers: list[bytes]) -> Any:
        return self.codec.decode(node, buffers)

    def _do(self, op: str, header: dict[str, Any], buffers: list[bytes]) -> tuple[Any, Any]:
        """(result, state of the call's arguments afterwards) of one request."""
        if op in ("get", "getname", "setname", "delname"):
            name = header.get("name")
            if type(name) is not str or not name.isidentifier():
                raise WireError(f"{name!r} is not a name")
            if op == "setname":
                self.ns[name] = self.codec.decode(header.get("value"), buffers).get("item")
                return None, None
            if name not in self.ns:
                raise NameError(f"name {name!r} is not defined")
            if op == "delname":
                del self.ns[name]
                return None, None
            return (self.ns[name] if op == "get" else _Kept(self.ns[name])), None
        request = self.codec.decode(header.get("value"), buffers)
        if type(request) is not dict:
            raise WireError("a request without a value")
        obj = request.get("obj")
        if op == "run":
            driver = _driver(str(request.get("source", "")), str(request.get("function", "")))
            args, kwargs = list(request.get("args", [])), dict(request.get("kwargs", {}))
            return driver(*args, **kwargs), {"args": args, "kwargs": kwargs}
        if op == "call":
            args, kwargs = list(request.get("args", [])), dict(request.get("kwargs", {}))
            if not all(type(k) is str for k in kwargs):
                raise WireError("keyword names must be strings")
            result = obj(*args, **kwargs)
            return result, {"args": args, "kwargs": kwargs}
        if op == "getattr":
            return getattr(obj, _name(request.get("attr"))), None
        if op == "setattr":
            setattr(obj, _name(request.get("attr")), request.get("item"))
            return None, None
        if op == "getitem":
            return obj[request.get("key")], None
        if op == "setitem":
            obj[request.get("key")] = request.get("item")
            return None, None
        if op == "len":
            return len(obj), None
        if op == "bool":
            return bool(obj), None
        if op == "str":
            return str(obj)[:10_000], None
        if op == "list":
            items = []
            for item in obj:
                items.append(item)
                if len(items) > MAX_LIST:
                    raise ValueError(f"more than {MAX_LIST} items")
            return items, None
        if op == "value":
            return obj, None
        if op == "keep":
            return _Kept(obj), None
        raise WireError(f"unknown request {op!r}")

    def _answer(self, header: dict[str, Any], buffers: list[bytes]) -> bool:
        """Answer one request; False when it was ``end``."""
        op = header.get("op")
        if op == "end":
            self.codec.forget()
            send_frame(self.sock, {"op": "ended"})
            return False
        out, err = _Capped(MAX_OUTPUT), _Capped(MAX_OUTPUT)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        reply: dict[str, Any] = {"op": "answer"}
        reply_buffers: list[bytes] = []
        try:
            try:
                result, after = self._do(str(op), header, buffers)
            finally:
                sys.stdout, sys.stderr = saved
            if type(result) is _Kept:  # a reference, even to data: the judge changes it here
                reply["value"] = {"dict": [["result", self.codec._enc_ref(result.obj)], ["after", None]]}
            else:
                reply["value"], reply_buffers = self.codec.encode({"result": result, "after": after})
        except WireError as error:
            reply["error"] = {"type": "WireError", "module": __name__, "mro": [], "message": str(error),
                              "where": [], "protocol": True}
        except BaseException as error:  # noqa: BLE001 - the student's code raised: report it
            sys.stdout, sys.stderr = saved
            reply["error"] = _describe_error(error)
            if isinstance(error, KeyboardInterrupt):
                reply["error"]["interrupted"] = True
        reply["stdout"], reply["stderr"] = out.getvalue(), err.getvalue()
        send_frame(self.sock, reply, reply_buffers)
        return True

    def serve(self) -> None:
        """Answer requests until the judge ends the session."""
        while True:
            header, buffers = recv_frame(self.sock)
            if not self._answer(header, buffers):
                return


def _global(path: Any) -> Any:
    """``torch.nn.Tanh`` from ``"torch.nn.modules.activation:Tanh"``."""
    import importlib

    if type(path) is not str or path.count(":") != 1:
        raise WireError(f"{path!r} is not a module:name")
    module, name = path.split(":")
    value: Any = importlib.import_module(module)
    for part in name.split("."):
        value = getattr(value, _name(part))
    return value


def _driver(source: str, name: str) -> Any:
    """A test's driver function, defined in a namespace of its own with the usual modules."""
    from course_utils.remote import driver_function

    return driver_function(source, _name(name))


def _name(value: Any) -> str:
    if type(value) is not str or not value.isidentifier():
        raise WireError(f"{value!r} is not an attribute name")
    return value


def serve(path: str, namespace: dict[str, Any] | None = None) -> None:
    """Connect to the judge at ``path`` and answer it (called by the judge in the kernel)."""
    if namespace is None:
        shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
        namespace = shell.user_ns if shell is not None else vars(sys.modules["__main__"])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    try:
        Agent(sock, namespace).serve()
    finally:
        sock.close()
