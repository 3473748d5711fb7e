"""The properties of a container's systemd unit: how it is started (scope or slice,
accounting, delegation) and its limits from the OCI `linux.resources`, as the D-Bus
values `StartTransientUnit` and `SetUnitProperties` take. The conversions are runc's
(libcontainer/cgroups/systemd/v2.go): memory+swap -> MemorySwapMax, shares -> CPUWeight,
quota/period -> CPUQuotaPerSecUSec rounded up to whole percents, cpusets -> bitmasks.

systemd has no property for everything the spec can ask (hugepages, rdma, io throttling,
devices through our own eBPF program...): the driver writes the cgroup files too, as
runc does, so these only keep systemd's idea of the unit in line with the files. A
property is `(name, (D-Bus signature, value))`, the shape jeepney sends as `(sv)`.
"""
from __future__ import annotations

from pyruntime.cgroups.errors import InvalidResource
from pyruntime.cgroups.resources_v2 import (
    DEFAULT_CPU_PERIOD,
    blkio_weight_to_io_weight,
    cpu_shares_to_weight,
    memory_swap_to_v2,
)
from pyruntime.cgroups.spec_values import PREFIX, integer, string

#: systemd's "infinity" for limits (CGROUP_LIMIT_MAX) and times (USEC_INFINITY).
INFINITY = 2**64 - 1

Property = tuple[str, tuple[str, object]]


def start_properties(unit: str, slice_name: str, description: str,
                     pid: int | None) -> list[Property]:
    """What every container unit is started with (runc's Apply). A scope gets the pid,
    `Slice=` and `Delegate=`; a slice can hold no pid of its own in systemd's model, so
    it is only `Wants=` its parent and the pid is moved in through cgroupfs."""
    properties: list[Property] = [("Description", ("s", description))]
    if unit.endswith(".slice"):
        properties.append(("Wants", ("as", [slice_name])))
    else:
        properties.append(("Slice", ("s", slice_name)))
        if pid is not None:
            properties.append(("PIDs", ("au", [pid])))
        # The container may make cgroups of its own below its scope (systemd leaves a
        # delegated subtree alone), and we write its cgroup files ourselves.
        properties.append(("Delegate", ("b", True)))
    # Accounting on from the start: the controllers exist before the first process
    # runs, and the stats and `update` find their files.
    for name in ("MemoryAccounting", "CPUAccounting", "IOAccounting", "TasksAccounting"):
        properties.append((name, ("b", True)))
    # No ordering against shutdown.target and friends: the container lives and dies
    # with its processes, not with the boot transaction.
    properties.append(("DefaultDependencies", ("b", False)))
    return properties


def _limit(value: int) -> int:
    """-1 (the spec's "unlimited") is systemd's infinity."""
    return INFINITY if value == -1 else value


