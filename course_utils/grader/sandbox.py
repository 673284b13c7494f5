"""Contain one kernel process: no network, a read-only file system, resource limits.

Called in a freshly forked, single-threaded kernel process before any student
code runs (see :mod:`course_utils.grader.zygote`). Each measure is applied when
the platform allows it and reported otherwise, never fatal:

* **network**: a new network namespace holding only a loopback device, so
  student code can reach nothing outside (``localhost`` still works, e.g. for
  ``torch.distributed`` on one machine). The kernel talks to the grader over
  Unix-domain sockets, which a network namespace does not cut.
* **file system**: a new mount namespace where every mount is remounted
  read-only except the submission's working directory, a private temporary
  directory, the socket directory and the course cache (which notebooks fill on
  first use); files the tests read (the assignment's own files copied next to
  the notebook) are bind-mounted read-only in place. Student code therefore
  cannot touch the gradebook, the course's source files, other submissions or
  the installed packages.
* **resources**: ``RLIMIT_DATA`` caps the memory a kernel can allocate (an
  allocation past it raises ``MemoryError`` in the kernel instead of taking the
  machine down), ``RLIMIT_FSIZE`` caps written file sizes, and core dumps are off.

Namespaces need root or unprivileged user namespaces (most Linux systems);
elsewhere (macOS, locked-down containers) the kernel runs with resource limits
only, and :func:`probe` says so.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["SandboxSpec", "apply", "probe"]

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_NOATIME = 1024
_MS_NODIRATIME = 2048
_MS_RELATIME = 1 << 21
_FLAG_OPTIONS = {
    "nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC,
    "noatime": _MS_NOATIME, "nodiratime": _MS_NODIRATIME, "relatime": _MS_RELATIME,
}
# Pseudo file systems stay as they are: the kernel cannot be remounted over them
# from a user namespace, and /dev/shm must stay writable for torch's shared memory.
_SKIP_FSTYPES = {"proc", "sysfs", "cgroup", "cgroup2", "devtmpfs", "devpts", "mqueue",
                 "debugfs", "tracefs", "securityfs", "pstore", "bpf", "fusectl", "configfs",
                 "hugetlbfs", "autofs", "binfmt_misc", "rpc_pipefs", "nsfs"}
_SIOCSIFFLAGS = 0x8914
_IFF_UP, _IFF_LOOPBACK, _IFF_RUNNING = 0x1, 0x8, 0x40


@dataclass
class SandboxSpec:
    """What to contain; built by the grader, applied in the kernel process."""

    network: bool = True
    filesystem: bool = True
    memory_mb: int = 4096
    max_file_mb: int = 2048
    writable: list[str] = field(default_factory=list)
    readonly_files: list[str] = field(default_factory=list)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _enter_namespaces(flags: int) -> None:
    libc = _libc()
    if libc.unshare(flags) == 0:
        return
    if ctypes.get_errno() not in (errno.EPERM, errno.EINVAL):
        _check(-1, "unshare")
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(flags | _CLONE_NEWUSER), "unshare (user namespace)")
    with open("/proc/self/setgroups", "w") as fh:
        fh.write("deny")
    with open("/proc/self/uid_map", "w") as fh:
        fh.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as fh:
        fh.write(f"{gid} {gid} 1")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sH", b"lo", _IFF_UP | _IFF_LOOPBACK | _IFF_RUNNING)
        fcntl.ioctl(sock, _SIOCSIFFLAGS, ifreq)


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, per-mount options, fs type) of every mount, parents first."""
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            parts = line.split()
            sep = parts.index("-")
            point = parts[4].encode().decode("unicode_escape")
            found.append((point, parts[5], parts[sep + 1]))
    return found


def _options_for(path: str) -> str:
    """The per-mount options of the mount holding ``path`` (the longest prefix)."""
    best, options = "", "rw"
    for point, opts, _ in _mounts():
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, options = point, opts
    return options


def _bind(path: str, readonly: bool) -> None:
    libc = _libc()
    _check(libc.mount(path.encode(), path.encode(), None, _MS_BIND, None), f"bind {path}")
    if readonly:
        _remount_readonly(path, _options_for(path))


def _remount_readonly(point: str, options: str) -> None:
    flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY
    for opt in options.split(","):
        flags |= _FLAG_OPTIONS.get(opt, 0)
    _check(_libc().mount(None, point.encode(), None, flags, None), f"remount {point} read-only")


def _read_only_filesystem(writable: Iterable[str], readonly_files: Iterable[str]) -> None:
    libc = _libc()
    _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make mounts private")
    keep = [os.path.realpath(p) for p in writable if os.path.exists(p)]
    for path in keep:
        _bind(path, readonly=False)
    for point, options, fstype in _mounts():
        if fstype in _SKIP_FSTYPES or point in keep or point.startswith("/dev/shm"):
            continue
        if "ro" in options.split(","):
            continue
        try:
            _remount_readonly(point, options)
        except OSError:
            if point == "/":
                raise
    for path in readonly_files:
        if os.path.isfile(path):
            _bind(os.path.realpath(path), readonly=True)


def _limit(which: int, megabytes: int) -> None:
    value = megabytes * 1024 * 1024
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, hard if hard != resource.RLIM_INFINITY else value))


def apply(spec: SandboxSpec) -> list[str]:
    """Contain the calling (single-threaded, freshly forked) process.

    Returns what could not be applied, one short line each (empty: all of it).
    """
    missing = []
    flags = (_CLONE_NEWNET if spec.network else 0) | (_CLONE_NEWNS if spec.filesystem else 0)
    if flags:
        try:
            _enter_namespaces(flags)
        except OSError as err:
            missing.append(f"namespaces unavailable ({err.strerror}): network and file system open")
            flags = 0
    if flags & _CLONE_NEWNET:
        try:
            _loopback_up()
        except OSError as err:
            missing.append(f"loopback down ({err.strerror})")
    if flags & _CLONE_NEWNS:
        try:
            _read_only_filesystem(spec.writable, spec.readonly_files)
        except OSError as err:
            missing.append(f"file system left writable ({err})")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if spec.memory_mb > 0:
        _limit(resource.RLIMIT_DATA, spec.memory_mb)
    if spec.max_file_mb > 0:
        _limit(resource.RLIMIT_FSIZE, spec.max_file_mb)
    return missing


def probe(spec: SandboxSpec | None = None) -> list[str]:
    """Try :func:`apply` in a throwaway child; return what would be missing."""
    spec = spec or SandboxSpec(writable=[], memory_mb=0, max_file_mb=0)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        try:
            missing = apply(spec)
            network = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            network.settimeout(0.2)
            if spec.network and not missing and network.connect_ex(("192.0.2.1", 9)) != errno.ENETUNREACH:
                missing.append("network still reachable")
            os.write(write_fd, "\n".join(missing).encode())
        except BaseException as err:  # noqa: BLE001 - report anything to the parent
            os.write(write_fd, f"sandbox probe failed: {err}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        text = fh.read().decode()
    os.waitpid(pid, 0)
    return [line for line in text.splitlines() if line]
