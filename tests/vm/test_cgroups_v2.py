"""cgroup v2 resource limits, for real, inside the test VM (see README.md here): a
container placement (CgroupPlacement.for_container, as the runtime makes it), resources
applied through the facade, the kernel's enforcement observed: memory.events oom_kill,
cpu.max at 20% (from cpu.stat), pids.max against a fork loop, cgroup.freeze, the eBPF
device filter against CAP_MKNOD, cgroup.kill, and the v1 -> v2 conversions in the files
(memory.swap.max, cpu.weight, io.weight). Skipped outside the VM.
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

from pyruntime.cgroups import api, devices_bpf
from pyruntime.cgroups.errors import ResourceBusy, ResourceUnsupported
from pyruntime.cgroups.oom import OomWatcher
from pyruntime.cgroups.placement import CgroupPlacement

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(os.environ.get("PYRUNTIME_IN_VM") != "1",
                       reason="needs the cgroup-v2 test VM (tests/vm/runner.py)"),
]

MiB = 1 << 20

# --------------------------------------------------------------------------- workloads
# Small Python programs, held until they are in their cgroup (the first stdin line).
_HOLD = "import sys\nsys.stdin.readline()\n"
ALLOCATE = """
import sys
chunks = [bytearray(b"x" * (1 << 20)) for _ in range(int(sys.argv[1]))]
print("allocated", flush=True)
if len(sys.argv) > 2:
    sys.stdin.readline()
