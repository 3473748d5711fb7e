"""`exec`: a new process inside a running container.

The process is forked by the runtime straight into the container's PID namespace (the
runtime points its own namespace for children there for that one fork, non-dumpable for
it, so the child is from its first instant; see pyruntime.oci.namespaces). It joins
init's other namespaces (user first) and takes init's root. Where that cannot be
done (a time namespace, which only children enter, or a runtime with threads, which
starts a fresh interpreter instead of forking), a stage 1 joins the namespaces, takes
init's root and forks the process, reporting its pid.

The runtime places the process in the container's cgroup while it sets up its session and
terminal; it waits for `placed` before it takes the process's user and capabilities (so
the kernel's wait on a first cgroup.procs write overlaps its work, see
pyruntime.cgroups.attach_warmup), then makes the same last steps as init (cwd, user,
capabilities, no_new_privs, seccomp, fds) and execs. A failure before exec comes back
over the channel; a successful exec closes the channel's close-on-exec write end, which
is the signal.
"""
from __future__ import annotations

import os

from pyruntime.cgroups import attach_warmup
from pyruntime.linux import syscalls as sc
from pyruntime.oci import process as proc
from pyruntime.oci.channel import Channel, channel_pair
from pyruntime.oci.errors import ContainerStartError
from pyruntime.oci.exit_status import ExitStatus
from pyruntime.oci.launcher import ERROR_KINDS, fork_child, has_threads, start_child
from pyruntime.oci.namespaces import NAMESPACES, fork_in_pid_namespace, same_namespace


