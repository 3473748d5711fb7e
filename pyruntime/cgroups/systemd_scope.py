"""A container's cgroup owned by systemd (`--systemd-cgroup` while systemd runs): a
transient unit, `prefix-name.scope` in a slice or a `.slice` unit of its own, made over
D-Bus as runc's libcontainer/cgroups/systemd makes it.

`SystemdScope` is a `CgroupPlacement` whose directories come from systemd. A scope cannot
exist without a process, so the unit is started around the container's first one: the
launcher's first `add(pid)` (stage 1, which waits for it before it forks init, so init is
born in the scope and the scope is never empty) calls StartTransientUnit with PIDs=[pid]
and the resource properties, waits for the job, reads the unit's ControlGroup (asked,
never guessed), and then writes the cgroup files through the same code as the cgroupfs
driver: whatever systemd has no property for is applied too, and on cgroup v2 the device
rules are our eBPF program. From then on freeze, kill, stats and OOM are plain
CgroupPlacement work on that directory; `update_unit` gives systemd new limits, and
`remove` stops the unit (and resets it when it failed), so no unit stays behind.

systemd removes a scope's cgroup as soon as its last process exits, memory.events with
it. An OOM kill is then known from the unit's result ("oom-kill", kept until the unit is
reset) when systemd saw it, else from the kernel's log (oom_log): `oom_killed_when_gone`.
"""
from __future__ import annotations

import os
import time
from typing import Callable

from pyruntime.cgroups.placement import CgroupError, CgroupPlacement
from pyruntime.cgroups.systemd_path import DEFAULT_SLICE, expand_slice, unit_and_slice

UNIT_INTERFACE = "org.freedesktop.systemd1.Unit"
# Characters systemd accepts in a unit name (unit_name_is_valid); '\' escapes, which
# nothing here produces, are left out.
_UNIT_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789:-_.@")


