"""OCI hooks: all six kinds run, in order, each with the container's state on stdin; a
failing hook makes `create` fail and leaves no container behind."""
from __future__ import annotations

import json
import os

import pytest

from . import IS_RUNC, ROOT_ONLY, container_processes
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
