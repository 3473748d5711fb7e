"""Turning an OCI mount's `options` list into mount(2) flags, propagation and data.

The table is runc's (libcontainer/specconv): options that set a flag, options that clear
one, propagation options, recursive (`r`-prefixed, applied with mount_setattr) options,
and everything else passed to the filesystem as data (`size=64m`, `mode=755`...).
"""
from __future__ import annotations

from pyruntime.linux import syscalls as sc
from pyruntime.oci.errors import SpecError

_SET = {
    "bind": sc.MS_BIND,
    "rbind": sc.MS_BIND | sc.MS_REC,
    "dirsync": sc.MS_DIRSYNC,
    "iversion": sc.MS_I_VERSION,
    "lazytime": sc.MS_LAZYTIME,
    "mand": sc.MS_MANDLOCK,
    "noatime": sc.MS_NOATIME,
    "nodev": sc.MS_NODEV,
    "nodiratime": sc.MS_NODIRATIME,
    "noexec": sc.MS_NOEXEC,
    "nosuid": sc.MS_NOSUID,
    "nosymfollow": sc.MS_NOSYMFOLLOW,
    "relatime": sc.MS_RELATIME,
    "remount": sc.MS_REMOUNT,
    "ro": sc.MS_RDONLY,
    "silent": sc.MS_SILENT,
    "strictatime": sc.MS_STRICTATIME,
    "sync": sc.MS_SYNCHRONOUS,
}

_CLEAR = {
    "async": sc.MS_SYNCHRONOUS,
    "atime": sc.MS_NOATIME,
    "defaults": 0,
    "dev": sc.MS_NODEV,
    "diratime": sc.MS_NODIRATIME,
    "exec": sc.MS_NOEXEC,
    "loud": sc.MS_SILENT,
    "noiversion": sc.MS_I_VERSION,
    "nolazytime": sc.MS_LAZYTIME,
    "nomand": sc.MS_MANDLOCK,
    "norelatime": sc.MS_RELATIME,
    "nostrictatime": sc.MS_STRICTATIME,
    "rw": sc.MS_RDONLY,
    "suid": sc.MS_NOSUID,
    "symfollow": sc.MS_NOSYMFOLLOW,
}

PROPAGATION = {
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED,
    "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE,
    "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}

# Recursive variants (mount_setattr with AT_RECURSIVE): (set, clear).
_RECURSIVE = {
    "rro": (sc.MOUNT_ATTR_RDONLY, 0),
    "rrw": (0, sc.MOUNT_ATTR_RDONLY),
    "rnosuid": (sc.MOUNT_ATTR_NOSUID, 0),
    "rsuid": (0, sc.MOUNT_ATTR_NOSUID),
    "rnodev": (sc.MOUNT_ATTR_NODEV, 0),
    "rdev": (0, sc.MOUNT_ATTR_NODEV),
    "rnoexec": (sc.MOUNT_ATTR_NOEXEC, 0),
    "rexec": (0, sc.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (sc.MOUNT_ATTR_NODIRATIME, 0),
    "rdiratime": (0, sc.MOUNT_ATTR_NODIRATIME),
    "rrelatime": (sc.MOUNT_ATTR_RELATIME, sc.MOUNT_ATTR__ATIME),
    "rnorelatime": (0, sc.MOUNT_ATTR__ATIME),
    "rnoatime": (sc.MOUNT_ATTR_NOATIME, sc.MOUNT_ATTR__ATIME),
    "ratime": (0, sc.MOUNT_ATTR_NOATIME),
    "rstrictatime": (sc.MOUNT_ATTR_STRICTATIME, sc.MOUNT_ATTR__ATIME),
    "rnostrictatime": (0, sc.MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (sc.MOUNT_ATTR_NOSYMFOLLOW, 0),
    "rsymfollow": (0, sc.MOUNT_ATTR_NOSYMFOLLOW),
}

KNOWN_OPTIONS = sorted(
    set(_SET) | set(_CLEAR) | set(PROPAGATION) | set(_RECURSIVE) | {"tmpcopyup"}
)


class MountOptions:
    """The parsed form of one mount's options."""

    __slots__ = ("flags", "propagation", "data", "recursive_set", "recursive_clear",
                 "tmpcopyup")

    def __init__(self) -> None:
        self.flags = 0
        self.propagation: list[int] = []
        self.data: list[str] = []
        self.recursive_set = 0
        self.recursive_clear = 0
        self.tmpcopyup = False

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & sc.MS_BIND)

    @property
    def data_string(self) -> str | None:
        return ",".join(self.data) if self.data else None


def root_propagation(name: str | None) -> int:
    """Flags for the host's `/` in the container's mount namespace, before the rootfs is
    bound onto itself: `linux.rootfsPropagation` as spelled (recursive or not, as runc
    does), rslave by default so that no mount of the container propagates back to the
    host. An unbindable `/` would refuse that bind: rslave then, and the spec's flags
    once the rootfs is `/` (`root_propagation_after_switch`)."""
    if not name:
        return sc.MS_SLAVE | sc.MS_REC
    flags = PROPAGATION[name]
    return sc.MS_SLAVE | sc.MS_REC if flags & sc.MS_UNBINDABLE else flags


def root_propagation_after_switch(name: str | None) -> int | None:
    """`linux.rootfsPropagation` again, for the container's own `/` after the root switch,
    as runc does: set on the host's `/` it reached the rootfs's mount only by the bind,
    and pivot_root needs that mount's parent private, so a shared `/` would not stay
    shared. None when nothing is asked for or it is private, which `/` is by then."""
    if not name:
        return None
    flags = PROPAGATION[name]
    return None if flags & sc.MS_PRIVATE else flags


def parse_mount_options(options: list[str], field: str) -> MountOptions:
    parsed = MountOptions()
    for option in options:
        if option in _SET:
            parsed.flags |= _SET[option]
        elif option in _CLEAR:
            parsed.flags &= ~_CLEAR[option]
        elif option in PROPAGATION:
            parsed.propagation.append(PROPAGATION[option])
        elif option in _RECURSIVE:
            attr_set, attr_clear = _RECURSIVE[option]
            parsed.recursive_set |= attr_set
            parsed.recursive_clear |= attr_clear
        elif option == "tmpcopyup":
            parsed.tmpcopyup = True
        elif option in ("idmap", "ridmap"):
            raise SpecError(field, f"option {option!r}: id-mapped mounts are not supported")
        else:
            parsed.data.append(option)
    return parsed
