"""The state store: one directory per container under the runtime's root.

`<root>/<id>/state.json` is the record (written atomically: write a temp file, rename),
`<root>/<id>/exec.fifo` exists while the container is created but not started,
`<root>/<id>/creating` while `create` is still at work (init's pid is recorded before
that: hooks may ask for the state, and delete must find init), and an flock on the
directory itself serializes commands on one ID (`create` holds it from the directory's
mkdir to its end). The status is derived from the record and the live processes, the
way runc does: a pid whose start time changed is a different process, so the container
is stopped; a `creating` mark whose creator is gone was left by a crash.
"""
from __future__ import annotations

import fcntl
import os
import time

from pyruntime import jsonlite
from pyruntime.oci.errors import ContainerExists, ContainerNotFound, InvalidContainerID

STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
CREATING_MARK = "creating"
OOM_ANNOTATION = "io.github.pyruntime.oom-killed"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
MAX_ID_LENGTH = 1024


def validate_id(container_id: str) -> None:
    """runc's rule: letters, digits and `_+-.`, not `.` or `..`."""
    if not container_id:
        raise InvalidContainerID("container ID must not be empty")
    if len(container_id) > MAX_ID_LENGTH:
        raise InvalidContainerID(f"container ID is longer than {MAX_ID_LENGTH} characters")
    if container_id in (".", "..") or not _ID_CHARS.issuperset(container_id):
        raise InvalidContainerID(
            f"invalid container ID {container_id!r}: use letters, digits and _ + - . only"
        )


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), or None
    when it no longer exists or is a zombie (a zombie has finished running)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def now_rfc3339() -> str:
    seconds = time.time()
    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + (
        f".{int((seconds - whole) * 1e9):09d}Z"
    )


class ContainerRecord:
    """What the runtime remembers of one container (the content of state.json)."""

    __slots__ = ("data", "directory")

    def __init__(self, directory: str, data: dict) -> None:
        self.directory = directory
        self.data = data

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def pid(self) -> int:
        return self.data.get("pid", 0)

    @property
    def config(self) -> dict:
        return self.data["config"]

    @property
    def fifo_path(self) -> str:
        return os.path.join(self.directory, EXEC_FIFO)

    def init_alive(self) -> bool:
        pid = self.pid
        return pid > 0 and process_start_time(pid) == self.data.get("pid_start")

    def status(self) -> str:
        """creating, created, running, paused or stopped (the OCI statuses)."""
        if self.pid <= 0:
            return "creating" if self._creator_alive() else "stopped"
        if not self.init_alive():
            return "stopped"
        if os.path.exists(self.fifo_path):
            if (os.path.exists(os.path.join(self.directory, CREATING_MARK))
                    and self._creator_alive()):
                return "creating"
            return "created"
        frozen = self._frozen()
        if frozen is None:
            # The cgroup went away since init was seen alive: systemd removes a scope's
            # as soon as its last process has exited, init included.
            return "running" if self.init_alive() else "stopped"
        return "paused" if frozen else "running"

    def _creator_alive(self) -> bool:
        creator = self.data.get("creator_pid", 0)
        return bool(creator) and process_start_time(creator) == self.data.get("creator_start")

    def cgroup(self):
        paths = self.data.get("cgroup_paths")
        if self.data.get("cgroup_unit"):
            # --systemd-cgroup: a systemd unit, recorded before it was started.
            from pyruntime.cgroups.systemd_scope import SystemdScope

            return SystemdScope(self.data["cgroup_unit"], paths,
                                self.data.get("cgroup_created", []),
                                self.data.get("cgroup_unit_started"))
        if not paths:
            return None
        from pyruntime.cgroups.placement import CgroupPlacement

        return CgroupPlacement(paths, self.data.get("cgroup_created", []))

    def _frozen(self) -> bool | None:
        """Whether the container's cgroup is frozen; None when that cannot be read."""
        cgroup = self.cgroup()
        if cgroup is None:
            return False
        from pyruntime.cgroups.errors import CgroupError
        from pyruntime.cgroups.freezer import is_frozen

        try:
            return is_frozen(cgroup)
        except (OSError, CgroupError):
            return None

    def oom_killed(self) -> bool:
        cgroup = self.cgroup()
        if cgroup is None:
            return False
        from pyruntime.cgroups.oom import was_oom_killed

        return was_oom_killed(cgroup)

    def oci_state(self) -> dict:
        """The state object of the OCI runtime spec, as `runc state` prints it."""
        status = self.status()
        return {
            "ociVersion": self.config.get("ociVersion", "1.2.0"),
            "id": self.id,
            "pid": self.pid if status != "stopped" else 0,
            "status": status,
            "bundle": self.data["bundle"],
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""),
            "owner": "",
            "annotations": self._annotations(),
        }

    def _annotations(self) -> dict:
        annotations = self.config.get("annotations", {})
        if self.pid and self.oom_killed():
            # How engines learn of an OOM kill from `state` (the spec has no field).
            annotations = dict(annotations, **{OOM_ANNOTATION: "true"})
        return annotations

    def save(self) -> None:
        path = os.path.join(self.directory, STATE_FILE)
        temp = path + ".tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, jsonlite.dumps(self.data).encode())
        finally:
            os.close(fd)
        os.rename(temp, path)


class StateStore:
    """Container directories under one root (runc's `--root`)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def directory(self, container_id: str) -> str:
        return os.path.join(self.root, container_id)

    def reserve(self, container_id: str) -> "ContainerLock":
        """Claim an ID for `create`: mkdir is atomic, so of two concurrent creates of one
        ID exactly one wins. The directory comes locked, with its `creating` mark; the
        caller holds the lock until the container is created (or removed), so that no
        other command acts on a half-made container."""
        validate_id(container_id)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        directory = self.directory(container_id)
        try:
            os.mkdir(directory, 0o711)
        except FileExistsError:
            raise ContainerExists(f"container with id {container_id!r} already exists") from None
        lock = ContainerLock(directory, container_id)
        lock.acquire()
        # Between the mkdir and the flock another command finds no state.json and
        # reports the container as missing, as it does for one not created.
        os.close(os.open(os.path.join(directory, CREATING_MARK),
                         os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        return lock

    def load(self, container_id: str) -> ContainerRecord:
        validate_id(container_id)
        directory = self.directory(container_id)
        try:
            with open(os.path.join(directory, STATE_FILE), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise ContainerNotFound(f"container {container_id!r} does not exist") from None
        return ContainerRecord(directory, jsonlite.loads(raw))

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(
            name for name in names if os.path.exists(os.path.join(self.root, name, STATE_FILE))
        )

    def lock(self, container_id: str) -> "ContainerLock":
        validate_id(container_id)
        return ContainerLock(self.directory(container_id), container_id)


class ContainerLock:
    """An exclusive flock on a container's directory for the length of a `with` block
    (or from `acquire` to `release`, as `create` holds it).

    The directory may be deleted by the holder (delete); a waiter that then gets the
    lock finds no state.json and reports the container as gone.
    """

    __slots__ = ("directory", "container_id", "fd")

    def __init__(self, directory: str, container_id: str) -> None:
        self.directory = directory
        self.container_id = container_id
        self.fd = -1

    def acquire(self) -> None:
        try:
            self.fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ContainerNotFound(f"container {self.container_id!r} does not exist") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> "ContainerLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
