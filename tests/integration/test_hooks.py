"""OCI hooks: all six kinds run, in order, each with the container's state on stdin; a
failing hook makes `create` fail and leaves no container behind."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from . import (IS_RUNC, ROOT_ONLY, RUNTIME_BINARY, container_processes, ns_link,
               pyruntime_only)
from .bundle import bind_mount, hook, tmpfs_mount

pytestmark = ROOT_ONLY

ORDER = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop"]


def recording_hooks(log_dir: str) -> dict[str, list[dict]]:
    """Every hook kind saves its stdin to LOG_DIR/KIND.json and appends KIND to order.log.
    startContainer runs inside the container: LOG_DIR is bind-mounted at the same path
    and /bin/sh exists in both."""
    return {kind: [hook(f"cat > {log_dir}/{kind}.json; echo {kind} >> {log_dir}/order.log")]
            for kind in ORDER}


def log_dir_of(work_dir: str) -> str:
    path = os.path.join(work_dir, "hooklog")
    os.makedirs(path)
    return path


def read_log(log_dir: str) -> tuple[list[str], dict[str, dict]]:
    with open(os.path.join(log_dir, "order.log")) as f:
        order = f.read().split()
    states = {}
    for kind in order:
        with open(os.path.join(log_dir, f"{kind}.json")) as f:
            states[kind] = json.load(f)
    return order, states


def mounts_for(log_dir: str) -> list[dict]:
    # A tmpfs on /tmp first, so that the bind's mount point is made there, not in the
    # shared rootfs.
    return [tmpfs_mount("/tmp"), bind_mount(log_dir, log_dir, "rbind", "rw")]


def test_hooks_get_the_state_on_stdin(runtime, bundle, work_dir):
    log_dir = log_dir_of(work_dir)
    b = bundle(["true"], hooks=recording_hooks(log_dir), mounts=mounts_for(log_dir))
    cid = runtime.new_id()
    proc = runtime.run("run", "--bundle", b, cid)
    assert proc.returncode == 0, proc.stderr
    order, states = read_log(log_dir)
    assert sorted(order) == sorted(ORDER)
    for kind, state in states.items():
        assert state["id"] == cid, kind
        assert state["bundle"] == b, kind
        assert "ociVersion" in state, kind
        if kind != "poststop":
            assert state["pid"] > 0, kind
    # Hooks run in the runtime's namespaces see the init's host pid (createContainer and
    # startContainer run in the container's, where runc gives the pid as seen there).
    assert states["prestart"]["pid"] == states["createRuntime"]["pid"] == states["poststart"]["pid"]
    for kind in ("prestart", "createRuntime", "createContainer"):
        assert states[kind]["status"] == "creating", (kind, states[kind])
    assert states["startContainer"]["status"] == "created"
    assert states["poststop"]["status"] == "stopped"


def test_create_start_delete_run_their_hooks(runtime, bundle, work_dir):
    log_dir = log_dir_of(work_dir)
    b = bundle(["sleep", "3600"], hooks=recording_hooks(log_dir), mounts=mounts_for(log_dir))
    cid = runtime.new_id()
    runtime.create(b, cid)
    order, states = read_log(log_dir)
    assert order[:3] == ["prestart", "createRuntime", "createContainer"]
    assert "startContainer" not in order and "poststop" not in order
    assert states["prestart"]["pid"] == runtime.pid(cid)
    runtime.start(cid)
    runtime.wait_status(cid, "running")
    order, states = read_log(log_dir)
    assert "startContainer" in order and "poststop" not in order
    runtime.kill(cid, "KILL")
    runtime.wait_status(cid, "stopped")
    runtime.delete(cid)
    order, states = read_log(log_dir)
    assert order[-1] == "poststop"
    assert states["poststop"]["id"] == cid


@pytest.mark.xfail(IS_RUNC, strict=True,
                   reason="runc 1.1 runs poststart hooks at create, before startContainer "
                          "(runc 1.2 runs them after start)")
def test_hooks_run_in_oci_order(runtime, bundle, work_dir):
    log_dir = log_dir_of(work_dir)
    b = bundle(["sleep", "3600"], hooks=recording_hooks(log_dir), mounts=mounts_for(log_dir))
    cid = runtime.new_id()
    runtime.create(b, cid)
    assert read_log(log_dir)[0] == ORDER[:3]
    runtime.start(cid)
    runtime.wait_status(cid, "running")
    # poststart runs before `start` returns.
    order, states = read_log(log_dir)
    assert order == ORDER[:5]
    assert states["poststart"]["status"] == "running"
    runtime.kill(cid, "KILL")
    runtime.wait_status(cid, "stopped")
    runtime.delete(cid)
    assert read_log(log_dir)[0] == ORDER


def test_hook_args_env_and_timeout_fields(runtime, bundle, work_dir):
    log_dir = log_dir_of(work_dir)
    hooks = {"createRuntime": [
        {"path": "/bin/sh", "args": ["sh", "-c", f'echo "$0 $1 $HOOKVAR" > {log_dir}/out', "a1", "a2"],
         "env": ["HOOKVAR=from-env"], "timeout": 30}]}
    b = bundle(["true"], hooks=hooks)
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(log_dir, "out")) as f:
        assert f.read() == "a1 a2 from-env\n"


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_hook_fails_create_and_leaves_nothing(runtime, bundle, kind):
    b = bundle(["sleep", "3600"], hooks={kind: [hook("echo hook-said-no >&2; exit 1")]})
    cid = runtime.new_id()
    before = container_processes()
    proc = runtime.run("create", "--bundle", b, cid)
    assert proc.returncode != 0
    assert runtime.list_ids() == []
    assert runtime.status(cid) is None
    assert not os.path.exists(os.path.join(runtime.root, cid))
    runtime.reap()
    assert container_processes() - before == set()


@pyruntime_only
def test_failing_poststart_and_poststop_hooks_warn_and_the_rest_run(runtime, bundle, work_dir):
    """The spec: a failing poststart or poststop hook is a warning, and the remaining
    hooks and the lifecycle go on as if it had succeeded."""
    log_dir = log_dir_of(work_dir)
    hooks = {kind: [hook("exit 3"), hook(f"echo {kind} >> {log_dir}/ran")]
             for kind in ("poststart", "poststop")}
    b = bundle(["sleep", "3600"], hooks=hooks)
    cid = runtime.new_id()
    runtime.create(b, cid)
    started = runtime.start(cid)
    assert "hooks.poststart[0]: /bin/sh exited with status 3" in started.stderr
    assert runtime.status(cid) == "running"
    runtime.kill(cid, "KILL")
    runtime.wait_status(cid, "stopped")
    deleted = runtime.delete(cid)
    assert "hooks.poststop[0]: /bin/sh exited with status 3" in deleted.stderr
    assert runtime.status(cid) is None
    with open(os.path.join(log_dir, "ran")) as f:
        assert f.read() == "poststart\npoststop\n"


@pyruntime_only
def test_a_failing_start_container_hook_fails_start_with_the_containers_stderr_gone(
        runtime, bundle):
    """Init tells `start` the process will not run before it reports why on the
    container's stderr, which may be a pipe nobody reads any more."""
    b = bundle(["sleep", "3600"], hooks={"startContainer": [hook("exit 4")]})
    cid = runtime.new_id()
    read_end, write_end = os.pipe()
    try:
        created = subprocess.run([RUNTIME_BINARY, "--root", runtime.root, "create",
                                  "--bundle", b, cid], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=write_end, timeout=60)
    finally:
        os.close(write_end)
        os.close(read_end)  # init's stderr is now a pipe without a reader: EPIPE
    assert created.returncode == 0
    started = runtime.start(cid, check=False)
    assert started.returncode == 255, started.stderr
    assert "the process was not started" in started.stderr
    runtime.wait_status(cid, "stopped")
    runtime.delete(cid)


