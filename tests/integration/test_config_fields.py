"""config.json fields seen from inside a real container: linux.sysctl, linux.personality,
process.oomScoreAdj, a new cgroup namespace, a time namespace with linux.timeOffsets,
joining user, cgroup and time namespaces by path, and process.apparmorProfile /
selinuxLabel refused on a host without that security module.

Every assertion compares with a value the container would not see if the field were
ignored (the kernel's default, the host's own value, or a control container's).
Mount-related fields (rootfsPropagation, propagation and atime options, overlay) are in
test_config_mounts.py."""
from __future__ import annotations

import os
import platform

import pytest

from . import ROOT_ONLY, container_processes, ns_link, pyruntime_only

pytestmark = ROOT_ONLY

MAPPING = [(0, 100000, 65536)]


def run(runtime, b, hint=""):
    return runtime.run("run", "--bundle", b, runtime.new_id(hint))


def add_namespace(kind: str, **linux_fields):
    """A `mutate` for make_bundle: a new namespace of `kind`, and linux fields."""
    def mutate(config: dict) -> None:
        config["linux"]["namespaces"].append({"type": kind})
        config["linux"].update(linux_fields)
    return mutate


def assert_nothing_left(runtime, cid: str, before: set[int]) -> None:
    """A failed create left no state or container process behind (a cgroup left behind
    fails the test in the session's leak check, tests/conftest.py)."""
    assert runtime.list_ids() == []
    assert runtime.status(cid) is None
    assert not os.path.exists(os.path.join(runtime.root, cid))
    runtime.reap()
    assert container_processes() - before == set()


# --------------------------------------------------------------------------- linux.sysctl
def test_sysctl_is_written_in_the_containers_namespaces(runtime, bundle):
    show = "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax"
    control = run(runtime, bundle(["sh", "-c", show]), "control")
    assert control.returncode == 0, control.stderr
    default_forward, default_shmmax = control.stdout.split()
    forward = "0" if default_forward == "1" else "1"
    shmmax = "12345678"
    assert default_shmmax != shmmax
    b = bundle(["sh", "-c", show],
               sysctl={"net.ipv4.ip_forward": forward, "kernel.shmmax": shmmax})
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [forward, shmmax]
    # The host's own values are untouched: both are namespaced.
    with open("/proc/sys/kernel/shmmax") as f:
        assert f.read().strip() != shmmax


# --------------------------------------------------------------------------- personality
@pytest.mark.skipif(platform.machine() != "x86_64", reason="LINUX32 shows as i686 on x86_64")
def test_personality_linux32(runtime, bundle):
    b = bundle(["uname", "-m"],
               mutate=lambda c: c["linux"].update(personality={"domain": "LINUX32"}))
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "i686"


# --------------------------------------------------------------------------- oomScoreAdj
def test_oom_score_adj(runtime, bundle):
    with open("/proc/self/oom_score_adj") as f:
        assert f.read().strip() != "789"
    b = bundle(["cat", "/proc/self/oom_score_adj"],
               mutate=lambda c: c["process"].update(oomScoreAdj=789))
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "789"


# --------------------------------------------------------------------------- cgroup namespace
def test_new_cgroup_namespace_shows_its_cgroup_as_root(runtime, bundle):
    show = "readlink /proc/self/ns/cgroup; cat /proc/self/cgroup"
    # Without a cgroup namespace, the container's own cgroup shows in its path.
    control = run(runtime, bundle(["sh", "-c", show]), "control")
    assert control.returncode == 0, control.stderr
    assert any(not line.endswith(":/") for line in control.stdout.splitlines()[1:])

    proc = run(runtime, bundle(["sh", "-c", show], mutate=add_namespace("cgroup")))
    assert proc.returncode == 0, proc.stderr
    link, *lines = proc.stdout.splitlines()
    assert link != ns_link("self", "cgroup")
    assert lines and all(line.endswith(":/") for line in lines), proc.stdout


# --------------------------------------------------------------------------- time namespace
needs_time_ns = pytest.mark.skipif(not os.path.exists("/proc/self/ns/time"),
                                   reason="the kernel has no time namespaces")

DAY = 86400
OFFSETS = {"monotonic": {"secs": 3 * DAY}, "boottime": {"secs": 7 * DAY, "nanosecs": 0}}


def host_uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


