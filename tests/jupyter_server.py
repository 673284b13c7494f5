"""Test fixture: a real Jupyter server (JupyterLab, nbgrader's extensions) on a free port.

Used by the browser test (tests/browser) and the nbgrader UI test (tests/grading/test_formgrader.py).
The server is isolated from this machine's Jupyter settings, draws plots inline, and is shut
down with everything it started, whatever the test did.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from course_utils import release

ROOT = release.project_root()
POLL_S = 0.25


@dataclass(frozen=True)
class Server:
    """A running server: its address, token, root folder and log."""

    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def api(self, path: str, method: str = "GET", data: dict[str, str] | None = None,
            timeout: float = 120) -> bytes:
        """The raw reply to ``path`` (a POST when ``data`` is given), with the token."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(f"{self.url}/{path.lstrip('/')}", data=body, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            return reply.read()

    def request(self, path: str, data: dict[str, str] | None = None, timeout: float = 120) -> object:
        """The decoded JSON reply to ``path``; an HTTP error fails with the end of the server's log."""
        try:
            return json.loads(self.api(path, "POST" if data is not None else "GET", data, timeout))
        except urllib.error.HTTPError as err:
            raise AssertionError(f"{path}: HTTP {err.code}; server log {self.log}:\n{self.log_tail()}") from err

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def course_copy(target: Path, assignments: list[str]) -> Path:
    """A course folder laid out like the repository, with only ``assignments``."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "nbgrader_config.py", target)
    (target / "work").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "work" / "nbgrader_config.py", target / "work")
    (target / "solutions").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "solutions" / "jupytext.toml", target / "solutions")
    for name in assignments:
        shutil.copytree(ROOT / "solutions" / name, target / "solutions" / name,
                        ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        shutil.copytree(ROOT / "notebooks" / name, target / "notebooks" / name,
                        ignore=shutil.ignore_patterns("runs", "__pycache__", ".ipynb_checkpoints"))
    return target


def _stop(server: Server) -> None:
    """Shut the server down through its API, then make sure it and its kernels are gone."""
    try:
        family = psutil.Process(server.process.pid).children(recursive=True)
    except psutil.Error:
        family = []
    with contextlib.suppress(OSError):
        server.api("api/shutdown", method="POST", timeout=10)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    for child in family:
        with contextlib.suppress(psutil.Error):  # already gone, as it should be
            child.kill()
    psutil.wait_procs(family, timeout=10)


@contextlib.contextmanager
def jupyter_server(root: Path, *, app: str = "server", startup_s: float = 90) -> Iterator[Server]:
    """Run ``jupyter <app>`` (``server`` or ``lab``) in ``root`` until the block ends.

    Its cwd is ``root`` (nbgrader's handlers read ``nbgrader_config.py`` from there); Jupyter's
    config, runtime, settings and IPython folders live beside ``root``; no MPLBACKEND, so a
    kernel draws inline; no "a newer JupyterLab is available" notice.
    """
    home = root.parent / f"{root.name}-jupyter"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "lab-workspaces"), IPYTHONDIR=str(home / "ipython"))
    port, token = _free_port(), secrets.token_hex(24)
    log = root.parent / f"{root.name}-jupyter-{app}.log"
    cmd = [sys.executable, "-m", "jupyter", app, "--no-browser", "--allow-root", "--ip=127.0.0.1",
           f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}"]
    if app == "lab":
        cmd.append("--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate")
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", token, root, log, process)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            try:
                json.loads(server.api("api/status", timeout=2))
                break
            except (OSError, ValueError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"jupyter {app} did not answer /api/status on port {port} within "
                                     f"{startup_s} s (exit code {process.poll()}); its log ({log}) ends:\n"
                                     f"{server.log_tail()}")
            time.sleep(POLL_S)
        yield server
    finally:
        _stop(server)
