"""Which part of the rootfs init builds before it is in the container's cgroup:
`devices_made_before_cgroup` decides whether /dev's devices are made then, and with it
whether the runtime may set the cgroup's device rules as soon as init says it has begun
(pyruntime.oci.launcher)."""
from __future__ import annotations

import pytest

from pyruntime.oci.rootfs_order import devices_made_before_cgroup


def mount(destination: str, kind: str = "tmpfs") -> dict:
    return {"destination": destination, "type": kind, "source": kind}


@pytest.mark.parametrize("mounts, expected", [
    ([], True),
    ([mount("/proc", "proc"), mount("/dev"), mount("/dev/pts", "devpts")], True),
    # runc spec's order: the cgroup mount last, nothing after it under /dev.
    ([mount("/dev"), mount("/sys", "sysfs"), mount("/sys/fs/cgroup", "cgroup")], True),
    ([mount("/sys/fs/cgroup", "cgroup2"), mount("/tmp")], True),
    # A mount at or below /dev after the first cgroup mount: devices only after it.
    ([mount("/sys/fs/cgroup", "cgroup"), mount("/dev")], False),
    ([mount("/sys/fs/cgroup", "cgroup"), mount("/dev/shm")], False),
    ([mount("/sys/fs/cgroup", "cgroup2"), mount("dev/mqueue", "mqueue")], False),
    ([mount("/sys/fs/cgroup", "cgroup"), mount("/dev/../dev/x")], False),
    ([mount("/sys/fs/cgroup", "cgroup"), mount("/")], False),
    # Only a path below /dev counts, not one that starts with the same letters.
    ([mount("/sys/fs/cgroup", "cgroup"), mount("/devices")], True),
])
def test_devices_made_before_cgroup(mounts, expected):
    assert devices_made_before_cgroup({"mounts": mounts}) is expected


def _limits_at_placement(**config_changes) -> bool:
    from pyruntime.oci.launcher import InitLauncher

    config = {"process": {"terminal": False}, "mounts": [mount("/dev")]}
    config.update(config_changes)
    return InitLauncher({"config": config}, None)._limits_at_placement()


@pytest.mark.parametrize("changes, expected", [
    ({}, True),
    # Init opens /dev/ptmx after it is placed: not while the device rules are rewritten.
    ({"process": {"terminal": True}}, False),
    # Hooks that run in the container's cgroup, or that the runtime runs on init's word.
    ({"hooks": {"createContainer": [{"path": "/bin/true"}]}}, False),
    ({"hooks": {"createRuntime": [{"path": "/bin/true"}]}}, False),
    ({"hooks": {"prestart": [{"path": "/bin/true"}]}}, False),
    ({"hooks": {"startContainer": [{"path": "/bin/true"}]}}, True),
    ({"mounts": [mount("/sys/fs/cgroup", "cgroup"), mount("/dev/shm")]}, False),
])
def test_when_the_limits_are_set_without_init_asking(changes, expected):
    assert _limits_at_placement(**changes) is expected
