"""Kernels for the grader: forked from a per-worker zygote, contained, over Unix sockets.

* :class:`Zygote` starts and talks to the fork server of one worker
  (:mod:`course_utils.grader.zygote`).
* :class:`ZygoteProvisioner` is a jupyter_client kernel provisioner that asks
  the zygote for a kernel instead of starting a new interpreter, and reports its
  exit code (or the signal that killed it) from the zygote's status file.
* :class:`GraderKernelManager` is the kernel manager nbgrader's executor uses in
  a worker: it picks that provisioner and, when the sandbox cuts the network,
  the ``ipc`` transport (Unix-domain sockets survive a network namespace).

The worker configures all three through :func:`configure` before grading.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from course_utils.grader.sandbox import SandboxSpec, environment_paths, remove_cgroups

__all__ = [
    "GraderKernelManager",
    "KernelRuntime",
    "Zygote",
    "ZygoteProvisioner",
    "configure",
    "describe_returncode",
    "runtime",
]


def describe_returncode(code: int | None) -> str:
    """``-11`` -> ``'killed by signal SIGSEGV'``, ``3`` -> ``'exit code 3'``."""
    if code is None:
        return "cause unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        extra = " (out of memory, or killed)" if name == "SIGKILL" else ""
        return f"killed by signal {name}{extra}"
    return f"exit code {code}"


class Zygote:
    """A fork server of kernels: one per worker, or one shared by a run's workers.

    ``listen`` (a socket path) makes the server also take requests from other
    processes over that socket; ``attach`` connects to such a server instead of
    starting one. An attached server found dead (or unreachable) is replaced by a
    private one, so a dead fork server never costs a submission.
    """

    def __init__(self, workdir: Path, preload: list[str], env: dict[str, str], *,
                 listen: str | None = None, attach: str | None = None,
                 protection: dict[str, list[str]] | None = None) -> None:
        self.workdir = workdir
        self.preload = preload
        self.protection = protection  # the guard's Protection as plain lists (None: its default)
        self.env = env
        self.listen = listen
        self.attach = attach
        self.restarts = 0
        workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(workdir / "zygote.log", "ab")  # noqa: SIM115 - lives as long as the zygote
        self._ids = itertools.count(1)
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._start()

    def _start(self) -> None:
        self.ready: dict[str, Any] | None = None
        if self.attach is not None:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.connect(self.attach)
                self._reader, self._writer = self._sock.makefile("rb"), self._sock.makefile("wb")
                return
            except OSError:
                self._drop_attachment()
        listener = None
        if self.listen is not None:  # bound here, so clients can connect as soon as this returns
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.listen)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self.listen)
            os.chmod(self.listen, 0o600)  # the grader's own processes only
            listener.listen(16)
        fd = listener.fileno() if listener else None
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "course_utils.grader.zygote"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                env=self.env, cwd=self.workdir, start_new_session=True,
                pass_fds=(fd,) if fd is not None else (),
            )
        finally:
            if listener is not None:
                listener.close()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._reader, self._writer = self.proc.stdout, self.proc.stdin
        self._send({"preload": self.preload, "protection": self.protection, "listen_fd": fd})

    def _close_shared(self) -> None:
        """Close the connection to the shared server; not alive any more, so the next spawn restarts."""
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def _drop_attachment(self) -> None:
        self._close_shared()
        self.attach = None

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self._writer.write((json.dumps(message) + "\n").encode())
            self._writer.flush()
        except OSError:
            self._close_shared()  # the shared server is gone
            raise

    def _alive(self) -> bool:
        return self._sock is not None if self.proc is None else self.proc.poll() is None

    def _restart(self) -> None:
        """A fresh fork server for the next kernel (the old one died: nobody's submission pays)."""
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            self.proc.wait()
        self._drop_attachment()  # a shared server that failed us: a private one from now on
        self.restarts += 1
        self._start()

    def _read(self) -> dict[str, Any]:
        line = self._reader.readline()
        if not line:
            log = (self.workdir / "zygote.log").read_text(errors="replace")[-3000:]
            self._close_shared()  # the next spawn starts a private server
            raise RuntimeError(f"the kernel fork server exited:\n{log}")
        return json.loads(line)

    def wait_ready(self) -> dict[str, Any]:
        if self.ready is None:
            self.ready = self._read()
        return self.ready

    @property
    def pid(self) -> int:
        """The fork server's process id (the parent of its kernels)."""
        return int(self.wait_ready()["pid"])

    @property
    def can_fork(self) -> bool:
        """False where forking kernels is unsafe: not Linux, or CUDA initialised by a preload.

        ``COURSE_GRADE_NO_FORK=1`` forces a fresh interpreter per kernel.
        """
        if os.environ.get("COURSE_GRADE_NO_FORK") or not sys.platform.startswith("linux"):
            return False
        return not self.wait_ready().get("cuda_initialized")

    def spawn(self, args: list[str], cwd: str, env: dict[str, str], sandbox: SandboxSpec,
              log: Path, status: Path) -> int:
        """Fork a kernel; return its pid. A fork server found dead is replaced first."""
        request = {"id": next(self._ids), "args": args, "cwd": cwd, "env": env,
                   "sandbox": asdict(sandbox), "log": str(log), "status": str(status)}
        for attempt in (1, 2):
            if not self._alive():
                self._restart()
            try:
                self.wait_ready()
                self._send(request)
                return int(self._read()["pid"])
            except (OSError, RuntimeError, ValueError):
                if attempt == 2:
                    raise
                self._restart()
        raise RuntimeError("unreachable")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


@dataclass
class KernelRuntime:
    """Everything a worker's kernels share; set with :func:`configure`."""

    zygote: Zygote
    workdir: Path
    sandbox: SandboxSpec
    kernel_env: dict[str, str] = field(default_factory=dict)
    readonly_paths: list[str] = field(default_factory=list)  # host paths a kernel may read, besides the environment
    data_paths: list[str] | None = None  # a data view's paths (None: the host's data folders and cache)
    ipc: bool = True
    last_log: Path | None = None


_RUNTIME: KernelRuntime | None = None
_COUNTER = itertools.count(1)


def configure(rt: KernelRuntime) -> None:
    """Make ``rt`` the runtime of kernels started in this process."""
    global _RUNTIME
    _RUNTIME = rt


def runtime() -> KernelRuntime:
    if _RUNTIME is None:
        raise RuntimeError("course_utils.grader.kernel.configure() was not called in this process")
    return _RUNTIME


class _ForkedKernel:
    """The parts of ``subprocess.Popen`` jupyter_client uses, for a zygote child."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, status: Path) -> None:
        self.pid = pid
        self.status = status
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self.status.exists():
            try:
                self.returncode = int(json.loads(self.status.read_text())["returncode"])
            except (ValueError, KeyError, OSError):
                return None
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("kernel", timeout or 0)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ZygoteProvisioner(LocalProvisioner):  # type: ignore[misc]
    """Launch kernels by forking the worker's zygote."""

    tmpdir: Path | None = None
    cgroup: str = ""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        rt = runtime()
        number = next(_COUNTER)
        args = cmd[cmd.index("-f"):] if "-f" in cmd else cmd[1:]
        cwd = str(kwargs.get("cwd") or os.getcwd())
        self.tmpdir = rt.workdir / "tmp" / f"kernel-{number}"
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in (kwargs.get("env") or os.environ).items() if isinstance(v, str)}
        locked = rt.sandbox.filesystem and sys.platform.startswith("linux")
        tmp = "/tmp" if locked else str(self.tmpdir)  # a locked kernel has a /tmp of its own
        env.update(rt.kernel_env)
        env.update({"TMPDIR": tmp, "TMP": tmp, "TEMP": tmp, "IPYTHONDIR": f"{tmp}/.ipython",
                    "MPLCONFIGDIR": f"{tmp}/.matplotlib", "JPY_PARENT_PID": str(rt.zygote.pid)})
        if locked:
            env["HOME"] = tmp
        sockets = os.path.dirname(getattr(self.parent, "ip", "") or "")
        connection = args[args.index("-f") + 1] if "-f" in args else None
        self.cgroup = f"{rt.kernel_env.get('COURSE_GRADE_RUN', 'course-grade')}-{number}"
        spec = SandboxSpec(**{**asdict(rt.sandbox), "cwd": cwd,
                              "readonly": [*environment_paths(data=rt.data_paths is None), *(rt.data_paths or []),
                                           *rt.readonly_paths],
                              "writable": [sockets] if sockets and os.path.isdir(sockets) else [],
                              "copy_files": [connection] if connection else [],
                              "cgroup": self.cgroup})
        log = rt.workdir / "logs" / f"kernel-{number}.log"
        status = rt.workdir / "logs" / f"kernel-{number}.status"
        log.parent.mkdir(parents=True, exist_ok=True)
        rt.last_log = log
        if not rt.zygote.can_fork:
            request = {"args": args, "cwd": cwd, "env": env, "sandbox": asdict(spec),
                       "log": str(log), "status": str(status), "preload": rt.zygote.preload,
                       "protection": rt.zygote.protection}
            path = log.with_suffix(".json")
            path.write_text(json.dumps(request))
            kwargs = {k: v for k, v in kwargs.items() if k not in ("env", "cwd")}
            command = [sys.executable, "-m", "course_utils.grader.zygote", "--kernel", str(path)]
            return await super().launch_kernel(command, env=env, cwd=cwd, **kwargs)
        pid = rt.zygote.spawn(args, cwd, env, spec, log, status)
        self.process = _ForkedKernel(pid, status)
        self.pid = self.pgid = pid
        self.cwd = cwd
        return self.connection_info

    async def send_signal(self, signum: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.pgid, signum)
        except OSError:
            try:
                self.process.send_signal(signum)
            except OSError:
                pass

    async def kill(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart)
        if self.pgid:
            try:  # anything the student started in the kernel's session goes too
                os.killpg(self.pgid, signal.SIGKILL)
            except OSError:
                pass
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        remove_cgroups(self.cgroup)  # its monitor may have been killed before it could

    def returncode(self) -> int | None:
        """The kernel's exit code, waiting up to a second for it to be known."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return None


class GraderKernelManager(AsyncKernelManager):  # type: ignore[misc]
    """Kernel manager for graded kernels: zygote provisioner, ipc transport when sandboxed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rt = runtime()
        if rt.ipc:  # one folder per kernel: all a locked kernel sees of the grader's files
            folder = rt.workdir / "ipc" / f"k{uuid.uuid4().hex[:8]}"
            folder.mkdir(parents=True, exist_ok=True)
            self.transport = "ipc"
            self.ip = str(folder / "k")

    async def _async_pre_start_kernel(self, **kw: Any) -> Any:
        if self.provisioner is None:
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", None) or str(uuid.uuid4())
            self.provisioner = ZygoteProvisioner(
                kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self
            )
        return await super()._async_pre_start_kernel(**kw)
