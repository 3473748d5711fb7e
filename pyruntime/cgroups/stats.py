"""Resource usage of a container's cgroup, in the shape of runc's `events --stats` data
(runc types/events.go: Stats), so that tools reading runc's output read ours.

    {"cpu": {"usage": {"total", "percpu", "percpu_kernel", "percpu_user", "kernel",
                       "user"},
             "throttling": {"periods", "throttledPeriods", "throttledTime"}},
     "cpuset": {"cpus", "mems"},
     "memory": {"cache", "usage": {"limit", "usage", "max", "failcnt"}, "swap": {...},
                "kernel": {...}, "kernelTCP": {...}, "raw": {memory.stat}},
     "pids": {"current", "limit"},
     "blkio": {"ioServiceBytesRecursive": [{"major", "minor", "op", "value"}], ...},
     "hugetlb": {"2MB": {"usage", "max", "failcnt"}}}

Times are nanoseconds, sizes bytes, "no limit" reads as 2**64-1 (runc's MaxUint64).
Unlike runc's JSON (omitempty), every key is always present, zero when the host does not
account it: a missing controller gives zeros, never an error.
On v2, as in runc, swap usage and limit are reported as memory+swap (v1's meaning).
"""
from __future__ import annotations

import os

from pyruntime.cgroups import cgroupfs
from pyruntime.cgroups.cgroupfs import UNLIMITED
from pyruntime.cgroups.placement import hierarchy_dir

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_NS = 1_000_000_000


def _memory_entry(limit: int = 0, usage: int = 0, peak: int = 0, failcnt: int = 0) -> dict:
    return {"limit": limit, "usage": usage, "max": peak, "failcnt": failcnt}


def empty_stats() -> dict:
    return {
        "cpu": {"usage": {"total": 0, "percpu": [], "percpu_kernel": [], "percpu_user": [],
                          "kernel": 0, "user": 0},
                "throttling": {"periods": 0, "throttledPeriods": 0, "throttledTime": 0}},
        "cpuset": {"cpus": [], "mems": []},
        "memory": {"cache": 0, "usage": _memory_entry(), "swap": _memory_entry(),
                   "kernel": _memory_entry(), "kernelTCP": _memory_entry(), "raw": {}},
        "pids": {"current": 0, "limit": 0},
        "blkio": {"ioServiceBytesRecursive": [], "ioServicedRecursive": []},
        "hugetlb": {},
    }


def hugepage_sizes() -> list[str]:
    """Huge page sizes as the cgroup files name them ("2MB", "1GB"), like runc's
    HugePageSizes (from /sys/kernel/mm/hugepages/hugepages-2048kB)."""
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return []
    sizes = []
    for name in sorted(names):
        if name.startswith("hugepages-") and name.endswith("kB"):
            kib = int(name[len("hugepages-"):-2])
            if kib >= 1 << 20 and kib % (1 << 20) == 0:
                sizes.append(f"{kib >> 20}GB")
            elif kib >= 1 << 10 and kib % (1 << 10) == 0:
                sizes.append(f"{kib >> 10}MB")
            else:
                sizes.append(f"{kib}KB")
    return sizes


def parse_cpu_list(text: str) -> list[int]:
    """"0-2,5" -> [0, 1, 2, 5]."""
    result: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, sep, high = part.partition("-")
        result.extend(range(int(low), int(high) + 1) if sep else [int(low)])
    return result


