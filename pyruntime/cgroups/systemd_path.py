"""systemd-style cgroupsPath (`slice:prefix:name`, runc's `--systemd-cgroup`) mapped to the
cgroupfs path systemd itself would use, for hosts where systemd is not running.

`machine-web.slice:docker:abc` -> `/machine.slice/machine-web.slice/docker-abc.scope`:
a slice name nests once per dash, and the unit is `prefix-name.scope`. With systemd
running, the cgroup belongs to systemd and must be asked for over D-Bus, which this
runtime does not do yet: that case is refused with a clear message.
"""
from __future__ import annotations

import os

from pyruntime.cgroups.placement import CgroupError

DEFAULT_SLICE = "system.slice"


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


def to_cgroupfs_path(cgroups_path: str | None, container_id: str) -> str:
    """The cgroupfs path for a systemd cgroupsPath (empty: system.slice/pyruntime-ID)."""
    if systemd_running():
        raise CgroupError(
            "--systemd-cgroup: systemd is running, and creating the container's scope "
            "through systemd's D-Bus API is not supported yet; use the cgroupfs driver "
            "(omit --systemd-cgroup)")
    if not cgroups_path:
        slice_name, prefix, name = DEFAULT_SLICE, "pyruntime", container_id
    else:
        fields = cgroups_path.split(":")
        if len(fields) != 3:
            raise CgroupError(f"linux.cgroupsPath: {cgroups_path!r}: with --systemd-cgroup "
                              "it must be slice:prefix:name")
        slice_name, prefix, name = fields
        slice_name = slice_name or DEFAULT_SLICE
    unit = name if name.endswith(".slice") else (f"{prefix}-{name}.scope" if prefix
                                                 else f"{name}.scope")
    if name.endswith(".slice"):
        return expand_slice(name)
    return f"{expand_slice(slice_name).rstrip('/')}/{unit}"
