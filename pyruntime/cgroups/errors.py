"""The exceptions of the cgroups package: `CgroupError` (from placement) and the
subclasses the resource, device, freezer and sub-cgroup code raise, so that a caller can tell a
resource this host cannot enforce from an invalid value or a busy cgroup."""
from __future__ import annotations

from pyruntime.cgroups.placement import CgroupError

__all__ = [
    "CgroupError",
    "ResourceUnsupported",
    "InvalidResource",
    "ResourceBusy",
    "DeviceFilterError",
    "FreezeError",
    "SubCgroupError",
]


class ResourceUnsupported(CgroupError):
    """A resource the spec asks for cannot be enforced here: its controller is not
    mounted or enabled, or the kernel lacks the control file. Never silently ignored."""


class InvalidResource(CgroupError):
    """A value of `linux.resources` is malformed or inconsistent (swap below the memory
    limit, an unknown device access, a field that has no meaning on this cgroup version)."""


class ResourceBusy(CgroupError):
    """The kernel refused a new limit because of the cgroup's current state (EBUSY: a
    memory limit below the current usage, a cpuset still in use)."""


class DeviceFilterError(CgroupError):
    """The cgroup v2 device filter (eBPF) could not be built, loaded or attached."""


class FreezeError(CgroupError):
    """The cgroup could not be frozen or thawed (no freezer, or it did not settle)."""


class SubCgroupError(CgroupError):
    """`exec --cgroup` named a sub-cgroup that does not exist, a path that leads out of
    the container's cgroup, or a controller the container has no hierarchy for."""
