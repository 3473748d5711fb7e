"""What `pyruntime features` prints: the OCI runtime-spec features document
(features.md, features-linux.md) describing what this runtime recognizes and supports."""
from __future__ import annotations

import os

import pyruntime
from pyruntime.linux.capabilities import CAPABILITY_NAMES, last_cap
from pyruntime.oci import spec

OCI_VERSION_MIN = "1.0.0"

# Every option the mount code understands, sorted as runc lists them.
MOUNT_OPTIONS = (
    "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion",
    "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion",
    "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow",
    "private", "ratime", "rbind", "rdev", "rdiratime", "relatime", "remount", "rexec",
    "rnoatime", "rnodev", "rnodiratime", "rnoexec", "rnorelatime", "rnostrictatime",
    "rnosuid", "rnosymfollow", "ro", "rprivate", "rrelatime", "rro", "rrw", "rshared",
    "rslave", "rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw", "shared",
    "silent", "slave", "strictatime", "suid", "symfollow", "sync", "tmpcopyup",
    "unbindable",
)

# The kernel release that brought each seccomp(2) filter flag.
_SECCOMP_FLAG_KERNELS = {
    "SECCOMP_FILTER_FLAG_TSYNC": (3, 17),
    "SECCOMP_FILTER_FLAG_LOG": (4, 14),
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": (4, 17),
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": (5, 19),
}


def features() -> dict:
    """The features document, as a dict ready for JSON."""
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": pyruntime.OCI_VERSION,
        "hooks": list(spec.HOOK_KINDS),
        "mountOptions": list(MOUNT_OPTIONS),
        "linux": {
            "namespaces": list(spec.NAMESPACE_TYPES),
            "capabilities": _capabilities(),
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": False},
            "seccomp": {
                "enabled": True,
                "actions": list(spec.SECCOMP_ACTIONS),
                "operators": list(spec.SECCOMP_OPERATORS),
                "archs": list(spec.SECCOMP_ARCHS),
                "knownFlags": list(spec.SECCOMP_FLAGS),
                "supportedFlags": _supported_seccomp_flags(),
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"io.github.pyruntime.version": pyruntime.__version__},
    }


def _capabilities() -> list[str]:
    # Only what the running kernel knows: asking for more would fail at create.
    last = last_cap()
    return [name for number, name in sorted(CAPABILITY_NAMES.items()) if number <= last]


def _supported_seccomp_flags() -> list[str]:
    kernel = _kernel_version()
    return [flag for flag in spec.SECCOMP_FLAGS if kernel >= _SECCOMP_FLAG_KERNELS[flag]]


def _kernel_version() -> tuple[int, int]:
    """(major, minor) of the running kernel, from a release such as "6.1.0-18-amd64"."""
    parts = os.uname().release.split(".")
    numbers = []
    for part in parts[:2]:
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        numbers.append(int(digits or 0))
    while len(numbers) < 2:
        numbers.append(0)
    return numbers[0], numbers[1]
