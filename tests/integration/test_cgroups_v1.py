"""cgroup v1 resource limits on the host, for real: processes placed in a container's
cgroups (CgroupPlacement.for_container + create, as the runtime does), the resources
applied through the facade, and the kernel's enforcement observed: an OOM kill, CPU
throttling measured from cpuacct, a fork loop stopped by pids.max, a frozen counter, a
block device that cannot be opened, stats, updates, and a refused unknown controller.

The workload helpers (held Python programs released once in their cgroup) are at the top;
test_cgroups_unified.py reuses them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from pyruntime.cgroups import api
from pyruntime.cgroups.errors import CgroupError, ResourceBusy, ResourceUnsupported
from pyruntime.cgroups.oom import OomWatcher
from pyruntime.cgroups.placement import CgroupPlacement, is_unified_only

from . import ROOT_ONLY

pytestmark = ROOT_ONLY + [
    pytest.mark.skipif(os.geteuid() == 0 and is_unified_only(),
                       reason="a cgroup v2 host: tests/vm/test_cgroups_v2.py covers it"),
]

MiB = 1 << 20

# --------------------------------------------------------------------------- workloads
#: Read before anything else: the process is in its cgroup once the line arrives.
_HOLD = "import sys\nsys.stdin.readline()\n"

ALLOCATE = """
import os, sys
chunks = []
for _ in range(int(sys.argv[1])):
    chunks.append(bytearray(b"x" * (1 << 20)))  # really touched, not zero pages
print("allocated", flush=True)
if len(sys.argv) > 2:
    sys.stdin.readline()
"""

SPIN = """
while True:
    pass
"""

FORK_LOOP = """
import errno, os, signal, sys, time
children = []
outcome = "no limit hit"
for _ in range(200):
    try:
        pid = os.fork()
    except OSError as error:
        outcome = errno.errorcode.get(error.errno, str(error.errno))
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children.append(pid)
print(len(children), outcome, flush=True)
sys.stdin.readline()
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
"""

COUNTER = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
n = 0
while True:
    n += 1
    os.pwrite(fd, str(n).encode().ljust(20), 0)
    time.sleep(0.005)
"""

DEVICES = """
import json, os, stat, sys
node = sys.argv[1]
major, minor = int(sys.argv[2]), int(sys.argv[3])
result = {}
try:
    os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(major, minor))
    result["mknod"] = "ok"
except OSError as error:
    result["mknod"] = error.strerror
for name, path in (("block", node), ("null", "/dev/null")):
    try:
        os.close(os.open(path, os.O_RDONLY))
        result[name] = "ok"
    except OSError as error:
        result[name] = error.strerror
print(json.dumps(result), flush=True)
"""


class Workload:
    """One held program in a cgroup: `start()` releases it."""

    def __init__(self, placement: CgroupPlacement, program: str, *args: str,
                 stdout=subprocess.PIPE) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _HOLD + program, *args], stdin=subprocess.PIPE,
            stdout=stdout, stderr=subprocess.PIPE, text=True)
        try:
            placement.add(self.proc.pid)
        except Exception:
            self.kill()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> "Workload":
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return self

    def send(self, line: str = "") -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def line(self) -> str:
        return self.proc.stdout.readline().strip()

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def json(self, timeout: float = 30) -> dict:
        out, err = self.proc.communicate(timeout=timeout)
        assert out.strip(), f"no output (exit {self.proc.returncode}): {err}"
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.communicate(timeout=30)
        except (ValueError, OSError):
            self.proc.wait(30)


def cpu_usage_ns_v1(placement: CgroupPlacement) -> int:
    for key, path in placement.paths.items():
        if "cpuacct" in key.split(","):
            with open(os.path.join(path, "cpuacct.usage")) as f:
                return int(f.read())
    raise AssertionError("no cpuacct hierarchy")