class SystemdScope(CgroupPlacement):
    """The cgroup of one container as the systemd unit `unit`; `paths` is empty until
    the unit has been started."""

    __slots__ = ("unit", "started", "slice", "description", "resources", "on_started",
                 "foreign")

    def __init__(self, unit: str, paths: dict[str, str] | None = None,
                 created: list[str] | None = None, started: float | None = None, *,
                 slice_name: str = DEFAULT_SLICE, description: str = "",
                 resources: dict | None = None,
                 on_started: Callable[[CgroupPlacement], None] | None = None) -> None:
        super().__init__(dict(paths or {}), created)
        self.unit = unit
        # When the unit was started (time.monotonic()): older OOM reports in the
        # kernel's log are a former container's of the same name.
        self.started = started
        self.slice = slice_name
        self.description = description or f"pyruntime container cgroup {unit}"
        self.resources = resources
        # Told the directories as soon as systemd made them, so that the runtime records
        # them before anything else can fail.
        self.on_started = on_started
        # Set when a start found the name taken by a running unit: not ours to stop.
        self.foreign = False

    @classmethod
    def for_container(cls, cgroups_path: str | None, container_id: str,
                      resources: dict | None,
                      on_started: Callable[[CgroupPlacement], None] | None = None
                      ) -> "SystemdScope":
        """The unit for a `slice:prefix:name` cgroupsPath (empty: pyruntime-ID.scope in
        system.slice). The names and the resource properties are checked here, so that
        bad input fails before any unit exists."""
        from pyruntime.cgroups.systemd_unit import resource_properties

        unit, slice_name = unit_and_slice(cgroups_path, container_id)
        expand_slice(slice_name)
        if unit.endswith(".slice"):
            expand_slice(unit)
        stem = unit.rsplit(".", 1)[0]
        if not stem or stem.startswith("-") or not _UNIT_NAME_CHARS.issuperset(stem):
            raise CgroupError(
                f"linux.cgroupsPath: {unit!r} is not a valid systemd unit name (letters, "
                f"digits and :-_.@ only; the container ID or prefix brings the rest)")
        resource_properties(resources)
        return cls(unit, slice_name=slice_name, resources=resources, on_started=on_started,
                   description=f"pyruntime container {container_id}")

    # -- CgroupPlacement -------------------------------------------------------------------

    def create(self) -> None:
        """Nothing until the unit exists: systemd makes the cgroup when `add` starts it."""
        if self.paths:
            super().create()

    def add(self, pid: int) -> None:
        if not self.paths:
            self._start(pid)
            if set(self.paths) == {""} and not self.unit.endswith(".slice"):
                return  # systemd has put the pid in the scope already
        super().add(pid)

    def pids(self) -> list[int]:
        return super().pids() if self.paths else []

    def remove(self, timeout: float = 5.0) -> None:
        """Kill what is left, stop the unit and wait for it, reset it if it failed, and
        remove any directory systemd left (v1 hierarchies it does not manage)."""
        if self.foreign:
            return
        from pyruntime.cgroups import freezer
        from pyruntime.cgroups.systemd_dbus import SystemdManager

        with SystemdManager.connect() as manager:
            if not self.paths:
                # A create that died between starting the unit and recording its cgroup.
                self._learn_paths(manager, required=False)
            if self.exists():
                # Stopping a scope sends SIGTERM, which a container's init (PID 1 of its
                # namespace) ignores: systemd would wait out its 90 s stop timeout. And a
                # slice stopped while processes remain keeps its cgroup, and stays loaded.
                try:
                    freezer.kill_all(self, 9)
                except CgroupError:
                    if self.exists():
                        raise  # else it emptied and systemd removed it meanwhile
                self._wait_empty(timeout)
            manager.stop_unit(self.unit)
            manager.reset_failed_unit(self.unit)
        super().remove(timeout)

    def _wait_empty(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pids():
            if time.monotonic() > deadline:
                raise CgroupError(f"unit {self.unit}: processes {self.pids()} are still in "
                                  f"its cgroup {timeout}s after SIGKILL")
            time.sleep(0.005)

    def update_unit(self, resources: dict) -> None:
        """SetUnitProperties with the new limits, before the files are written (as
        runc's Set): systemd re-applies its properties whenever it re-realizes the
        unit, and must not put the old limits back then."""
        from pyruntime.cgroups.systemd_dbus import SystemdManager
        from pyruntime.cgroups.systemd_unit import resource_properties

        properties = resource_properties(resources, current_period=self._cpu_period())
        if properties:
            with SystemdManager.connect(jobs=False) as manager:
                manager.set_unit_properties(self.unit, properties)

    def oom_killed_when_gone(self) -> bool:
        from pyruntime.cgroups.systemd_dbus import SystemdError, SystemdManager

        try:
            with SystemdManager.connect(jobs=False) as manager:
                if manager.unit_property(self.unit, UNIT_INTERFACE, "Result") == "oom-kill":
                    return True
        except SystemdError:
            pass  # systemd cannot tell: the kernel's log may
        control_group = self._control_group()
        if control_group is None or self.started is None:
            return False
        from pyruntime.cgroups.oom_log import oom_killed_in

        return oom_killed_in(control_group, self.started)

    # -- starting the unit -----------------------------------------------------------------

    def _start(self, pid: int) -> None:
        from pyruntime.cgroups import api
        from pyruntime.cgroups.systemd_dbus import SystemdManager
        from pyruntime.cgroups.systemd_unit import resource_properties, start_properties

        properties = (start_properties(self.unit, self.slice, self.description, pid)
                      + resource_properties(self.resources))
        self.started = time.monotonic()
        with SystemdManager.connect() as manager:
            self._start_unit(manager, properties)
            self._learn_paths(manager, required=True)
        self.created = self.missing_parents()
        if self.on_started is not None:
            self.on_started(self)
        super().create()  # on v1, the hierarchies systemd does not manage
        api.enable_controllers(self)
        if self.resources:
            api.apply_resources(self, self.resources)
        else:
            api.apply_devices(self, None)

    def _start_unit(self, manager, properties: list) -> None:
        from pyruntime.cgroups.systemd_dbus import UNIT_EXISTS, SystemdError

        try:
            manager.start_transient_unit(self.unit, properties)
            return
        except SystemdError as error:
            if error.dbus_error != UNIT_EXISTS:
                raise
        state = manager.unit_property(self.unit, UNIT_INTERFACE, "ActiveState")
        if state not in ("inactive", "failed", None):
            self.foreign = True
            raise SystemdError(
                f"starting unit {self.unit}: a unit of that name is already {state} "
                f"(another container or service uses this cgroupsPath)", UNIT_EXISTS)
        # A leftover: a failed unit stays loaded, its name taken, until it is reset
        # (a container that was OOM-killed and never deleted).
        manager.reset_failed_unit(self.unit)
        manager.start_transient_unit(self.unit, properties)

    def _learn_paths(self, manager, required: bool) -> None:
        interface = ("org.freedesktop.systemd1.Slice" if self.unit.endswith(".slice")
                     else "org.freedesktop.systemd1.Scope")
        control_group = manager.unit_property(self.unit, interface, "ControlGroup")
        if not control_group:
            if required:
                from pyruntime.cgroups.systemd_dbus import SystemdError

                raise SystemdError(f"unit {self.unit} started, but systemd reports no "
                                   f"ControlGroup for it")
            return
        self.paths = CgroupPlacement.for_container(control_group, "").paths

    def _control_group(self) -> str | None:
        """The unit's ControlGroup again, from the recorded directories: the path of the
        memory cgroup below its hierarchy's mount point."""
        from pyruntime.cgroups.placement import mounted_hierarchies

        mounts = mounted_hierarchies()
        for key in ("", "memory"):
            if key in self.paths and key in mounts:
                relative = os.path.relpath(self.paths[key], mounts[key])
                return "/" if relative == "." else "/" + relative
        return None

    def _cpu_period(self) -> int | None:
        """The period in the cgroup's cpu.max now (v2), for an update of the quota."""
        directory = self.paths.get("")
        if not directory:
            return None
        from pyruntime.cgroups import cgroupfs

        text = cgroupfs.read_optional(directory, "cpu.max")
        words = text.split() if text else []
        return int(words[1]) if len(words) == 2 and words[1].isdigit() else None
