"""Where a container's cgroup lives, and the operations every runtime needs on it:
create, add a process, list processes, signal them all, remove.

One `CgroupPlacement` covers both layouts: on a cgroup v2 host it has the single unified
directory (key ""); on a v1 or hybrid host it has one directory per mounted v1 hierarchy
(keys like "memory", "cpu,cpuacct", "name=systemd") plus the unified one where a hybrid
host mounts it. Resource limits are applied on top of this by the resources module.
"""
from __future__ import annotations

import errno
import os
import time

from pyruntime.errors import PyruntimeError
from pyruntime.linux.kernel_files import write_kernel_file


class CgroupError(PyruntimeError):
    """A cgroup could not be created, joined or removed."""


def mounted_hierarchies() -> dict[str, str]:
    """hierarchy key -> mount point, from /proc/self/mountinfo."""
    found: dict[str, str] = {}
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.decode().split()
            separator = fields.index("-")
            fstype = fields[separator + 1]
            mount_point = fields[4]
            if fstype == "cgroup2":
                found.setdefault("", mount_point)
            elif fstype == "cgroup":
                options = fields[separator + 3].split(",")
                controllers = [o for o in options if o not in ("rw", "ro") and "=" not in o
                               and o not in _V1_MOUNT_OPTIONS]
                names = [o for o in options if o.startswith("name=")]
                key = ",".join(sorted(controllers)) or (names[0] if names else "")
                if key:
                    found.setdefault(key, mount_point)
    return found


_V1_MOUNT_OPTIONS = {"nosuid", "nodev", "noexec", "relatime", "noatime", "clone_children",
                     "xattr", "noprefix", "cpuset_v2_mode", "favordynmods", "nsdelegate",
                     "memory_recursiveprot", "memory_localevents"}


def own_cgroups(pid: str = "self") -> dict[str, str]:
    """hierarchy key -> this process's cgroup path, from /proc/PID/cgroup."""
    result: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            key = ",".join(sorted(c for c in controllers.split(",") if not c.startswith("name=")))
            if controllers.startswith("name="):
                key = controllers
            result[key] = path
    return result


def hierarchy_dir(paths: dict[str, str], controller: str) -> str | None:
    """The container's directory in the v1 hierarchy that has `controller`
    ("cpu" is found in a "cpu" or a "cpu,cpuacct" hierarchy)."""
    for key, path in paths.items():
        if key and not key.startswith("name=") and controller in key.split(","):
            return path
    return None


def is_unified_only() -> bool:
    hierarchies = mounted_hierarchies()
    return list(hierarchies) == [""]


