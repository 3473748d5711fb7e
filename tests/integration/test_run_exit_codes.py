"""`run` in the foreground returns the container's exit status: its exit code, 128+signal
when it was killed, and (pyruntime's contract, runc differs) 126 when args[0] cannot be
executed and 127 when it does not exist, with a message naming the path."""
from __future__ import annotations

import subprocess

import pytest

from . import ROOT_ONLY, container_processes, pyruntime_only, wait_for

pytestmark = ROOT_ONLY


@pytest.mark.parametrize("args, code", [
    (["true"], 0),
    (["false"], 1),
    (["sh", "-c", "exit 3"], 3),
    (["sh", "-c", "exit 255"], 255),
], ids=["true", "false", "exit-3", "exit-255"])
def test_run_exit_code(runtime, bundle, args, code):
    b = bundle(args)
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == code, proc.stderr


@pytest.mark.parametrize("signal, code", [("9", 137), ("TERM", 143), ("SEGV", 139)])
def test_run_killed_by_signal(runtime, bundle, signal, code):
    # The init of a PID namespace cannot be killed from inside it (not even by itself),
    # so this container shares the host's PID namespace.
    b = bundle(["sh", "-c", f"kill -{signal} $$"], drop_namespaces=["pid"])
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == code, proc.stderr


def test_run_killed_from_outside(runtime, bundle):
    b = bundle(["sleep", "3600"])
    cid = runtime.new_id()
    proc = runtime.popen("run", "--bundle", b, cid, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: runtime.status(cid) == "running", message=f"{cid} to run")
        runtime.kill(cid, "KILL")
    finally:
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 137, err


def test_run_removes_the_container(runtime, bundle):
    b = bundle(["true"])
    cid = runtime.new_id()
    assert runtime.run("run", "--bundle", b, cid).returncode == 0
    assert runtime.list_ids() == []
    assert runtime.status(cid) is None


def test_run_stdin_and_stdout(runtime, bundle):
    b = bundle(["sh", "-c", "read x; echo got:$x; echo err >&2"])
    proc = runtime.run("run", "--bundle", b, runtime.new_id(), input="line\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "got:line\n"
    assert "err\n" in proc.stderr


@pyruntime_only
def test_not_executable_is_126(runtime, bundle):
    b = bundle(["/etc/passwd"])
    before = container_processes()
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 126, proc.stderr
    assert "/etc/passwd" in proc.stderr
    assert runtime.list_ids() == []
    assert container_processes() - before == set()


@pyruntime_only
@pytest.mark.parametrize("missing", ["/bin/does-not-exist", "no-such-command"])
def test_missing_binary_is_127(runtime, bundle, missing):
    b = bundle([missing])
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 127, proc.stderr
    assert missing in proc.stderr
    assert runtime.list_ids() == []


@pyruntime_only
def test_runtime_failure_is_255(runtime, work_dir):
    # A bundle without config.json: the runtime itself fails.
    proc = runtime.run("run", "--bundle", work_dir, runtime.new_id())
    assert proc.returncode == 255
    assert "config.json" in proc.stderr


def test_missing_binary_fails(runtime, bundle):
    # What both runc and pyruntime guarantee: not 0, and nothing left.
    b = bundle(["/bin/does-not-exist"])
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode != 0
    assert "does-not-exist" in proc.stderr
    assert runtime.list_ids() == []
