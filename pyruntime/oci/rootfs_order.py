"""Which part of a container's root filesystem its init builds before it is in the
container's cgroup (pyruntime.oci.rootfs, RootfsBuilder.begin): a rule the runtime reads
too, to know when it may set the cgroup's device rules, without loading the mount code.
"""
from __future__ import annotations

import os


def first_cgroup_mount(mounts: list[dict]) -> int:
    """The index of the first cgroup or cgroup2 mount (len(mounts) when there is none):
    RootfsBuilder.begin mounts everything before it."""
    return next((index for index, mount in enumerate(mounts)
                 if mount.get("type") in ("cgroup", "cgroup2")), len(mounts))


def devices_made_before_cgroup(config: dict) -> bool:
    """Whether RootfsBuilder.begin makes /dev's devices, before init is in the
    container's cgroup: when no mount from the first cgroup mount on is at or below /dev.
    Then the cgroup's device rules can be set as soon as init is in it (a devices cgroup
    v1 rewriting its rules refuses mknod for a moment)."""
    mounts = config.get("mounts", [])
    for mount in mounts[first_cgroup_mount(mounts):]:
        destination = os.path.normpath("/" + mount["destination"].lstrip("/"))
        if destination in ("/", "/dev") or destination.startswith("/dev/"):
            return False
    return True
