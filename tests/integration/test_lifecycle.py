"""The container lifecycle through the CLI: state (created -> running -> stopped), list,
ps, start, delete (refused while running unless --force), duplicate IDs, concurrent
creates, and failed creates that leave nothing behind."""
from __future__ import annotations

import json
import os
import threading

import pytest

from . import (IS_RUNC, ROOT_ONLY, RUNTIME_BINARY, container_processes, is_alive,
               pyruntime_only, wait_for)
from .bundle import hook

pytestmark = ROOT_ONLY


def state_dir(runtime, cid: str) -> str:
    return os.path.join(runtime.root, cid)


# --------------------------------------------------------------------------- state
def test_state_through_the_lifecycle(runtime, bundle):
    b = bundle(["sleep", "3600"], annotations={"org.example.key": "value", "other": "x"})
    cid = runtime.new_id()
    runtime.create(b, cid)
    state = runtime.state(cid)
    assert state["id"] == cid
    assert state["status"] == "created"
    assert state["ociVersion"]
    assert state["bundle"] == b and os.path.isabs(state["bundle"])
    assert state["annotations"] == {"org.example.key": "value", "other": "x"}
    pid = state["pid"]
    assert isinstance(pid, int) and pid > 0 and is_alive(pid)

    runtime.start(cid)
    state = runtime.state(cid)
    assert state["status"] == "running"
    assert state["pid"] == pid
    with open(f"/proc/{pid}/cmdline") as f:
        assert f.read().split("\0")[:2] == ["sleep", "3600"]

    runtime.kill(cid, "KILL")
    runtime.wait_status(cid, "stopped")
    state = runtime.state(cid)
    assert state["id"] == cid and state["bundle"] == b

    runtime.delete(cid)
    assert runtime.status(cid) is None


def test_relative_bundle_path_is_recorded_absolute(runtime, bundle):
    b = bundle(["sleep", "3600"])
    cid = runtime.new_id()
    parent, name = os.path.split(b)
    proc = runtime.run("create", "--bundle", name, cid, cwd=parent)
    assert proc.returncode == 0, proc.stderr
    assert runtime.state(cid)["bundle"] == b


def test_state_of_unknown_container_fails(runtime):
    proc = runtime.run("state", runtime.new_id("nope"))
    assert proc.returncode != 0
    assert proc.stderr


def test_container_that_exits_becomes_stopped(runtime, bundle):
    b = bundle(["true"])
    cid = runtime.new_id()
    runtime.create(b, cid)
    runtime.start(cid)
    runtime.wait_status(cid, "stopped")


# --------------------------------------------------------------------------- list and ps
def test_list(runtime, bundle):
    b = bundle(["sleep", "3600"])
    created, running = runtime.new_id("c"), runtime.new_id("r")
    runtime.create(b, created)
    runtime.run_detached(b, running)
    assert sorted(runtime.list_ids()) == sorted([created, running])

    proc = runtime.run("list", "--format", "json", check=True)
    entries = {e["id"]: e for e in json.loads(proc.stdout)}
    assert set(entries) == {created, running}
    assert entries[created]["status"] == "created"
    assert entries[running]["status"] == "running"
    for cid, entry in entries.items():
        assert entry["pid"] == runtime.pid(cid)
        assert entry["bundle"] == b

    table = runtime.run("list", check=True).stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows[running][2] == "running" and rows[created][2] == "created"


def test_list_empty(runtime):
    assert runtime.list_ids() == []
    proc = runtime.run("list", "--format", "json", check=True)
    assert json.loads(proc.stdout or "null") in (None, [])


def test_ps(runtime, bundle):
    b = bundle(["sh", "-c", "sleep 3600 & wait"])
    cid = runtime.new_id()
    pid = runtime.run_detached(b, cid)

    def two():
        pids = json.loads(runtime.run("ps", "--format", "json", cid, check=True).stdout)
        return pids if len(pids) == 2 else None

    pids = wait_for(two, message="init and its sleep in ps")
    assert pid in pids
    assert all(isinstance(p, int) for p in pids)

    table = runtime.run("ps", cid, check=True).stdout.splitlines()
    header = table[0].split()
    assert "PID" in header
    col = header.index("PID")
    assert {int(line.split()[col]) for line in table[1:]} == set(pids)
    assert any("sleep" in line for line in table[1:])


# --------------------------------------------------------------------------- start and delete
def test_start_running_container_fails(runtime, bundle):
    b = bundle(["sleep", "3600"])
    cid = runtime.new_id()
    pid = runtime.run_detached(b, cid)
    proc = runtime.start(cid, check=False)
    assert proc.returncode != 0
    assert proc.stderr
    assert runtime.state(cid)["status"] == "running" and runtime.pid(cid) == pid


