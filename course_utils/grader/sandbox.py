"""Lock a freshly forked kernel process down before any student code runs.

:func:`lock` is called in a single-threaded process forked from the zygote (so
torch is already imported) and returns only in the innermost of three processes::

    monitor (the zygote's child: the grader's user) ─ waits, cleans up, reports the exit
      └ keeper (a new user namespace, unprivileged uid)  ─ waits
          └ kernel: PID 1 of new PID, network, mount, IPC and UTS namespaces

The kernel process then

* runs as an **unprivileged user**: uid 1000 inside its user namespace, mapped
  to an unused uid outside when the grader runs as root (else to the grader's
  own uid, the only mapping an ordinary user may write), no supplementary
  groups, no capabilities (bounding and ambient sets cleared), ``no_new_privs``;
* is **PID 1 of its own PID namespace**: it sees and can signal only its own
  processes, and when it exits the Linux kernel kills every process it started
  (daemons included);
* has a **network namespace** with only a loopback device (``localhost`` works,
  e.g. for ``torch.distributed``), which it cannot leave;
* sees a **private file system**: a new root holding read-only binds of the
  system and Python environment (``/usr``, ``/etc``, the interpreter and
  virtual environment, the ``course_utils`` package) and of the data it needs,
  its own copy of the submission on a size-capped ``tmpfs``, a small private
  ``/tmp`` and ``/dev/shm``, a few device nodes and its own ``/proc``. The
  course's source, release, gradebook, other submissions, other workers'
  folders and the grader are not in it at all; the old root is detached;
* is capped: memory across all its processes and their number (a cgroup, when
  the grader may create one), memory per process (``RLIMIT_DATA``), processes
  per user, file size, open files, no core dumps.

Each layer is applied when the host allows it; :func:`probe` says which are
off (no user namespaces, not Linux, no cgroups), so the grader never reports a
protection it did not apply.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import resource
import signal
import socket
import stat
import struct
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["LAYERS", "SandboxSpec", "environment_paths", "lock", "probe", "remove_cgroups"]

# The protections, in the words the summary and the CSV use.
LAYERS = {
    "user": "unprivileged user, no capabilities",
    "pid": "own PID namespace",
    "network": "no network",
    "filesystem": "private file system",
    "cgroup": "memory and process caps across all its processes",
}

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
_CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MNT_DETACH = 2
_PR_SET_PDEATHSIG, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT = 1, 24, 38, 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_O_PATH = getattr(os, "O_PATH", 0o10000000)
_SIOCSIFFLAGS = 0x8914
_IFF_UP, _IFF_LOOPBACK, _IFF_RUNNING = 0x1, 0x8, 0x40
_INNER_UID = 1000
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_SYSTEM = ("/usr", "/etc", "/opt")
_CGROUP_V1 = "/sys/fs/cgroup"


@dataclass
class SandboxSpec:
    """What to contain; built by the grader, applied in the kernel process."""

    network: bool = True  # cut the network
    filesystem: bool = True  # private root and namespaces (user, PID, mount, IPC, UTS)
    memory_mb: int = 4096  # per process (RLIMIT_DATA); the cgroup allows 1.5x across processes
    max_file_mb: int = 2048
    disk_mb: int = 512  # the submission's writable copy
    tmp_mb: int = 256  # /tmp and /dev/shm, each
    max_processes: int = 256
    cwd: str = ""  # the folder whose files become the kernel's writable working copy
    readonly: list[str] = field(default_factory=list)  # host paths visible read-only
    writable: list[str] = field(default_factory=list)  # host folders visible read-write (sockets)
    copy_files: list[str] = field(default_factory=list)  # host files copied in (connection file)
    max_copy_mb: int = 256  # the submission folder and copied files, together
    cgroup: str = ""  # name of the cgroup to create (empty: none)
    cgroup_mb: int = 0  # memory across all its processes (0: 1.5 x memory_mb)


class SandboxError(OSError):
    """A layer could not be applied."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SandboxError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    _check(_libc().mount(enc(source), target.encode(), enc(fstype), flags, enc(data)), f"mount {target}")


def environment_paths(data: bool = True) -> list[str]:
    """Host paths a kernel needs read-only: the interpreter, the environment, the package, data.

    ``data=False`` leaves out the data folders and the course cache (the grader shows a
    kernel a view of them instead: :mod:`course_utils.grader.dataview`).
    """
    import course_utils

    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(course_utils.__file__).parent)]
    if data:
        if os.environ.get("COURSE_DATA"):
            paths += os.environ["COURSE_DATA"].split(os.pathsep)
        paths.append(os.environ.get("COURSE_CACHE") or str(Path.home() / ".cache" / "pytorch-course"))
    paths.append(os.environ.get("TORCH_HOME") or str(Path.home() / ".cache" / "torch"))
    found = []
    for path in paths:
        real = os.path.realpath(path)
        if os.path.exists(real) and real not in found:
            found.append(real)
    return found


