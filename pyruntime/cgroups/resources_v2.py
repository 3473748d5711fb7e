"""OCI `linux.resources` on cgroup v2: the mapping of runc's libcontainer/cgroups/fs2.

The OCI spec was written for cgroup v1, so several values are converted (the functions
below, unit-tested against runc's formulas): cpu shares -> `cpu.weight`, memory+swap ->
`memory.swap.max` (swap only), blkio weight -> `io.weight`. Controllers are enabled in
`cgroup.subtree_control` of every ancestor from the mount root down to the container's
parent (never in the container's own cgroup, which holds processes: the no-internal-process
rule). Every requested value is checked against the cgroup before anything is written,
so an unenforceable spec fails as a whole with an error naming the field.

Devices are a BPF program (devices_bpf); the rest are plain file writes, in runc's order.
"""
from __future__ import annotations

import os

from pyruntime.cgroups import cgroupfs
from pyruntime.cgroups.device_rules import DeviceRule
from pyruntime.cgroups.errors import (
    CgroupError,
    InvalidResource,
    ResourceBusy,
    ResourceUnsupported,
)
from pyruntime.cgroups.spec_values import (
    PREFIX,
    hugepage_limits,
    rdma_limits,
    boolean,
    integer,
    object_list,
    section,
    string,
    throttle_devices,
)

DEFAULT_CPU_PERIOD = 100000  # µs, the kernel's default (cgroup-v2.rst, cpu.max)
MAX_SHARES = 262144  # kernel MAX_SHARES (1 << 18)
MIN_SHARES = 2

MEMORY_FIELDS = {"limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
                 "disableOOMKiller", "useHierarchy", "checkBeforeUpdate"}
CPU_FIELDS = {"shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod",
              "cpus", "mems", "idle"}