def test_start_stopped_container_fails(runtime, bundle):
    b = bundle(["true"])
    cid = runtime.new_id()
    runtime.create(b, cid)
    runtime.start(cid)
    runtime.wait_status(cid, "stopped")
    assert runtime.start(cid, check=False).returncode != 0


def test_delete_running_refused_without_force(runtime, bundle):
    b = bundle(["sleep", "3600"])
    cid = runtime.new_id()
    pid = runtime.run_detached(b, cid)
    proc = runtime.delete(cid, check=False)
    assert proc.returncode != 0
    assert proc.stderr
    assert runtime.list_ids() == [cid]
    assert runtime.status(cid) == "running" and is_alive(pid)

    runtime.delete(cid, force=True)
    assert runtime.list_ids() == []
    assert not os.path.exists(state_dir(runtime, cid))
    wait_for(lambda: not is_alive(pid), message=f"init {pid} to be gone")


def test_delete_created_container(runtime, bundle):
    # A created container's init waits for `start`; delete must not start it.
    b = bundle(["sleep", "3600"])
    cid = runtime.new_id()
    runtime.create(b, cid)
    pid = runtime.pid(cid)
    proc = runtime.delete(cid, force=True)
    assert proc.returncode == 0, proc.stderr
    assert runtime.list_ids() == []
    wait_for(lambda: not is_alive(pid), message=f"init {pid} to be gone")


def test_delete_stopped_cleans_state(runtime, bundle):
    b = bundle(["true"])
    cid = runtime.new_id()
    runtime.create(b, cid)
    assert os.path.isdir(state_dir(runtime, cid))
    runtime.start(cid)
    runtime.wait_status(cid, "stopped")
    runtime.delete(cid)
    assert not os.path.exists(state_dir(runtime, cid))
    assert runtime.list_ids() == []
    assert runtime.status(cid) is None


def test_delete_unknown_container(runtime):
    cid = runtime.new_id("nope")
    assert runtime.delete(cid, check=False).returncode != 0
    # --force on something that does not exist is not an error (runc, and idempotent delete).
    assert runtime.delete(cid, force=True, check=False).returncode == 0


def test_duplicate_create_fails(runtime, bundle):
    b = bundle(["sleep", "3600"])
    cid = runtime.new_id()
    runtime.create(b, cid)
    pid = runtime.pid(cid)
    proc = runtime.create(b, cid, check=False)
    assert proc.returncode != 0
    assert cid in proc.stderr or "exist" in proc.stderr.lower()
    assert runtime.state(cid)["status"] == "created" and runtime.pid(cid) == pid


@pytest.mark.parametrize("bad_id", ["..", "a/b", "has space", ""])
def test_invalid_id_refused(runtime, bundle, bad_id):
    b = bundle(["true"])
    proc = runtime.run("create", "--bundle", b, bad_id)
    assert proc.returncode != 0
    assert runtime.list_ids() == []


# --------------------------------------------------------------------------- concurrency
def _init_as_seen(root: str, container_id: str) -> str:
    """What the state file says of a container's init, and what /proc says of that pid
    (a rare failure of the test below left one container not `created`)."""
    try:
        with open(os.path.join(root, container_id, "state.json")) as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        return f"{container_id}: no state ({error})"
    try:
        with open(f"/proc/{data.get('pid')}/stat") as f:
            fields = f.read().rpartition(") ")[2].split()
        seen = f"state {fields[0]}, start time {fields[19]}"
    except OSError:
        seen = "no such process"
    return (f"{container_id}: init pid {data.get('pid')} recorded with start time "
            f"{data.get('pid_start')}; now {seen}")


