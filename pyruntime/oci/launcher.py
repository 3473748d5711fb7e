"""The runtime's side of creating a container: fork stage 1, answer its requests (cgroup
placement, id mappings, prestart/createRuntime hooks) and collect init's pid.

Whatever fails, the process tree is killed and reaped before the error propagates; the
caller then removes the cgroup and the state directory, so a failed create leaves nothing.
"""
from __future__ import annotations

import os

from pyruntime.cgroups import attach_warmup
from pyruntime.linux.kernel_files import write_kernel_file
from pyruntime.oci.channel import Channel, channel_pair, run_child_body
from pyruntime.oci.errors import (ContainerStartError, HookError, OCIError,
                                  ProcessNotExecutable, ProcessNotFound)

TYPE_CHECKING = False  # typing's own constant costs an import on the create path
if TYPE_CHECKING:
    from collections.abc import Callable

ERROR_KINDS = {
    "ProcessNotFound": ProcessNotFound,
    "ProcessNotExecutable": ProcessNotExecutable,
    "HookError": HookError,
}


# What a stage-1 child runs, by name, so a spawned interpreter can find it too.
CHILD_ENTRIES = {
    "bootstrap": ("pyruntime.oci.bootstrap", "run_bootstrap"),
    "exec": ("pyruntime.oci.enter", "enter_stage1"),
}


def start_child(channel_parent: Channel, channel_child: Channel, entry: str, plan: dict,
                pass_fds: tuple[int, ...] = ()) -> int:
    """Start a stage-1 child running CHILD_ENTRIES[entry](plan, channel); returns its pid.

    Forking is the fast path. A process with threads (an embedding program, the pod
    supervisor's executors) must not fork Python: another thread may hold a lock the
    child then waits on forever. There a fresh interpreter is exec'd instead (as runc
    re-executes `runc init`) and the plan is sent to it over the channel.

    One exception to "no fork with threads", taken on purpose (architecture.md says
    never fork Python from a threaded process): the attach warm-up's C thread
    (pyruntime.cgroups.attach_warmup) may still be waiting in write(2). It never runs
    Python, holds no lock but glibc's malloc (which fork makes safe), and is not
    counted above; waiting for it would put the kernel's grace period back on the
    start path."""
    if has_threads():
        return _spawn_child(channel_parent, channel_child, entry, plan, pass_fds)
    module_name, function_name = CHILD_ENTRIES[entry]
    # __import__ rather than importlib: one module fewer on the start path.
    body = getattr(__import__(module_name, fromlist=[function_name]), function_name)
    return fork_child(channel_parent, channel_child, body, plan)


def fork_child(channel_parent: Channel, channel_child: Channel, body, plan: dict) -> int:
    """Fork a child that runs body(plan, channel_child); returns its pid. Only in a
    process without threads (see start_child)."""
    pid = os.fork()
    if pid == 0:
        run_child_body(channel_parent, channel_child, body, plan)
    channel_child.close()
    return pid


def has_threads() -> bool:
    import sys

    threading = sys.modules.get("threading")
    return threading is not None and threading.active_count() > 1


def _spawn_child(channel_parent: Channel, channel_child: Channel, entry: str, plan: dict,
                 pass_fds: tuple[int, ...]) -> int:
    import subprocess
    import sys

    fds = (channel_child.read_fd, channel_child.write_fd, *pass_fds)
    child = subprocess.Popen(
        [sys.executable, "-m", "pyruntime.oci.spawned", entry,
         str(channel_child.read_fd), str(channel_child.write_fd)],
        pass_fds=fds, close_fds=True,
    )
    channel_child.close()
    channel_parent.send({"type": "plan", "plan": plan})
    # The Popen object is dropped: the pid is waited for by the caller, like a fork's.
    child.returncode = 0
    return child.pid