BLOCK_IO_FIELDS = {"weight", "leafWeight", "weightDevice", "throttleReadBpsDevice",
                   "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                   "throttleWriteIOPSDevice"}
TOP_LEVEL_FIELDS = {"devices", "memory", "cpu", "pids", "blockIO", "hugepageLimits",
                    "network", "rdma", "unified"}


# --------------------------------------------------------------------------- conversions
def cpu_shares_to_weight(shares: int) -> int:
    """runc's ConvertCPUSharesToCgroupV2Value: [2, 262144] -> [1, 10000], 0 = unset.
    Values outside the kernel's range are clamped first, as the v1 kernel would."""
    if shares == 0:
        return 0
    shares = min(max(shares, MIN_SHARES), MAX_SHARES)
    return 1 + ((shares - 2) * 9999) // 262142


def memory_swap_to_v2(swap: int, memory: int) -> int:
    """runc's ConvertMemorySwapToCgroupV2Value: OCI `swap` is memory+swap (the v1
    memsw limit); v2's memory.swap.max is swap alone. -1 = unlimited, 0 = unset."""
    if memory == -1 and swap == 0:
        # v1 compatibility: unlimited memory without a swap value means unlimited both.
        return -1
    if swap in (-1, 0):
        return swap
    if memory == -1:
        return swap  # unlimited memory: the swap value stands as is
    if memory == 0:
        raise InvalidResource(f"{PREFIX}.memory.swap: a swap limit needs a memory limit "
                              f"(memory.limit) to subtract it from")
    if memory < 0:
        raise InvalidResource(f"{PREFIX}.memory.limit: invalid value {memory}")
    if swap < memory:
        raise InvalidResource(
            f"{PREFIX}.memory.swap: {swap} is below memory.limit {memory}; swap is the "
            f"memory+swap total and must be >= the memory limit (or -1 for unlimited)")
    return swap - memory


def blkio_weight_to_io_weight(weight: int) -> int:
    """runc's ConvertBlkIOToIOWeightValue: [10, 1000] -> [1, 10000], 0 = unset."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def cpu_max(quota: int | None, period: int | None) -> str | None:
    """The `cpu.max` line: "QUOTA PERIOD", "max PERIOD" for no quota, None when neither
    is set (runc: quota <= 0 means no quota; period defaults to 100000)."""
    quota = quota or 0
    period = period or 0
    if quota == 0 and period == 0:
        return None
    head = str(quota) if quota > 0 else "max"
    return f"{head} {period or DEFAULT_CPU_PERIOD}"


def limit_value(value: int) -> str:
    """A byte/count limit for a .max/.low file: -1 -> "max"; other values as numbers."""
    return "max" if value == -1 else str(value)


# --------------------------------------------------------------------------- controllers
def enable_controllers(directory: str, mount_point: str,
                       wanted: set[str] | None = None) -> dict[str, str]:
    """Enable controllers for `directory` in the subtree_control of each ancestor, from
    the mount root down to its parent (runc's CreateCgroupPath enables every available
    one; so do we when `wanted` is None). Failures are not fatal here (a delegated or
    busy ancestor may refuse some): they are returned, controller -> reason, so that a
    resource that needs the missing controller can say why."""
    relative = os.path.relpath(directory, mount_point)
    if relative.startswith(".."):
        raise CgroupError(f"cgroup {directory} is not under the cgroup2 mount {mount_point}")
    parts = [] if relative == "." else relative.split(os.sep)
    failures: dict[str, str] = {}
    current = mount_point
    for part in parts:
        available = cgroupfs.controllers(current)
        enabled = set((cgroupfs.read_optional(current, "cgroup.subtree_control") or "").split())
        todo = sorted((available if wanted is None else available & wanted) - enabled)
        if todo:
            try:
                cgroupfs.write(current, "cgroup.subtree_control",
                               " ".join("+" + c for c in todo))
            except CgroupError:
                # One at a time, to enable what can be (runc does the same).
                for controller in todo:
                    try:
                        cgroupfs.write(current, "cgroup.subtree_control", "+" + controller)
                    except CgroupError as error:
                        reason = str(error)
                        if isinstance(error, ResourceBusy):
                            reason = (f"{current} has processes of its own, so it cannot "
                                      f"delegate the {controller} controller (cgroup v2's "
                                      f"no-internal-process rule)")
                        failures.setdefault(controller, reason)
        current = os.path.join(current, part)
    return failures


_SECTION_CONTROLLERS = {"memory": {"memory"}, "pids": {"pids"}, "blockIO": {"io"},
                        "cpu": {"cpu", "cpuset"}, "hugepageLimits": {"hugetlb"},
                        "rdma": {"rdma"}}


def controllers_for(resources: dict) -> set[str]:
    """The controllers the given resources need (enabled on demand, so that a spec with
    only device rules changes no subtree_control; `enable_controllers` with no `wanted`
    enables them all, as runc does when it creates the cgroup)."""
    wanted: set[str] = set()
    for key, controllers in _SECTION_CONTROLLERS.items():
        if resources.get(key):
            wanted |= controllers
    unified = resources.get("unified")
    if isinstance(unified, dict):
        wanted |= {name.split(".", 1)[0] for name in unified if isinstance(name, str)}
    return wanted


class _Writes:
    """The planned writes: each is validated (controller present, file present) when
    it is added; nothing is written until all are valid."""

    def __init__(self, directory: str, failures: dict[str, str]) -> None:
        self.directory = directory
        self.available = cgroupfs.controllers(directory)
        self.failures = failures
        self.items: list[tuple[str, str, str]] = []
        self.actions: list = []

    def require(self, field: str, controller: str) -> None:
        if controller in self.available:
            return
        why = self.failures.get(controller)
        if why is None:
            why = (f"the {controller} controller is not available in this cgroup hierarchy "
                   f"({os.path.dirname(self.directory)} does not offer it to "
                   f"{os.path.basename(self.directory)}; cgroup.controllers: "
                   f"{' '.join(sorted(self.available)) or 'none'})")
        raise ResourceUnsupported(f"{field}: {why}")

    def exists(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.directory, name))

    def add(self, field: str, controller: str | None, name: str, value: str,
            missing: str = "") -> None:
        if controller:
            self.require(field, controller)
        if not self.exists(name):
            raise ResourceUnsupported(
                f"{field}: {os.path.join(self.directory, name)} does not exist"
                + (f" ({missing})" if missing else " (this kernel does not support it)"))
        self.items.append((field, name, value))

    def run(self) -> None:
        for field, name, value in self.items:
            cgroupfs.write(self.directory, name, value, field)
        for action in self.actions:
            action()


# --------------------------------------------------------------------------- apply
def apply(directory: str, mount_point: str, resources: dict,
          device_rules: list[DeviceRule] | None, update: bool = False,
          before_writes=None) -> None:
    """Apply `resources` (an OCI linux.resources object) to the v2 cgroup `directory`.
    `device_rules` (spec rules + defaults) replace the device filter when not None;
    `before_writes` is called once everything is checked, before the first write."""
    unknown = sorted(set(resources) - TOP_LEVEL_FIELDS)
    if unknown:
        raise ResourceUnsupported(f"{PREFIX}.{unknown[0]}: not a resource this runtime knows")
    failures = enable_controllers(directory, mount_point, controllers_for(resources))
    writes = _Writes(directory, failures)
    _plan_pids(writes, resources)
    _plan_memory(writes, resources, update)
    _plan_io(writes, resources)
    _plan_cpu(writes, resources, update)
    _plan_hugetlb(writes, resources)
    _plan_rdma(writes, resources)
    _plan_network(resources)
    _plan_unified(writes, resources)
    if device_rules is not None:
        rules = list(device_rules)
        from pyruntime.cgroups import devices_bpf  # v2 only: keeps v1 starts lean

        writes.actions.append(cgroupfs.deferred(devices_bpf.install, directory, rules))
    if before_writes is not None:
        before_writes()
    writes.run()


def _plan_pids(writes: _Writes, resources: dict) -> None:
    pids = section(resources, "pids", {"limit"})
    limit = integer(pids, "limit", f"{PREFIX}.pids.limit")
    if limit is not None:
        # runc: 0 and negative mean no limit.
        writes.add(f"{PREFIX}.pids.limit", "pids", "pids.max",
                   "max" if limit <= 0 else str(limit))


def _plan_memory(writes: _Writes, resources: dict, update: bool) -> None:
    memory = section(resources, "memory", MEMORY_FIELDS)
    field = f"{PREFIX}.memory"
    limit = integer(memory, "limit", f"{field}.limit", minimum=-1) or 0
    reservation = integer(memory, "reservation", f"{field}.reservation", minimum=-1) or 0
    swap = integer(memory, "swap", f"{field}.swap", minimum=-1) or 0
    swappiness = integer(memory, "swappiness", f"{field}.swappiness")
    if swappiness is not None and swappiness != -1:
        raise ResourceUnsupported(
            f"{field}.swappiness: cgroup v2 has no per-cgroup swappiness; remove it")
    if boolean(memory, "disableOOMKiller", f"{field}.disableOOMKiller"):
        raise ResourceUnsupported(
            f"{field}.disableOOMKiller: cgroup v2 cannot disable the OOM killer for a "
            f"cgroup; remove it (or set a larger memory.limit)")
    if boolean(memory, "useHierarchy", f"{field}.useHierarchy") is False:
        raise ResourceUnsupported(
            f"{field}.useHierarchy: cgroup v2 memory accounting is always hierarchical")
    # memory.kernel and memory.kernelTCP: deprecated by the OCI spec; kernel memory is
    # part of memory.max on v2. runc ignores them on both versions, and so do we.
    integer(memory, "kernel", f"{field}.kernel")
    integer(memory, "kernelTCP", f"{field}.kernelTCP")
    check_before = boolean(memory, "checkBeforeUpdate", f"{field}.checkBeforeUpdate")

    if limit or reservation or swap:
        writes.require(f"{field}.{'limit' if limit else 'reservation' if reservation else 'swap'}",
                       "memory")
    if check_before and update and limit > 0:
        usage = cgroupfs.read_value_optional(writes.directory, "memory.current")
        if usage > limit:
            raise ResourceBusy(
                f"{field}.limit: {limit} is below the container's current memory usage "
                f"{usage} (checkBeforeUpdate is set)")
    converted = memory_swap_to_v2(swap, limit)
    if converted != 0 or (swap > 0 and swap == limit):
        value = limit_value(converted)
        if writes.exists("memory.swap.max"):
            writes.add(f"{field}.swap", "memory", "memory.swap.max", value)
        elif value != "max":
            # Unlimited swap without swap accounting is what the host does anyway.
            writes.add(f"{field}.swap", "memory", "memory.swap.max", value,
                       missing="the kernel has no swap accounting (CONFIG_MEMCG_SWAP off or "
                               "swapaccount=0)")
    if limit:
        writes.add(f"{field}.limit", "memory", "memory.max", limit_value(limit))
    if reservation:
        writes.add(f"{field}.reservation", "memory", "memory.low", limit_value(reservation))
    if "memory" in writes.available and writes.exists("memory.oom.group"):
        # The container is one unit: an OOM kill takes all of it (as crun does), rather
        # than leaving an init whose worker was killed.
        writes.add(f"{field}", "memory", "memory.oom.group", "1")


def _plan_io(writes: _Writes, resources: dict) -> None:
    block_io = section(resources, "blockIO", BLOCK_IO_FIELDS)
    field = f"{PREFIX}.blockIO"
    weight = integer(block_io, "weight", f"{field}.weight", minimum=0, maximum=1000)
    if weight:
        if weight < 10:
            raise InvalidResource(f"{field}.weight: {weight} is outside 10..1000")
        if writes.exists("io.bfq.weight"):
            # BFQ takes the v1 scale (1..1000) as is (runc writes it unconverted).
            writes.add(f"{field}.weight", "io", "io.bfq.weight", str(weight))
        else:
            writes.add(f"{field}.weight", "io", "io.weight",
                       str(blkio_weight_to_io_weight(weight)),
                       missing="the io controller has no weight here: neither BFQ nor "
                               "io.cost is enabled")
    if integer(block_io, "leafWeight", f"{field}.leafWeight"):
        raise ResourceUnsupported(f"{field}.leafWeight: cgroup v2 has no leaf weight")
    for index, entry in enumerate(object_list(block_io, "weightDevice", f"{field}.weightDevice")):
        where = f"{field}.weightDevice[{index}]"
        major = integer(entry, "major", f"{where}.major", minimum=0)
        minor = integer(entry, "minor", f"{where}.minor", minimum=0)
        device_weight = integer(entry, "weight", f"{where}.weight", minimum=0, maximum=1000)
        if integer(entry, "leafWeight", f"{where}.leafWeight"):
            raise ResourceUnsupported(f"{where}.leafWeight: cgroup v2 has no leaf weight")
        if major is None or minor is None:
            raise InvalidResource(f"{where}: major and minor are required")
        if device_weight:
            if writes.exists("io.bfq.weight"):
                writes.add(where, "io", "io.bfq.weight", f"{major}:{minor} {device_weight}")
            else:
                writes.add(where, "io", "io.weight",
                           f"{major}:{minor} {blkio_weight_to_io_weight(device_weight)}",
                           missing="neither BFQ nor io.cost is enabled")
    for key, name in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                      ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for major, minor, rate in throttle_devices(block_io, key):
            # 0 means no limit, as writing 0 does on v1.
            writes.add(f"{field}.{key}", "io", "io.max",
                       f"{major}:{minor} {name}={rate if rate else 'max'}")


def _plan_cpu(writes: _Writes, resources: dict, update: bool) -> None:
    cpu = section(resources, "cpu", CPU_FIELDS)
    field = f"{PREFIX}.cpu"
    if integer(cpu, "realtimeRuntime", f"{field}.realtimeRuntime") or \
            integer(cpu, "realtimePeriod", f"{field}.realtimePeriod"):
        raise ResourceUnsupported(
            f"{field}.realtimeRuntime/realtimePeriod: cgroup v2 has no real-time CPU "
            f"bandwidth control (only cgroup v1 with CONFIG_RT_GROUP_SCHED)")
    shares = integer(cpu, "shares", f"{field}.shares", minimum=0)
    if shares:
        writes.add(f"{field}.shares", "cpu", "cpu.weight", str(cpu_shares_to_weight(shares)))
    quota = integer(cpu, "quota", f"{field}.quota")
    period = integer(cpu, "period", f"{field}.period", minimum=0)
    line = cpu_max(quota, period)
    if line is not None and update and not period:
        # Only the quota: the kernel keeps the current period, where runc's default
        # would silently reset a custom one (and change the CPU share it allows).
        line = line.split()[0]
    if line is not None:
        writes.add(f"{field}.quota" if quota else f"{field}.period", "cpu", "cpu.max", line)
    burst = integer(cpu, "burst", f"{field}.burst", minimum=0)
    if burst is not None:
        writes.add(f"{field}.burst", "cpu", "cpu.max.burst", str(burst),
                   missing="cpu.max.burst needs Linux 5.14")
    idle = integer(cpu, "idle", f"{field}.idle", minimum=0, maximum=1)
    if idle is not None:
        writes.add(f"{field}.idle", "cpu", "cpu.idle", str(idle),
                   missing="cpu.idle needs Linux 5.15")
    cpus = string(cpu, "cpus", f"{field}.cpus")
    if cpus:
        writes.add(f"{field}.cpus", "cpuset", "cpuset.cpus", cpus)
    mems = string(cpu, "mems", f"{field}.mems")
    if mems:
        writes.add(f"{field}.mems", "cpuset", "cpuset.mems", mems)


def _plan_hugetlb(writes: _Writes, resources: dict) -> None:
    for where, size, limit in hugepage_limits(resources):
        writes.add(where, "hugetlb", f"hugetlb.{size}.max", str(limit),
                   missing=f"no {size} huge pages on this host")


def _plan_rdma(writes: _Writes, resources: dict) -> None:
    for where, line in rdma_limits(resources):
        writes.add(where, "rdma", "rdma.max", line)


def _plan_network(resources: dict) -> None:
    network = section(resources, "network", {"classID", "priorities"})
    if network.get("classID") or network.get("priorities"):
        raise ResourceUnsupported(
            f"{PREFIX}.network: net_cls/net_prio do not exist on cgroup v2 (use eBPF or "
            f"nftables cgroup matching instead); remove linux.resources.network")


def _plan_unified(writes: _Writes, resources: dict) -> None:
    unified = resources.get("unified")
    if not unified:
        return
    if not isinstance(unified, dict):
        raise InvalidResource(f"{PREFIX}.unified: expected an object of file -> value")
    for name, value in unified.items():
        where = f"{PREFIX}.unified.{name}"
        if not isinstance(value, str):
            raise InvalidResource(f"{where}: the value must be a string")
        if not name or "/" in name or name.startswith(".") or name.startswith("cgroup."):
            # cgroup.* files (procs, subtree_control, kill...) belong to the runtime.
            raise InvalidResource(f"{where}: not a resource file name")
        controller = name.split(".", 1)[0]
        known = controller in _ALL_CONTROLLERS
        writes.add(where, controller if known else None, name, value,
                   missing="no such cgroup file; check the controller and kernel version")


_ALL_CONTROLLERS = {"cpu", "cpuset", "io", "memory", "hugetlb", "pids", "rdma", "misc"}