# --------------------------------------------------------------------------- v2
def stats_v2(directory: str) -> dict:
    stats = empty_stats()
    cpu_stat = cgroupfs.read_flat_keyed(directory, "cpu.stat")
    usage = stats["cpu"]["usage"]
    usage["total"] = cpu_stat.get("usage_usec", 0) * 1000
    usage["user"] = cpu_stat.get("user_usec", 0) * 1000
    usage["kernel"] = cpu_stat.get("system_usec", 0) * 1000
    throttling = stats["cpu"]["throttling"]
    throttling["periods"] = cpu_stat.get("nr_periods", 0)
    throttling["throttledPeriods"] = cpu_stat.get("nr_throttled", 0)
    throttling["throttledTime"] = cpu_stat.get("throttled_usec", 0) * 1000

    for key in ("cpus", "mems"):
        text = cgroupfs.read_optional(directory, f"cpuset.{key}.effective")
        if text:
            stats["cpuset"][key] = parse_cpu_list(text)

    memory = stats["memory"]
    raw = cgroupfs.read_flat_keyed(directory, "memory.stat")
    memory["raw"] = raw
    memory["cache"] = raw.get("file", 0)
    if os.path.exists(os.path.join(directory, "memory.current")):
        events = cgroupfs.read_flat_keyed(directory, "memory.events")
        current = cgroupfs.read_value(directory, "memory.current")
        limit = cgroupfs.read_value_optional(directory, "memory.max", UNLIMITED)
        memory["usage"] = _memory_entry(
            limit, current, cgroupfs.read_value_optional(directory, "memory.peak"),
            events.get("max", 0))
        if os.path.exists(os.path.join(directory, "memory.swap.current")):
            swap = cgroupfs.read_value(directory, "memory.swap.current")
            swap_limit = cgroupfs.read_value_optional(directory, "memory.swap.max", UNLIMITED)
            if swap_limit != UNLIMITED and limit != UNLIMITED:
                swap_limit += limit
            else:
                swap_limit = UNLIMITED
            swap_events = cgroupfs.read_flat_keyed(directory, "memory.swap.events")
            memory["swap"] = _memory_entry(
                swap_limit, swap + current,
                cgroupfs.read_value_optional(directory, "memory.swap.peak"),
                swap_events.get("max", 0))

    stats["pids"]["current"] = cgroupfs.read_value_optional(directory, "pids.current")
    stats["pids"]["limit"] = cgroupfs.read_value_optional(directory, "pids.max")

    text = cgroupfs.read_optional(directory, "io.stat")
    if text:
        for device, values in sorted(cgroupfs.parse_nested_keyed(text).items()):
            major, _, minor = device.partition(":")
            if not minor:
                continue
            for key, op, table in (("rbytes", "Read", "ioServiceBytesRecursive"),
                                   ("wbytes", "Write", "ioServiceBytesRecursive"),
                                   ("rios", "Read", "ioServicedRecursive"),
                                   ("wios", "Write", "ioServicedRecursive")):
                if key in values:
                    stats["blkio"][table].append({"major": int(major), "minor": int(minor),
                                                  "op": op, "value": values[key]})

    for size in hugepage_sizes():
        if not os.path.exists(os.path.join(directory, f"hugetlb.{size}.current")):
            continue
        events = cgroupfs.read_flat_keyed(directory, f"hugetlb.{size}.events")
        stats["hugetlb"][size] = {
            "usage": cgroupfs.read_value(directory, f"hugetlb.{size}.current"),
            "max": cgroupfs.read_value_optional(directory, f"hugetlb.{size}.max"),
            "failcnt": events.get("max", 0)}
    return stats


