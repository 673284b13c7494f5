"""The locked kernel, layer by layer: each test locks a forked child down and attacks from inside.

Skipped where the host cannot apply every layer (no user namespaces, not Linux,
no cgroups): the probe then reports them as off, which is tested too.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from course_utils.grader import sandbox

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="namespaces are Linux's")
_MISSING = sandbox.probe(sandbox.SandboxSpec(memory_mb=1024)) if sys.platform.startswith("linux") else ["all"]
locked_only = pytest.mark.skipif(bool(_MISSING), reason=f"protections off on this host: {_MISSING}")


def _inside(tmp_path: Path, attack: str, **limits: object) -> dict:
    """Run ``attack`` (Python source setting ``result``) in a locked child; return ``result``."""
    cwd = tmp_path / "submission"
    cwd.mkdir(exist_ok=True)
    (cwd / "answer.txt").write_text("mine")
    (tmp_path / "classmate.txt").write_text("not mine")
    readonly = limits.pop("readonly", None) or sandbox.environment_paths()
    spec = sandbox.SandboxSpec(cwd=str(cwd), readonly=readonly,
                               cgroup=f"course-test-{os.getpid()}-{time.monotonic_ns()}",
                               **{"memory_mb": 8192, "disk_mb": 32, "tmp_mb": 32, **limits})
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the locked child
        os.close(read_fd)
        out: dict = {}
        try:
            out["missing"] = sandbox.lock(spec)
            namespace: dict = {"result": {}}
            exec(attack, namespace)  # noqa: S102 - the attack under test
            out.update(namespace["result"])
        except BaseException as err:  # noqa: BLE001
            out["crash"] = f"{type(err).__name__}: {err}"
        os.write(write_fd, json.dumps(out).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        text = fh.read().decode()
    os.waitpid(pid, 0)
    result = json.loads(text)
    assert "crash" not in result, result["crash"]
    assert result["missing"] == []
    return result


@locked_only
def test_identity_is_unprivileged_and_alone(tmp_path):
    result = _inside(tmp_path, '''
import os
status = {l.split(":")[0]: l.split(":")[1].strip() for l in open("/proc/self/status")}
result = {"pid": os.getpid(), "uid": os.getuid(), "groups": os.getgroups(),
          "caps": [status[k] for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")],
          "nnp": status["NoNewPrivs"], "procs": [p for p in os.listdir("/proc") if p.isdigit()]}
''')
    assert result["pid"] == 1 and result["uid"] == 1000 and result["groups"] == []
    assert set(result["caps"]) == {"0000000000000000"} and result["nnp"] == "1"
    assert result["procs"] == ["1"], "it sees no other process"


@locked_only
def test_file_system_shows_only_its_copy_and_the_environment(tmp_path):
    repo = str(Path(__file__).resolve().parents[2])
    result = _inside(tmp_path, f'''
import os
result = {{"answer": open("answer.txt").read(), "cwd_files": sorted(os.listdir(".")),
          "classmate": os.path.exists({str(tmp_path / "classmate.txt")!r}),
          "repo": sorted(os.listdir({repo!r})) if os.path.isdir({repo!r}) else None,
          "writes": {{}}}}
for path in ["/usr/x", {sys.prefix + "/x"!r}, "/x", "/etc/x"]:
    try:
        open(path, "w")
        result["writes"][path] = "written"
    except OSError as err:
        result["writes"][path] = err.strerror
open("mine.txt", "w").write("ok")
''')
    assert result["answer"] == "mine" and result["cwd_files"] == ["answer.txt"]
    assert not result["classmate"], "a file beside the submission is not visible"
    assert result["repo"] is None or not {"solutions", "tests", "nbgrader_config.py"} & set(result["repo"])
    assert set(result["writes"].values()) == {"Read-only file system"}
    assert not (tmp_path / "submission" / "mine.txt").exists(), "its writes stay in its own copy"


@locked_only
def test_no_way_out_remount_network_signals(tmp_path):
    result = _inside(tmp_path, f'''
import ctypes, os, signal, socket
libc = ctypes.CDLL(None, use_errno=True)
result = {{"remount": libc.mount(None, b"/", None, 32, None), "errno": ctypes.get_errno()}}
try:
    socket.create_connection(("192.0.2.1", 80), timeout=1)
    result["network"] = "reached"
except OSError as err:
    result["network"] = err.strerror
try:
    os.kill({os.getpid()}, 0)
    result["grader"] = "visible"
except OSError as err:
    result["grader"] = err.strerror
try:
    open("/proc/{os.getpid()}/ns/net")
    result["setns"] = "opened"
except OSError as err:
    result["setns"] = err.strerror
''')
    assert result["remount"] == -1 and result["network"] == "Network is unreachable"
    assert result["grader"] == "No such process" and result["setns"] == "No such file or directory"


@locked_only
def test_disks_processes_and_memory_are_capped(tmp_path):
    result = _inside(tmp_path, '''
import os, time
result = {"written": {}}
for path in ("filler", "/tmp/filler", "/dev/shm/filler"):
    count = 0
    try:
        with open(path, "wb") as fh:
            for _ in range(200):
                fh.write(b"x" * (1 << 20))
                count += 1
    except OSError:
        pass
    result["written"][path] = count
    os.remove(path)
kids = []
try:
    for _ in range(500):
        pid = os.fork()
        if pid == 0:
            time.sleep(3)
            os._exit(0)
        kids.append(pid)
except OSError:
    pass
result["forks"] = len(kids)
for pid in kids:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
hogs = []
for _ in range(4):  # each under the per-process cap, together over the cgroup's
    pid = os.fork()
    if pid == 0:
        try:
            with open("/proc/self/oom_score_adj", "w") as fh:
                fh.write("1000")  # the hogs, not the test's own process, are the ones to stop
            block = bytearray(500 << 20)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(2)
        except BaseException:
            os._exit(3)  # refused memory (MemoryError): stopped too
        os._exit(0)
    hogs.append(pid)
result["hogs"] = [os.waitpid(pid, 0)[1] for pid in hogs]
''', max_processes=40, memory_mb=8192, cgroup_mb=1024)  # a test process may already hold 1 GB
    assert all(n <= 32 for n in result["written"].values()), result["written"]
    assert result["forks"] < 40
    assert any(status != 0 for status in result["hogs"]), "1 GiB across processes: some hog is stopped"


def _in_cgroups(prefix: str) -> list[str]:
    """Processes whose memory cgroup's name starts with ``prefix``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"/{prefix}" in Path(f"/proc/{pid}/cgroup").read_text():
                found.append(pid)
        except OSError:
            continue
    return found