def test_create_container_and_start_container_hooks_run_in_the_container(runtime, bundle,
                                                                         work_dir):
    """createContainer: in the container's namespaces, before pivot_root (the host's /
    still its root); startContainer: in its namespaces, after pivot_root (the rootfs)."""
    log_dir = log_dir_of(work_dir)
    report = ("for ns in mnt pid uts ipc net; do readlink /proc/self/ns/$ns; done; "
              "stat -c %d:%i /")
    hooks = {kind: [hook(f"({report}) > {log_dir}/{kind}")]
             for kind in ("createContainer", "startContainer")}
    b = bundle(["sleep", "3600"], hooks=hooks, mounts=mounts_for(log_dir),
               namespaces=["pid", "mount", "uts", "ipc", "network"])
    cid = runtime.new_id()
    runtime.create(b, cid)
    runtime.start(cid)
    pid = runtime.pid(cid)
    namespaces = [ns_link(pid, kind) for kind in ("mnt", "pid", "uts", "ipc", "net")]
    assert all(link != ns_link("self", link.split(":")[0]) for link in namespaces)

    def root_of(path: str) -> str:
        info = os.stat(path)
        return f"{info.st_dev}:{info.st_ino}"

    with open(os.path.join(b, "config.json")) as f:
        rootfs = os.path.join(b, json.load(f)["root"]["path"])
    for kind, root in (("createContainer", root_of("/")), ("startContainer", root_of(rootfs))):
        with open(os.path.join(log_dir, kind)) as f:
            lines = f.read().split()
        assert lines[:5] == namespaces, kind
        assert lines[5] == root, kind
    runtime.delete(cid, force=True)


@pyruntime_only
def test_a_timed_out_hook_is_killed_with_its_children(runtime, bundle):
    """A hook's `timeout` kills its process group: a shell script's `sleep` does not
    outlive the failed create."""
    marker = "86400.4242"
    b = bundle(["true"], hooks={"createRuntime": [hook(f"sleep {marker}; true", timeout=1)]})
    proc = runtime.run("create", "--bundle", b, runtime.new_id())
    assert proc.returncode == 255
    assert "hooks.createRuntime[0]: /bin/sh timed out after 1s and was killed" in proc.stderr
    left = [pid for pid in _pids() if _cmdline(pid) == ["sleep", marker]]
    for pid in left:
        os.kill(pid, 9)
    assert left == []


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read().split("\0")[:-1]
    except OSError:
        return []
