"""Freezing and thawing a container's cgroup (`pause`/`resume`), and killing all of it.

cgroup v2: `cgroup.freeze` (Linux 5.2) is written, then `cgroup.events` is watched until
it says "frozen 1": freezing is asynchronous (a task in an uninterruptible sleep freezes
when it wakes). The v2 freezer is part of the cgroup core, not a controller, so it also
works in the controller-less v2 hierarchy of a hybrid host.

cgroup v1: the freezer controller's `freezer.state` goes THAWED -> FREEZING -> FROZEN. A
task stuck in vfork can hold a cgroup in FREEZING forever; like runc, the freeze is
retried (thaw, freeze again) while polling, and given up after a timeout, thawing again
so that a failed `pause` does not leave a half-frozen container.
"""
from __future__ import annotations

import os
import time

from pyruntime.cgroups import cgroupfs
from pyruntime.cgroups.errors import CgroupError, FreezeError
from pyruntime.cgroups.placement import CgroupPlacement

DEFAULT_TIMEOUT = 10.0


def _v2_dir(placement: CgroupPlacement) -> str | None:
    path = placement.paths.get("")
    if path and os.path.exists(os.path.join(path, "cgroup.freeze")):
        return path
    return None


def _v1_dir(placement: CgroupPlacement) -> str | None:
    for key, path in placement.paths.items():
        if "freezer" in key.split(","):
            return path
    return None


def _backend(placement: CgroupPlacement) -> tuple[str, str]:
    """("v1", dir) or ("v2", dir). A hybrid host's v1 freezer hierarchy wins (runc uses
    it there); the unified directory's cgroup.freeze is the fallback."""
    v1 = _v1_dir(placement)
    if v1 and set(placement.paths) != {""}:
        if os.path.exists(os.path.join(v1, "freezer.state")):
            return "v1", v1
    v2 = _v2_dir(placement)
    if v2:
        return "v2", v2
    if v1:
        raise FreezeError(f"cannot freeze: {v1}/freezer.state does not exist (is the "
                          f"container's cgroup created?)")
    unified = placement.paths.get("")
    if unified:
        raise FreezeError(f"cannot freeze: {unified}/cgroup.freeze does not exist (the "
                          f"cgroup v2 freezer needs Linux 5.2, and a non-root cgroup)")
    raise FreezeError("cannot freeze: no freezer cgroup (neither a v1 freezer hierarchy "
                      "nor cgroup v2) for this container")


def freeze(placement: CgroupPlacement, timeout: float = DEFAULT_TIMEOUT) -> None:
    kind, directory = _backend(placement)
    if kind == "v2":
        _freeze_v2(directory, timeout)
    else:
        _freeze_v1(directory, timeout)


def thaw(placement: CgroupPlacement, timeout: float = DEFAULT_TIMEOUT) -> None:
    kind, directory = _backend(placement)
    if kind == "v2":
        cgroupfs.write(directory, "cgroup.freeze", "0")
        if not _wait_events(directory, "frozen", 0, timeout):
            raise FreezeError(f"{directory} did not thaw within {timeout}s")
    else:
        cgroupfs.write(directory, "freezer.state", "THAWED")
        deadline = time.monotonic() + timeout
        while _v1_state(directory) != "THAWED":
            if time.monotonic() > deadline:
                raise FreezeError(f"{directory} did not thaw within {timeout}s")
            time.sleep(0.001)


def is_frozen(placement: CgroupPlacement) -> bool:
    """True only once the freeze has completed (not while it is still in progress)."""
    kind, directory = _backend(placement)
    if kind == "v2":
        if cgroupfs.read(directory, "cgroup.freeze").strip() != "1":
            return False
        return cgroupfs.parse_flat_keyed(cgroupfs.read(directory, "cgroup.events")).get(
            "frozen") == 1
    return _v1_state(directory) == "FROZEN"


def _freeze_v2(directory: str, timeout: float) -> None:
    cgroupfs.write(directory, "cgroup.freeze", "1")
    if not _wait_events(directory, "frozen", 1, timeout):
        try:
            cgroupfs.write(directory, "cgroup.freeze", "0")
        except CgroupError:
            pass
        raise FreezeError(f"{directory} did not freeze within {timeout}s (a process may be "
                          f"stuck in an uninterruptible sleep); it was thawed again")


def _wait_events(directory: str, key: str, wanted: int, timeout: float) -> bool:
    """Wait until cgroup.events shows `key wanted`. The kernel notifies a change of the
    file as POLLPRI; a short poll cap keeps this correct should a notification be missed."""
    import select  # freezing is rare; `create` imports this module and does not need it

    path = os.path.join(directory, "cgroup.events")
    deadline = time.monotonic() + timeout
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise FreezeError(f"opening {path}: {error.strerror}") from None
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI | select.POLLERR)
        while True:
            text = os.pread(fd, 4096, 0).decode()
            if cgroupfs.parse_flat_keyed(text).get(key) == wanted:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            poller.poll(min(left, 0.05) * 1000)
    finally:
        os.close(fd)


def _v1_state(directory: str) -> str:
    return cgroupfs.read(directory, "freezer.state").strip()


def _freeze_v1(directory: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    attempt = 0
    cgroupfs.write(directory, "freezer.state", "FROZEN")
    while True:
        state = _v1_state(directory)
        if state == "FROZEN":
            return
        if time.monotonic() > deadline:
            try:
                cgroupfs.write(directory, "freezer.state", "THAWED")
            except CgroupError:
                pass
            raise FreezeError(f"{directory} is still {state} after {timeout}s (a process may "
                              f"be stuck in vfork or an uninterruptible sleep); it was thawed "
                              f"again")
        attempt += 1
        if attempt % 50 == 0:
            # runc's workaround for a freeze stuck in FREEZING: thaw and freeze again.
            cgroupfs.write(directory, "freezer.state", "THAWED")
            cgroupfs.write(directory, "freezer.state", "FROZEN")
        time.sleep(0.001 if attempt < 20 else 0.01)


# --------------------------------------------------------------------------- kill
def kill_all(placement: CgroupPlacement, signal_number: int) -> None:
    """Send `signal_number` to every process of the container.

    SIGKILL with cgroup v2's `cgroup.kill` (Linux 5.14) is one atomic write, which no
    fork can escape. Otherwise the cgroup is frozen while its pids are signalled (so a
    process cannot fork a child that misses the signal), then thawed - unless it was
    already frozen by a `pause`, which is kept."""
    unified = placement.paths.get("")
    if signal_number == 9 and unified and \
            os.path.exists(os.path.join(unified, "cgroup.kill")):
        cgroupfs.write(unified, "cgroup.kill", "1")
        if set(placement.paths) != {""}:
            # Hybrid host: the v1 hierarchies hold the same processes; should one have
            # been placed in them only, it still gets the signal.
            placement.signal_all(signal_number)
        return
    frozen_here = False
    try:
        if not is_frozen(placement):
            freeze(placement)
            frozen_here = True
    except CgroupError:
        pass  # no freezer: signal without it (what runc does without one too)
    try:
        placement.signal_all(signal_number)
    finally:
        if frozen_here:
            try:
                thaw(placement)
            except CgroupError:
                pass
