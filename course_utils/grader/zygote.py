"""A fork server for kernels: pay for ``import torch`` once per worker, not per submission.

Run as ``python -m course_utils.grader.zygote`` by :class:`course_utils.grader.kernel.Zygote`.
It reads one JSON line of settings (the modules to preload: ipykernel, numpy,
torch and whatever the assignments' setup cells import; the guard's
:class:`~course_utils.grader.guard.Protection` as plain lists), imports them, records
the guard snapshot (:func:`course_utils.grader.guard.take_snapshot`) and answers
``{"ready": ...}``. Each later line asks for a kernel::

    {"id": 1, "args": ["-f", "kernel.json", ...], "cwd": ..., "env": {...},
     "sandbox": {...}, "log": "kernel-1.log", "status": "kernel-1.status"}

and is answered ``{"id": 1, "pid": 1234}``. The forked child leaves the
zygote's session, locks itself down (:func:`course_utils.grader.sandbox.lock`), starts
an ipykernel with those arguments and installs the guard. Forking a process that
has imported torch but never run a torch op (no thread pools yet) is safe, and
takes milliseconds instead of the seconds a fresh interpreter needs.

``python -m course_utils.grader.zygote --kernel request.json`` is the same
kernel without the fork (a fresh interpreter), used where forking is not safe:
not Linux, or a preload that initialised CUDA.

When a kernel exits, the zygote writes its return code (negative: the signal
that killed it) to the ``status`` file, where the grader's kernel provisioner
reads it. The zygote exits when its standard input closes, i.e. with its worker.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from typing import Any

__all__ = ["main"]

# torch._dynamo rebinds torch.manual_seed when first imported (``setup()`` imports it):
# import it before the guard's snapshot so that rebinding is part of the baseline. The
# ipykernel modules are the ones IPKernelApp.initialize() imports (its debugger included).
BASE_PRELOAD = (
    "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.debugger",
    "debugpy.server", "IPython", "sqlite3", "pdb", "numpy", "numpy.testing", "torch",
    "torch._dynamo", "matplotlib", "matplotlib.pyplot", "matplotlib.backends.backend_agg",
    "matplotlib_inline.backend_inline",
)


def _write_status(path: str, returncode: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump({"returncode": returncode}, fh)
    os.replace(tmp, path)


def _returncode(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1


def _child(request: dict[str, Any], snapshot: Any, inherited: tuple[int, ...] = ()) -> None:  # pragma: no cover
    """Become the kernel described by ``request``; never returns.

    ``inherited`` are the server's sockets (its listener, other workers' connections):
    closed first, so no kernel can take or answer another worker's requests.
    """
    code = 1
    try:
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        parent = os.getppid()
        if sys.platform.startswith("linux"):  # die with the zygote, even if it is SIGKILLed
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:
                os._exit(1)
        if os.getsid(0) != os.getpid():
            os.setsid()
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.environ.clear()
        os.environ.update(request["env"])
        from course_utils.grader import guard, sandbox

        missing = sandbox.lock(sandbox.SandboxSpec(**request["sandbox"]))
        for line in missing:
            print(f"sandbox: {line}", file=sys.stderr, flush=True)
        if os.getpid() == 1:  # PID 1 of its own namespace: its parent is out of sight
            os.environ.pop("JPY_PARENT_PID", None)
        os.chdir(request["cwd"])
        if "" not in sys.path:
            sys.path.insert(0, "")
        from ipykernel.kernelapp import IPKernelApp

        app = IPKernelApp.instance()
        app.initialize(list(request["args"]))
        guard.install(snapshot, app)
        app.start()
        code = 0
    except BaseException:  # noqa: BLE001 - the log is the only place to say why
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _preload(modules: list[str], protection: dict[str, list[str]] | None = None) -> tuple[Any, list[str]]:
    failed = []
    for name in [*BASE_PRELOAD, *modules]:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - a kernel will report it where it matters
            failed.append(f"{name}: {type(err).__name__}: {err}")
    from course_utils.grader import agent, guard, sandbox  # noqa: F401 - preloaded for the kernels

    rules = guard.Protection.from_lists(**protection) if protection else guard.Protection()
    return guard.take_snapshot(modules, rules), failed


def _cuda_initialized() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001
        return False


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--kernel":
        # Direct mode (no fork): one kernel from a request file, for platforms where
        # forking a process that imported torch is not safe.
        with open(sys.argv[2]) as fh:
            request = json.load(fh)
        snapshot, _ = _preload(request.get("preload", []), request.get("protection"))
        _child(request, snapshot)
    settings = json.loads(sys.stdin.readline() or "{}")
    listener = _listen(settings.get("listen_fd"))  # clients may connect already, and wait for ready
    started = time.perf_counter()
    snapshot, failed = _preload(settings.get("preload", []), settings.get("protection"))
    ready = (json.dumps({"ready": True, "pid": os.getpid(), "failed": failed,
                         "cuda_initialized": _cuda_initialized(),
                         "import_s": round(time.perf_counter() - started, 2)}) + "\n").encode()
    stdin = sys.stdin.fileno()
    out = sys.stdout.buffer
    out.write(ready)
    out.flush()
    # A client is a file descriptor to read requests from; its kernels die when it goes away.
    clients: dict[int, _Client] = {stdin: _Client(stdin, out)}
    children: dict[int, tuple[str, int]] = {}  # pid -> (status file, client fd)
    while True:
        waiting = [*clients, *([listener.fileno()] if listener else [])]
        readable, _, _ = select.select(waiting, [], [], 0.05)
        _reap(children)
        for fd in readable:
            if listener is not None and fd == listener.fileno():
                conn, _ = listener.accept()
                writer = conn.makefile("wb")
                try:
                    writer.write(ready)
                    writer.flush()
                except OSError:  # gone before it heard we are ready
                    conn.close()
                    continue
                clients[conn.fileno()] = _Client(conn.fileno(), writer, conn)
                continue
            client = clients[fd]
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a worker killed with our answer unread resets its socket: gone too
                chunk = b""
            if not chunk:  # that worker is gone: take its kernels (and their children) along
                _kill([pid for pid, (_, owner) in children.items() if owner == fd])
                del clients[fd]
                client.close()
                if fd == stdin:  # the owner is gone: everyone's kernels go too
                    _kill(list(children))
                    return 0
                continue
            client.buffer += chunk
            while b"\n" in client.buffer:
                line, client.buffer = client.buffer.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request, snapshot, (*[c for c in clients if c != stdin],
                                                *([listener.fileno()] if listener else [])))
                children[pid] = (request["status"], fd)
                try:
                    client.writer.write((json.dumps({"id": request["id"], "pid": pid}) + "\n").encode())
                    client.writer.flush()
                except OSError:  # the worker died while it asked: the next read drops it
                    pass


class _Client:
    def __init__(self, fd: int, writer: Any, conn: socket.socket | None = None) -> None:
        self.fd, self.writer, self.conn, self.buffer = fd, writer, conn, b""

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):  # a buffered answer to a dead worker
                self.writer.close()
            self.conn.close()


def _listen(fd: int | None) -> socket.socket | None:
    """The listening socket the grader bound and passed down (``None``: one worker's server)."""
    return None if fd is None else socket.socket(fileno=fd)


def _reap(children: dict[int, tuple[str, int]]) -> None:
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        path, _ = children.pop(pid, ("", 0))
        if path:
            _write_status(path, _returncode(status))


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


if __name__ == "__main__":
    raise SystemExit(main())