# ---------------------------------------------------------------------------------------------
# The monitor (the grader's user): read what goes in, map the user, create the cgroup


def _read_tree(folder: str, limit: int) -> list[tuple[str, int, bytes]]:
    """(relative path, mode, content) of the regular files under ``folder`` (symlinks skipped)."""
    found, total = [], 0
    if not folder or not os.path.isdir(folder):
        return found
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in files:
            path = os.path.join(root, name)
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                continue
            total += info.st_size
            if total > limit:
                raise SandboxError(errno.EFBIG, f"the submission folder holds more than {limit >> 20} MiB")
            with open(path, "rb") as fh:
                found.append((os.path.relpath(path, folder), info.st_mode & 0o777, fh.read()))
    return found


def _write_map(pid: int, uid: int, gid: int) -> None:
    with open(f"/proc/{pid}/uid_map", "w") as fh:
        fh.write(f"{_INNER_UID} {uid} 1")
    with open(f"/proc/{pid}/gid_map", "w") as fh:
        fh.write(f"{_INNER_UID} {gid} 1")


def _cgroup_create(name: str, spec: SandboxSpec) -> list[str]:
    """Per-kernel memory and pids cgroups (v1); the folders made (empty: none could be)."""
    made = []
    total = str((spec.cgroup_mb or int(spec.memory_mb * 1.5)) << 20)
    settings = {
        "memory": {"memory.limit_in_bytes": total, "memory.memsw.limit_in_bytes": total},
        "pids": {"pids.max": str(spec.max_processes)},
    }
    for controller, values in settings.items():
        base = os.path.join(_CGROUP_V1, controller)
        if not os.access(base, os.W_OK) or spec.memory_mb <= 0 and controller == "memory":
            continue
        folder = os.path.join(base, name)
        try:
            os.makedirs(folder, exist_ok=True)
            for key, value in values.items():
                path = os.path.join(folder, key)
                if os.path.exists(path):
                    with open(path, "w") as fh:
                        fh.write(value)
            made.append(folder)
        except OSError:
            continue
    return made


def _cgroup_join(folders: Iterable[str], pid: int) -> None:
    for folder in folders:
        with open(os.path.join(folder, "cgroup.procs"), "w") as fh:
            fh.write(str(pid))


def _cgroup_remove(folders: Iterable[str]) -> bool:
    """Remove the cgroups; True if the memory cgroup saw an out-of-memory kill."""
    oom = False
    for folder in folders:
        with contextlib.suppress(OSError):
            with open(os.path.join(folder, "memory.oom_control")) as fh:
                oom = oom or any(line.split() == ["oom_kill", line.split()[-1]] and line.split()[-1] != "0"
                                 for line in fh)
        for _ in range(50):
            try:
                os.rmdir(folder)
                break
            except OSError:
                import time

                time.sleep(0.02)
    return oom


def remove_cgroups(name: str) -> None:
    """Remove a kernel's cgroups (and those whose name starts with ``name-``), once empty.

    Called by the grader after the kernel is gone, because the monitor that made them is
    killed with the kernel's process group on a forced shutdown.
    """
    if not name:
        return
    folders = []
    for controller in ("memory", "pids"):
        base = os.path.join(_CGROUP_V1, controller)
        with contextlib.suppress(OSError):
            folders += [os.path.join(base, d) for d in os.listdir(base) if d == name or d.startswith(name + "-")]
    _cgroup_remove(folders)