@locked_only
def test_nothing_outlives_the_kernel(tmp_path):
    """A double-forked, setsid daemon is seen while the kernel lives and dies with it."""
    cwd = tmp_path / "submission"
    cwd.mkdir()
    name = f"course-test-{os.getpid()}-{time.monotonic_ns()}"
    spec = sandbox.SandboxSpec(cwd=str(cwd), readonly=sandbox.environment_paths(), cgroup=name,
                               memory_mb=1024)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the locked child
        os.close(ready_r)
        sandbox.lock(spec)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            os._exit(0)
        os.wait()
        os.write(ready_w, b"1")
        time.sleep(1)
        os._exit(0)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"1"
    assert len(_in_cgroups(name)) >= 2, "the kernel and its daemon, in the kernel's cgroup"
    os.waitpid(pid, 0)
    time.sleep(0.5)
    assert _in_cgroups(name) == [], "processes of the kernel still running"
    assert not os.path.isdir(f"/sys/fs/cgroup/memory/{name}"), "its cgroup is removed"


@locked_only
def test_a_killed_monitor_takes_the_kernel_along(tmp_path):
    """When the process that locked the kernel is SIGKILLed (its fork server gone), do keeper and kernel die too?"""
    import signal

    cwd = tmp_path / "submission"
    cwd.mkdir()
    name = f"course-test-{os.getpid()}-{time.monotonic_ns()}"
    spec = sandbox.SandboxSpec(cwd=str(cwd), readonly=sandbox.environment_paths(), cgroup=name,
                               memory_mb=1024)
    ready_r, ready_w = os.pipe()
    monitor = os.fork()
    if monitor == 0:  # pragma: no cover - becomes the monitor; the kernel sleeps
        os.close(ready_r)
        sandbox.lock(spec)
        os.write(ready_w, b"1")
        time.sleep(60)
        os._exit(0)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"1"
    assert len(_in_cgroups(name)) == 2, "the keeper and the kernel, in the kernel's cgroup"
    os.kill(monitor, signal.SIGKILL)
    os.waitpid(monitor, 0)
    deadline = time.monotonic() + 10
    while _in_cgroups(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _in_cgroups(name)
    sandbox.remove_cgroups(name)
    assert left == [], "the keeper (an unprivileged user by now) and the kernel outlived the monitor"


def test_probe_names_what_is_off():
    """Without the file-system layer the probe says which protections are off, in words."""
    missing = sandbox.probe(sandbox.SandboxSpec(filesystem=False, network=False))
    assert sandbox.LAYERS["user"] in missing and sandbox.LAYERS["filesystem"] in missing


@locked_only
@pytest.mark.skipif(not os.environ.get("COURSE_DATA"), reason="needs the offline copy (COURSE_DATA)")
def test_data_view_hides_withheld_files_even_when_links_are_followed(tmp_path):
    """Does a kernel shown a data view without test_batch fail to find it next to the files it can read?"""
    from course_utils import data
    from course_utils.grader import dataview

    view = dataview.build(tmp_path / "view", ["cifar10:test_batch"])
    real = str(data.resolve(data.CIFAR10, download=False) / data.CIFAR10.folder)
    link = tmp_path / "view" / "data" / "cifar-10-batches-py" / "data_batch_1"
    archive = os.path.join(os.environ["COURSE_DATA"], data.CIFAR10.archives[1])
    result = _inside(tmp_path, f'''
import os
folder = os.path.dirname(os.path.realpath({str(link)!r}))
result = {{"train": len(open({str(link)!r}, "rb").read()), "folder": folder, "listing": sorted(os.listdir(folder)),
          "test": os.path.exists(os.path.join({real!r}, "test_batch")), "archive": os.path.exists({archive!r})}}
''', readonly=[*sandbox.environment_paths(data=False), *view.readonly])
    assert result["train"] > 30_000_000 and result["folder"] == real
    assert "test_batch" not in result["listing"] and not result["test"]
    assert not result["archive"], "the archive (the test set inside) is not shown"