# --------------------------------------------------------------------------- v1
def stats_v1(paths: dict[str, str]) -> dict:
    stats = empty_stats()

    def directory(controller: str) -> str | None:
        path = hierarchy_dir(paths, controller)
        return path if path and os.path.isdir(path) else None

    cpuacct = directory("cpuacct")
    if cpuacct:
        usage = stats["cpu"]["usage"]
        usage["total"] = cgroupfs.read_value_optional(cpuacct, "cpuacct.usage")
        percpu = cgroupfs.read_optional(cpuacct, "cpuacct.usage_percpu")
        if percpu:
            usage["percpu"] = [int(v) for v in percpu.split()]
        # cpuacct.stat is in clock ticks (USER_HZ); runc reports nanoseconds.
        ticks = cgroupfs.read_flat_keyed(cpuacct, "cpuacct.stat")
        usage["user"] = ticks.get("user", 0) * _NS // _CLOCK_TICKS
        usage["kernel"] = ticks.get("system", 0) * _NS // _CLOCK_TICKS
        usage_all = cgroupfs.read_optional(cpuacct, "cpuacct.usage_all")
        if usage_all:
            rows = [line.split() for line in usage_all.splitlines()[1:] if line.strip()]
            usage["percpu_user"] = [int(r[1]) for r in rows if len(r) == 3]
            usage["percpu_kernel"] = [int(r[2]) for r in rows if len(r) == 3]
    cpu = directory("cpu")
    if cpu:
        cpu_stat = cgroupfs.read_flat_keyed(cpu, "cpu.stat")
        throttling = stats["cpu"]["throttling"]
        throttling["periods"] = cpu_stat.get("nr_periods", 0)
        throttling["throttledPeriods"] = cpu_stat.get("nr_throttled", 0)
        throttling["throttledTime"] = cpu_stat.get("throttled_time", 0)

    cpuset = directory("cpuset")
    if cpuset:
        for key in ("cpus", "mems"):
            text = cgroupfs.read_optional(cpuset, f"cpuset.{key}")
            if text:
                stats["cpuset"][key] = parse_cpu_list(text)

    memory_dir = directory("memory")
    if memory_dir:
        memory = stats["memory"]
        raw = cgroupfs.read_flat_keyed(memory_dir, "memory.stat")
        memory["raw"] = raw
        memory["cache"] = raw.get("cache", 0)
        for key, prefix in (("usage", "memory"), ("swap", "memory.memsw"),
                            ("kernel", "memory.kmem"), ("kernelTCP", "memory.kmem.tcp")):
            if os.path.exists(os.path.join(memory_dir, f"{prefix}.usage_in_bytes")):
                memory[key] = _memory_entry(
                    cgroupfs.read_value_optional(memory_dir, f"{prefix}.limit_in_bytes"),
                    cgroupfs.read_value(memory_dir, f"{prefix}.usage_in_bytes"),
                    cgroupfs.read_value_optional(memory_dir, f"{prefix}.max_usage_in_bytes"),
                    cgroupfs.read_value_optional(memory_dir, f"{prefix}.failcnt"))

    pids = directory("pids")
    if pids:
        stats["pids"]["current"] = cgroupfs.read_value_optional(pids, "pids.current")
        stats["pids"]["limit"] = cgroupfs.read_value_optional(pids, "pids.max")

    blkio = directory("blkio")
    if blkio:
        for table, names in (
                ("ioServiceBytesRecursive", ("blkio.io_service_bytes_recursive",
                                             "blkio.throttle.io_service_bytes_recursive")),
                ("ioServicedRecursive", ("blkio.io_serviced_recursive",
                                         "blkio.throttle.io_serviced_recursive"))):
            for name in names:
                entries = _blkio_entries(cgroupfs.read_optional(blkio, name) or "")
                if entries:
                    stats["blkio"][table] = entries
                    break

    hugetlb = directory("hugetlb")
    if hugetlb:
        for size in hugepage_sizes():
            if not os.path.exists(os.path.join(hugetlb, f"hugetlb.{size}.usage_in_bytes")):
                continue
            stats["hugetlb"][size] = {
                "usage": cgroupfs.read_value(hugetlb, f"hugetlb.{size}.usage_in_bytes"),
                "max": cgroupfs.read_value_optional(hugetlb, f"hugetlb.{size}.max_usage_in_bytes"),
                "failcnt": cgroupfs.read_value_optional(hugetlb, f"hugetlb.{size}.failcnt")}
    return stats


def _blkio_entries(text: str) -> list[dict]:
    """"8:0 Read 4096" lines (the last, "Total N", has no device) -> runc's entries."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3:
            continue
        major, _, minor = fields[0].partition(":")
        if not minor:
            continue
        entries.append({"major": int(major), "minor": int(minor), "op": fields[1],
                        "value": int(fields[2])})
    return entries