def _exit_like(status: int) -> None:
    """Exit the way the waited-for child did (same signal or exit code)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _wait(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0


# ---------------------------------------------------------------------------------------------
# The kernel process: namespaces, new root, limits, capabilities


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sH", b"lo", _IFF_UP | _IFF_LOOPBACK | _IFF_RUNNING)
        fcntl.ioctl(sock, _SIOCSIFFLAGS, ifreq)


def _mkdirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


_FLAG_OPTIONS = {"nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC,
                 "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21}


def _mount_flags(path: str) -> int:
    """The per-mount flags of the mount holding ``path``: a read-only remount must keep them."""
    best, options = "", ""
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            parts = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, options = point, parts[5]
    flags = 0
    for opt in options.split(","):
        flags |= _FLAG_OPTIONS.get(opt, 0)
    return flags


def _bind_fd(fd: int, target: str, readonly: bool, is_dir: bool, flags: int) -> None:
    if is_dir:
        _mkdirs(target)
    else:
        _mkdirs(os.path.dirname(target))
        if not os.path.exists(target):
            open(target, "w").close()  # noqa: SIM115 - an empty mount point
    _mount(f"/proc/self/fd/{fd}", target, None, _MS_BIND | _MS_REC)
    if readonly:
        _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | flags)


def _new_root(spec: SandboxSpec, fds: dict[str, tuple[int, bool, bool, int]],
              tree: list[tuple[str, int, bytes]], files: list[tuple[str, bytes]]) -> None:
    root = "/tmp"  # mounted over in this mount namespace only; sources are held as fds
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount("none", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=16m,mode=755")
    dev = root + "/dev"
    _mkdirs(dev)
    for name in _DEVICES + tuple(n for n in os.listdir("/dev") if n.startswith("nvidia")):
        source = f"/dev/{name}"
        if os.path.exists(source) and not os.path.isdir(source):
            open(dev + "/" + name, "w").close()  # noqa: SIM115 - an empty mount point
            _mount(source, dev + "/" + name, None, _MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    # The private /tmp first: the grader's folders shown inside may lie under the host's /tmp.
    for point, size in ((dev + "/shm", spec.tmp_mb), (root + "/tmp", spec.tmp_mb)):
        _mkdirs(point)
        _mount("none", point, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size}m,mode=1777")
    for path, (fd, readonly, is_dir, flags) in fds.items():
        _bind_fd(fd, root + path, readonly, is_dir, flags)
    for link in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(link):
            os.symlink(os.readlink(link), root + link)
    work = root + spec.cwd
    _mkdirs(work)
    _mount("none", work, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={spec.disk_mb}m,mode=755")
    for relative, mode, content in tree:
        path = os.path.join(work, relative)
        _mkdirs(os.path.dirname(path))
        with open(path, "wb") as fh:
            fh.write(content)
        os.chmod(path, mode | 0o600)
    for path, content in files:
        _mkdirs(os.path.dirname(root + path))
        with open(root + path, "wb") as fh:
            fh.write(content)
    _mkdirs(root + "/proc")
    # Before the pivot: a user namespace may mount a proc only while a full one is in sight.
    _mount("proc", root + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    _mkdirs(root + "/.old")
    os.chdir(root)
    number = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203}.get(os.uname().machine, 155)
    _check(_libc().syscall(number, b".", b".old"), "pivot_root")
    os.chdir("/")
    _check(_libc().umount2(b"/.old", _MNT_DETACH), "detach the old root")
    os.rmdir("/.old")
    _mount(None, "/", None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, "size=16m,mode=755")


def _drop_privileges() -> None:
    libc = _libc()
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text()) if os.path.exists(
        "/proc/sys/kernel/cap_last_cap") else 40
    for cap in range(last + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), "drop capabilities")


def _limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _limits(spec: SandboxSpec) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if spec.memory_mb > 0:
        _limit(resource.RLIMIT_DATA, spec.memory_mb << 20)
    if spec.max_file_mb > 0:
        _limit(resource.RLIMIT_FSIZE, spec.max_file_mb << 20)
    if spec.max_processes > 0:
        _limit(resource.RLIMIT_NPROC, spec.max_processes)
    _limit(resource.RLIMIT_NOFILE, 4096)


def _open_sources(spec: SandboxSpec) -> dict[str, tuple[int, bool, bool, int]]:
    """path -> (O_PATH fd, read-only, is a folder, mount flags) of what the new root shows."""
    fds = {}
    for path in [*spec.readonly, *_SYSTEM]:
        real = os.path.realpath(path)
        if os.path.exists(real) and real not in fds:
            fds[real] = (os.open(real, _O_PATH), True, os.path.isdir(real), _mount_flags(real))
    for path in spec.writable:
        real = os.path.realpath(path)
        fds[real] = (os.open(real, _O_PATH), False, True, 0)
    return fds


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)


def lock(spec: SandboxSpec) -> list[str]:
    """Lock the calling process down as described in the module docstring.

    Returns in the kernel process only, with the layers that could not be
    applied (empty: all of them). The monitor and keeper processes wait for the
    kernel, remove its cgroup, and exit the way it did.
    """
    missing: list[str] = []
    if not sys.platform.startswith("linux") or not spec.filesystem:
        _limits(spec)
        return [LAYERS[k] for k in ("user", "pid", "filesystem", "cgroup")] + (
            [LAYERS["network"]] if spec.network else [])
    limit = spec.max_copy_mb << 20
    tree = _read_tree(spec.cwd, limit)
    files = []
    for path in spec.copy_files:
        with open(path, "rb") as fh:
            files.append((os.path.realpath(path), fh.read()))
    for path in spec.writable:
        os.chmod(path, 0o777)  # the kernel creates its sockets there as another user
    cgroups = _cgroup_create(spec.cgroup, spec) if spec.cgroup and os.geteuid() == 0 else []
    if not any(c.startswith(os.path.join(_CGROUP_V1, "memory")) for c in cgroups):
        missing.append(LAYERS["cgroup"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the kernel
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    keeper = os.fork()
    if keeper:  # the monitor
        os.close(ready_w)
        os.close(go_r)
        ok = os.read(ready_r, 1) == b"1"
        mapped = False
        if ok and os.geteuid() == 0:
            with contextlib.suppress(OSError):
                outer = 100_000 + os.getpid() % 100_000
                _write_map(keeper, outer, outer)
                mapped = True
        with contextlib.suppress(OSError):
            _cgroup_join(cgroups, keeper)
        os.write(go_w, b"2" if mapped else b"1")
        os.close(go_w)
        status = _wait(keeper)
        oom = _cgroup_remove(cgroups)
        if oom:
            with contextlib.suppress(OSError):
                os.write(2, b"sandbox: out of memory (the kernel's memory cgroup)\n")
        _exit_like(status)
    # the keeper
    os.close(ready_r)
    os.close(go_w)
    _die_with_parent()
    try:
        _check(_libc().unshare(_CLONE_NEWUSER), "user namespace")
        os.write(ready_w, b"1")
    except OSError as err:
        os.write(ready_w, b"0")
        os.read(go_r, 1)
        _limits(spec)
        return [f"{LAYERS[k]} (no user namespaces: {err.strerror})" for k in ("user", "pid", "filesystem")] + \
            missing + ([LAYERS["network"]] if spec.network else [])
    answer = os.read(go_r, 1)
    flags = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWUTS | (_CLONE_NEWNET if spec.network else 0)
    _check(_libc().unshare(flags), "namespaces")
    # Still the grader's user on the host side: open what the new root shows, in this mount
    # namespace (a bind's source must be in it), before becoming the unprivileged user.
    fds = _open_sources(spec)
    if answer == b"2":  # mapped by a privileged monitor: become the mapped, unprivileged user
        os.setgroups([])
        os.setresgid(_INNER_UID, _INNER_UID, _INNER_UID)
        os.setresuid(_INNER_UID, _INNER_UID, _INNER_UID)
        _die_with_parent()  # a change of credentials clears the parent-death signal: set it again
    else:  # map our own uid, the one mapping an ordinary user may write
        with open("/proc/self/setgroups", "w") as fh:
            fh.write("deny")
        _write_map(os.getpid(), os.geteuid(), os.getegid())
        missing.append(f"{LAYERS['user']}: outside its namespace the kernel has the grader's own uid "
                       "(the grader is not root)")
    kernel = os.fork()
    if kernel:  # the keeper: pass interrupts on (the kernel has a session of its own)
        signal.signal(signal.SIGINT, lambda *_: os.kill(kernel, signal.SIGINT))
        status = _wait(kernel)
        _exit_like(status)
    _die_with_parent()
    os.setsid()  # kill(0, ...) from student code reaches only its own processes
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _new_root(spec, fds, tree, files)
    for fd, *_ in fds.values():
        os.close(fd)
    if spec.network:
        try:
            _loopback_up()
        except OSError as err:
            missing.append(f"loopback down ({err.strerror})")
    with contextlib.suppress(OSError):
        socket.sethostname("localhost")  # resolves to loopback everywhere (torch.distributed needs it)
    _limits(spec)
    _drop_privileges()
    os.chdir(spec.cwd)
    return missing


def probe(spec: SandboxSpec | None = None) -> list[str]:
    """Lock a throwaway child down and test it; return the layers that are off (empty: all on)."""
    spec = spec or SandboxSpec()
    import tempfile

    work = tempfile.mkdtemp(prefix="course-probe-")
    secret = os.path.join(work, "secret.txt")
    Path(secret).write_text("x")
    probe_spec = SandboxSpec(**{**asdict(spec), "cwd": os.path.join(work, "cwd"), "readonly": environment_paths(),
                                "writable": [],
                                "copy_files": [], "cgroup": spec.cgroup or f"course-probe-{os.getpid()}"})
    os.makedirs(probe_spec.cwd)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        found: list[str] = []
        try:
            found = lock(probe_spec)
            if not found and os.path.exists(secret):
                found.append(LAYERS["filesystem"])
            if spec.network and LAYERS["network"] not in found:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.settimeout(0.2)
                    if sock.connect_ex(("192.0.2.1", 9)) != errno.ENETUNREACH:
                        found.append(LAYERS["network"])
            if os.getpid() != 1 and not any(LAYERS["pid"] in f for f in found):
                found.append(LAYERS["pid"])
        except BaseException as err:  # noqa: BLE001 - report anything to the parent
            found.append(f"sandbox probe failed: {err}")
        os.write(write_fd, json.dumps(found).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        text = fh.read().decode()
    os.waitpid(pid, 0)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    try:
        return list(json.loads(text))
    except ValueError:
        return [f"sandbox probe failed: {text[:200]}"]
