"""Typed wrappers over the syscalls Python's `os` module lacks (from `pyruntime._native`).

Each function raises `LinuxError` naming the call and its argument when the kernel says
no. Constants are the kernel's values (linux/sched.h, linux/mount.h, linux/openat2.h).
"""
from __future__ import annotations

from pyruntime._native import ffi, lib
from pyruntime.linux.errors import LinuxError

# Namespace flags (clone(2)).
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

# openat2(2) resolve flags.
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

CLOSE_RANGE_CLOEXEC = 1 << 2

_NULL = ffi.NULL


def _bytes(value: str | None):
    return _NULL if value is None else value.encode()


def _fail(what: str) -> LinuxError:
    return LinuxError(ffi.errno, what)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    if lib.pyrt_mount(_bytes(source), target.encode(), _bytes(fstype), flags, _bytes(data)) < 0:
        raise _fail(f"mount {source or fstype or ''} on {target}")


def umount(target: str, flags: int = 0) -> None:
    if lib.pyrt_umount2(target.encode(), flags) < 0:
        raise _fail(f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    if lib.pyrt_pivot_root(new_root.encode(), put_old.encode()) < 0:
        raise _fail(f"pivot_root {new_root}")


def unshare(flags: int) -> None:
    if lib.pyrt_unshare(flags) < 0:
        raise _fail(f"unshare 0x{flags:x}")


def setns(fd: int, nstype: int, what: str = "") -> None:
    if lib.pyrt_setns(fd, nstype) < 0:
        raise _fail(f"setns {what or fd}")


RLIM_INFINITY = 0xFFFFFFFFFFFFFFFF


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """setrlimit(2); RLIM_INFINITY for no limit."""
    if lib.pyrt_setrlimit(resource, soft, hard) < 0:
        raise _fail(f"setrlimit {resource} to {soft}/{hard}")


IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13


def ioprio_set(ioprio_class: int, level: int) -> None:
    """ioprio_set(2) of the calling process: `level` within `ioprio_class`."""
    if lib.pyrt_ioprio_set(IOPRIO_WHO_PROCESS, 0, ioprio_class << IOPRIO_CLASS_SHIFT | level) < 0:
        raise _fail(f"ioprio_set class {ioprio_class} level {level}")


def sched_setattr(policy: int, flags: int = 0, nice: int = 0, priority: int = 0,
                  runtime: int = 0, deadline: int = 0, period: int = 0) -> None:
    """sched_setattr(2) of the calling thread: the one that goes on to execve."""
    if lib.pyrt_sched_setattr(0, policy, flags, nice, priority, runtime, deadline, period) < 0:
        raise _fail(f"sched_setattr policy {policy}")


def sethostname(name: str) -> None:
    raw = name.encode()
    if lib.pyrt_sethostname(raw, len(raw)) < 0:
        raise _fail(f"sethostname {name!r}")


def setdomainname(name: str) -> None:
    raw = name.encode()
    if lib.pyrt_setdomainname(raw, len(raw)) < 0:
        raise _fail(f"setdomainname {name!r}")


def personality(persona: int) -> None:
    if lib.pyrt_personality(persona) < 0:
        raise _fail(f"personality 0x{persona:x}")


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    if lib.pyrt_close_range(first, last, flags) < 0:
        raise _fail("close_range")


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    fd = lib.pyrt_openat2(dirfd, path.encode(), flags, mode, resolve)
    if fd < 0:
        raise _fail(f"open {path}")
    return fd


def pty_unlock(master_fd: int) -> None:
    if lib.pyrt_pty_unlock(master_fd) < 0:
        raise _fail("unlock pty")


def pty_peer(master_fd: int, flags: int) -> int:
    """Open the pty's slave through its master (TIOCGPTPEER): no path lookup involved."""
    fd = lib.pyrt_pty_peer(master_fd, flags)
    if fd < 0:
        raise _fail("open pty peer")
    return fd


def set_controlling_tty(fd: int) -> None:
    if lib.pyrt_set_controlling_tty(fd) < 0:
        raise _fail("set controlling tty")


def set_window_size(fd: int, rows: int, cols: int) -> None:
    if lib.pyrt_set_winsize(fd, rows, cols) < 0:
        raise _fail("set window size")


def link_up(ifname: str) -> None:
    """Bring a network interface up (used for a new namespace's loopback) with one ioctl,
    so the `run` path does not load a netlink library."""
    if lib.pyrt_link_up(ifname.encode()) < 0:
        raise _fail(f"bring {ifname} up")


# mount_setattr(2): attributes applied to a whole mount tree at once (AT_RECURSIVE).
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000


def mount_setattr(path: str, attr_set: int, attr_clr: int, recursive: bool = True) -> None:
    flags = AT_RECURSIVE if recursive else 0
    if lib.pyrt_mount_setattr(-100, path.encode(), flags, attr_set, attr_clr, 0) < 0:
        raise _fail(f"mount_setattr {path}")


def join_session_keyring(name: str) -> None:
    """A fresh session keyring, so the container cannot read the host session's keys."""
    if lib.pyrt_join_session_keyring(name.encode()) < 0:
        raise _fail("join session keyring")