"""
SPIN = "while True:\n    pass\n"
FORK_LOOP = """
import errno, os, signal, sys, time
children, outcome = [], "no limit hit"
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
node, major, minor = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
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
    def __init__(self, placement: CgroupPlacement, program: str, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", _HOLD + program, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        placement.add(self.proc.pid)

    def start(self) -> "Workload":
        self.send("go")
        return self

    def send(self, line: str = "") -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def line(self) -> str:
        return self.proc.stdout.readline().strip()

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def json(self) -> dict:
        out, err = self.proc.communicate(timeout=60)
        assert out.strip(), f"no output (exit {self.proc.returncode}): {err}"
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.communicate(timeout=60)


def wait_until(predicate, timeout: float = 60, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def make_cgroup(leak_check):
    """`make_cgroup(name)`: a created v2 container cgroup, killed and removed at the end."""
    made: list[CgroupPlacement] = []

    def make(name: str) -> CgroupPlacement:
        container_id = f"{leak_check.id_prefix}-cg2-{name}-{len(made)}"
        leak_check.add_container_id(container_id)
        placement = CgroupPlacement.for_container(None, container_id)
        assert list(placement.paths) == [""], placement.paths
        placement.create()
        api.enable_controllers(placement)
        made.append(placement)
        return placement

    yield make
    for placement in reversed(made):
        path = placement.paths[""]
        if os.path.exists(os.path.join(path, "cgroup.freeze")):
            with open(os.path.join(path, "cgroup.freeze"), "w") as f:
                f.write("0")
        placement.signal_all(signal.SIGKILL)
        placement.remove()


@pytest.fixture
def workloads():
    started: list[Workload] = []

    def start(placement, program, *args) -> Workload:
        workload = Workload(placement, program, *args)
        started.append(workload)
        return workload

    yield start
    for workload in started:
        workload.kill()


def read(placement: CgroupPlacement, name: str) -> str:
    with open(os.path.join(placement.paths[""], name)) as f:
        return f.read().strip()


def cpu_usage_ns(placement: CgroupPlacement) -> int:
    for line in read(placement, "cpu.stat").splitlines():
        key, value = line.split()
        if key == "usage_usec":
            return int(value) * 1000
    raise AssertionError("no usage_usec in cpu.stat")


# --------------------------------------------------------------------------- memory
def test_memory_limit_oom_kill_counted_in_memory_events(make_cgroup, workloads):
    cgroup = make_cgroup("oom")
    api.apply_resources(cgroup, {"memory": {"limit": 16 * MiB, "swap": 16 * MiB}})
    assert read(cgroup, "memory.max") == str(16 * MiB)
    assert read(cgroup, "memory.swap.max") == "0"  # swap == limit: no swap at all
    assert read(cgroup, "memory.oom.group") == "1"
    assert api.oom_kill_count(cgroup) == 0
    with OomWatcher(cgroup) as watcher:
        hog = workloads(cgroup, ALLOCATE, "64").start()
        assert hog.wait() == -signal.SIGKILL
        assert watcher.wait(timeout=30) >= 1
    events = api.oom_events(cgroup)
    assert events["oom_kill"] >= 1 and api.oom_kill_count(cgroup) == events["oom_kill"]
    assert api.stats(cgroup)["memory"]["usage"]["failcnt"] >= 1  # memory.events "max"


def test_memory_swap_conversion_stats_and_update(make_cgroup, workloads):
    cgroup = make_cgroup("swap")
    api.apply_resources(cgroup, {"memory": {"limit": 64 * MiB, "swap": 96 * MiB,
                                            "reservation": 8 * MiB}})
    assert read(cgroup, "memory.max") == str(64 * MiB)
    assert read(cgroup, "memory.swap.max") == str(32 * MiB)  # 96 total - 64 memory
    assert read(cgroup, "memory.low") == str(8 * MiB)

    holder = workloads(cgroup, ALLOCATE, "24", "hold").start()
    assert holder.line() == "allocated"
    stats = api.stats(cgroup)
    assert stats["memory"]["usage"]["usage"] >= 24 * MiB
    assert stats["memory"]["usage"]["limit"] == 64 * MiB
    assert stats["memory"]["swap"]["limit"] == 96 * MiB  # v1 meaning, as runc reports
    assert stats["memory"]["raw"]["anon"] >= 20 * MiB
    assert stats["pids"]["current"] == 1
    assert stats["cpu"]["usage"]["total"] > 0
    json.dumps(stats)

    api.update_resources(cgroup, {"memory": {"limit": 48 * MiB, "swap": -1}})
    assert read(cgroup, "memory.max") == str(48 * MiB)
    assert read(cgroup, "memory.swap.max") == "max"
    with pytest.raises(ResourceBusy, match=r"linux\.resources\.memory\.limit"):
        api.update_resources(cgroup, {"memory": {"limit": 4 * MiB,
                                                 "checkBeforeUpdate": True}})
    assert read(cgroup, "memory.max") == str(48 * MiB)
    assert holder.proc.poll() is None


# --------------------------------------------------------------------------- cpu
def test_cpu_max_limits_to_20_percent(make_cgroup, workloads):
    limited = make_cgroup("cpu-limited")
    free = make_cgroup("cpu-free")
    api.apply_resources(limited, {"cpu": {"quota": 20000, "period": 100000}})
    assert read(limited, "cpu.max") == "20000 100000"
    workloads(limited, SPIN).start()
    workloads(free, SPIN).start()
    time.sleep(0.5)
    before = {"limited": cpu_usage_ns(limited), "free": cpu_usage_ns(free)}
    start = time.monotonic()
    time.sleep(2)
    window = time.monotonic() - start
    share = {"limited": (cpu_usage_ns(limited) - before["limited"]) / 1e9 / window,
             "free": (cpu_usage_ns(free) - before["free"]) / 1e9 / window}
    assert share["limited"] < 0.3, share
    assert share["free"] > 1.5 * share["limited"], share
    assert api.stats(limited)["cpu"]["throttling"]["throttledPeriods"] > 0


def test_cpu_weight_and_cpuset_conversion(make_cgroup):
    cgroup = make_cgroup("weight")
    api.apply_resources(cgroup, {"cpu": {"shares": 1024, "cpus": "0", "mems": "0",
                                         "period": 50000}})
    assert read(cgroup, "cpu.weight") == "39"  # 1 + (1024 - 2) * 9999 // 262142
    assert read(cgroup, "cpu.max") == "max 50000"
    assert read(cgroup, "cpuset.cpus") == "0"
    api.update_resources(cgroup, {"cpu": {"shares": 262144, "quota": 20000}})
    assert read(cgroup, "cpu.weight") == "10000"
    assert read(cgroup, "cpu.max") == "20000 50000"  # an update of the quota keeps the period


def test_io_weight_conversion(make_cgroup):
    cgroup = make_cgroup("io")
    if not os.path.exists(os.path.join(cgroup.paths[""], "io.weight")) and \
            not os.path.exists(os.path.join(cgroup.paths[""], "io.bfq.weight")):
        with pytest.raises(ResourceUnsupported, match=r"linux\.resources\.blockIO\.weight"):
            api.apply_resources(cgroup, {"blockIO": {"weight": 500}})
        return
    api.apply_resources(cgroup, {"blockIO": {"weight": 500}})
    if os.path.exists(os.path.join(cgroup.paths[""], "io.bfq.weight")):
        assert "500" in read(cgroup, "io.bfq.weight")
    else:
        assert read(cgroup, "io.weight").split()[-1] == "4950"


# --------------------------------------------------------------------------- pids
def test_pids_max_stops_a_fork_loop(make_cgroup, workloads):
    cgroup = make_cgroup("pids")
    api.apply_resources(cgroup, {"pids": {"limit": 10}})
    assert read(cgroup, "pids.max") == "10"
    forker = workloads(cgroup, FORK_LOOP).start()
    forked, outcome = forker.line().split()
    assert (int(forked), outcome) == (9, "EAGAIN")
    assert api.stats(cgroup)["pids"] == {"current": 10, "limit": 10}
    forker.send()
    assert forker.wait() == 0


# --------------------------------------------------------------------------- freezer, kill
def test_cgroup_freeze_stops_progress(make_cgroup, workloads, tmp_path):
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
    api.freeze(cgroup)
    assert api.is_frozen(cgroup) and "frozen 1" in read(cgroup, "cgroup.events")
    frozen_at = value()
    time.sleep(0.5)
    assert value() == frozen_at
    api.thaw(cgroup)
    assert not api.is_frozen(cgroup)
    wait_until(lambda: value() > frozen_at + 3, what="the counter to advance after thaw")


def test_cgroup_kill(make_cgroup, workloads):
    cgroup = make_cgroup("kill")
    forker = workloads(cgroup, FORK_LOOP).start()
    forker.line()
    assert len(cgroup.pids()) >= 5
    api.kill_all(cgroup, signal.SIGKILL)
    assert forker.wait() == -signal.SIGKILL
    wait_until(lambda: not cgroup.pids(), what="every process to die")


# --------------------------------------------------------------------------- devices
def test_ebpf_device_filter_denies_a_block_device_despite_cap_mknod(make_cgroup, workloads):
    cgroup = make_cgroup("dev")
    # A block device that exists (a loop device), so that without the filter the open
    # would work; failing that 8:0, where the open would fail with ENXIO, not EPERM.
    subprocess.run(["modprobe", "loop"], capture_output=True, timeout=60)
    devices = [d for d in sorted(os.listdir("/sys/dev/block")) if d.startswith("7:")]
    major, minor = (int(x) for x in devices[0].split(":")) if devices else (8, 0)
    api.apply_resources(cgroup, {"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})
    assert len(devices_bpf.attached_program_ids(cgroup.paths[""])) == 1
    # /tmp is nodev in the VM; the overlay root is not.
    with tempfile.TemporaryDirectory(dir="/var/tmp") as directory:
        result = workloads(cgroup, DEVICES, os.path.join(directory, "disk"),
                           str(major), str(minor)).start().json()
    assert result == {"mknod": "ok", "block": "Operation not permitted", "null": "ok"}


# --------------------------------------------------------------------------- errors
def test_controller_that_cannot_be_delegated_is_named(leak_check, workloads):
    """A parent cgroup holding a process cannot enable controllers for its children (the
    no-internal-process rule): the error says which field, which cgroup and why."""
    parent_id = f"{leak_check.id_prefix}-cg2-busy"
    leak_check.add_container_id(parent_id)
    parent = CgroupPlacement({"": f"/sys/fs/cgroup/{parent_id}"})
    parent.create()
    child = CgroupPlacement({"": f"/sys/fs/cgroup/{parent_id}/c"})
    try:
        sitter = workloads(parent, "import time\ntime.sleep(60)\n").start()
        child.create()
        with pytest.raises(ResourceUnsupported) as info:
            api.apply_resources(child, {"memory": {"limit": 16 * MiB}})
        message = str(info.value)
        assert message.startswith("linux.resources.memory.limit: ")
        assert parent_id in message and "processes of its own" in message
        sitter.kill()
    finally:
        for placement in (child, parent):
            placement.signal_all(signal.SIGKILL)
            placement.remove()


def test_v1_only_fields_are_refused(make_cgroup):
    cgroup = make_cgroup("v1only")
    with pytest.raises(ResourceUnsupported, match=r"linux\.resources\.memory\.swappiness"):
        api.apply_resources(cgroup, {"memory": {"swappiness": 10}})
    with pytest.raises(ResourceUnsupported, match=r"linux\.resources\.cpu\.realtime"):
        api.apply_resources(cgroup, {"cpu": {"realtimeRuntime": 1000}})
    api.apply_resources(cgroup, {"unified": {"pids.max": "7"}})
    assert read(cgroup, "pids.max") == "7"
