"""The root filesystem: pivot_root (and --no-pivot), a read-only root, process.cwd that
cannot leave the rootfs (not even through a host fd leaked into init), and a readable
/proc and /sys of the container's own."""
from __future__ import annotations

import os

import pytest

from . import ROOT_ONLY, pyruntime_only

pytestmark = ROOT_ONLY


def run(runtime, b, *options):
    return runtime.run("run", *options, "--bundle", b, runtime.new_id())


def test_rootfs_is_root(runtime, bundle):
    proc = run(runtime, bundle(["sh", "-c", "ls /; cat /etc/passwd"]))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split()
    assert {"bin", "etc", "proc", "sys", "dev", "tmp"} <= set(out)
    assert "user:x:1001:1001:user:/home/user:/bin/sh" in out
    # Nothing of the host's root: no /work, no /.venv, no /lib with host libraries.
    assert "work" not in out


def test_old_root_is_gone(runtime, bundle):
    # After pivot_root the host's tree is unmounted: no mount of the host is left.
    proc = run(runtime, bundle(["cat", "/proc/self/mountinfo"]))
    assert proc.returncode == 0, proc.stderr
    mount_points = [line.split()[4] for line in proc.stdout.splitlines()]
    assert mount_points[0] == "/"
    assert not [m for m in mount_points if m.startswith(("/work", "/tmp/pyrt", "/.pivot"))]


def test_create_no_pivot(runtime, bundle, work_dir):
    b = bundle(["sh", "-c", "ls /; grep '^user:' /etc/passwd"])
    cid = runtime.new_id()
    out = os.path.join(work_dir, "out")
    proc = runtime.run("create", "--no-pivot", "--bundle", b, cid, stdout_path=out)
    assert proc.returncode == 0, proc.stderr
    runtime.start(cid)
    runtime.wait_status(cid, "stopped")
    with open(out) as f:
        lines = f.read().split()
    assert {"bin", "etc", "proc", "sys", "dev", "tmp"} <= set(lines)
    assert "work" not in lines
    assert lines[-1] == "user:x:1001:1001:user:/home/user:/bin/sh"


def test_run_no_pivot(runtime, bundle):
    proc = run(runtime, bundle(["sh", "-c", "ls /; pwd"]), "--no-pivot")
    assert proc.returncode == 0, proc.stderr
    assert {"bin", "etc", "proc"} <= set(proc.stdout.split())
    assert "work" not in proc.stdout.split()


def test_readonly_root(runtime, bundle):
    proc = run(runtime, bundle(["sh", "-c", "touch /etc/x; touch /x; grep ' / ' /proc/mounts"]))
    assert proc.stderr.count("Read-only file system") == 2, proc.stderr
    assert "ro" in proc.stdout.split()[3].split(",")


def test_writable_root_copy(runtime, bundle, rootfs_copy):
    rootfs = rootfs_copy()
    proc = run(runtime, bundle(["sh", "-c", "echo hi > /etc/written"], rootfs=rootfs,
                               readonly_root=False))
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(rootfs, "etc", "written")) as f:
        assert f.read() == "hi\n"


# `ls` in the cwd, then after a climb: the container's `/`, or, from a cwd outside the
# container's root, the host's (`..` stops only at the process's root, not above it).
CLIMB = "ls -a; cd ../../../../../../../../../../../..; ls -a"


def host_only_names(busybox_rootfs) -> set[str]:
    """What a process that reached the host would see: the names in the host's `/` that
    the container's has not, and the state directory's state.json."""
    names = set(os.listdir("/")) - set(os.listdir(busybox_rootfs)) | {"state.json"}
    assert names - {"state.json"}, "the host's / has nothing the rootfs lacks"
    return names


@pytest.mark.parametrize("fd", range(3, 11))
def test_cwd_cannot_escape_through_a_leaked_fd(runtime, bundle, busybox_rootfs, fd):
    """CVE-2024-21626: a cwd of /proc/self/fd/N, where N is a directory fd of the host
    still open in init when it enters the cwd (pyruntime's state directory), puts the
    process in the host's tree. The create must fail (no process runs), or the process
    must at least not reach the host."""
    host_only = host_only_names(busybox_rootfs)
    proc = run(runtime, bundle(["sh", "-c", CLIMB], cwd=f"/proc/self/fd/{fd}"))
    if proc.returncode == 0:
        listing = set(proc.stdout.split())
        assert "bin" in listing and not listing & host_only, proc.stdout
    else:
        assert proc.stdout == ""
        assert f"/proc/self/fd/{fd}" in proc.stderr, proc.stderr


@pyruntime_only
def test_cwd_through_the_state_dir_fd_is_refused(runtime, bundle, busybox_rootfs):
    """The same, with pyruntime's own words: one of the fds is a directory of the host
    (the state directory), which `enter_cwd` must find outside the container's root
    (without that check the container would run in it: the test above then fails)."""
    host_only = host_only_names(busybox_rootfs)
    refused = {}
    for _round in range(3):  # which fd it is could depend on the runtime's path
        for fd in range(3, 11):
            proc = run(runtime, bundle(["sh", "-c", CLIMB], cwd=f"/proc/self/fd/{fd}"))
            assert not set(proc.stdout.split()) & host_only, proc.stdout
            if "is outside the container's root" in proc.stderr:
                refused[fd] = proc
        if refused:
            break
    assert refused, "no fd of init was a host directory: the escape was not exercised"
    for fd, proc in refused.items():
        assert proc.returncode == 255
        assert f"process.cwd: /proc/self/fd/{fd} is outside the container's root" in proc.stderr


def test_cwd_is_created_when_missing(runtime, bundle):
    # runc makes a missing cwd (in a writable place); here inside a tmpfs.
    b = bundle(["pwd"], cwd="/tmp/new/dir",
               mounts=[{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}])
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "/tmp/new/dir"


def test_proc_and_sys_are_the_containers(runtime, bundle):
    script = "ls /proc | grep -c '^[0-9]*$'; ls /sys/class/net; grep ' /sys ' /proc/mounts"
    proc = run(runtime, bundle(["sh", "-c", script + "; true"]))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert int(lines[0]) <= 4  # sh, ls, grep, and maybe a subshell: no host processes
    assert lines[1] == "lo"  # sysfs of the container's network namespace
    assert "ro" in lines[2].split()[3].split(",")


def test_rootfs_relative_path(runtime, bundle, rootfs_copy):
    # root.path relative to the bundle directory, the way `spec` writes it.
    def relative(config):
        config["root"]["path"] = "rootfs"

    b = bundle(["echo", "relative"], mutate=relative)
    os.rename(rootfs_copy(), os.path.join(b, "rootfs"))
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "relative\n"
