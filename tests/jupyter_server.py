"""Test fixture: a real Jupyter server (with JupyterLab and nbgrader's extensions) on a free port."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from course_utils import release

ROOT = release.project_root()


@dataclass(frozen=True)
class Server:
    """A running server: its address, token and log file."""

    url: str
    token: str
    log: Path

    def request(self, path: str, data: dict[str, str] | None = None, method: str | None = None,
                timeout: float = 120) -> object:
        """GET (or POST ``data``) ``path`` with the token; the decoded JSON reply."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(f"{self.url}/{path.lstrip('/')}", data=body, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as reply:
                return json.loads(reply.read().decode())
        except urllib.error.HTTPError as err:
            tail = self.log.read_text()[-3000:]
            raise AssertionError(f"{path}: HTTP {err.code}; server log {self.log}:\n{tail}") from err


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


@contextlib.contextmanager
def jupyter_server(root: Path, *, app: str = "server", env: dict[str, str] | None = None,
                   startup_s: float = 90) -> Iterator[Server]:
    """Run ``jupyter <app>`` (``server`` or ``lab``) in ``root`` until the block ends; kill it and its kernels."""
    port, token = _free_port(), secrets.token_hex(16)
    log = root.parent / f"jupyter-{port}.log"
    cmd = [sys.executable, "-m", "jupyter", app, "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", token, log)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter {app} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                server.request("api/status", timeout=5)
                break
            except (OSError, AssertionError) as err:
                if time.monotonic() > deadline:
                    tail = log.read_text()[-3000:]
                    raise RuntimeError(f"jupyter {app} did not answer in {startup_s} s:\n{tail}") from err
                time.sleep(0.5)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with contextlib.suppress(ProcessLookupError):  # kernels started in the server's session
            os.killpg(proc.pid, signal.SIGKILL)
