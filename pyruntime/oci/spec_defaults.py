"""The starting config.json that `pyruntime spec` writes: what `runc spec` (runc 1.1)
writes, field for field and in the same key order, except the hostname."""
from __future__ import annotations

import os

from pyruntime.oci.errors import OCIError

# runc 1.1 stamps the spec version of its Go bindings; engines and tools that compare a
# `spec` output with runc's see the same document.
DEFAULT_OCI_VERSION = "1.0.2-dev"

_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_spec(rootless: bool = False) -> dict:
    """A new default spec; with `rootless`, runc's rootless variant for the calling user."""
    spec = {
        "ociVersion": DEFAULT_OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                kind: list(_DEFAULT_CAPS) for kind in ("bounding", "effective", "permitted", "ambient")
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pyruntime",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"},
                {"type": "network"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
            ],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }
    if rootless:
        _make_rootless(spec)
    return spec


def _make_rootless(spec: dict) -> None:
    """runc's specconv.ToRootless, step for step."""
    linux = spec["linux"]
    # Without root nobody can wire a new network namespace to the outside (no veth), so
    # the container keeps the caller's network; cgroup limits need root too. The caller
    # becomes root inside a user namespace of its own.
    namespaces = [ns for ns in linux["namespaces"] if ns["type"] not in ("network", "user")]
    namespaces.append({"type": "user"})
    rootless_linux = {
        "uidMappings": [{"containerID": 0, "hostID": os.geteuid(), "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": os.getegid(), "size": 1}],
        "namespaces": namespaces,
        "maskedPaths": linux["maskedPaths"],
        "readonlyPaths": linux["readonlyPaths"],
    }
    spec["linux"] = rootless_linux  # rebuilt so the keys keep runc's order
    mounts = []
    for mount in spec["mounts"]:
        # sysfs can only be mounted by the owner of the network namespace, which is now
        # the host's: bind the host's /sys instead.
        if os.path.normpath(mount["destination"]) == "/sys":
            mounts.append({
                "destination": "/sys",
                "type": "none",
                "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
            })
            continue
        if "options" in mount:
            # Only root may own a mount as another uid/gid: the mapped user has no other.
            options = [o for o in mount["options"] if not o.startswith(("uid=", "gid="))]
            if options:
                mount["options"] = options
            else:  # Go's omitempty drops an emptied list
                del mount["options"]
        mounts.append(mount)
    spec["mounts"] = mounts


def write_default_spec(bundle: str, rootless: bool = False) -> str:
    """Write the default spec to `<bundle>/config.json` and return that path; an existing
    file is left alone (OCIError), as runc does."""
    # json (and the `re` it imports) is fine here: `spec` is not on the run path.
    import json

    path = os.path.join(os.path.abspath(bundle), "config.json")
    # runc's own layout: tab indentation, no newline at the end.
    data = json.dumps(default_spec(rootless), indent="\t").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except FileExistsError:
        raise OCIError("File config.json exists. Remove it first") from None  # runc's words
    except OSError as e:
        raise OCIError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as e:
        raise OCIError(f"cannot write {path}: {e.strerror}") from None
    return path
