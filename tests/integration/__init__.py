"""Root integration tests of the OCI runtime CLI, written against runc's command line so
that they can be run against runc itself (`PYRUNTIME_TEST_RUNTIME=/usr/sbin/runc`).

This module holds what test modules import: which runtime is under test, the markers
every module sets, and small helpers to look at host processes and read a pty.
Fixtures (`runtime`, `bundle`, `busybox_rootfs`, ...) are in conftest.py.
"""
from __future__ import annotations

import errno
import os
import select
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_BINARY = os.environ.get("PYRUNTIME_TEST_RUNTIME") or str(REPO_ROOT / ".venv/bin/pyruntime")
#: Under runc, tests of pyruntime-only contracts (exit codes 126/127/255, our messages) skip.
IS_RUNC = os.path.basename(RUNTIME_BINARY) == "runc"
IS_ROOT = os.geteuid() == 0

#: `pytestmark = ROOT_ONLY` in every module of this package.
ROOT_ONLY = [
    pytest.mark.root,
    pytest.mark.skipif(not IS_ROOT, reason="needs root: real namespaces, mounts and cgroups"),
]

pyruntime_only = pytest.mark.skipif(
    IS_RUNC, reason="pyruntime's contract; runc behaves differently here")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAMESPACE_FILES = ("ipc", "mnt", "net", "pid", "uts", "cgroup")


# --------------------------------------------------------------------------- host processes
def ns_link(pid: int | str, kind: str) -> str:
    """`readlink /proc/PID/ns/KIND`, e.g. 'net:[4026531840]'."""
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return False
    return raw[raw.rindex(")") + 2] not in "ZX"


def pids_in_namespace(kind: str, link: str) -> set[int]:
    """Live processes of the host whose /proc/PID/ns/KIND is `link`."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/{kind}") == link and is_alive(int(name)):
                found.add(int(name))
        except OSError:
            pass
    return found


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2:].split()[1])


def container_processes() -> set[int]:
    """Live descendants of pytest (a subreaper: containers it started stay below it)
    in a PID or mount namespace other than pytest's: the processes of its containers."""
    own = {k: ns_link("self", k) for k in ("pid", "mnt")}
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            parent = _ppid(int(name))
            if parent is not None:
                children.setdefault(parent, []).append(int(name))
    found, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), ()):
            todo.append(child)
            try:
                if is_alive(child) and any(ns_link(child, k) != v for k, v in own.items()):
                    found.add(child)
            except OSError:
                pass
    return found


def wait_for(predicate, timeout: float = 30, interval: float = 0.05, message: str = ""):
    """Poll `predicate` until it returns something true; fail after `timeout` (only there
    to avoid a hang, never a measured duration)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


def tcp_listening(pid: int, port: int) -> bool:
    """Whether the network namespace of `pid` has a TCP socket listening on `port`."""
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                        return True
        except OSError:
            pass
    return False


# --------------------------------------------------------------------------- ptys
def read_pty(master: int, until: str | None = None, timeout: float = 30) -> str:
    """Read a pty master until `until` shows up in the output, or until the other side
    is closed (EIO), or `timeout` seconds pass (a guard against hangs)."""
    data = b""
    deadline = time.monotonic() + timeout
    while until is None or until.encode() not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([master], [], [], min(left, 1.0))
        if not ready:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError as e:
            if e.errno == errno.EIO:
                break
            raise
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")
