"""A user namespace with uid/gid mappings: the mapping is visible inside, the
container's root is an unprivileged uid on the host, and `exec` joins the namespace."""
from __future__ import annotations

import os

from . import ROOT_ONLY, proc_status

pytestmark = ROOT_ONLY

MAPPING = [(0, 100000, 65536)]


def test_uid_map_inside(runtime, bundle):
    b = bundle(["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u"],
               uid_mappings=MAPPING, gid_mappings=MAPPING)
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    lines = [l.split() for l in proc.stdout.splitlines()]
    assert lines == [["0", "100000", "65536"], ["0", "100000", "65536"], ["0"]]


def test_container_root_is_mapped_uid_on_host(runtime, bundle):
    b = bundle(["sleep", "3600"], uid_mappings=MAPPING, gid_mappings=MAPPING)
    cid = runtime.new_id()
    pid = runtime.run_detached(b, cid)
    status = proc_status(pid)
    assert status["Uid"].split() == ["100000"] * 4
    assert status["Gid"].split() == ["100000"] * 4


def test_user_in_userns_maps_too(runtime, bundle):
    # uid 1001 inside is 101001 outside.
    b = bundle(["sleep", "3600"], uid_mappings=MAPPING, gid_mappings=MAPPING, user="1001:1001")
    pid = runtime.run_detached(b, runtime.new_id())
    assert proc_status(pid)["Uid"].split() == ["101001"] * 4


def test_unmapped_files_show_as_nobody(runtime, bundle, work_dir):
    # A host file owned by host root is outside the mapping: inside it shows as the
    # overflow uid (65534), which proves the namespace is really in effect.
    b = bundle(["stat", "-c", "%u", "/proc/self/ns"],
               uid_mappings=MAPPING, gid_mappings=MAPPING)
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"
    b = bundle(["stat", "-c", "%u", "/bin/busybox"], uid_mappings=MAPPING, gid_mappings=MAPPING)
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "65534"


def test_exec_joins_the_user_namespace(runtime, bundle):
    b = bundle(["sleep", "3600"], uid_mappings=MAPPING, gid_mappings=MAPPING)
    cid = runtime.new_id()
    init = runtime.run_detached(b, cid)
    script = ("cat /proc/self/uid_map; id -u; readlink /proc/self/ns/user; "
              "readlink /proc/self/ns/pid; "
              "cat /proc/1/cmdline")
    proc = runtime.run("exec", "--user", "1001:1001", cid, "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    mapping, uid, user_ns, pid_ns, init_cmdline = proc.stdout.splitlines()
    assert mapping.split() == ["0", "100000", "65536"]
    assert uid == "1001"
    assert user_ns == os.readlink(f"/proc/{init}/ns/user")
    assert pid_ns == os.readlink(f"/proc/{init}/ns/pid")
    assert init_cmdline.split("\0")[:2] == ["sleep", "3600"]