@needs_time_ns
def test_time_namespace_offsets(runtime, bundle):
    b = bundle(["sh", "-c", "readlink /proc/self/ns/time; cat /proc/uptime "
                            "/proc/self/timens_offsets"],
               mutate=add_namespace("time", timeOffsets=OFFSETS))
    before = host_uptime()
    proc = run(runtime, b)
    after = host_uptime()
    assert proc.returncode == 0, proc.stderr
    link, uptime, *offsets = proc.stdout.splitlines()
    assert link != ns_link("self", "time")
    # /proc/uptime reads CLOCK_BOOTTIME: the container's is 7 days ahead of the host's.
    inside = float(uptime.split()[0])
    assert before + 7 * DAY - 1 <= inside <= after + 7 * DAY + 1
    assert sorted(line.split() for line in offsets) == [
        ["boottime", str(7 * DAY), "0"], ["monotonic", str(3 * DAY), "0"]]


# --------------------------------------------------------------------------- joining by path
def test_join_user_namespace_by_path(runtime, bundle):
    first = bundle(["sleep", "3600"], uid_mappings=MAPPING, gid_mappings=MAPPING)
    a_pid = runtime.run_detached(first, runtime.new_id("a"))
    a_user = ns_link(a_pid, "user")
    assert a_user != ns_link("self", "user")
    second = bundle(["sh", "-c", "readlink /proc/self/ns/user; cat /proc/self/uid_map"],
                    namespace_paths={"user": f"/proc/{a_pid}/ns/user"})
    proc = run(runtime, second, "b")
    assert proc.returncode == 0, proc.stderr
    link, mapping = proc.stdout.splitlines()
    assert link == a_user
    assert mapping.split() == ["0", "100000", "65536"]


def test_join_cgroup_namespace_by_path(runtime, bundle):
    first = bundle(["sleep", "3600"], mutate=add_namespace("cgroup"))
    a_pid = runtime.run_detached(first, runtime.new_id("a"))
    a_cgroup = ns_link(a_pid, "cgroup")
    assert a_cgroup != ns_link("self", "cgroup")
    second = bundle(["readlink", "/proc/self/ns/cgroup"],
                    namespace_paths={"cgroup": f"/proc/{a_pid}/ns/cgroup"})
    proc = run(runtime, second, "b")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == a_cgroup


@needs_time_ns
def test_join_time_namespace_by_path(runtime, bundle):
    first = bundle(["sleep", "3600"], mutate=add_namespace("time", timeOffsets=OFFSETS))
    a_pid = runtime.run_detached(first, runtime.new_id("a"))
    a_time = ns_link(a_pid, "time")
    assert a_time != ns_link("self", "time")
    second = bundle(["sh", "-c", "readlink /proc/self/ns/time; cat /proc/uptime"],
                    namespace_paths={"time": f"/proc/{a_pid}/ns/time"})
    before = host_uptime()
    proc = run(runtime, second, "b")
    assert proc.returncode == 0, proc.stderr
    link, uptime = proc.stdout.splitlines()
    assert link == a_time
    assert float(uptime.split()[0]) >= before + 7 * DAY - 1


# --------------------------------------------------------------------------- LSM fields
def _apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            if f.read().strip() == "Y":
                return True
    except OSError:
        pass
    return os.path.exists("/sys/kernel/security/apparmor")


def _selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")


@pyruntime_only
@pytest.mark.parametrize("field, value, enabled", [
    ("apparmorProfile", "pyruntime-test-profile", _apparmor_enabled),
    ("selinuxLabel", "system_u:system_r:container_t:s0", _selinux_enabled),
])
def test_lsm_field_refused_where_the_module_is_off(runtime, bundle, field, value, enabled):
    if enabled():
        pytest.skip(f"the security module behind process.{field} is enabled on this host")
    b = bundle(["sleep", "3600"], mutate=lambda c: c["process"].update({field: value}))
    cid = runtime.new_id()
    before = container_processes()
    proc = runtime.run("create", "--bundle", b, cid)
    assert proc.returncode == 255, proc.stderr
    assert f"process.{field}" in proc.stderr
    assert value in proc.stderr
    assert_nothing_left(runtime, cid, before)


# --------------------------------------------------------------------------- hook timeout
@pyruntime_only
def test_hook_timeout_fails_create(runtime, bundle):
    slow = {"path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1}
    b = bundle(["sleep", "3600"], hooks={"createRuntime": [slow]})
    cid = runtime.new_id()
    before = container_processes()
    proc = runtime.run("create", "--bundle", b, cid)
    assert proc.returncode == 255, proc.stderr
    assert "hooks.createRuntime[0]" in proc.stderr
    assert "/bin/sleep timed out" in proc.stderr
    assert_nothing_left(runtime, cid, before)
