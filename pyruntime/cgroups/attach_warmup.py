"""Start the kernel's wait for a cgroup attach early, on a thread, while the runtime works.

Every write to a `cgroup.procs` file takes the kernel's cgroup_threadgroup_rwsem for
writing, and the first writer after a quiet spell waits for an RCU grace period (the
rcu_sync in percpu_down_write): 5-15 ms on the development hosts, as long as a third of
runc's whole `run`. For about one more grace period after the last writer, further
writers pass straight through. So `create` starts a thread that moves this process into
the cgroup it is already in (a no-op move that still takes the lock) as soon as it knows
a container will be created; the grace period then elapses while the runtime imports,
reads the bundle and makes the container's cgroup, and the real placements of the
container's processes a few milliseconds later find the lock warm.

The write runs on a C thread (`pyrt_background_write_*` in native/), not a Python one: a
Python thread first waits for the GIL, up to 5 ms while the main thread imports. The
thread is joined before the runtime forks (see `wait`), so the fork never copies a
running thread. Anything that goes wrong is ignored: it only costs the time it would
have saved.
"""
from __future__ import annotations

_started = False


def begin() -> None:
    """Start the warm-up once per process; later calls do nothing."""
    global _started
    if _started:
        return
    _started = True
    try:
        path = _own_procs_file()
    except (OSError, ValueError):
        return
    if path is not None:
        from pyruntime._native import lib

        # "0": the writing process itself, moved into the cgroup it is in.
        lib.pyrt_background_write_start(path.encode(), b"0")


def wait() -> None:
    """Block until the warm-up write has finished (before any fork)."""
    if _started:
        from pyruntime._native import lib

        lib.pyrt_background_write_join()


def _own_procs_file() -> str | None:
    """The cgroup.procs of this process's own cgroup in one mounted hierarchy: any will
    do, they all share the one lock."""
    from pyruntime.cgroups.placement import mounted_hierarchies, own_cgroups

    mounts = mounted_hierarchies()
    for key, path in own_cgroups().items():
        if key in mounts:
            return f"{mounts[key]}{path.rstrip('/')}/cgroup.procs"
    return None
