"""systemd-style cgroupsPath (`slice:prefix:name`, runc's `--systemd-cgroup`): the unit and
slice it names, and the cgroupfs path systemd itself would use, for hosts where systemd
is not running.

`machine-web.slice:docker:abc` -> unit `docker-abc.scope` in `machine-web.slice`, which is
`/machine.slice/machine-web.slice/docker-abc.scope`: a slice name nests once per dash,
and the unit is `prefix-name.scope` (or `name` itself when it ends in `.slice`). With
systemd running, the cgroup belongs to systemd and is made by asking it over D-Bus
(pyruntime.cgroups.systemd_scope); `to_cgroupfs_path` refuses that case.
"""
from __future__ import annotations

import os

from pyruntime.cgroups.placement import CgroupError

DEFAULT_SLICE = "system.slice"
DEFAULT_PREFIX = "pyruntime"


def systemd_running() -> bool:
    return os.path.isdir("/run/systemd/system")


def expand_slice(slice_name: str) -> str:
    """`a-b-c.slice` -> `/a.slice/a-b.slice/a-b-c.slice` (systemd's slice nesting)."""
    if not slice_name.endswith(".slice"):
        raise CgroupError(f"linux.cgroupsPath: {slice_name!r} is not a slice name (*.slice)")
    stem = slice_name[: -len(".slice")]
    if stem == "-":
        return "/"
    if "/" in stem or stem.startswith("-") or stem.endswith("-") or "--" in stem:
        raise CgroupError(f"linux.cgroupsPath: invalid slice name {slice_name!r}")
    parts = stem.split("-")
    return "/" + "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


def unit_and_slice(cgroups_path: str | None, container_id: str) -> tuple[str, str]:
    """(unit, slice) for a systemd cgroupsPath; empty: (`pyruntime-ID.scope`,
    `system.slice`). A unit ending in `.slice` is a slice unit. The slice name is checked
    by `expand_slice`, where it is used."""
    if not cgroups_path:
        slice_name, prefix, name = DEFAULT_SLICE, DEFAULT_PREFIX, container_id
    else:
        fields = cgroups_path.split(":")
        if len(fields) != 3:
            raise CgroupError(f"linux.cgroupsPath: {cgroups_path!r}: with --systemd-cgroup "
                              "it must be slice:prefix:name")
        slice_name, prefix, name = fields
        slice_name = slice_name or DEFAULT_SLICE
    if name.endswith(".slice"):
        return name, slice_name
    return (f"{prefix}-{name}.scope" if prefix else f"{name}.scope"), slice_name


def to_cgroupfs_path(cgroups_path: str | None, container_id: str) -> str:
    """The cgroupfs path for a systemd cgroupsPath (empty: system.slice/pyruntime-ID)."""
    if systemd_running():
        raise CgroupError(
            "--systemd-cgroup: systemd is running, so the container's cgroup is a systemd "
            "unit made over D-Bus (pyruntime.cgroups.systemd_scope), not a cgroupfs path")
    unit, slice_name = unit_and_slice(cgroups_path, container_id)
    if unit.endswith(".slice"):
        return expand_slice(unit)
    return f"{expand_slice(slice_name).rstrip('/')}/{unit}"
