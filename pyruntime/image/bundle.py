"""OCI bundles from images, like `umoci unpack`: a `config.json` built from the image
config on top of the defaults `runc spec` writes (mounts, namespaces, masked and
read-only paths, capabilities), with `rootfs` next to it.

- `process.args` = Entrypoint + Cmd; `process.env` = the image's Env (PATH added when
  missing); `process.cwd` = WorkingDir or `/`;
- `process.user` from User: numeric `uid[:gid]`, or names looked up in the image's own
  `/etc/passwd` and `/etc/group` (read with every symlink resolved inside the rootfs),
  supplementary groups from `/etc/group` when a user name is given without a group;
- `process.terminal` false, `root.readonly` false, `hostname` given (default the
  `pyruntime`), image labels and a few image facts as annotations.
Volumes are not mounted: a bundle's volumes are the caller's business.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any

from pyruntime.image.errors import ImageError
from pyruntime.image.unpack import read_file_in_root

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

#: What `runc spec` (runc 1.1) writes, field for field; the image fills in the process.
#: (A copy, not an import of pyruntime.oci: this package depends on nothing of ours.)
RUNC_SPEC: dict[str, Any] = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": [DEFAULT_PATH, "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: list(_CAPS) for k in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": False},
    "hostname": "pyruntime",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                       {"type": "mount"}],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                          "/proc/sysrq-trigger"],
    },
}


def _entries(data: bytes | None) -> list[list[str]]:
    if not data:
        return []
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.split(":"))
    return out


def resolve_user(user: str, rootfs: str) -> dict[str, Any]:
    """An OCI `process.user` for the image config's User (``, `uid`, `uid:gid`,
    `name`, `name:group`, ...), looked up in the rootfs as runc does."""
    user = (user or "").strip()
    user_part, _, group_part = user.partition(":")
    passwd = _entries(read_file_in_root(rootfs, "/etc/passwd"))
    uid, gid, name = 0, 0, None
    if user_part.isdigit() or not user_part:
        uid = int(user_part or 0)
        for e in passwd:
            if len(e) >= 4 and e[2] == str(uid) and e[3].isdigit():
                gid, name = int(e[3]), e[0]
                break
    else:
        for e in passwd:
            if len(e) >= 4 and e[0] == user_part and e[2].isdigit() and e[3].isdigit():
                uid, gid, name = int(e[2]), int(e[3]), e[0]
                break
        else:
            raise ImageError(f"image user {user!r}: no user {user_part!r} in the image's "
                             "/etc/passwd (use a numeric uid)")
    additional: list[int] = []
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            for e in _entries(read_file_in_root(rootfs, "/etc/group")):
                if len(e) >= 3 and e[0] == group_part and e[2].isdigit():
                    gid = int(e[2])
                    break
            else:
                raise ImageError(f"image user {user!r}: no group {group_part!r} in the "
                                 "image's /etc/group (use a numeric gid)")
    elif name is not None:
        for e in _entries(read_file_in_root(rootfs, "/etc/group")):
            if len(e) >= 4 and e[2].isdigit() and name in e[3].split(",") \
                    and int(e[2]) != gid and int(e[2]) not in additional:
                additional.append(int(e[2]))
    out: dict[str, Any] = {"uid": uid, "gid": gid}
    if additional:
        out["additionalGids"] = additional
    return out


def bundle_spec(image_config: dict[str, Any], rootfs: str, *, hostname: str = "pyruntime",
                annotations: dict[str, str] | None = None,
                args: list[str] | None = None) -> dict[str, Any]:
    """The config.json for a bundle whose root is `rootfs`, from the whole image config
    document (`config`, `os`, `architecture`, `created`)."""
    section = image_config.get("config") or {}
    entrypoint = list(section.get("Entrypoint") or [])
    cmd = list(section.get("Cmd") or [])
    process_args = args if args is not None else entrypoint + cmd
    if not process_args:
        raise ImageError("the image has neither Entrypoint nor Cmd: give the command to run "
                         "(e.g. import it with --change 'CMD [\"/bin/sh\"]')")
    env = list(section.get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    spec = copy.deepcopy(RUNC_SPEC)
    spec["process"]["args"] = process_args
    spec["process"]["env"] = env
    spec["process"]["cwd"] = section.get("WorkingDir") or "/"
    spec["process"]["user"] = resolve_user(section.get("User") or "", rootfs)
    spec["hostname"] = hostname
    notes: dict[str, str] = {}
    for key, value in (section.get("Labels") or {}).items():
        notes[str(key)] = str(value)
    for key, field in (("os", "os"), ("architecture", "architecture"), ("created", "created"),
                       ("author", "author")):
        if image_config.get(field):
            notes[f"org.opencontainers.image.{key}"] = str(image_config[field])
    if section.get("StopSignal"):
        notes["org.opencontainers.image.stopSignal"] = str(section["StopSignal"])
    if section.get("ExposedPorts"):
        notes["org.opencontainers.image.exposedPorts"] = ",".join(sorted(section["ExposedPorts"]))
    notes.update(annotations or {})
    if notes:
        spec["annotations"] = notes
    return spec


def write_spec(directory: str, spec: dict[str, Any]) -> str:
    """Write `directory/config.json` atomically; returns its path."""
    path = os.path.join(directory, "config.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(spec, f, indent="\t")
    os.replace(tmp, path)
    return path
