"""The OCI namespace types: their clone flags, /proc/PID/ns names, and join order; and
pointing the runtime's own namespace for children at a container's PID namespace for one
fork, which spares a process (see pyruntime.oci.bootstrap and pyruntime.oci.enter), the
child non-dumpable from its first instant when it joins an existing one."""
from __future__ import annotations

import os

from pyruntime.linux import syscalls as sc

# OCI type -> (name under /proc/PID/ns, clone flag). The order is the join order: user
# first (joining it grants the capabilities needed to join the others), mount last but
# one (after it, host paths are gone), then time.
NAMESPACES: dict[str, tuple[str, int]] = {
    "user": ("user", sc.CLONE_NEWUSER),
    "ipc": ("ipc", sc.CLONE_NEWIPC),
    "uts": ("uts", sc.CLONE_NEWUTS),
    "network": ("net", sc.CLONE_NEWNET),
    "pid": ("pid", sc.CLONE_NEWPID),
    "cgroup": ("cgroup", sc.CLONE_NEWCGROUP),
    "mount": ("mnt", sc.CLONE_NEWNS),
    "time": ("time", sc.CLONE_NEWTIME),
}


def by_type(namespaces: list[dict]) -> dict[str, str | None]:
    """OCI type -> path to join, or None for a new namespace."""
    return {ns["type"]: ns.get("path") for ns in namespaces}


def same_namespace(path_a: str, path_b: str) -> bool:
    try:
        a = os.stat(path_a)
        b = os.stat(path_b)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def fork_in_pid_namespace(fd: int | None, fork, what: str = "pid namespace") -> int:
    """Call `fork` (which forks and returns the child's pid) with our namespace for
    children pointed at the PID namespace `fd` (None: a new one, whose PID 1 the child
    is), and point it back at our own right after.

    Joining one, we are non-dumpable for the fork: the flag is the mm's, which the child
    inherits, so it is non-dumpable from its first instant. It would otherwise be
    visible to the namespace's processes, dumpable and holding the host's root and
    mounts, until it turned the flag off itself (the CVE-2019-5736 class; runc turns it
    off before joining). Ours is turned back on right after the fork: the runtime may be
    a long-lived program using the Python API. (python-prctl reads 2, SUID_DUMP_ROOT, as
    on: such a program would come back at 1.) A new namespace holds nobody but the
    child, which turns the flag off itself."""
    own = os.open("/proc/self/ns/pid_for_children", os.O_RDONLY | os.O_CLOEXEC)
    was_dumpable = False
    try:
        if fd is None:
            sc.unshare(sc.CLONE_NEWPID)
        else:
            was_dumpable = _set_dumpable(False)
            sc.setns(fd, sc.CLONE_NEWPID, what)
        try:
            return fork()
        finally:
            sc.setns(own, sc.CLONE_NEWPID, "the runtime's own pid namespace")
    finally:
        os.close(own)
        if was_dumpable:
            _set_dumpable(True)


def _set_dumpable(dumpable: bool) -> bool:
    """Set our dumpable flag; whether it was on."""
    # Imported here, as enter and bootstrap do: python-prctl is no import of this module.
    from pyruntime.linux import process_control

    was = process_control.get_dumpable()
    if was != dumpable:
        process_control.set_dumpable(dumpable)
    return was