class CgroupPlacement:
    """The directories of one container's cgroup, one per hierarchy."""

    __slots__ = ("paths", "created")

    def __init__(self, paths: dict[str, str], created: list[str] | None = None) -> None:
        self.paths = paths
        # Directories above the container's own that this container's create made: the
        # runtime records them before creating them, and `remove` takes them away again
        # when no other container uses them.
        self.created = created if created is not None else []

    @classmethod
    def for_container(cls, cgroups_path: str | None, container_id: str) -> "CgroupPlacement":
        """runc's placement: an absolute cgroupsPath as it is; a relative one, and the
        container's ID when there is none, below the runtime's own cgroup in each
        hierarchy. On a cgroup v2 host, below the parent of that cgroup: the runtime's
        own (a login scope, a service) has processes in it, and a cgroup with processes
        cannot hand controllers down to a child (runc's fs2 does the same)."""
        hierarchies = mounted_hierarchies()
        if not hierarchies:
            raise CgroupError("no cgroup filesystem is mounted on this host")
        path = cgroups_path or container_id
        relative_to: dict[str, str] = {}
        if not path.startswith("/"):
            relative_to = own_cgroups()
            if list(hierarchies) == [""]:
                relative_to[""] = os.path.dirname(relative_to.get("", "/").rstrip("/")) or "/"
        paths = {}
        for key, mount_point in hierarchies.items():
            if not path.startswith("/"):
                base = relative_to.get(key, "/")
                full = os.path.join(base, path)
            else:
                full = path
            paths[key] = os.path.normpath(mount_point + "/" + full.lstrip("/"))
        return cls(paths)

    def missing_parents(self) -> list[str]:
        """The ancestors of the container's directories that do not exist yet."""
        missing = []
        for path in self.paths.values():
            parent = os.path.dirname(path)
            while not os.path.isdir(parent):
                missing.append(parent)
                parent = os.path.dirname(parent)
        return missing

    def create(self) -> None:
        for key, path in self.paths.items():
            _make_cgroup_dir(path, key)

    def add(self, pid: int) -> None:
        for key, path in self.paths.items():
            try:
                write_kernel_file(os.path.join(path, "cgroup.procs"), str(pid))
            except OSError as error:
                raise CgroupError(f"adding pid {pid} to cgroup {path}: {error.strerror}") from None

    def pids(self) -> list[int]:
        """Every process in the container's cgroup (and its sub-cgroups)."""
        path = self._tracking_path()
        found: set[int] = set()
        for directory, _, _ in os.walk(path):
            try:
                with open(os.path.join(directory, "cgroup.procs")) as f:
                    found.update(int(line) for line in f if line.strip())
            except FileNotFoundError:
                continue
        return sorted(found)

    def _tracking_path(self) -> str:
        # Any hierarchy lists the same processes; prefer one present on every host.
        for key in ("", "pids", "memory", "name=systemd"):
            if key in self.paths and os.path.isdir(self.paths[key]):
                return self.paths[key]
        return next(iter(self.paths.values()))

    def signal_all(self, signal_number: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal_number)
            except ProcessLookupError:
                pass

    def exists(self) -> bool:
        return any(os.path.isdir(path) for path in self.paths.values())

    # Two hooks for a cgroup that a service manager owns (systemd_scope.SystemdScope);
    # a cgroupfs placement belongs to no one else and has nothing to do.

    def update_unit(self, resources: dict) -> None:
        """Tell the owner the new limits of an `update`, before the files are written."""

    def oom_killed_when_gone(self) -> bool:
        """Whether an OOM kill ended the container, asked once its cgroup is gone."""
        return False

    def remove(self, timeout: float = 5.0) -> None:
        """Kill what is left and remove every directory, retrying while it is busy."""
        deadline = time.monotonic() + timeout
        for key, path in self.paths.items():
            while os.path.isdir(path):
                try:
                    _remove_tree(path)
                    break
                except OSError as error:
                    if error.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                        raise CgroupError(f"removing cgroup {path}: {error.strerror}") from None
                    if time.monotonic() > deadline:
                        raise CgroupError(
                            f"removing cgroup {path}: still busy after {timeout}s"
                        ) from None
                    self.signal_all(9)
                    time.sleep(0.01)
        # The parents this create made, if no other container uses them now.
        for parent in sorted(set(self.created), key=len, reverse=True):
            try:
                os.rmdir(parent)
            except OSError:
                pass  # gone already, or another container still uses it


def _make_cgroup_dir(path: str, key: str) -> None:
    for _ in range(5):
        try:
            os.makedirs(path, exist_ok=True)
            break
        except FileNotFoundError:
            continue  # a concurrent delete removed an empty parent: try again
        except OSError as error:
            raise CgroupError(f"creating cgroup {path}: {error.strerror}") from None
    if "cpuset" in key.split(","):
        _inherit_cpuset(path)


def _inherit_cpuset(path: str) -> None:
    """A new v1 cpuset cgroup starts with no CPUs or memory nodes; it cannot hold a
    process until they are copied from the parent (top-down)."""
    parent = os.path.dirname(path)
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = os.path.join(path, name)
        with open(own) as f:
            if f.read().strip():
                continue
        if os.path.exists(os.path.join(parent, name)):
            with open(os.path.join(parent, name)) as f:
                value = f.read().strip()
            if not value:
                _inherit_cpuset(parent)
                with open(os.path.join(parent, name)) as f:
                    value = f.read().strip()
            write_kernel_file(own, value)


def _remove_tree(path: str) -> None:
    for directory, subdirs, _ in os.walk(path, topdown=False):
        for sub in subdirs:
            os.rmdir(os.path.join(directory, sub))
    os.rmdir(path)
