"""A process that enters a container's PID namespace is non-dumpable from its first
instant (the CVE-2019-5736 class): the runtime turns its own dumpable flag off just
before it forks into the namespace (the child inherits the mm's flag) and back on after.
Turned off by the child after the fork, it would be visible there, dumpable and holding
the host's root and mounts, for a moment: long enough for a container process with
CAP_SYS_PTRACE to attach.

The Python path is watched in-process (os.fork wrapped so that the child reports its flag
before it does anything else), for `exec` and for a `create` that joins another
container's PID namespace; the C launcher's `exec` under strace (the order of the
runtime's prctl, setns and clone calls).
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess

import pytest

from . import REPO_ROOT, ROOT_ONLY, pyruntime_only

pytestmark = [*ROOT_ONLY, pyruntime_only]

PR_GET_DUMPABLE = 3
_libc = ctypes.CDLL(None, use_errno=True)


def _dumpable() -> int:
    return _libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)


# --------------------------------------------------------------------------- Python, in-process
@pytest.fixture
def api(work_dir, leak_check):
    from pyruntime import Runtime

    runtime = Runtime(os.path.join(work_dir, "root"))
    yield runtime
    # Those joining another's PID namespace first: its init's end kills them anyway.
    for state in sorted(runtime.list(), key=lambda s: "joined" not in s["id"]):
        runtime.delete(state["id"], force=True)


@pytest.fixture
def new_id(leak_check):
    """`new_id(hint)`: a container ID of this session's, which the leak check knows."""
    def make(hint: str) -> str:
        container_id = f"{leak_check.id_prefix}-{hint}"
        leak_check.add_container_id(container_id)
        return container_id

    return make


@pytest.fixture
def forks(monkeypatch):
    """Every child os.fork makes in this process that is born in another PID namespace
    reports, first thing, (its PID namespace, its dumpable flag); `forks()` returns the
    reports since its last call. (No thread may run here: the runtime would start fresh
    interpreters instead of forking; the `runtime` fixture's reaper is one, so it is not
    used.)"""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    ours = os.readlink("/proc/self/ns/pid")
    real_fork = os.fork

    def watched_fork() -> int:
        pid = real_fork()
        if pid == 0:
            namespace = os.readlink("/proc/self/ns/pid")
            if namespace != ours:
                os.write(write_fd, f"{namespace} {_dumpable()}\n".encode())
        return pid

    monkeypatch.setattr(os, "fork", watched_fork)

    def collected() -> list[tuple[str, int]]:
        reports = []
        try:
            while chunk := os.read(read_fd, 4096):
                for line in chunk.decode().splitlines():
                    namespace, dumpable = line.split()
                    reports.append((namespace, int(dumpable)))
        except BlockingIOError:
            pass
        return reports

    yield collected
    os.close(read_fd)
    os.close(write_fd)


def _pid_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def _run(api, container_id: str, bundle_path: str) -> int:
    pid = api.create(container_id, bundle_path)
    api.start(container_id)
    return pid


def test_exec_forks_its_process_non_dumpable(api, bundle, forks, new_id):
    cid = new_id("dumpable-exec")
    init_pid = _run(api, cid, bundle(["sleep", "3600"]))
    # Init, alone in its new PID namespace, turns the flag off itself.
    assert [namespace for namespace, _ in forks()] == [_pid_namespace(init_pid)]
    result = api.exec(cid, {"args": ["true"], "cwd": "/", "env": ["PATH=/bin"]})
    assert result.code == 0
    assert forks() == [(_pid_namespace(init_pid), 0)]
    assert _dumpable() == 1  # and the runtime, a program using the API, is again


def test_create_in_another_containers_pid_namespace_forks_init_non_dumpable(
        api, bundle, forks, new_id):
    first = _run(api, new_id("dumpable-first"), bundle(["sleep", "3600"]))
    namespace = _pid_namespace(first)
    forks()
    joined = bundle(["sleep", "3600"],
                    namespace_paths={"pid": f"/proc/{first}/ns/pid"})
    pid = api.create(new_id("dumpable-joined"), joined)
    assert _pid_namespace(pid) == namespace
    assert forks() == [(namespace, 0)]
    assert _dumpable() == 1


# --------------------------------------------------------------------------- C, under strace
@pytest.fixture(scope="module")
def native_only(tmp_path_factory) -> str:
    """The launcher with no Python to hand over to: an exec that succeeds was done in C
    (as in test_native_commands.py)."""
    missing = "/nonexistent/pyruntime-test/python"
    binary = tmp_path_factory.mktemp("native-only") / "pyruntime"
    subprocess.run([str(REPO_ROOT / "native" / "launcher" / "build.sh"), str(binary),
                    missing, "/nonexistent/pyruntime-test/script"], check=True)
    return str(binary)


_CALL = re.compile(r"^(\d+) +(\w+)\((.*)")


def _dumpable_at_fork_into_pid_namespace(trace: str) -> tuple[int | None, int | None]:
    """From `strace -f` output: the dumpable flag of the process that forked after
    pointing its namespace for children elsewhere (setns CLONE_NEWPID), at that fork,
    and the flag it set last after it (None: unknown)."""
    flag: dict[str, int] = {}
    joined: set[str] = set()
    at_fork = None
    for line in trace.splitlines():
        match = _CALL.match(line)
        if not match:
            continue
        pid, call, args = match.groups()
        if call == "prctl" and args.startswith("PR_SET_DUMPABLE"):
            flag[pid] = 0 if re.match(r"PR_SET_DUMPABLE, (SUID_DUMP_DISABLE|0)\b", args) else 1
        elif call == "setns" and "CLONE_NEWPID" in args and at_fork is None:
            joined.add(pid)
        elif call in ("clone", "clone3", "fork", "vfork") and pid in joined:
            at_fork = (pid, flag.get(pid, 1))  # a process starts dumpable
            joined.discard(pid)
    if at_fork is None:
        return None, None
    return at_fork[1], flag.get(at_fork[0], 1)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_exec_in_c_forks_its_process_non_dumpable(runtime, bundle, native_only, work_dir):
    cid = runtime.new_id()
    runtime.run_detached(bundle(["sleep", "3600"]), cid)
    trace_file = os.path.join(work_dir, "trace")
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-o", trace_file,
         "-e", "trace=prctl,setns,clone,clone3,fork,vfork",
         native_only, "--root", runtime.root, "exec", cid, "true"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    with open(trace_file) as f:
        trace = f.read()
    assert _dumpable_at_fork_into_pid_namespace(trace) == (0, 1), trace
