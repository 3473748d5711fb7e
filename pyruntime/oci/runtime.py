"""The Python API of the OCI runtime: `Runtime(root).create/start/state/kill/delete/
list/ps/run/exec`. The CLI is a thin shell over it, and the pod layer calls it in-process.

    from pyruntime import Runtime

    runtime = Runtime(root="/run/pyruntime")
    status = runtime.run("demo", "/path/to/bundle")   # create + start + wait + delete
    print(status.code)

create (from its directory's mkdir to its end), start, delete, pause, resume and update
serialize on the container's lock; state, list, ps, kill and exec read the record as it
is, as with runc. Every method records a resource before creating it and leaves nothing
behind when it fails.
"""
from __future__ import annotations

import os
import time

from pyruntime.cgroups import attach_warmup
from pyruntime.oci.errors import ContainerNotFound, HookError, InvalidState, OCIError
from pyruntime.oci.exit_status import ExitStatus
from pyruntime.oci.state import (CREATING_MARK, ContainerRecord, StateStore, now_rfc3339,
                                 process_start_time)

TYPE_CHECKING = False  # typing's own constant costs an import on every command's path
if TYPE_CHECKING:
    from collections.abc import Callable

    from pyruntime.oci.early_init import EarlyInit

DEFAULT_ROOT = "/run/pyruntime"


