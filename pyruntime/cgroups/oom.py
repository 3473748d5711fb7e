"""OOM kills of a container: how many there were, and waiting for the next one (runc's
`events` "oom" notifications).

cgroup v2: `memory.events` has `oom_kill` (processes the OOM killer killed in this
cgroup and below); `oom` counts OOM situations, which need not kill anything, so it is not
what "the container was OOM-killed" means. A change of the file is notified as POLLPRI.

cgroup v1: `memory.oom_control` has an `oom_kill` line since Linux 4.13; on older kernels
`memory.failcnt` (times the limit was hit) is the closest there is, and over-counts. The
v1 notification is an eventfd registered in `cgroup.event_control` for memory.oom_control,
which fires on every OOM of the cgroup (and when the cgroup is removed).
"""
from __future__ import annotations

import os
import time

from pyruntime.cgroups import cgroupfs
from pyruntime.cgroups.errors import CgroupError
from pyruntime.cgroups.placement import CgroupPlacement, hierarchy_dir


def _is_v2(placement: CgroupPlacement) -> bool:
    return set(placement.paths) == {""}


def _memory_dir(placement: CgroupPlacement) -> str | None:
    if _is_v2(placement):
        return placement.paths[""]
    return hierarchy_dir(placement.paths, "memory")


def oom_kill_count(placement: CgroupPlacement) -> int:
    """Processes of the container killed by the OOM killer so far (0 when the host has
    no memory controller for it, or the cgroup is gone)."""
    directory = _memory_dir(placement)
    if directory is None or not os.path.isdir(directory):
        return 0
    if _is_v2(placement):
        return cgroupfs.read_flat_keyed(directory, "memory.events").get("oom_kill", 0)
    control = cgroupfs.read_flat_keyed(directory, "memory.oom_control")
    if "oom_kill" in control:
        return control["oom_kill"]
    return cgroupfs.read_value_optional(directory, "memory.failcnt")


def was_oom_killed(placement: CgroupPlacement) -> bool:
    """Whether the OOM killer killed a process of the container: the cgroup's own count
    while it exists, else what its owner can still tell (systemd removes a scope's cgroup
    as soon as it is empty: see SystemdScope.oom_killed_when_gone)."""
    if placement.exists():
        try:
            if oom_kill_count(placement) > 0:
                return True
        except (OSError, CgroupError):
            pass  # removed while we read: the owner may know
        if placement.exists():
            return False
    return placement.oom_killed_when_gone()


def oom_events(placement: CgroupPlacement) -> dict[str, int]:
    """The v2 `memory.events` counters (low, high, max, oom, oom_kill, ...), or on v1
    {"oom_kill": n, "under_oom": 0/1}; {} without a memory controller."""
    directory = _memory_dir(placement)
    if directory is None or not os.path.isdir(directory):
        return {}
    if _is_v2(placement):
        return cgroupfs.read_flat_keyed(directory, "memory.events")
    control = cgroupfs.read_flat_keyed(directory, "memory.oom_control")
    return {"oom_kill": control.get("oom_kill", oom_kill_count(placement)),
            "under_oom": control.get("under_oom", 0)}


class OomWatcher:
    """Waits for OOM kills in one container: `wait(timeout)` returns how many happened
    since the watcher was made (or since the last `wait` that returned them).

    `fileno()` is the descriptor to watch in an event loop: on v1 an eventfd (readable);
    on v2 the open memory.events (POLLPRI: use `select.poll`, not a read-readiness loop).
    """

    def __init__(self, placement: CgroupPlacement) -> None:
        import select  # only for watching: not on the paths that merely count kills

        directory = _memory_dir(placement)
        if directory is None or not os.path.isdir(directory):
            raise CgroupError("cannot watch for OOM kills: the container has no memory cgroup")
        self.placement = placement
        self.directory = directory
        self.v2 = _is_v2(placement)
        self.last = oom_kill_count(placement)
        self._file_fd = -1
        self._event_fd = -1
        if self.v2:
            self._file_fd = os.open(os.path.join(directory, "memory.events"),
                                    os.O_RDONLY | os.O_CLOEXEC)
            self._mask = select.POLLPRI | select.POLLERR
        else:
            self._file_fd = os.open(os.path.join(directory, "memory.oom_control"),
                                    os.O_RDONLY | os.O_CLOEXEC)
            self._event_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            try:
                cgroupfs.write(directory, "cgroup.event_control",
                               f"{self._event_fd} {self._file_fd}")
            except CgroupError:
                self.close()
                raise
            self._mask = select.POLLIN

    def fileno(self) -> int:
        return self._event_fd if self._event_fd >= 0 else self._file_fd

    def wait(self, timeout: float | None = None) -> int:
        """Block until an OOM kill (returns the number of new kills, >= 1) or until
        `timeout` seconds pass or the cgroup goes away (returns 0)."""
        import select

        deadline = None if timeout is None else time.monotonic() + timeout
        poller = select.poll()
        poller.register(self.fileno(), self._mask)
        while True:
            count = self._new_kills()
            if count:
                return count
            if not os.path.isdir(self.directory):
                return 0
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return 0
            # Capped, so that a kill whose notification raced our read is still seen.
            poller.poll(1000 * (0.5 if left is None else min(left, 0.5)))
            if self._event_fd >= 0:
                try:
                    os.eventfd_read(self._event_fd)
                except BlockingIOError:
                    pass

    def _new_kills(self) -> int:
        try:
            if self.v2:
                # Reading through the polled fd also re-arms its POLLPRI notification.
                text = os.pread(self._file_fd, 4096, 0).decode()
                current = cgroupfs.parse_flat_keyed(text).get("oom_kill", 0)
            else:
                current = oom_kill_count(self.placement)
        except (CgroupError, OSError):
            return 0
        new = current - self.last
        self.last = current
        return max(new, 0)

    def close(self) -> None:
        for name in ("_event_fd", "_file_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    def __enter__(self) -> "OomWatcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
