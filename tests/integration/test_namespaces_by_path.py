"""A mount namespace given by path. Init builds the rootfs inside it, as runc does: so it
must be one made for the container from the runtime's (`unshare --mount`), where
root.path and /proc mean what they mean to the runtime. Another container's mount
namespace (pivoted into that container's rootfs), or one whose /proc belongs to another
PID namespace, is refused with an error that names the entry, before init mounts
anything: it used to fail half-way with a bare "No such file or directory
/proc/self/mountinfo", or mount into the other container."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from . import ROOT_ONLY, pyruntime_only

pytestmark = ROOT_ONLY


@pytest.fixture
def make_mount_namespace():
    """`make(*unshare_flags) -> path`: a mount namespace made from ours by unshare(1),
    kept by the process that made it (/proc/PID/ns/mnt), which is killed when the test
    ends. (Not kept by a bind mount of the namespace file: on this kernel one was refused
    with EINVAL now and then, its loop check comparing namespace ids that are not
    allocated in order.)"""
    holders = []

    def make(*flags: str) -> str:
        holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", *flags,
             "sh", "-c", "echo ready; exec sleep 3600"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout.readline() == "ready\n"
        return f"/proc/{holder.pid}/ns/mnt"

    yield make
    for holder in holders:
        # With --fork, its child first: unshare reaps it and exits.
        with open(f"/proc/{holder.pid}/task/{holder.pid}/children") as f:
            for child in f.read().split():
                os.kill(int(child), signal.SIGKILL)
        holder.kill()
        holder.wait()
        holder.stdout.close()


def _mount_namespace_config(path: str, pid: dict) -> dict:
    # Entry 2 is the mount namespace, which the errors name.
    return {"namespaces": [pid, "uts", {"type": "mount", "path": path}]}


def test_a_mount_namespace_made_for_the_container_is_joined(runtime, bundle, busybox_rootfs,
                                                            make_mount_namespace):
    path = make_mount_namespace()
    b = bundle(["sh", "-c", "readlink /proc/self/ns/mnt; echo $$; ls -di /"],
               **_mount_namespace_config(path, {"type": "pid"}))
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    namespace, pid, root = proc.stdout.splitlines()
    assert namespace == os.readlink(path)
    assert pid == "1"  # and its /proc shows it so
    assert int(root.split()[0]) == os.stat(busybox_rootfs).st_ino


@pyruntime_only
@pytest.mark.parametrize("share_pid", [False, True], ids=["new-pid", "its-pid"])
def test_another_containers_mount_namespace_is_refused_before_any_mount(
        runtime, bundle, share_pid):
    """With a new PID namespace, the other container's /proc does not show init; with
    that container's, it does, and its rootfs would be built inside that container."""
    first = runtime.new_id()
    pid = runtime.run_detached(bundle(["sleep", "3600"]), first)
    with open(f"/proc/{pid}/mountinfo") as f:
        mounts = f.read()
    pid_namespace = {"type": "pid", **({"path": f"/proc/{pid}/ns/pid"} if share_pid else {})}
    b = bundle(["true"], **_mount_namespace_config(f"/proc/{pid}/ns/mnt", pid_namespace))
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode != 0
    assert f"linux.namespaces[2]: mount namespace /proc/{pid}/ns/mnt has another root" \
        in proc.stderr, proc.stderr
    with open(f"/proc/{pid}/mountinfo") as f:
        assert f.read() == mounts


@pyruntime_only
def test_a_mount_namespace_whose_proc_does_not_show_init_is_refused(
        runtime, bundle, make_mount_namespace):
    path = make_mount_namespace("--pid", "--fork", "--mount-proc")
    b = bundle(["true"], **_mount_namespace_config(path, {"type": "pid"}))
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode != 0
    assert (f"linux.namespaces[2]: mount namespace {path}: its /proc does not show"
            in proc.stderr), proc.stderr