class Runtime:
    """One runtime root (runc's `--root`): the containers whose state lives there."""

    def __init__(self, root: str = DEFAULT_ROOT, *, warn=None, debug=None,
                 systemd_cgroup: bool = False) -> None:
        self.store = StateStore(root)
        self.warn = warn or _warn_to_stderr
        self.debug = debug or (lambda message: None)
        self.systemd_cgroup = systemd_cgroup

    # -- create / start -----------------------------------------------------------------

    def create(self, container_id: str, bundle: str, *, pid_file: str | None = None,
               console_socket: str | None = None, console_fd: int | None = None,
               preserve_fds: int = 0, no_pivot: bool = False,
               no_new_keyring: bool = False, listen_fds: int = 0, early_init=None) -> int:
        """Create the container and leave its init waiting for `start`; returns init's pid.

        `console_socket` is a path (runc's flag); `console_fd` an already connected
        socket, for callers that receive the pty master themselves. `listen_fds`: systemd
        socket activation, the first N of the `preserve_fds` are its sockets (the process
        gets LISTEN_FDS=N and LISTEN_PID=1, as with runc). `early_init`: an init the
        `pyruntime` command's launcher started (pyruntime.oci.early_init), used when it
        fits the config and killed otherwise."""
        attach_warmup.begin()
        bundle, config = _load_bundle(bundle, early_init)
        _add_socket_activation(config, listen_fds)
        return self._create_from_config(container_id, bundle, config, pid_file=pid_file,
                                        console_socket=console_socket, console_fd=console_fd,
                                        preserve_fds=preserve_fds, no_pivot=no_pivot,
                                        no_new_keyring=no_new_keyring, early_init=early_init)

    def _create_from_config(self, container_id: str, bundle: str, config: dict, *,
                            pid_file: str | None, console_socket: str | None,
                            console_fd: int | None, preserve_fds: int, no_pivot: bool,
                            no_new_keyring: bool, early_init: EarlyInit | None = None) -> int:
        try:
            return self._create_with_console(container_id, bundle, config, pid_file,
                                             console_socket, console_fd, preserve_fds,
                                             no_pivot, no_new_keyring, early_init)
        finally:
            if early_init is not None:
                early_init.discard()  # unless adopted: then the launcher owns it

    def _create_with_console(self, container_id, bundle, config, pid_file, console_socket,
                             console_fd, preserve_fds, no_pivot, no_new_keyring,
                             early_init) -> int:
        terminal = config["process"].get("terminal", False)
        if config["process"].get("apparmorProfile") or config["process"].get("selinuxLabel"):
            from pyruntime.oci.lsm import check_available

            check_available(config["process"])
        if console_socket is not None and console_fd is None:
            if not terminal:
                raise OCIError("--console-socket given but process.terminal is false")
            console_fd = _connect_console_socket(console_socket)
        if terminal and console_fd is None:
            raise OCIError("process.terminal is true: a --console-socket is needed to "
                           "receive the pty (or run in the foreground)")
        try:
            return self._create(container_id, bundle, config, pid_file, console_fd,
                                preserve_fds, no_pivot, no_new_keyring, early_init)
        finally:
            if console_fd is not None and console_socket is not None:
                os.close(console_fd)

    def _create(self, container_id, bundle, config, pid_file, console_fd, preserve_fds,
                no_pivot, no_new_keyring, early_init) -> int:
        from pyruntime.oci.channel import keep_from_children, let_children_have

        lock = self.store.reserve(container_id)
        keep_from_children(lock.fd)
        try:
            return self._create_locked(lock.directory, container_id, bundle, config,
                                       pid_file, console_fd, preserve_fds, no_pivot,
                                       no_new_keyring, early_init)
        finally:
            let_children_have(lock.fd)
            lock.release()

    def _create_locked(self, directory, container_id, bundle, config, pid_file, console_fd,
                       preserve_fds, no_pivot, no_new_keyring, early_init) -> int:
        from pyruntime.cgroups.placement import CgroupPlacement
        from pyruntime.oci.launcher import InitLauncher

        record = ContainerRecord(directory, {
            "id": container_id,
            "pid": 0,
            "bundle": bundle,
            "rootfs": config["root"]["path"],
            "created": now_rfc3339(),
            "creator_pid": os.getpid(),
            "creator_start": process_start_time(os.getpid()),
            "config": config,
        })
        cgroup = None
        launcher = None
        state_dir_fd = -1
        cgroups_path = config.get("linux", {}).get("cgroupsPath")
        try:
            if not self.systemd_cgroup:
                # In the record's first write: recorded before it is made.
                cgroup = _plan_cgroup(record, CgroupPlacement.for_container(cgroups_path,
                                                                           container_id))
            record.save()
            # Opened here, not by init: in a user namespace init may not be allowed to
            # walk into the runtime's root (0700), as with runc's fifo fd.
            state_dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            launcher = InitLauncher({
                "id": container_id,
                "bundle": bundle,
                "config": config,
                "state_dir_fd": state_dir_fd,
                "no_pivot": no_pivot,
                "no_new_keyring": no_new_keyring,
                "console_fd": -1 if console_fd is None else console_fd,
                "preserve_fds": preserve_fds,
                "hook_state": _hook_state(record),
            }, record)
            if early_init is not None and not early_init.fits(config, console_fd, preserve_fds,
                                                              self.systemd_cgroup):
                self.debug(f"init {early_init.pid}, started by the command's launcher, "
                           "does not fit this container: killed")
                early_init.discard()
                early_init = None
            if early_init is not None:
                self.debug(f"init {early_init.pid} was started by the command's launcher")
                launcher.adopt(early_init, directory)
            elif not self.systemd_cgroup:
                # Where it can, init is forked now: it imports what it needs and makes
                # its namespaces while we make its cgroup (on the other CPU), and waits
                # to be placed in it. Otherwise `launch` starts it (or stage 1).
                launcher.fork_init()
            if not launcher.init_pid:
                # Before stage 1 is forked, so that it does not import them on the start
                # path.
                from pyruntime.oci.init import import_what_init_needs

                import_what_init_needs(config)
            os.mkfifo(record.fifo_path, 0o622)
            # Writable by init whatever uid it runs as (a user namespace's root is some
            # unprivileged host uid); mkfifo's mode went through our umask.
            os.chmod(record.fifo_path, 0o622)
            prepare_limits = None  # a systemd unit is given its limits when started
            unit = None
            if self.systemd_cgroup:
                from pyruntime.cgroups import systemd_path

                if systemd_path.systemd_running():
                    cgroup = unit = _systemd_unit(record, cgroups_path, config)
                else:
                    mapped = systemd_path.to_cgroupfs_path(cgroups_path, container_id)
                    self.debug(f"systemd is not running: cgroupsPath {cgroups_path!r} is "
                               f"the cgroupfs path {mapped}")
                    cgroup = _plan_cgroup(record, CgroupPlacement.for_container(
                        mapped, container_id))
                    record.save()  # recorded before created, so delete can always find it
            if unit is None:
                cgroup.create()
                resources = config.get("linux", {}).get("resources")

                def prepare_limits() -> Callable[[], None]:
                    return _limit_setter(cgroup, resources)
            pid = launcher.launch(cgroup, prepare_limits)
            if pid_file:
                write_pid_file(pid_file, pid)
            os.unlink(os.path.join(directory, CREATING_MARK))
            return pid
        except BaseException as error:
            if launcher is not None:
                launcher.abort()
            self._discard(record, cgroup, ran_hooks=isinstance(error, HookError))
            raise
        finally:
            if state_dir_fd >= 0:
                os.close(state_dir_fd)

    def _discard(self, record: ContainerRecord, cgroup, ran_hooks: bool) -> None:
        """Undo a failed create: processes, cgroup, state directory."""
        if cgroup is not None:
            try:
                cgroup.remove()  # kills whatever is left in it
            except Exception as error:  # noqa: BLE001 - cleanup must go on
                self.warn(f"cleaning up cgroup of {record.id}: {error}")
        if ran_hooks:
            self._run_poststop(record)
        _remove_state_dir(record.directory)

    def start(self, container_id: str) -> None:
        with self.store.lock(container_id):
            record = self.store.load(container_id)
            status = record.status()
            if status != "created":
                raise InvalidState(f"cannot start a container that is {status}")
            self._open_exec_fifo(record)
        hooks = record.config.get("hooks", {}).get("poststart")
        if hooks:
            # The spec: a failing poststart hook is a warning; the others and the
            # lifecycle go on.
            from pyruntime.oci.hooks import run_hooks

            run_hooks("poststart", hooks, _hook_state(record, "running"), self.warn)

    @staticmethod
    def _open_exec_fifo(record: ContainerRecord) -> None:
        """Open the FIFO init is blocked on: init writes a byte (it got the start), runs
        the startContainer hooks and execs, which closes its end. We return at that EOF,
        so the process has been exec'd when `start` returns and poststart hooks run.

        Non-blocking until init has opened its end, so a dead init cannot hang us (a
        short nap covers the moments before that open); then blocking, as init's end
        closes when it execs or dies, whichever comes first."""
        fd = os.open(record.fifo_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            received = b""
            while True:
                try:
                    data = os.read(fd, 16)
                except BlockingIOError:
                    data = None
                if data:
                    received += data
                    continue
                if data == b"" and received:
                    break  # init's end closed: exec'd, or gave up
                if not record.init_alive():
                    if not received:
                        raise InvalidState(f"container {record.id}: init exited before start")
                    break
                if received:
                    os.set_blocking(fd, True)  # init's next byte, or its end closing
                else:
                    # Before init's open, the FIFO reads as EOF: a short nap, not a spin.
                    time.sleep(0.0001)
        finally:
            os.close(fd)
        os.unlink(record.fifo_path)
        if b"!" in received:
            raise InvalidState(f"container {record.id}: the process was not started (a "
                               "startContainer hook or the last setup step failed; see "
                               "the container's stderr)")

    # -- queries ------------------------------------------------------------------------

    def state(self, container_id: str) -> dict:
        return self.store.load(container_id).oci_state()

    def list(self) -> list[dict]:
        states = []
        for container_id in self.store.ids():
            try:
                states.append(self.store.load(container_id).oci_state())
            except ContainerNotFound:
                continue  # deleted while we listed
        return states

    def ps(self, container_id: str) -> list[int]:
        record = self.store.load(container_id)
        cgroup = record.cgroup()
        if cgroup is None:
            return [record.pid] if record.init_alive() else []
        return cgroup.pids()

    # -- kill / delete ------------------------------------------------------------------

    def kill(self, container_id: str, signal_number: int = 15, all_processes: bool = False) -> None:
        """Signal init, or with `all_processes` every process in the cgroup.

        As runc: `--all` on a stopped container is a successful no-op (containerd sends
        it before every forced delete), the error for a stopped one says "container not
        running" (the words the runc shim looks for), and SIGKILL thaws a paused
        container, since a frozen process cannot die."""
        record = self.store.load(container_id)
        status = record.status()
        if status == "stopped" or (status == "creating" and not record.pid):
            if all_processes:
                return
            raise InvalidState(f"container not running: {container_id}")
        cgroup = record.cgroup()
        if all_processes and cgroup is not None:
            from pyruntime.cgroups import api as cgroups

            cgroups.kill_all(cgroup, signal_number)
        else:
            try:
                os.kill(record.pid, signal_number)
            except ProcessLookupError:
                raise InvalidState(f"container not running: {container_id}") from None
        if status == "paused" and signal_number == 9 and cgroup is not None:
            from pyruntime.cgroups import api as cgroups

            cgroups.thaw(cgroup)

    def delete(self, container_id: str, force: bool = False) -> None:
        with self.store.lock(container_id):
            record = self.store.load(container_id)
            status = record.status()
            if status in ("running", "paused") and not force:
                raise InvalidState(
                    f"cannot delete container {container_id} that is not stopped: {status}"
                )
            cgroup = record.cgroup()
            if status != "stopped":
                self._kill_everything(record, cgroup)
            if cgroup is not None:
                cgroup.remove()
            if record.pid:
                self._run_poststop(record)
            _remove_state_dir(record.directory)

    def _kill_everything(self, record: ContainerRecord, cgroup) -> None:
        if cgroup is not None:
            from pyruntime.cgroups import api as cgroups

            if cgroup.exists() and cgroups.is_frozen(cgroup):
                cgroups.thaw(cgroup)  # a frozen process cannot die
            cgroups.kill_all(cgroup, 9)
        if record.init_alive():
            try:
                os.kill(record.pid, 9)
            except ProcessLookupError:
                pass
        _wait_gone(record.pid, record.data.get("pid_start"))

    def _run_poststop(self, record: ContainerRecord) -> None:
        hooks = record.config.get("hooks", {}).get("poststop")
        if not hooks:
            return
        from pyruntime.oci.hooks import run_hooks

        run_hooks("poststop", hooks, _hook_state(record, "stopped"), self.warn)

    # -- run / exec ---------------------------------------------------------------------

    def run(self, container_id: str, bundle: str, *, detach: bool = False, keep: bool = False,
            pid_file: str | None = None, console_socket: str | None = None,
            preserve_fds: int = 0, no_pivot: bool = False, no_new_keyring: bool = False,
            listen_fds: int = 0, early_init=None) -> ExitStatus | None:
        """create + start; in the foreground, wait and delete, returning how it ended."""
        from pyruntime.oci.foreground import Foreground

        attach_warmup.begin()
        bundle, config = _load_bundle(bundle, early_init)
        _add_socket_activation(config, listen_fds)
        options = dict(pid_file=pid_file, console_socket=console_socket,
                       preserve_fds=preserve_fds, no_pivot=no_pivot,
                       no_new_keyring=no_new_keyring, early_init=early_init)
        if detach:
            self._create_from_config(container_id, bundle, config, console_fd=None, **options)
            self._start_or_discard(container_id)
            return None
        proxy_terminal = config["process"].get("terminal", False) and console_socket is None
        with Foreground(proxy_terminal) as foreground:
            pid = self._create_from_config(container_id, bundle, config,
                                           console_fd=foreground.console_fd, **options)
            try:
                self._start_or_discard(container_id)
                status = foreground.wait(pid)
                status.oom_killed = self.store.load(container_id).oom_killed()
            finally:
                if not keep:
                    try:
                        self.delete(container_id, force=True)
                    except ContainerNotFound:
                        pass  # someone else deleted it while we waited
        return status

    # -- pause / resume / update / events -------------------------------------------------

    def pause(self, container_id: str) -> None:
        with self.store.lock(container_id):
            record = self.store.load(container_id)
            status = record.status()
            if status != "running":
                raise InvalidState(f"cannot pause a container that is {status}")
            from pyruntime.cgroups import api as cgroups

            cgroups.freeze(_require_cgroup(record))

    def resume(self, container_id: str) -> None:
        with self.store.lock(container_id):
            record = self.store.load(container_id)
            status = record.status()
            if status != "paused":
                raise InvalidState(f"cannot resume a container that is {status}")
            from pyruntime.cgroups import api as cgroups

            cgroups.thaw(_require_cgroup(record))

    def update(self, container_id: str, resources: dict) -> None:
        """New limits for a live container (runc's `update`); kept in its record too."""
        with self.store.lock(container_id):
            record = self.store.load(container_id)
            status = record.status()
            if status == "stopped":
                raise InvalidState(f"cannot update a container that is {status}")
            from pyruntime.cgroups import api as cgroups

            cgroups.update_resources(_require_cgroup(record), resources)
            linux = record.config.setdefault("linux", {})
            merged = dict(linux.get("resources") or {})
            for key, value in resources.items():
                merged[key] = (dict(merged.get(key) or {}, **value)
                               if isinstance(value, dict) else value)
            linux["resources"] = merged
            record.save()

    def stats(self, container_id: str) -> dict:
        """runc's `events --stats` data: cpu, memory, pids, blkio..."""
        from pyruntime.cgroups import api as cgroups

        return cgroups.stats(_require_cgroup(self.store.load(container_id)))

    def events(self, container_id: str, interval: float = 5.0):
        """Yield runc-style events until the container stops: `stats` every `interval`
        seconds and an `oom` event for each OOM kill as it happens."""
        import time as clock

        from pyruntime.cgroups import api as cgroups
        from pyruntime.cgroups.oom import OomWatcher

        record = self.store.load(container_id)
        cgroup = _require_cgroup(record)
        with OomWatcher(cgroup) as watcher:
            next_stats = clock.monotonic()
            while record.status() != "stopped":
                now = clock.monotonic()
                if now >= next_stats:
                    yield {"type": "stats", "id": container_id, "data": cgroups.stats(cgroup)}
                    next_stats = now + interval
                for _ in range(watcher.wait(min(0.5, max(0.0, next_stats - now)))):
                    yield {"type": "oom", "id": container_id}

    def _start_or_discard(self, container_id: str) -> None:
        try:
            self.start(container_id)
        except BaseException:
            self.delete(container_id, force=True)
            raise

    def exec(self, container_id: str, process: dict, *, detach: bool = False,
             console_socket: str | None = None, pid_file: str | None = None,
             preserve_fds: int = 0, ignore_paused: bool = False,
             sub_cgroups: dict[str, str] | None = None) -> ExitStatus | int:
        """Run `process` (an OCI process object) in the container's namespaces and cgroup.
        Returns its ExitStatus, or its pid with `detach`.

        As runc: a paused container only with `ignore_paused`, and the process then
        stays frozen with the rest until `resume` (so this waits until then, as runc's
        exec does). `sub_cgroups` ({"": PATH} for every hierarchy, or {CONTROLLER:
        PATH}; see pyruntime.cgroups.sub_cgroup) puts it in an existing cgroup below
        the container's instead."""
        attach_warmup.begin()
        from pyruntime.oci.enter import exec_in_container
        from pyruntime.oci.spec import validate_process

        process = validate_process(process)
        if process.get("apparmorProfile") or process.get("selinuxLabel"):
            from pyruntime.oci.lsm import check_available

            check_available(process)  # create's clear error, not the kernel's EINVAL
        record = self.store.load(container_id)
        status = record.status()
        if status == "paused" and not ignore_paused:
            raise InvalidState("cannot exec in a paused container (use --ignore-paused to "
                               "override)")
        if status not in ("created", "running", "paused"):
            raise InvalidState(f"cannot exec in a container that is {status}")
        cgroup = record.cgroup()
        if sub_cgroups:
            from pyruntime.cgroups.sub_cgroup import sub_cgroup_placement

            cgroup = sub_cgroup_placement(cgroup, sub_cgroups)
        return exec_in_container(record, cgroup, process, detach=detach,
                                 console_socket=console_socket, pid_file=pid_file,
                                 preserve_fds=preserve_fds)


def _load_bundle(bundle: str, early_init: EarlyInit | None) -> tuple[str, dict]:
    """The bundle's absolute path and its validated config: with an early init, the
    config.json the launcher read for it (both validate the same bytes)."""
    from pyruntime.oci.spec import load_container_spec

    bundle = os.path.abspath(bundle)
    try:
        data = None if early_init is None else early_init.config_bytes()
        return bundle, load_container_spec(bundle, data)
    except BaseException:
        if early_init is not None:
            early_init.discard()
        raise


def _add_socket_activation(config: dict, listen_fds: int) -> None:
    """runc's socket activation: the process is told of the sockets among its fds. In
    the recorded config too, so that a later `exec` without --process inherits the two
    variables (harmless: LISTEN_PID=1 names init, and sd_listen_fds checks it)."""
    if listen_fds > 0:
        process = config["process"]
        process["env"] = [*process.get("env", []), f"LISTEN_FDS={listen_fds}",
                          "LISTEN_PID=1"]


def _plan_cgroup(record: ContainerRecord, cgroup):
    """Put the container's cgroup, to be made, into the record (not yet written)."""
    cgroup.created = cgroup.missing_parents()
    record.data["cgroup_paths"] = cgroup.paths
    record.data["cgroup_created"] = cgroup.created
    return cgroup


def _hook_state(record: ContainerRecord, status: str = "creating") -> dict:
    return {
        "ociVersion": record.config.get("ociVersion", "1.2.0"),
        "id": record.id,
        "status": status,
        "pid": record.pid,
        "bundle": record.data["bundle"],
        "annotations": record.config.get("annotations", {}),
    }


def _limit_setter(cgroup, resources: dict | None) -> Callable[[], None]:
    """Imports what setting the container's limits needs, and returns the function that
    sets them (InitLauncher.launch says when it is called). Without `linux.resources`
    the container is still held to runc's default device list."""
    from pyruntime.cgroups import api as cgroups

    # Here, not when setting them: init waits for that, and these are the biggest modules
    # it needs (api imports the one for the cgroup's version only when first called).
    if cgroups.cgroup_version(cgroup) == 2:
        import pyruntime.cgroups.resources_v2  # noqa: F401
    else:
        import pyruntime.cgroups.resources_v1  # noqa: F401

    def set_limits() -> None:
        cgroups.enable_controllers(cgroup)
        if resources:
            cgroups.apply_resources(cgroup, resources)
        else:
            cgroups.apply_devices(cgroup, None)

    return set_limits


def _systemd_unit(record: ContainerRecord, cgroups_path: str | None, config: dict):
    """--systemd-cgroup with systemd running: the container's cgroup is a transient unit,
    recorded now and started by the launcher around stage 1's pid, which then records
    its directories (see pyruntime.cgroups.systemd_scope)."""
    from pyruntime.cgroups.systemd_scope import SystemdScope

    def record_cgroup(started) -> None:
        record.data["cgroup_paths"] = started.paths
        record.data["cgroup_created"] = started.created
        record.data["cgroup_unit_started"] = started.started
        record.save()

    unit = SystemdScope.for_container(cgroups_path, record.id,
                                      config.get("linux", {}).get("resources"),
                                      on_started=record_cgroup)
    record.data["cgroup_unit"] = unit.unit
    record.save()  # before the unit is started, so delete can always find it
    return unit


def _require_cgroup(record: ContainerRecord):
    cgroup = record.cgroup()
    if cgroup is None or not cgroup.exists():
        raise InvalidState(f"container {record.id} has no cgroup")
    return cgroup


def _wait_gone(pid: int, start_time: int | None, timeout: float = 10.0) -> None:
    if not pid:
        return
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while process_start_time(pid) == start_time and start_time is not None:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            pass
        if time.monotonic() > deadline:
            raise OCIError(f"process {pid} did not exit after SIGKILL")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass


def _remove_state_dir(directory: str) -> None:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass
    os.rmdir(directory)


def write_pid_file(path: str, pid: int) -> None:
    """Atomically, as runc does: engines read it as soon as it appears."""
    path = os.path.abspath(path)
    temp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(temp, "w") as f:
        f.write(str(pid))
    os.rename(temp, path)


def _connect_console_socket(path: str) -> int:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as error:
        sock.close()
        raise OCIError(f"--console-socket {path}: {error.strerror}") from None
    return sock.detach()


def _warn_to_stderr(message: str) -> None:
    os.write(2, f"pyruntime: warning: {message}\n".encode())
