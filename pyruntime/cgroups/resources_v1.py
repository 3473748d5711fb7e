"""OCI `linux.resources` on cgroup v1 (and the v1 side of a hybrid host): the mapping
of runc's libcontainer/cgroups/fs.

Each controller lives in its own hierarchy; `paths` (CgroupPlacement.paths) maps a
hierarchy key such as "memory" or "cpu,cpuacct" to the container's directory in it. The
OCI values are v1's own, so they are written unconverted; what needs care is order:
memory and memory+swap limits must stay memsw >= memory at every step (raise memsw first
when growing, the memory limit first when shrinking), and a CFS period may be refused
until the quota that goes with it is written. Devices go through the emulator: a new
cgroup is reset to deny-all and given its allow rules; a live one gets only the minimal
transition, then `devices.list` is read back and compared with what was asked.

Everything requested is validated before the first write, so a spec the host cannot
enforce fails as a whole, with an error naming the field and the reason.
"""
from __future__ import annotations

import os

from pyruntime.cgroups import cgroupfs
from pyruntime.cgroups.device_rules import DeviceEmulator, DeviceRule
from pyruntime.cgroups.errors import (
    CgroupError,
    InvalidResource,
    ResourceBusy,
    ResourceUnsupported,
)
from pyruntime.cgroups.placement import hierarchy_dir
from pyruntime.cgroups.resources_v2 import (
    BLOCK_IO_FIELDS,
    CPU_FIELDS,
    MEMORY_FIELDS,
    TOP_LEVEL_FIELDS,
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


class _Plan:
    """Validated writes and actions, run only once every requested value is valid."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths
        self.steps: list = []

    def directory(self, field: str, controller: str) -> str:
        path = hierarchy_dir(self.paths, controller)
        if path is None:
            mounted = sorted(k for k in self.paths if k and not k.startswith("name="))
            raise ResourceUnsupported(
                f"{field}: the {controller} controller is not available in this cgroup "
                f"hierarchy (no cgroup v1 hierarchy of this container has it; mounted: "
                f"{', '.join(mounted) or 'none'})")
        if not os.path.isdir(path):
            raise CgroupError(f"{field}: cgroup {path} does not exist (create it first)")
        return path

    def file(self, field: str, controller: str, name: str, missing: str = "") -> str:
        directory = self.directory(field, controller)
        if not os.path.exists(os.path.join(directory, name)):
            raise ResourceUnsupported(
                f"{field}: {os.path.join(directory, name)} does not exist"
                + (f" ({missing})" if missing else " (this kernel does not support it)"))
        return directory

    def write(self, field: str, controller: str, name: str, value: str,
              missing: str = "") -> None:
        directory = self.file(field, controller, name, missing)
        self.steps.append(cgroupfs.deferred(cgroupfs.write, directory, name, value, field))

    def action(self, step) -> None:
        self.steps.append(step)

    def run(self) -> None:
        for step in self.steps:
            step()


def apply(paths: dict[str, str], resources: dict, device_rules: list[DeviceRule] | None,
          update: bool = False, before_writes=None) -> None:
    """Apply `resources` (an OCI linux.resources object) to the v1 cgroups in `paths`.
    `device_rules` (spec rules + defaults) replace the device rules when not None;
    `before_writes` is called once everything is checked, before the first write."""
    unknown = sorted(set(resources) - TOP_LEVEL_FIELDS)
    if unknown:
        raise ResourceUnsupported(f"{PREFIX}.{unknown[0]}: not a resource this runtime knows")
    if resources.get("unified"):
        raise ResourceUnsupported(
            f"{PREFIX}.unified: cgroup v2 files cannot be set on a cgroup v1 host; "
            f"remove linux.resources.unified or run on a cgroup v2 host")
    plan = _Plan(paths)
    _plan_cpuset(plan, resources)
    if device_rules is not None:
        _plan_devices(plan, device_rules)
    _plan_memory(plan, resources)
    _plan_cpu(plan, resources)
    _plan_pids(plan, resources)
    _plan_blkio(plan, resources)
    _plan_hugetlb(plan, resources)
    _plan_network(plan, resources)
    _plan_rdma(plan, resources)
    if before_writes is not None:
        before_writes()
    plan.run()


# --------------------------------------------------------------------------- cpuset
def _plan_cpuset(plan: _Plan, resources: dict) -> None:
    cpu = section(resources, "cpu", CPU_FIELDS)
    for key in ("cpus", "mems"):
        value = string(cpu, key, f"{PREFIX}.cpu.{key}")
        if value:
            plan.write(f"{PREFIX}.cpu.{key}", "cpuset", f"cpuset.{key}", value)


# --------------------------------------------------------------------------- devices
def _plan_devices(plan: _Plan, rules: list[DeviceRule]) -> None:
    field = f"{PREFIX}.devices"
    target = DeviceEmulator.from_rules(rules)
    directory = plan.file(field, "devices", "devices.allow")
    plan.action(cgroupfs.deferred(_set_devices, directory, target, field))


def _set_devices(directory: str, target: DeviceEmulator, field: str) -> None:
    current = DeviceEmulator.from_list(cgroupfs.read(directory, "devices.list"))
    for rule in current.transition(target):
        name = "devices.allow" if rule.allow else "devices.deny"
        cgroupfs.write(directory, name, rule.cgroup_string(), field)
    # What the kernel ended up with (a write it ignored would otherwise go unnoticed).
    after = DeviceEmulator.from_list(cgroupfs.read(directory, "devices.list"))
    if target.default_allow != after.default_allow or (
            not target.default_allow and after != target):
        raise CgroupError(
            f"{field}: {directory}/devices.list does not match the requested rules after "
            f"writing them (the parent cgroup may not allow some of these devices)")


# --------------------------------------------------------------------------- memory
def _plan_memory(plan: _Plan, resources: dict) -> None:
    memory = section(resources, "memory", MEMORY_FIELDS)
    field = f"{PREFIX}.memory"
    limit = integer(memory, "limit", f"{field}.limit", minimum=-1) or 0
    swap = integer(memory, "swap", f"{field}.swap", minimum=-1) or 0
    reservation = integer(memory, "reservation", f"{field}.reservation", minimum=-1) or 0
    # kernel and kernelTCP: deprecated by the OCI spec, and Linux 6.x refuses kmem limits;
    # runc ignores them, so do we (validated for type only).
    integer(memory, "kernel", f"{field}.kernel")
    integer(memory, "kernelTCP", f"{field}.kernelTCP")
    swappiness = integer(memory, "swappiness", f"{field}.swappiness")
    disable_oom = boolean(memory, "disableOOMKiller", f"{field}.disableOOMKiller")
    if boolean(memory, "useHierarchy", f"{field}.useHierarchy") is False:
        raise ResourceUnsupported(
            f"{field}.useHierarchy: this kernel's memory cgroup is always hierarchical")

    if limit or swap:
        directory = plan.file(f"{field}.limit" if limit else f"{field}.swap", "memory",
                              "memory.limit_in_bytes")
        has_memsw = os.path.exists(os.path.join(directory, "memory.memsw.limit_in_bytes"))
        if limit == -1 and swap == 0 and has_memsw:
            swap = -1  # runc: unlimited memory with no swap value means unlimited both
        if swap and not has_memsw:
            if swap != -1:
                raise ResourceUnsupported(
                    f"{field}.swap: {directory}/memory.memsw.limit_in_bytes does not exist "
                    f"(the kernel has no swap accounting: boot with swapaccount=1)")
            swap = 0  # unlimited swap is all a host without swap accounting can do
        if swap > 0 and 0 < limit and swap < limit:
            raise InvalidResource(
                f"{field}.swap: {swap} is below memory.limit {limit}; swap is the "
                f"memory+swap total and must be >= the memory limit (or -1)")
        plan.action(cgroupfs.deferred(_set_memory_and_swap, directory, limit, swap, field))
    if reservation:
        plan.write(f"{field}.reservation", "memory", "memory.soft_limit_in_bytes",
                   str(reservation))
    if disable_oom:
        plan.write(f"{field}.disableOOMKiller", "memory", "memory.oom_control", "1")
    if swappiness is not None and swappiness != -1:
        if not 0 <= swappiness <= 100:
            raise InvalidResource(f"{field}.swappiness: {swappiness} is outside 0..100")
        plan.write(f"{field}.swappiness", "memory", "memory.swappiness", str(swappiness))


def _set_memory_and_swap(directory: str, limit: int, swap: int, field: str) -> None:
    """runc's setMemoryAndSwap: the kernel requires memsw >= memory at all times."""
    if limit and swap:
        current = cgroupfs.read_value(directory, "memory.limit_in_bytes")
        if swap == -1 or current < swap:
            _set_swap(directory, swap, field)
            _set_limit(directory, limit, field)
            return
    _set_limit(directory, limit, field)
    _set_swap(directory, swap, field)


def _set_limit(directory: str, limit: int, field: str) -> None:
    if not limit:
        return
    try:
        cgroupfs.write(directory, "memory.limit_in_bytes", str(limit), f"{field}.limit")
    except ResourceBusy:
        usage = cgroupfs.read_value_optional(directory, "memory.usage_in_bytes")
        peak = cgroupfs.read_value_optional(directory, "memory.max_usage_in_bytes")
        raise ResourceBusy(
            f"{field}.limit: unable to set the memory limit to {limit}: it is below the "
            f"current usage {usage} (peak {peak}) and the kernel could not reclaim enough"
        ) from None


def _set_swap(directory: str, swap: int, field: str) -> None:
    if swap:
        cgroupfs.write(directory, "memory.memsw.limit_in_bytes", str(swap), f"{field}.swap")


# --------------------------------------------------------------------------- cpu
def _plan_cpu(plan: _Plan, resources: dict) -> None:
    cpu = section(resources, "cpu", CPU_FIELDS)
    field = f"{PREFIX}.cpu"
    shares = integer(cpu, "shares", f"{field}.shares", minimum=0)
    if shares:
        directory = plan.file(f"{field}.shares", "cpu", "cpu.shares")
        plan.action(cgroupfs.deferred(_set_shares, directory, shares, f"{field}.shares"))
    period = integer(cpu, "period", f"{field}.period", minimum=0) or 0
    quota = integer(cpu, "quota", f"{field}.quota") or 0
    if period or quota:
        directory = plan.file(f"{field}.quota" if quota else f"{field}.period", "cpu",
                              "cpu.cfs_quota_us", missing="CONFIG_CFS_BANDWIDTH is off")
        plan.action(cgroupfs.deferred(_set_cfs, directory, quota, period, field))
    burst = integer(cpu, "burst", f"{field}.burst", minimum=0)
    if burst is not None:
        plan.write(f"{field}.burst", "cpu", "cpu.cfs_burst_us", str(burst),
                   missing="cpu.cfs_burst_us needs Linux 5.14")
    rt_period = integer(cpu, "realtimePeriod", f"{field}.realtimePeriod", minimum=0)
    rt_runtime = integer(cpu, "realtimeRuntime", f"{field}.realtimeRuntime")
    # The period first: a runtime is only valid against the period it is measured in.
    if rt_period:
        plan.write(f"{field}.realtimePeriod", "cpu", "cpu.rt_period_us", str(rt_period),
                   missing="the kernel lacks CONFIG_RT_GROUP_SCHED")
    if rt_runtime:
        plan.write(f"{field}.realtimeRuntime", "cpu", "cpu.rt_runtime_us", str(rt_runtime),
                   missing="the kernel lacks CONFIG_RT_GROUP_SCHED")
    idle = integer(cpu, "idle", f"{field}.idle", minimum=0, maximum=1)
    if idle is not None:
        plan.write(f"{field}.idle", "cpu", "cpu.idle", str(idle),
                   missing="cpu.idle needs Linux 5.15")


def _set_shares(directory: str, shares: int, field: str) -> None:
    cgroupfs.write(directory, "cpu.shares", str(shares), field)
    # The kernel clamps silently; say so rather than run with another value (runc too).
    actual = cgroupfs.read_value(directory, "cpu.shares")
    if shares > actual:
        raise InvalidResource(f"{field}: the maximum allowed cpu-shares is {actual}")
    if shares < actual:
        raise InvalidResource(f"{field}: the minimum allowed cpu-shares is {actual}")


def _set_cfs(directory: str, quota: int, period: int, field: str) -> None:
    pending_period = ""
    if period:
        try:
            cgroupfs.write(directory, "cpu.cfs_period_us", str(period), f"{field}.period")
        except InvalidResource:
            # A shorter period can be refused while the old quota/new period would
            # exceed the parent's bandwidth; runc retries it after the quota.
            if not quota:
                raise
            pending_period = str(period)
    if quota:
        cgroupfs.write(directory, "cpu.cfs_quota_us", str(quota), f"{field}.quota")
        if pending_period:
            cgroupfs.write(directory, "cpu.cfs_period_us", pending_period, f"{field}.period")


# --------------------------------------------------------------------------- pids
def _plan_pids(plan: _Plan, resources: dict) -> None:
    pids = section(resources, "pids", {"limit"})
    limit = integer(pids, "limit", f"{PREFIX}.pids.limit")
    if limit is not None:
        plan.write(f"{PREFIX}.pids.limit", "pids", "pids.max",
                   "max" if limit <= 0 else str(limit))


# --------------------------------------------------------------------------- blkio
def _plan_blkio(plan: _Plan, resources: dict) -> None:
    block_io = section(resources, "blockIO", BLOCK_IO_FIELDS)
    if not block_io:
        return
    field = f"{PREFIX}.blockIO"
    directory = plan.directory(field, "blkio")
    # CFQ (gone since 5.0) had blkio.weight; BFQ has blkio.bfq.weight (runc's choice too).
    prefix = "blkio" if os.path.exists(os.path.join(directory, "blkio.weight")) else "blkio.bfq"
    no_weight = "no I/O scheduler with weights (BFQ) is in use for this cgroup"
    weight = integer(block_io, "weight", f"{field}.weight", minimum=0, maximum=1000)
    if weight:
        plan.write(f"{field}.weight", "blkio", f"{prefix}.weight", str(weight), no_weight)
    leaf_weight = integer(block_io, "leafWeight", f"{field}.leafWeight", minimum=0)
    if leaf_weight:
        plan.write(f"{field}.leafWeight", "blkio", "blkio.leaf_weight", str(leaf_weight),
                   "leaf weights existed only with the CFQ scheduler")
    for index, entry in enumerate(object_list(block_io, "weightDevice", f"{field}.weightDevice")):
        where = f"{field}.weightDevice[{index}]"
        major = integer(entry, "major", f"{where}.major", minimum=0)
        minor = integer(entry, "minor", f"{where}.minor", minimum=0)
        if major is None or minor is None:
            raise InvalidResource(f"{where}: major and minor are required")
        device_weight = integer(entry, "weight", f"{where}.weight", minimum=0)
        if device_weight:
            plan.write(where, "blkio", f"{prefix}.weight_device",
                       f"{major}:{minor} {device_weight}", no_weight)
        device_leaf = integer(entry, "leafWeight", f"{where}.leafWeight", minimum=0)
        if device_leaf:
            plan.write(where, "blkio", "blkio.leaf_weight_device",
                       f"{major}:{minor} {device_leaf}",
                       "leaf weights existed only with the CFQ scheduler")
    for key, name in (("throttleReadBpsDevice", "read_bps_device"),
                      ("throttleWriteBpsDevice", "write_bps_device"),
                      ("throttleReadIOPSDevice", "read_iops_device"),
                      ("throttleWriteIOPSDevice", "write_iops_device")):
        for major, minor, rate in throttle_devices(block_io, key):
            plan.write(f"{field}.{key}", "blkio", f"blkio.throttle.{name}",
                       f"{major}:{minor} {rate}", "CONFIG_BLK_DEV_THROTTLING is off")


# --------------------------------------------------------------------------- the rest
def _plan_hugetlb(plan: _Plan, resources: dict) -> None:
    for where, size, limit in hugepage_limits(resources):
        plan.write(where, "hugetlb", f"hugetlb.{size}.limit_in_bytes", str(limit),
                   f"no {size} huge pages on this host")


def _plan_network(plan: _Plan, resources: dict) -> None:
    network = section(resources, "network", {"classID", "priorities"})
    field = f"{PREFIX}.network"
    class_id = integer(network, "classID", f"{field}.classID", minimum=0)
    if class_id:
        plan.write(f"{field}.classID", "net_cls", "net_cls.classid", str(class_id))
    for index, entry in enumerate(object_list(network, "priorities", f"{field}.priorities")):
        where = f"{field}.priorities[{index}]"
        name = string(entry, "name", f"{where}.name")
        priority = integer(entry, "priority", f"{where}.priority", minimum=0)
        if not name or priority is None:
            raise InvalidResource(f"{where}: name and priority are required")
        plan.write(where, "net_prio", "net_prio.ifpriomap", f"{name} {priority}")


def _plan_rdma(plan: _Plan, resources: dict) -> None:
    for where, line in rdma_limits(resources):
        plan.write(where, "rdma", "rdma.max", line)
