"""`kill`: signals by name or number (default SIGTERM), and `--all` reaching every process
of a container that shares the host's PID namespace (where killing the init alone leaves
its children running)."""
from __future__ import annotations

import pytest

from . import ROOT_ONLY, ns_link, pids_in_namespace, wait_for

pytestmark = ROOT_ONLY

TERMINABLE = ["sh", "-c", 'trap "exit 0" TERM; sleep 3600 & wait']


@pytest.mark.parametrize("signal_args", [(), ("9",), ("SIGKILL",), ("KILL",), ("TERM",),
                                         ("15",), ("SIGTERM",)],
                         ids=["default", "9", "SIGKILL", "KILL", "TERM", "15", "SIGTERM"])
def test_kill_signal_forms(runtime, bundle, signal_args):
    # The init of a PID namespace only gets signals it handles: it traps TERM.
    b = bundle(TERMINABLE)
    cid = runtime.new_id()
    runtime.run_detached(b, cid)
    proc = runtime.kill(cid, *signal_args, check=False)
    assert proc.returncode == 0, proc.stderr
    runtime.wait_status(cid, "stopped")


def test_kill_default_is_sigterm(runtime, bundle, work_dir):
    b = bundle(["sh", "-c", 'trap "echo got-term; exit 0" TERM; sleep 3600 & wait'])
    cid = runtime.new_id()
    out = f"{work_dir}/out"
    runtime.create(b, cid, stdout_path=out)
    runtime.start(cid)
    runtime.kill(cid)
    runtime.wait_status(cid, "stopped")
    with open(out) as f:
        assert f.read() == "got-term\n"


def test_kill_unknown_signal_fails(runtime, bundle):
    b = bundle(["sleep", "3600"])
    cid = runtime.new_id()
    runtime.run_detached(b, cid)
    proc = runtime.kill(cid, "NOSUCHSIGNAL", check=False)
    assert proc.returncode != 0
    assert runtime.status(cid) == "running"


def test_kill_stopped_container_fails(runtime, bundle):
    b = bundle(["true"])
    cid = runtime.new_id()
    runtime.create(b, cid)
    runtime.start(cid)
    runtime.wait_status(cid, "stopped")
    assert runtime.kill(cid, "KILL", check=False).returncode != 0


def test_kill_created_container(runtime, bundle):
    b = bundle(["sleep", "3600"])
    cid = runtime.new_id()
    runtime.create(b, cid)
    runtime.kill(cid, "KILL")
    runtime.wait_status(cid, "stopped")


def test_kill_all(runtime, bundle):
    # No PID namespace of its own: killing the init would orphan the sleeps; --all must
    # reach them too. The container's processes are those in its mount namespace.
    b = bundle(["sh", "-c", "sleep 1000 & sleep 1000 & wait"], drop_namespaces=["pid"])
    cid = runtime.new_id()
    pid = runtime.run_detached(b, cid)
    mnt = ns_link(pid, "mnt")
    def three_processes():
        found = pids_in_namespace("mnt", mnt)
        return found if len(found) == 3 else None

    members = wait_for(three_processes, message="the init and its two sleeps")
    assert pid in members
    proc = runtime.run("kill", "--all", cid, "KILL")
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: not pids_in_namespace("mnt", mnt),
             message=f"every process of {cid} to be gone")
    runtime.wait_status(cid, "stopped")
