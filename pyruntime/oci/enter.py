"""`exec`: a new process inside a running container.

Stage 1 (forked, non-dumpable before it touches anything of the container) is placed in
the container's cgroup by the runtime, joins the container init's namespaces (user
first), takes init's root, then forks stage 2, which is inside the PID namespace too.
Stage 2 makes the same last steps as init (terminal, cwd, user, capabilities,
no_new_privs, seccomp, fds) and execs. A failure before exec comes back over the channel;
a successful exec closes the channel's close-on-exec write end, which is the signal.
"""
from __future__ import annotations

import os

from pyruntime.linux import syscalls as sc
from pyruntime.oci import process as proc
from pyruntime.oci.channel import Channel, channel_pair
from pyruntime.oci.errors import ContainerStartError
from pyruntime.oci.exit_status import ExitStatus
from pyruntime.oci.launcher import ERROR_KINDS, start_child
from pyruntime.oci.namespaces import NAMESPACES, same_namespace


def exec_in_container(record, cgroup, process: dict, *, detach: bool,
                      console_socket: str | None, pid_file: str | None,
                      preserve_fds: int) -> ExitStatus | int:
    import prctl

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
    prctl.set_child_subreaper(True)
    try:
        with Foreground(proxy_terminal) as foreground:
            plan["console_fd"] = console_fd if console_fd is not None else (
                foreground.console_fd if foreground.console_fd is not None else -1)
            parent, child = channel_pair()
            passed = [*namespace_fds.values(), root_fd, *range(3, 3 + preserve_fds)]
            if plan["console_fd"] >= 0:
                passed.append(plan["console_fd"])
            stage1 = start_child(parent, child, "exec", plan, tuple(passed))
            try:
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


def _converse(channel: Channel, cgroup, stage1: int) -> int:
    pid = 0
    try:
        while True:
            message = channel.receive()
            if message is None:
                break
            kind = message["type"]
            if kind == "stage1":
                if cgroup is not None:
                    cgroup.add(message["pid"])
                channel.send({"type": "go"})
            elif kind == "pid":
                pid = message["pid"]
            elif kind == "error":
                if pid:
                    os.waitpid(pid, 0)
                error_class = ERROR_KINDS.get(message.get("kind"), ContainerStartError)
                raise error_class(message.get("message", "exec failed"))
    finally:
        os.waitpid(stage1, 0)
    if not pid:
        raise ContainerStartError("exec: the process could not be started")
    return pid


def enter_stage1(plan: dict, channel: Channel) -> None:
    import prctl

    prctl.set_dumpable(False)
    _import_before_fork(plan["process"], plan["config"])
    channel.send({"type": "stage1", "pid": os.getpid()})
    channel.expect("go")
    fds = plan["namespace_fds"]
    for ns_type, (_, flag) in NAMESPACES.items():
        if ns_type in fds:
            sc.setns(fds[ns_type], flag, f"{ns_type} namespace")
    if "user" in fds:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    # The container's root as init sees it, pivot_root or chroot alike.
    os.fchdir(plan["root_fd"])
    os.chroot(".")
    pid = os.fork()
    if pid == 0:
        try:
            _stage2(plan, channel)
        except BaseException as error:  # noqa: BLE001 - reported, then exit
            channel.send_error(error)
        os._exit(1)
    channel.send({"type": "pid", "pid": pid})


def _import_before_fork(process: dict, config: dict) -> None:
    """The modules stage 2 needs, imported while the host's library is reachable."""
    import _signal  # noqa: F401

    import pyruntime.linux.capabilities  # noqa: F401

    if process.get("rlimits"):
        import resource  # noqa: F401
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
    seccomp = config.get("linux", {}).get("seccomp")
    executable = proc.become_process(process, seccomp)
    proc.load_late_seccomp(process, seccomp)
    proc.prepare_fds(plan["preserve_fds"])
    proc.exec_process(executable, process["args"], process.get("env", []), process)