def wait_until(predicate, timeout: float = 30, interval: float = 0.02, what: str = ""):
    """Poll until `predicate()` is true (a guard against hangs, not a measurement)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def block_device_for_test() -> tuple[int, int]:
    """A block device that exists and is harmless to open read-only (a loop device),
    so that without a device rule the open would succeed; else 8:0."""
    try:
        for name in sorted(os.listdir("/sys/dev/block")):
            major, minor = (int(x) for x in name.split(":"))
            if major == 7:
                return major, minor
    except OSError:
        pass
    return 8, 0


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def make_cgroup(request, leak_check):
    """`make_cgroup(name) -> CgroupPlacement`: a created container cgroup (every mounted
    hierarchy) whose processes are killed and which is removed when the test ends."""
    made: list[tuple[CgroupPlacement, list[Workload]]] = []

    def make(name: str = "c") -> CgroupPlacement:
        container_id = f"{leak_check.id_prefix}-cg-{name}-{len(made)}"
        leak_check.add_container_id(container_id)
        placement = CgroupPlacement.for_container(None, container_id)
        placement.create()
        made.append((placement, []))
        return placement

    yield make
    for placement, _ in reversed(made):
        cleanup_placement(placement)


def cleanup_placement(placement: CgroupPlacement) -> None:
    """Thaw (a frozen task cannot die), kill, remove."""
    for key, path in placement.paths.items():
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            if os.path.exists(os.path.join(path, name)):
                try:
                    with open(os.path.join(path, name), "w") as f:
                        f.write(value)
                except OSError:
                    pass
    placement.signal_all(signal.SIGKILL)
    placement.remove()


@pytest.fixture
def workloads():
    """`workloads(placement, program, *args) -> Workload`, all killed at the end."""
    started: list[Workload] = []

    def start(placement, program, *args, **kwargs) -> Workload:
        workload = Workload(placement, program, *args, **kwargs)
        started.append(workload)
        return workload

    yield start
    for workload in started:
        workload.kill()


# --------------------------------------------------------------------------- memory
def test_memory_limit_oom_kills_and_is_counted(make_cgroup, workloads):
    cgroup = make_cgroup("oom")
    api.apply_resources(cgroup, {"memory": {"limit": 16 * MiB, "swap": 16 * MiB}})
    with open(os.path.join(cgroup.paths["memory"], "memory.limit_in_bytes")) as f:
        assert int(f.read()) == 16 * MiB
    assert api.oom_kill_count(cgroup) == 0
    with OomWatcher(cgroup) as watcher:
        hog = workloads(cgroup, ALLOCATE, "64").start()
        assert hog.wait() == -signal.SIGKILL, hog.proc.stderr.read()
        assert watcher.wait(timeout=10) >= 1
    assert api.oom_kill_count(cgroup) >= 1
    assert api.oom_events(cgroup)["oom_kill"] >= 1
    memory = api.stats(cgroup)["memory"]
    assert memory["usage"]["max"] == 16 * MiB  # the peak hit the limit
    assert memory["swap"]["limit"] == 16 * MiB


def test_memory_stats_and_update(make_cgroup, workloads):
    cgroup = make_cgroup("mem")
    api.apply_resources(cgroup, {"memory": {"limit": 128 * MiB}})
    holder = workloads(cgroup, ALLOCATE, "24", "hold").start()
    assert holder.line() == "allocated"

    stats = api.stats(cgroup)
    assert stats["memory"]["usage"]["usage"] >= 24 * MiB
    assert stats["memory"]["usage"]["limit"] == 128 * MiB
    assert stats["memory"]["raw"]["rss"] >= 20 * MiB
    assert stats["pids"]["current"] == 1
    assert stats["cpu"]["usage"]["total"] > 0
    assert len(stats["cpu"]["usage"]["percpu"]) == os.cpu_count()
    json.dumps(stats)  # what `events --stats` prints

    api.update_resources(cgroup, {"memory": {"limit": 96 * MiB, "swap": 96 * MiB}})
    with open(os.path.join(cgroup.paths["memory"], "memory.limit_in_bytes")) as f:
        assert int(f.read()) == 96 * MiB
    with open(os.path.join(cgroup.paths["memory"], "memory.memsw.limit_in_bytes")) as f:
        assert int(f.read()) == 96 * MiB
    # Below what the process holds (no swap to push it to): the kernel says EBUSY.
    with pytest.raises(ResourceBusy, match=r"linux\.resources\.memory\.limit: .*current usage"):
        api.update_resources(cgroup, {"memory": {"limit": 4 * MiB, "swap": 96 * MiB}})
    assert holder.proc.poll() is None


# --------------------------------------------------------------------------- cpu
def test_cpu_quota_throttles(make_cgroup, workloads):
    limited = make_cgroup("cpu-limited")
    free = make_cgroup("cpu-free")
    api.apply_resources(limited, {"cpu": {"quota": 20000, "period": 100000}})
    with open(os.path.join(_hierarchy(limited, "cpu"), "cpu.cfs_quota_us")) as f:
        assert int(f.read()) == 20000
    workloads(limited, SPIN).start()
    workloads(free, SPIN).start()
    time.sleep(0.3)  # both running
    before = {name: cpu_usage_ns_v1(c) for name, c in (("limited", limited), ("free", free))}
    start = time.monotonic()
    time.sleep(2)
    window = time.monotonic() - start
    share = {name: (cpu_usage_ns_v1(c) - before[name]) / 1e9 / window
             for name, c in (("limited", limited), ("free", free))}
    # The quota is 0.2 CPU; the unlimited spinner is the control that the sampling works.
    assert share["limited"] < 0.3, share
    assert share["free"] > 0.4 and share["free"] > 1.5 * share["limited"], share
    throttling = api.stats(limited)["cpu"]["throttling"]
    assert throttling["throttledPeriods"] > 0 and throttling["throttledTime"] > 0
    assert api.stats(free)["cpu"]["throttling"]["throttledPeriods"] == 0


def test_cpu_shares_and_cpuset(make_cgroup):
    cgroup = make_cgroup("cpuset")
    api.apply_resources(cgroup, {"cpu": {"shares": 512, "cpus": "0", "mems": "0"}})
    with open(os.path.join(_hierarchy(cgroup, "cpu"), "cpu.shares")) as f:
        assert f.read().strip() == "512"
    with open(os.path.join(_hierarchy(cgroup, "cpuset"), "cpuset.cpus")) as f:
        assert f.read().strip() == "0"
    assert api.stats(cgroup)["cpuset"]["cpus"] == [0]


def _hierarchy(placement: CgroupPlacement, controller: str) -> str:
    for key, path in placement.paths.items():
        if controller in key.split(","):
            return path
    pytest.skip(f"no {controller} hierarchy on this host")


# --------------------------------------------------------------------------- pids
def test_pids_limit_stops_a_fork_loop(make_cgroup, workloads):
    cgroup = make_cgroup("pids")
    api.apply_resources(cgroup, {"pids": {"limit": 10}})
    forker = workloads(cgroup, FORK_LOOP).start()
    forked, outcome = forker.line().split()
    # The forker itself is one of the 10.
    assert (int(forked), outcome) == (9, "EAGAIN")
    stats = api.stats(cgroup)
    assert stats["pids"] == {"current": 10, "limit": 10}
    forker.send()
    assert forker.wait() == 0


# --------------------------------------------------------------------------- freezer
def test_freeze_stops_progress_and_thaw_resumes(make_cgroup, workloads, tmp_path):
    cgroup = make_cgroup("freeze")
    counter = str(tmp_path / "counter")
    workloads(cgroup, COUNTER, counter).start()

    def value() -> int:
        try:
            with open(counter) as f:
                return int(f.read().strip() or 0)
        except FileNotFoundError:
            return 0

    wait_until(lambda: value() > 3, what="the counter to run")
    assert not api.is_frozen(cgroup)
    api.freeze(cgroup)
    assert api.is_frozen(cgroup)
    frozen_at = value()
    time.sleep(0.3)
    assert value() == frozen_at
    api.thaw(cgroup)
    assert not api.is_frozen(cgroup)
    wait_until(lambda: value() > frozen_at + 3, what="the counter to advance after thaw")


def test_kill_all_reaches_every_process(make_cgroup, workloads):
    cgroup = make_cgroup("kill")
    forker = workloads(cgroup, FORK_LOOP).start()
    forker.line()
    assert len(cgroup.pids()) >= 5
    api.kill_all(cgroup, signal.SIGTERM)
    assert forker.wait() == -signal.SIGTERM
    wait_until(lambda: not cgroup.pids(), what="every process to die")


# --------------------------------------------------------------------------- devices
def test_devices_deny_block_device_even_with_mknod(make_cgroup, workloads):
    cgroup = make_cgroup("dev")
    major, minor = block_device_for_test()
    api.apply_resources(cgroup, {"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    ]})
    with open(os.path.join(cgroup.paths["devices"], "devices.list")) as f:
        listed = f.read().split("\n")
    assert "c 1:3 rwm" in listed and "a *:* rwm" not in listed
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        result = workloads(cgroup, DEVICES, os.path.join(directory, "disk"),
                           str(major), str(minor)).start().json()
    # mknod itself is allowed (runc's default "b *:* m"); opening the node is not.
    assert result == {"mknod": "ok", "block": "Operation not permitted", "null": "ok"}


# --------------------------------------------------------------------------- errors
def test_resource_on_a_missing_controller_is_refused(make_cgroup):
    cgroup = make_cgroup("missing")
    # A host without a memory hierarchy: the placement has no directory for it.
    partial = CgroupPlacement({k: v for k, v in cgroup.paths.items()
                               if "memory" not in k.split(",")})
    with pytest.raises(ResourceUnsupported) as info:
        api.apply_resources(partial, {"pids": {"limit": 100},
                                      "memory": {"limit": 16 * MiB}})
    assert str(info.value).startswith(
        "linux.resources.memory.limit: the memory controller is not available in this "
        "cgroup hierarchy")
    # Nothing was written: validation comes before the first write.
    with open(os.path.join(_hierarchy(cgroup, "pids"), "pids.max")) as f:
        assert f.read().strip() == "max"


def test_unknown_or_v2_only_resources_are_refused(make_cgroup):
    cgroup = make_cgroup("refused")
    with pytest.raises(ResourceUnsupported, match=r"linux\.resources\.unified"):
        api.apply_resources(cgroup, {"unified": {"memory.max": "1"}})
    with pytest.raises(CgroupError, match=r"linux\.resources\.memory\.swappiness"):
        api.apply_resources(cgroup, {"memory": {"swappiness": 500}})


def test_nothing_to_apply_does_nothing(make_cgroup):
    cgroup = make_cgroup("empty")
    api.apply_resources(cgroup, None)
    api.apply_resources(cgroup, {})
    with open(os.path.join(cgroup.paths["devices"], "devices.list")) as f:
        assert f.read().strip() == "a *:* rwm"
