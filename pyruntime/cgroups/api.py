"""The cgroups facade the runtime calls: resource limits (create and update), device
rules, freeze/thaw, kill, stats and OOM kills of one container's `CgroupPlacement`.

Which cgroup version a placement uses follows runc: a placement with only the unified
directory (key "") is cgroup v2 (fs2 mapping, eBPF device filter); one with v1
hierarchies is cgroup v1, also on a hybrid host whose unified hierarchy has no
controllers (fs mapping, v1 devices controller). Every function raises `CgroupError`
(or a subclass from `pyruntime.cgroups.errors`) with a message naming the
`linux.resources` field and the reason.
"""
from __future__ import annotations

import os

from pyruntime.cgroups import freezer
from pyruntime.cgroups.device_rules import DEFAULT_ALLOWED_DEVICES, effective_rules
from pyruntime.cgroups.errors import (
    CgroupError,
    DeviceFilterError,
    FreezeError,
    InvalidResource,
    ResourceBusy,
    ResourceUnsupported,
)
from pyruntime.cgroups.oom import OomWatcher, oom_events, oom_kill_count
from pyruntime.cgroups.placement import CgroupPlacement

__all__ = [
    "CgroupError", "ResourceUnsupported", "InvalidResource", "ResourceBusy",
    "DeviceFilterError", "FreezeError", "DEFAULT_ALLOWED_DEVICES",
    "cgroup_version", "enable_controllers", "apply_resources", "update_resources",
    "apply_devices", "freeze", "thaw", "is_frozen", "kill_all", "stats",
    "oom_kill_count", "oom_events", "OomWatcher",
]


def cgroup_version(placement: CgroupPlacement) -> int:
    """2 for a unified-only placement, 1 otherwise (v1 or hybrid)."""
    return 2 if set(placement.paths) == {""} else 1


def _cgroup2_mount(directory: str) -> str:
    """The cgroup2 mount point that `directory` is under (the longest match)."""
    best = ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            separator = fields.index("-")
            if fields[separator + 1] != "cgroup2":
                continue
            mount_point = fields[4].replace("\\040", " ")
            if (directory == mount_point or directory.startswith(mount_point.rstrip("/") + "/")) \
                    and len(mount_point) > len(best):
                best = mount_point
    if not best:
        raise CgroupError(f"{directory} is not on a cgroup2 filesystem")
    return best


def enable_controllers(placement: CgroupPlacement) -> None:
    """cgroup v2: enable every available controller in the subtree_control of each
    ancestor of the container's cgroup, as runc does when it creates one, so that stats
    and a later `update` find their files even when `create` set no limit. No-op on v1.
    Failures are left for `apply_resources` to report against the field that needs the
    controller."""
    if cgroup_version(placement) == 2:
        directory = placement.paths[""]
        from pyruntime.cgroups import resources_v2

        resources_v2.enable_controllers(directory, _cgroup2_mount(directory))


def _check(resources: object) -> dict:
    if not isinstance(resources, dict):
        raise InvalidResource("linux.resources: expected an object")
    return resources


def apply_resources(placement: CgroupPlacement, resources: dict | None) -> None:
    """Apply the OCI `linux.resources` to the container's new cgroup (empty, or holding
    only an init that has not yet run anything of the user's).

    `None` or `{}` does nothing. Otherwise every field is enforced or refused; the device
    rules are always applied, as runc 1.1 does: the spec's `devices` rules followed by
    runc's default allow-list (null, zero, full, random, urandom, tty, ptmx, pts, tun,
    mknod of anything) - on v2 as an eBPF filter, on v1 through the devices controller.
    """
    if not resources:
        return
    resources = _check(resources)
    rules = effective_rules(resources.get("devices"))
    if cgroup_version(placement) == 2:
        directory = placement.paths[""]
        from pyruntime.cgroups import resources_v2

        resources_v2.apply(directory, _cgroup2_mount(directory), resources, rules)
    else:
        from pyruntime.cgroups import resources_v1

        resources_v1.apply(placement.paths, resources, rules)


def update_resources(placement: CgroupPlacement, resources: dict) -> None:
    """Apply new limits to a live container (`update`). The same mapping as
    `apply_resources`; device rules are replaced only when `devices` is given (runc's
    `update` never touches them). A memory limit the kernel cannot reach by reclaiming
    (v1) or that `checkBeforeUpdate` finds below the usage (v2) raises ResourceBusy.
    A cgroup owned by systemd gets the new limits as unit properties first, once the
    whole request has been checked (see `CgroupPlacement.update_unit`)."""
    resources = _check(resources)
    if not resources:
        return
    rules = effective_rules(resources["devices"]) if "devices" in resources else None

    def tell_owner() -> None:
        placement.update_unit(resources)

    if cgroup_version(placement) == 2:
        directory = placement.paths[""]
        from pyruntime.cgroups import resources_v2

        resources_v2.apply(directory, _cgroup2_mount(directory), resources, rules,
                           update=True, before_writes=tell_owner)
    else:
        from pyruntime.cgroups import resources_v1

        resources_v1.apply(placement.paths, resources, rules, update=True,
                           before_writes=tell_owner)


def apply_devices(placement: CgroupPlacement, spec_devices: list | None) -> None:
    """Only the device rules (spec rules + defaults): for a container whose spec has no
    `linux.resources` at all, which runc still restricts to the default devices."""
    apply_resources(placement, {"devices": spec_devices or []})


def freeze(placement: CgroupPlacement, timeout: float = freezer.DEFAULT_TIMEOUT) -> None:
    """Freeze every process of the container; returns once the kernel says frozen."""
    freezer.freeze(placement, timeout)


def thaw(placement: CgroupPlacement, timeout: float = freezer.DEFAULT_TIMEOUT) -> None:
    freezer.thaw(placement, timeout)


def is_frozen(placement: CgroupPlacement) -> bool:
    return freezer.is_frozen(placement)


def kill_all(placement: CgroupPlacement, signal_number: int) -> None:
    """Signal every process of the container (cgroup.kill for SIGKILL on v2)."""
    freezer.kill_all(placement, signal_number)


def stats(placement: CgroupPlacement) -> dict:
    """runc's `events --stats` data for the container (see pyruntime.cgroups.stats)."""
    if cgroup_version(placement) == 2:
        directory = placement.paths[""]
        if not os.path.isdir(directory):
            raise CgroupError(f"cgroup {directory} does not exist")
        from pyruntime.cgroups import stats as _stats

        return _stats.stats_v2(directory)
    if not placement.exists():
        raise CgroupError(f"the cgroups of this container do not exist: {placement.paths}")
    from pyruntime.cgroups import stats as _stats

    return _stats.stats_v1(placement.paths)
