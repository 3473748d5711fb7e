"""Start the kernel's wait for a cgroup attach early, on a thread, while the runtime works.

Every write to a `cgroup.procs` file takes the kernel's cgroup_threadgroup_rwsem for
writing, and the first writer after a quiet spell waits for an RCU grace period (the
rcu_sync in percpu_down_write): 5-15 ms on the development hosts, as long as a third of
runc's whole `run`. For about one more grace period after the last writer, further
writers pass straight through. So `Runtime.create`, `run` and `exec` first start a
thread that moves this process into the cgroup it is already in (a no-op move that
still takes the lock); the grace period then elapses while the runtime reads the bundle,
imports what init needs and makes the container's cgroup, and the real placements of
the container's processes a few milliseconds later find the lock warm.

The write runs on a C thread (`pyrt_background_write` in native/), not a Python one: a
Python thread first waits for the GIL, up to 5 ms while the main thread imports. And a
C thread that holds no Python state, only waits in write(2) and frees with glibc's
fork-safe malloc may be running when the runtime forks stage 1: the child gets none of
it, and the grace period goes on overlapping with stage 1's work until the runtime's
own cgroup.procs write meets it. Anything that goes wrong is ignored: it only costs the
time it would have saved.

The `pyruntime` command that .ci/setup installs (native/launcher/) starts the warm-up
itself, before the interpreter does (10 ms earlier), in a child process that keeps the
lock warm until it is told to stop; its pid comes in PYRUNTIME_WARMUP_PID. `begin` then
has nothing to do in that command, and `end` stops the child once the container's first
process is placed.
"""
from __future__ import annotations

import os
import time

#: When the last warm-up was started: one per grace period is enough (a long-lived
#: embedder creating containers asks many times).
_last_start = -1.0
_WINDOW = 0.02


def _take_launcher_child() -> int:
    """The launcher's warm-up child, taken out of the environment (nothing this process
    starts is to see it)."""
    value = os.environ.pop("PYRUNTIME_WARMUP_PID", "")
    return int(value) if value.isdigit() else 0


_launcher_child = _take_launcher_child()
_stopped = 0  # killed, not yet reaped
_launcher_started = bool(_launcher_child)


def end(wait: bool = True) -> None:
    """Stop the launcher's warm-up child, if there is one: right after a placement went
    through (`wait=False`: the runtime goes on while it dies), and when the command
    finishes, which also reaps it. It dies at the end of a write it is in, which may
    wait for the rest of a grace period when nothing was placed yet. Never left behind:
    it would become the orphan of whoever called the runtime (a shim, conmon, a test
    suite)."""
    global _launcher_child, _stopped
    if _launcher_child:
        try:
            os.kill(_launcher_child, 9)
            _stopped = _launcher_child
        except ProcessLookupError:
            pass  # already reaped, by a wait for any child
        _launcher_child = 0
    if wait and _stopped:
        try:
            os.waitpid(_stopped, 0)
        except ChildProcessError:
            pass  # reaped by a wait for any child
        _stopped = 0


def begin() -> None:
    """Start a warm-up unless one was started in the last few milliseconds, or by the
    launcher for this command."""
    global _last_start
    if _launcher_started:
        return
    now = time.monotonic()
    if now - _last_start < _WINDOW:
        return
    _last_start = now
    try:
        path = _own_procs_file()
    except (OSError, ValueError):
        return
    if path is not None:
        from pyruntime._native import lib

        # "0": the writing process itself, moved into the cgroup it is in.
        lib.pyrt_background_write(path.encode(), b"0")


def _own_procs_file() -> str | None:
    """The cgroup.procs of this process's own cgroup in one mounted hierarchy: any will
    do, they all share the one lock."""
    from pyruntime.cgroups.placement import mounted_hierarchies, own_cgroups

    mounts = mounted_hierarchies()
    for key, path in own_cgroups().items():
        if key in mounts:
            return f"{mounts[key]}{path.rstrip('/')}/cgroup.procs"
    return None