def test_parallel_creates(runtime, bundle):
    b = bundle(["sleep", "3600"])
    ids = [runtime.new_id(f"p{i}") for i in range(20)]
    results: dict[str, object] = {}

    def create(cid):
        results[cid] = runtime.run("create", "--bundle", b, cid, timeout=120)

    threads = [threading.Thread(target=create, args=(cid,)) for cid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = {cid: r.stderr for cid, r in results.items() if r.returncode != 0}
    assert not failed
    assert sorted(runtime.list_ids()) == sorted(ids)
    states = {cid: runtime.run("state", cid) for cid in ids}
    statuses = {cid: json.loads(p.stdout)["status"] if p.returncode == 0 else p.stderr
                for cid, p in states.items()}
    assert statuses == {cid: "created" for cid in ids}, [
        _init_as_seen(runtime.root, cid) for cid, status in statuses.items()
        if status != "created"]

    deleted: dict[str, object] = {}

    def delete(cid):
        deleted[cid] = runtime.run("delete", "--force", cid, timeout=120)

    threads = [threading.Thread(target=delete, args=(cid,)) for cid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {cid: r.stderr for cid, r in deleted.items() if r.returncode != 0} == {}
    assert runtime.list_ids() == []


@pytest.mark.skipif(IS_RUNC, reason="runc 1.1 does not lock an ID during create: of two "
                    "racing creates both may fail, or the loser removes the winner's state "
                    "and leaves its init behind")
def test_parallel_creates_of_the_same_id(runtime, bundle):
    b = bundle(["sleep", "3600"])
    cid = runtime.new_id()
    barrier = threading.Barrier(2)
    results = []

    def create():
        barrier.wait()
        results.append(runtime.run("create", "--bundle", b, cid, timeout=120))

    threads = [threading.Thread(target=create) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.returncode for r in results)
    assert codes[0] == 0 and codes[1] != 0, [(r.returncode, r.stderr) for r in results]
    loser = next(r for r in results if r.returncode != 0)
    assert cid in loser.stderr or "exist" in loser.stderr.lower(), loser.stderr
    assert runtime.list_ids() == [cid]
    assert runtime.status(cid) == "created"
    runtime.reap()
    # Only the winner's init is left.
    assert len(container_processes()) == 1


# --------------------------------------------------------------------------- failed creates
BAD_CONFIGS = {
    "missing-binary": dict(args=["/bin/does-not-exist"]),
    "bad-mount-type": dict(args=["true"], mounts=[{"destination": "/tmp", "type": "nosuchfs",
                                                   "source": "none"}]),
    "failing-hook": dict(args=["true"], hooks={"createRuntime": [
        {"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}]}),
    "bad-cwd": dict(args=["true"], cwd="relative/dir"),
    "missing-bind-source": dict(args=["true"], mounts=[{"destination": "/tmp", "type": "bind",
                                                        "source": "/nonexistent/dir",
                                                        "options": ["rbind"]}]),
    # Opened by init itself, and (PID) by the runtime for the fork of init.
    "missing-network-namespace": dict(args=["true"],
                                      namespace_paths={"network": "/nonexistent/ns/net"}),
    "missing-pid-namespace": dict(args=["true"], namespace_paths={"pid": "/nonexistent/ns/pid"}),
    "pid-namespace-path-not-a-namespace": dict(args=["true"],
                                               namespace_paths={"pid": "/proc/self/status"}),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_failed_create_leaves_nothing(runtime, bundle, case):
    changes = dict(BAD_CONFIGS[case])
    b = bundle(changes.pop("args"), **changes)
    cid = runtime.new_id()
    before = container_processes()
    proc = runtime.run("create", "--bundle", b, cid)
    assert proc.returncode != 0
    assert proc.stderr
    if case == "missing-binary" and not runtime.is_runc:
        assert proc.returncode == 127
    assert runtime.list_ids() == []
    assert runtime.status(cid) is None
    assert not os.path.exists(state_dir(runtime, cid))
    runtime.reap()
    assert container_processes() - before == set()


# --------------------------------------------------------------------------- create in progress
@pyruntime_only
def test_state_says_creating_until_create_is_done(runtime, bundle, work_dir):
    """A createRuntime hook asks for the state: init's pid is known by then, but the
    container is `creating`, not `created`, until `create` has finished."""
    out = os.path.join(work_dir, "state-during-create")
    cid = runtime.new_id()
    query = f"{RUNTIME_BINARY} --root {runtime.root} state {cid} > {out}"
    b = bundle(["sleep", "3600"], hooks={"createRuntime": [hook(query)]})
    runtime.create(b, cid)
    with open(out) as f:
        during = json.load(f)
    assert during["status"] == "creating"
    assert during["pid"] == runtime.pid(cid)
    assert runtime.status(cid) == "created"
    runtime.delete(cid, force=True)


@pyruntime_only
@pytest.mark.parametrize("command", [["delete"], ["delete", "--force"], ["start"]])
def test_commands_on_a_container_wait_for_its_create(runtime, bundle, work_dir, command):
    """`create` holds the container's lock: a delete or start sent from its
    createRuntime hook waits for it (and is stopped by `timeout` here), instead of
    acting on a half-made container."""
    out = os.path.join(work_dir, "exit-code")
    cid = runtime.new_id()
    other = " ".join([RUNTIME_BINARY, "--root", runtime.root, *command, cid])
    b = bundle(["sleep", "3600"],
               hooks={"createRuntime": [hook(f"timeout 1 {other}; echo $? > {out}")]})
    runtime.create(b, cid)
    with open(out) as f:
        assert f.read().strip() == "124"  # timeout's status: it was still waiting
    assert runtime.status(cid) == "created"
    runtime.delete(cid, force=True)