def cpu_quota_per_sec(quota: int | None, period: int | None) -> int | None:
    """runc's addCpuQuota: CPUQuotaPerSecUSec for a quota/period pair, None when neither
    is set. systemd keeps the quota as a whole percentage of one CPU and turns it back
    into cpu.max itself, so a fraction is rounded up to the next 10 ms per second (the
    exact value is then written to cpu.max by the driver). No quota (<= 0) is infinity."""
    quota = quota or 0
    period = period or 0
    if quota == 0 and period == 0:
        return None
    if quota <= 0:
        return INFINITY
    per_sec = quota * 1_000_000 // (period or DEFAULT_CPU_PERIOD)
    if per_sec % 10_000:
        per_sec = (per_sec // 10_000 + 1) * 10_000
    return per_sec


def cpuset_bits(text: str, field: str) -> bytes:
    """A cpuset list ("0-2,7") as the bitmask systemd takes for AllowedCPUs and
    AllowedMemoryNodes: little-endian bytes, bit N for CPU/node N, no trailing zero
    bytes (runc's RangeToBits)."""
    mask = 0
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        first, dash, last = item.partition("-")
        try:
            start = int(first)
            end = int(last) if dash else start
        except ValueError:
            raise InvalidResource(f"{field}: {text!r} is not a cpuset list (e.g. 0-2,7)") from None
        if start < 0 or end < start:
            raise InvalidResource(f"{field}: invalid range {item!r} in {text!r}")
        for bit in range(start, end + 1):
            mask |= 1 << bit
    if not mask:
        raise InvalidResource(f"{field}: {text!r} names no CPU or memory node")
    return mask.to_bytes((mask.bit_length() + 7) // 8, "little")


def resource_properties(resources: dict | None, current_period: int | None = None
                        ) -> list[Property]:
    """The unit properties for `linux.resources` (validated: errors name the field).
    `current_period` is the cgroup's cpu.max period, used by an `update` that gives a
    quota alone (the kernel keeps its period then, and so must the percentage)."""
    if not resources:
        return []
    if not isinstance(resources, dict):
        raise InvalidResource(f"{PREFIX}: expected an object")
    properties: list[Property] = []
    _memory(resources, properties)
    _cpu(resources, properties, current_period)
    _pids(resources, properties)
    _io(resources, properties)
    _unified(resources, properties)
    return properties


def _section(resources: dict, key: str) -> dict:
    """`resources[key]`, {} when absent. Fields this runtime does not know are refused
    by the cgroup file code (resources_v2/v1), which sees every request too."""
    value = resources.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidResource(f"{PREFIX}.{key}: expected an object")
    return value


def _memory(resources: dict, properties: list[Property]) -> None:
    memory = _section(resources, "memory")
    field = f"{PREFIX}.memory"
    limit = integer(memory, "limit", f"{field}.limit", minimum=-1) or 0
    reservation = integer(memory, "reservation", f"{field}.reservation", minimum=-1) or 0
    swap = integer(memory, "swap", f"{field}.swap", minimum=-1) or 0
    if limit:
        properties.append(("MemoryMax", ("t", _limit(limit))))
    if reservation:
        properties.append(("MemoryLow", ("t", _limit(reservation))))
    converted = memory_swap_to_v2(swap, limit)
    if converted or (swap > 0 and swap == limit):
        # swap == limit is "no swap at all": 0, not unset (which would be unlimited).
        properties.append(("MemorySwapMax", ("t", _limit(converted))))


def _cpu(resources: dict, properties: list[Property], current_period: int | None) -> None:
    cpu = _section(resources, "cpu")
    field = f"{PREFIX}.cpu"
    shares = integer(cpu, "shares", f"{field}.shares", minimum=0)
    if shares:
        properties.append(("CPUWeight", ("t", cpu_shares_to_weight(shares))))
    quota = integer(cpu, "quota", f"{field}.quota")
    period = integer(cpu, "period", f"{field}.period", minimum=0)
    if period:
        properties.append(("CPUQuotaPeriodUSec", ("t", period)))
    if quota and not period:
        period = current_period
    per_sec = cpu_quota_per_sec(quota, period)
    if per_sec is not None:
        properties.append(("CPUQuotaPerSecUSec", ("t", per_sec)))
    cpus = string(cpu, "cpus", f"{field}.cpus")
    if cpus:
        properties.append(("AllowedCPUs", ("ay", cpuset_bits(cpus, f"{field}.cpus"))))
    mems = string(cpu, "mems", f"{field}.mems")
    if mems:
        properties.append(("AllowedMemoryNodes", ("ay", cpuset_bits(mems, f"{field}.mems"))))


def _pids(resources: dict, properties: list[Property]) -> None:
    pids = _section(resources, "pids")
    limit = integer(pids, "limit", f"{PREFIX}.pids.limit")
    if limit is not None:
        # 0 and negative mean no limit, as pids.max is written for them.
        properties.append(("TasksMax", ("t", limit if limit > 0 else INFINITY)))


def _io(resources: dict, properties: list[Property]) -> None:
    block_io = _section(resources, "blockIO")
    field = f"{PREFIX}.blockIO.weight"
    weight = integer(block_io, "weight", field, minimum=0, maximum=1000)
    if weight:
        if weight < 10:
            raise InvalidResource(f"{field}: {weight} is outside 10..1000")
        # IOWeight is on io.weight's scale (1..10000), which the driver also writes:
        # the v1 number as is (runc passes it unconverted) would make them disagree.
        properties.append(("IOWeight", ("t", blkio_weight_to_io_weight(weight))))


_UNIFIED_LIMITS = {"memory.high": "MemoryHigh", "memory.low": "MemoryLow",
                   "memory.min": "MemoryMin", "memory.max": "MemoryMax",
                   "memory.swap.max": "MemorySwapMax", "pids.max": "TasksMax"}
_UNIFIED_CPUSETS = {"cpuset.cpus": "AllowedCPUs", "cpuset.mems": "AllowedMemoryNodes"}


def _unified(resources: dict, properties: list[Property]) -> None:
    """runc's unifiedResToSystemdProps: the `unified` files systemd has a property for.
    The rest are written to the files only (systemd never touches them)."""
    unified = resources.get("unified")
    if not unified:
        return
    if not isinstance(unified, dict):
        raise InvalidResource(f"{PREFIX}.unified: expected an object of file -> value")
    for name, value in sorted(unified.items()):
        where = f"{PREFIX}.unified.{name}"
        if not isinstance(value, str):
            raise InvalidResource(f"{where}: the value must be a string")
        value = value.strip()
        if name in _UNIFIED_LIMITS:
            properties.append((_UNIFIED_LIMITS[name], ("t", _unified_number(value, where))))
        elif name in _UNIFIED_CPUSETS:
            properties.append((_UNIFIED_CPUSETS[name], ("ay", cpuset_bits(value, where))))
        elif name == "cpu.weight":
            properties.append(("CPUWeight", ("t", _unified_number(value, where))))
        elif name == "cpu.max":
            words = value.split()
            if not 1 <= len(words) <= 2:
                raise InvalidResource(f"{where}: {value!r} is not \"QUOTA [PERIOD]\"")
            quota = 0 if words[0] == "max" else _unified_number(words[0], where)
            period = _unified_number(words[1], where) if len(words) == 2 \
                else DEFAULT_CPU_PERIOD
            properties.append(("CPUQuotaPeriodUSec", ("t", period)))
            properties.append(("CPUQuotaPerSecUSec", ("t", cpu_quota_per_sec(quota, period))))


def _unified_number(value: str, where: str) -> int:
    if value == "max":
        return INFINITY
    if not value.isdigit():
        raise InvalidResource(f"{where}: {value!r} is not a number or \"max\"")
    return int(value)