def exec_in_container(record, cgroup, process: dict, *, detach: bool,
                      console_socket: str | None, pid_file: str | None,
                      preserve_fds: int) -> ExitStatus | int:
    from pyruntime.linux import process_control

    from pyruntime.oci.foreground import Foreground

    init_pid = record.pid
    namespace_fds = _open_namespaces(init_pid, record.config)
    root_fd = os.open(f"/proc/{init_pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    console_fd = None
    if console_socket is not None:
        from pyruntime.oci.runtime import _connect_console_socket

        console_fd = _connect_console_socket(console_socket)
    plan = {
        "process": process,
        "config": record.config,
        "namespace_fds": namespace_fds,
        "root_fd": root_fd,
        "preserve_fds": preserve_fds,
    }
    proxy_terminal = process.get("terminal", False) and console_fd is None and not detach
    process_control.set_child_subreaper(True)
    try:
        with Foreground(proxy_terminal) as foreground:
            plan["console_fd"] = console_fd if console_fd is not None else (
                foreground.console_fd if foreground.console_fd is not None else -1)
            parent, child = channel_pair()
            try:
                if "time" not in namespace_fds and not has_threads():
                    pid = _fork_process(parent, child, cgroup, plan)
                else:
                    passed = [*namespace_fds.values(), root_fd, *range(3, 3 + preserve_fds)]
                    if plan["console_fd"] >= 0:
                        passed.append(plan["console_fd"])
                    stage1 = start_child(parent, child, "exec", plan, tuple(passed))
                    pid = _converse(parent, cgroup, stage1)
            finally:
                parent.close()
            if pid_file:
                from pyruntime.oci.runtime import write_pid_file

                write_pid_file(pid_file, pid)
            if detach:
                return pid
            return foreground.wait(pid)
    finally:
        for fd in [root_fd, *namespace_fds.values()]:
            os.close(fd)
        if console_fd is not None:
            os.close(console_fd)


def _open_namespaces(init_pid: int, config: dict) -> dict[str, int]:
    """fds of the init's namespaces that differ from ours, keyed by OCI type."""
    fds = {}
    for ns_type, (name, _) in NAMESPACES.items():
        path = f"/proc/{init_pid}/ns/{name}"
        if not os.path.exists(path) or same_namespace(path, f"/proc/self/ns/{name}"):
            continue
        fds[ns_type] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return fds


def _fork_process(channel: Channel, child: Channel, cgroup, plan: dict) -> int:
    """The process forked by us into the container's PID namespace; its pid once it
    has exec'd."""
    pid_fd = plan["namespace_fds"].get("pid")

    def fork() -> int:
        return fork_child(channel, child, enter_directly, plan)

    pid = fork_in_pid_namespace(pid_fd, fork) if pid_fd is not None else fork()
    try:
        _place(channel, cgroup, pid)
        _wait_for_exec(channel)
    except BaseException:
        try:
            os.kill(pid, 9)  # most likely gone already, having reported its error
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        raise
    return pid


def _converse(channel: Channel, cgroup, stage1: int) -> int:
    """With a stage 1: place the process it reports; its pid once it has exec'd."""
    pid = 0
    failed = False
    try:
        message = channel.receive()
        if message is not None and message["type"] == "pid":
            pid = message["pid"]
            _place(channel, cgroup, pid)
        elif message is not None:
            _raise_reported(message)
        _wait_for_exec(channel)
    except BaseException:
        failed = True
        raise
    finally:
        os.waitpid(stage1, 0)
        if failed and pid:
            # Reparented to us (a child subreaper) once stage 1 is gone.
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    if not pid:
        raise ContainerStartError("exec: the process could not be started")
    return pid


def _place(channel: Channel, cgroup, pid: int) -> None:
    try:
        if cgroup is not None:
            cgroup.add(pid)
    except BaseException:
        os.kill(pid, 9)  # outside the cgroup: it must never run
        raise
    channel.send({"type": "placed"})
    attach_warmup.end(wait=False)


def _wait_for_exec(channel: Channel) -> None:
    """Until the channel closes (the process exec'd) or brings an error."""
    while True:
        message = channel.receive()
        if message is None:
            return
        if message["type"] == "error":
            _raise_reported(message)


def _raise_reported(message: dict) -> None:
    if message["type"] != "error":
        raise ContainerStartError(f"exec: unexpected message {message!r}")
    error_class = ERROR_KINDS.get(message.get("kind"), ContainerStartError)
    raise error_class(message.get("message", "exec failed"))


def enter_directly(plan: dict, channel: Channel) -> None:
    """The process, forked by the runtime into the PID namespace: join the others, then
    become the process (never returns)."""
    _enter(plan, skip_pid=True)
    _stage2(plan, channel)


def enter_stage1(plan: dict, channel: Channel) -> None:
    _enter(plan, skip_pid=False)
    pid = os.fork()
    if pid == 0:
        try:
            _stage2(plan, channel)
        except BaseException as error:  # noqa: BLE001 - reported, then exit
            channel.send_error(error)
        os._exit(1)
    channel.send({"type": "pid", "pid": pid})


def _enter(plan: dict, skip_pid: bool) -> None:
    """Non-dumpable first, then init's namespaces (user first) and init's root."""
    from pyruntime.linux import process_control

    process_control.set_dumpable(False)
    _import_before_fork(plan["process"], plan["config"])
    fds = plan["namespace_fds"]
    for ns_type, (_, flag) in NAMESPACES.items():
        if ns_type in fds and not (skip_pid and ns_type == "pid"):
            sc.setns(fds[ns_type], flag, f"{ns_type} namespace")
    if "user" in fds:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    # The container's root as init sees it, pivot_root or chroot alike.
    os.fchdir(plan["root_fd"])
    os.chroot(".")


def _import_before_fork(process: dict, config: dict) -> None:
    """The modules stage 2 needs, imported while the host's library is reachable."""
    import _signal  # noqa: F401

    import pyruntime.linux.capabilities  # noqa: F401

    if process.get("apparmorProfile") or process.get("selinuxLabel"):
        import pyruntime.oci.lsm  # noqa: F401
    if config.get("linux", {}).get("seccomp") is not None:
        import pyruntime.linux.seccomp  # noqa: F401
    if process.get("terminal"):
        import socket  # noqa: F401

        import pyruntime.oci.console  # noqa: F401


def _stage2(plan: dict, channel: Channel) -> None:
    process = plan["process"]
    config = plan["config"]
    user = process.get("user", {})
    os.setsid()
    if process.get("terminal"):
        from pyruntime.oci.console import make_container_pty

        if plan["console_fd"] < 0:
            raise ContainerStartError("a tty was asked for but there is no console socket")
        make_container_pty(plan["console_fd"], process.get("consoleSize"),
                           user.get("uid", 0), user.get("gid", 0))
    # In the container's cgroup before anything of the process's own runs; still root
    # and without seccomp here, so reading the channel cannot be refused.
    channel.expect("placed")
    seccomp = config.get("linux", {}).get("seccomp")
    executable = proc.become_process(process, seccomp)
    proc.load_late_seccomp(process, seccomp)
    proc.prepare_fds(plan["preserve_fds"])
    proc.exec_process(executable, process["args"], process.get("env", []), process)
