"""A fork server for kernels: pay for ``import torch`` once per worker, not per submission.

Run as ``python -m course_utils.grader.zygote`` by :class:`course_utils.grader.kernel.Zygote`.
It reads one JSON line of settings (the modules to preload: ipykernel, numpy,
torch and whatever the assignments' setup cells import), imports them, records
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

import importlib
import json
import os
import select
import signal
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


def _child(request: dict[str, Any], snapshot: Any) -> None:  # pragma: no cover - forked child
    """Become the kernel described by ``request``; never returns."""
    code = 1
    try:
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


def _preload(modules: list[str]) -> tuple[Any, list[str]]:
    failed = []
    for name in [*BASE_PRELOAD, *modules]:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - a kernel will report it where it matters
            failed.append(f"{name}: {type(err).__name__}: {err}")
    from course_utils.grader import agent, guard, sandbox  # noqa: F401 - preloaded for the kernels

    return guard.take_snapshot(modules), failed


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
        snapshot, _ = _preload(request.get("preload", []))
        _child(request, snapshot)
    settings = json.loads(sys.stdin.readline() or "{}")
    started = time.perf_counter()
    snapshot, failed = _preload(settings.get("preload", []))
    out = sys.stdout
    out.write(json.dumps({"ready": True, "pid": os.getpid(), "failed": failed,
                          "cuda_initialized": _cuda_initialized(),
                          "import_s": round(time.perf_counter() - started, 2)}) + "\n")
    out.flush()
    children: dict[int, str] = {}
    stdin = sys.stdin.fileno()
    buffer = b""
    while True:
        readable, _, _ = select.select([stdin], [], [], 0.05)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            path = children.pop(pid, None)
            if path:
                _write_status(path, _returncode(status))
        if not readable:
            continue
        chunk = os.read(stdin, 65536)
        if not chunk:  # the worker is gone: take its kernels (and their children) along
            for pid in children:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
            return 0
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                _child(request, snapshot)
            children[pid] = request["status"]
            out.write(json.dumps({"id": request["id"], "pid": pid}) + "\n")
            out.flush()


if __name__ == "__main__":
    raise SystemExit(main())
