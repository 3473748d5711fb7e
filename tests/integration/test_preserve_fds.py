"""--preserve-fds: fds 3.. of the runtime's caller are passed on to the container's
process; no other fd of the runtime reaches it (the leaked-fd class of CVE-2024-21626)."""
from __future__ import annotations

import os
import select
import sys

from . import ROOT_ONLY

pytestmark = ROOT_ONLY

# Runs the runtime with fd 3 = argv[1], keeping argv[1] open as well (an fd the runtime
# inherits but must not pass on).
WITH_FD3 = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.execv(sys.argv[2], sys.argv[2:])"


def run_with_fd3(runtime, b, cid, *extra):
    r, w = os.pipe()
    try:
        proc = runtime.run("run", *extra, "--bundle", b, cid, pass_fds=(w,),
                           prefix=[sys.executable, "-c", WITH_FD3, str(w)])
    finally:
        os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], 10)  # every writer has exited by now
        data = os.read(r, 65536) if ready else b"<nothing: the pipe is still open somewhere>"
    finally:
        os.close(r)
    return proc, data.decode()


def test_preserved_fd_reaches_container(runtime, bundle):
    b = bundle(["sh", "-c", "echo via-fd3 >&3; ls /proc/self/fd"])
    proc, piped = run_with_fd3(runtime, b, runtime.new_id(), "--preserve-fds", "1")
    assert proc.returncode == 0, proc.stderr
    assert piped == "via-fd3\n"
    fds = set(proc.stdout.split())
    # 0-3, and the one ls opened to read the directory.
    assert {"0", "1", "2", "3"} <= fds
    assert len(fds - {"0", "1", "2", "3"}) <= 1, f"fds leaked into the container: {sorted(fds)}"


def test_fd3_not_passed_without_preserve_fds(runtime, bundle):
    b = bundle(["sh", "-c", "echo via-fd3 >&3; ls /proc/self/fd"])
    proc, piped = run_with_fd3(runtime, b, runtime.new_id())
    assert piped == ""
    assert "Bad file descriptor" in proc.stderr
    fds = set(proc.stdout.split())
    # 0-2 and ls's own directory fd (which is then 3).
    assert {"0", "1", "2"} <= fds
    assert len(fds - {"0", "1", "2"}) <= 1, f"fds leaked into the container: {sorted(fds)}"


def test_only_stdio_without_preserve_fds(runtime, bundle):
    # Every fd of the container's first process (sh, PID 1), listed by a child of it.
    b = bundle(["sh", "-c", "ls /proc/1/fd; true"])
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == ["0", "1", "2"]


def test_preserve_fds_with_create_and_start(runtime, bundle):
    b = bundle(["sh", "-c", "echo through-create >&3"])
    cid = runtime.new_id()
    r, w = os.pipe()
    try:
        runtime.run("create", "--preserve-fds", "1", "--bundle", b, cid, pass_fds=(w,),
                    prefix=[sys.executable, "-c", WITH_FD3, str(w)], check=True)
    finally:
        os.close(w)
    runtime.start(cid)
    runtime.wait_status(cid, "stopped")
    ready, _, _ = select.select([r], [], [], 10)
    data = os.read(r, 65536) if ready else b""
    os.close(r)
    assert data == b"through-create\n"