class InitLauncher:
    """Runs the bootstrap/init protocol for one container being created.

    `fork_init` may be called first, before the container's cgroup exists: init then
    makes its namespaces and imports what it needs while the caller makes the cgroup.
    `launch(cgroup, prepare_limits)` places init (or stage 1) in the cgroup, sets the
    cgroup's limits when init asks for its creation hooks, and sees it through to
    `ready`; `abort` kills and reaps whatever was started, for a create that failed
    between the two."""

    def __init__(self, plan: dict, record) -> None:
        self.plan = plan
        self.record = record
        self.cgroup = None
        self.init_pid = 0
        self.bootstrap_pid = 0
        self.channel: Channel | None = None
        self.set_limits: Callable[[], None] | None = None
        self.early_state_dir: str | None = None  # set for an adopted early init
        self.limits_on_begun = False  # decided when init is placed (_limits_at_placement)

    def adopt(self, early_init, state_dir: str) -> None:
        """Take over the init the command's launcher started (pyruntime.oci.early_init)
        instead of forking one; `placed` then brings it the plan and `state_dir`, the
        container's state directory, which it opens itself."""
        self.init_pid = early_init.pid
        self.channel = early_init.adopt()
        self.early_state_dir = state_dir

    def fork_init(self) -> None:
        """Fork init now, straight into its PID namespace, where no stage 1 is needed
        (pyruntime.oci.bootstrap says when): it waits for `placed`, which brings it the
        cgroup's directories. Does nothing otherwise."""
        if self.init_pid:
            return
        from pyruntime.oci.bootstrap import (fork_in_container_pid_namespace,
                                             forks_init_directly, run_direct_init)

        if not forks_init_directly(self.plan["config"]) or has_threads():
            return
        parent, child = channel_pair()
        self.channel = parent
        self.init_pid = fork_in_container_pid_namespace(
            self.plan["config"], lambda: fork_child(parent, child, run_direct_init, self.plan))

    def launch(self, cgroup,
               prepare_limits: Callable[[], Callable[[], None]] | None = None) -> int:
        """`prepare_limits()` returns the function that sets the cgroup's limits and
        device rules. It is called once the first process is in the cgroup and on its
        way, so that its imports overlap init's mounts; the limits are set when init
        asks for its creation hooks: runc's order (it sets them on procHooks). By then
        init has made its device nodes, which a devices cgroup v1 rewriting its rules
        (deny all, then allow) would refuse for a moment; and no process of the user's
        has run."""
        self.cgroup = cgroup
        self.plan["cgroup_paths"] = cgroup.paths if cgroup is not None else {}
        # Init is reparented to us when stage 1 exits, so we can reap it on failure and
        # wait for it in `run`. The launcher that started an early init made this process
        # a subreaper already (the attribute survives execve), sparing `run` the import.
        if self.early_state_dir is None:
            from pyruntime.linux import process_control

            process_control.set_child_subreaper(True)
        try:
            self.fork_init()
            if self.init_pid:
                self._release_init()
            else:
                parent, child = channel_pair()
                self.channel = parent
                self.bootstrap_pid = start_child(parent, child, "bootstrap", self.plan,
                                                 self._fds_to_pass())
                # At once, while stage 1 starts up and makes its namespaces: it forks
                # init only after our `bootstrap-ok`, so init is born in the cgroup. The
                # kernel's wait for the first cgroup.procs write was started early
                # (attach_warmup).
                self._place(self.bootstrap_pid)
                attach_warmup.end(wait=False)
            if prepare_limits is not None:
                self.set_limits = prepare_limits()
            self._converse(self.channel)
        except BaseException:
            self.abort()
            raise
        finally:
            self._close_channel()
            self._reap_bootstrap()
        return self.init_pid

    def abort(self) -> None:
        self.kill_tree()
        self._close_channel()

    def _limits_at_placement(self) -> bool:
        """Whether an init we place (forked or adopted) goes on without asking for its
        creation hooks, the limits set once it says it has `begun`, while it does the
        rest: when there are no prestart/createRuntime hooks to run, init makes its
        devices in that first part (rootfs_order.devices_made_before_cgroup), and
        nothing in the rest opens a device: no terminal (/dev/ptmx) and no
        createContainer hook (it runs in the container's cgroup). A devices cgroup v1
        rewriting its rules refuses every device for a moment: a pty's open and a mknod
        were both seen to fail in that window. Nor with `process.scheduler`: a real-time
        policy may need the limits first (cpu.rt_runtime_us under v1's RT group
        scheduling: sched_setattr was seen refused with EPERM before them). Otherwise
        the limits are set when init asks for its hooks, runc's order, and it waits for
        them."""
        from pyruntime.oci.rootfs_order import devices_made_before_cgroup

        config = self.plan["config"]
        return (not self._has_creation_hooks()
                and not config.get("hooks", {}).get("createContainer")
                and not config["process"].get("terminal")
                and config["process"].get("scheduler") is None
                and devices_made_before_cgroup(config))

    def _has_creation_hooks(self) -> bool:
        """prestart or createRuntime hooks, which the runtime runs when init asks."""
        hooks = self.plan["config"].get("hooks", {})
        return bool(hooks.get("prestart") or hooks.get("createRuntime"))

    def _close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def _release_init(self) -> None:
        """Init forked by us (or adopted): into its cgroup, then on its way. Its pid is
        recorded once it has its creation hooks' answer (`_converse`), while it pivots
        and drops privileges: until then the cgroup, recorded already, stands for it
        (delete kills what is in it)."""
        self._place(self.init_pid)
        self.limits_on_begun = self._limits_at_placement()
        message = {"type": "placed", "cgroup_paths": self.plan["cgroup_paths"],
                   "pid": self.init_pid, "ask_for_hooks": not self.limits_on_begun}
        if self.early_state_dir is not None:
            # An early init has only the config: the rest of its plan, and which state
            # directory is the one we opened (fds do not go through the channel's pipes).
            info = os.fstat(self.plan["state_dir_fd"])
            message["state_dir"] = {"path": self.early_state_dir, "dev": info.st_dev,
                                    "ino": info.st_ino}
            message["plan"] = {key: value for key, value in self.plan.items()
                               if key not in ("config", "state_dir_fd", "cgroup_paths")}
        self._send(self.channel, message)
        attach_warmup.end(wait=False)

    def _record_init(self, pid: int) -> None:
        if self.record.data.get("pid") == pid:
            return  # recorded already
        from pyruntime.oci.state import process_start_time

        self.init_pid = pid
        self.record.data["pid"] = pid
        self.record.data["pid_start"] = process_start_time(pid)
        self.record.save()

    def _fds_to_pass(self) -> tuple[int, ...]:
        fds = list(range(3, 3 + self.plan.get("preserve_fds", 0)))
        fds.append(self.plan["state_dir_fd"])
        if self.plan.get("console_fd", -1) >= 0:
            fds.append(self.plan["console_fd"])
        return tuple(fds)

    def _send(self, channel: Channel, message: dict) -> None:
        """Send, or raise what init said before it went (or that it went)."""
        try:
            channel.send(message)
        except BrokenPipeError:
            while (said := channel.receive()) is not None:  # `begun` may come first
                if said.get("type") == "error":
                    self._raise_init_error(said)
            raise ContainerStartError("container init exited before it was ready") from None

    @staticmethod
    def _raise_init_error(message: dict) -> None:
        error_class = ERROR_KINDS.get(message.get("kind"), ContainerStartError)
        raise error_class(message.get("message", "container init failed"))

    def _converse(self, channel: Channel) -> None:
        while True:
            message = channel.receive()
            if message is None:
                raise ContainerStartError("container init exited before it was ready")
            kind = message["type"]
            if kind == "bootstrap":
                if message["new_user"]:
                    self._write_mappings(message["pid"])
                self._send(channel, {"type": "bootstrap-ok"})
            elif kind == "init":
                self._record_init(message["pid"])
            elif kind == "begun":
                # Init made what it could before it was placed (RootfsBuilder.begin),
                # its devices among them. When it will not ask for its hooks, the limits
                # are set now, while it does the rest: it execs nothing before `start`.
                if self.limits_on_begun:
                    if self.set_limits is not None:
                        self.set_limits()
                    self._record_init(self.init_pid)
            elif kind == "hooks":
                if self.set_limits is not None:
                    self.set_limits()
                if self._has_creation_hooks():
                    self._record_init(self.init_pid)  # a hook may ask for the state
                self._run_creation_hooks()
                self._send(channel, {"type": "hooks-ok", "pid": self.init_pid})
                self._record_init(self.init_pid)
            elif kind == "ready":
                self._record_init(self.init_pid)
                return
            elif kind == "error":
                self._raise_init_error(message)
            else:
                raise ContainerStartError(f"unexpected message from init: {message!r}")

    def _place(self, pid: int) -> None:
        if self.cgroup is not None:
            self.cgroup.add(pid)

    def _write_mappings(self, pid: int) -> None:
        linux = self.plan["config"]["linux"]
        _write_mapping(pid, "uid_map", linux.get("uidMappings", []))
        _write_mapping(pid, "gid_map", linux.get("gidMappings", []))

    def _run_creation_hooks(self) -> None:
        hooks = self.plan["config"].get("hooks", {})
        state = dict(self.plan["hook_state"], pid=self.init_pid, status="creating")
        for kind in ("prestart", "createRuntime"):
            if hooks.get(kind):
                from pyruntime.oci.hooks import run_hooks

                run_hooks(kind, hooks[kind], state)

    def _reap_bootstrap(self) -> None:
        if self.bootstrap_pid:
            try:
                os.waitpid(self.bootstrap_pid, 0)
            except ChildProcessError:
                pass
            self.bootstrap_pid = 0

    def kill_tree(self) -> None:
        """Kill init and stage 1 (if still there) and reap them."""
        for pid in (self.init_pid, self.bootstrap_pid):
            if pid:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        # Stage 1 first: only once it is gone is init our (reparented) child.
        self._reap_bootstrap()
        if self.init_pid:
            try:
                os.waitpid(self.init_pid, 0)
            except ChildProcessError:
                pass
            self.init_pid = 0  # reaped: the number may be someone else's from now on


def _write_mapping(pid: int, name: str, mappings: list[dict]) -> None:
    text = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)
    try:
        write_kernel_file(f"/proc/{pid}/{name}", text)
    except OSError as error:
        field = "linux.uidMappings" if name == "uid_map" else "linux.gidMappings"
        raise OCIError(f"{field}: writing {name}: {error.strerror}") from None
