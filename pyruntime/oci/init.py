"""Stage 2: the container's init, from its first instruction to the exec of the user's
process.

Inside the new namespaces it builds the root filesystem, lets the runtime run the
prestart/createRuntime hooks, runs createContainer hooks, switches root, sets up the
terminal, hostname, sysctls and protected paths, drops to the process's user and
capabilities, checks the executable, reports `ready` and blocks on the exec FIFO until
`start` opens it. Every failure before `ready` goes back to the runtime as an `error`
message, so `create` fails with init's own words and cleans up.
"""
from __future__ import annotations

import os

from pyruntime.linux import syscalls as sc
from pyruntime.linux.kernel_files import write_kernel_file
from pyruntime.oci import process as proc
from pyruntime.oci.channel import Channel
from pyruntime.oci.channel import describe
from pyruntime.oci.errors import ContainerStartError, HookError, OCIError
from pyruntime.oci.namespaces import by_type
from pyruntime.oci.state import EXEC_FIFO

_PERSONALITIES = {"LINUX": 0x0000, "LINUX32": 0x0008}


def run_init(plan: dict, channel: Channel, rootfs=None) -> None:
    """Never returns: execs the user's process or exits. `rootfs`: the RootfsBuilder
    `begin_rootfs` gave, when that part was done before init was placed."""
    try:
        _setup_and_wait(plan, channel, rootfs)
    except BaseException as error:  # noqa: BLE001 - every failure must reach the runtime
        channel.send_error(error)
        os._exit(1)


def begin_rootfs(plan: dict):
    """What init can do in its namespaces before it is in the container's cgroup: a new
    session, loopback up, and RootfsBuilder.begin; returns the builder."""
    config = plan["config"]
    namespaces = by_type(config.get("linux", {}).get("namespaces", []))
    os.setsid()
    if namespaces.get("network", 1) is None:
        sc.link_up("lo")

    from pyruntime.oci.rootfs import RootfsBuilder

    builder = RootfsBuilder(config, plan["bundle"], "user" in namespaces)
    builder.begin()
    return builder


def _setup_and_wait(plan: dict, channel: Channel, builder) -> None:
    config = plan["config"]
    process = config["process"]
    linux = config.get("linux", {})
    namespaces = by_type(linux.get("namespaces", []))

    from pyruntime.oci.rootfs import (apply_masked_paths, apply_readonly_paths,
                                      apply_root_propagation, make_root_readonly,
                                      switch_root)

    if builder is None:
        builder = begin_rootfs(plan)
    builder.finish(plan.get("cgroup_paths", {}))
    _create_cwd(builder, process["cwd"])

    if plan.get("ask_for_hooks", True):
        channel.send({"type": "hooks"})
        host_pid = channel.expect("hooks-ok")["pid"]
    else:  # no hooks for the runtime to run; it sets the limits on our `begun`
        host_pid = plan["host_pid"]
    if namespaces.get("cgroup", 1) is None:
        # Only now: the runtime has placed us in our cgroup (see the launcher), and the
        # namespace's root is the cgroup we are in when it is created.
        sc.unshare(sc.CLONE_NEWCGROUP)
    hooks = config.get("hooks", {})
    state = dict(plan["hook_state"], pid=host_pid, status="creating")
    if hooks.get("createContainer"):
        from pyruntime.oci.hooks import run_hooks

        run_hooks("createContainer", hooks["createContainer"], state)

    state_dir_fd = plan["state_dir_fd"]
    switch_root(config["root"]["path"], plan.get("no_pivot", False))

    user = process.get("user", {})
    if process.get("terminal"):
        from pyruntime.oci.console import make_container_pty

        if plan.get("console_fd", -1) < 0:
            raise ContainerStartError("process.terminal is true but no console socket was given")
        make_container_pty(plan["console_fd"], process.get("consoleSize"),
                           user.get("uid", 0), user.get("gid", 0))
    if config.get("hostname") is not None:
        sc.sethostname(config["hostname"])
    if config.get("domainname") is not None:
        sc.setdomainname(config["domainname"])
    for key, value in linux.get("sysctl", {}).items():
        _write_sysctl(key, value)
    if config["root"].get("readonly"):
        make_root_readonly()
    apply_readonly_paths(linux.get("readonlyPaths", []))
    apply_masked_paths(linux.get("maskedPaths", []))
    # Last of the mounts: an unbindable tree refuses the binds of the two steps above.
    apply_root_propagation(linux.get("rootfsPropagation"))
    if linux.get("personality"):
        sc.personality(_PERSONALITIES[linux["personality"]["domain"]])
    if not plan.get("no_new_keyring"):
        try:
            sc.join_session_keyring(f"_ses.{plan['id']}")
        except OSError as error:
            if error.errno not in (1, 38, 122):  # EPERM, ENOSYS, EDQUOT: no keyrings here
                raise

    seccomp = linux.get("seccomp")
    executable = proc.become_process(process, seccomp)

    channel.send({"type": "ready"})
    channel.close()

    # Blocks until `start` opens the other end. The fd stays open, close-on-exec: `start`
    # reads until EOF, which comes when execve succeeds (or init dies), so poststart
    # hooks run only after the startContainer hooks and the exec.
    fifo = os.open(EXEC_FIFO, os.O_WRONLY | os.O_CLOEXEC, dir_fd=state_dir_fd)
    os.write(fifo, b"0")
    os.close(state_dir_fd)
    try:
        if hooks.get("startContainer"):
            from pyruntime.oci.hooks import run_hooks  # imported before pivot_root

            run_hooks("startContainer", hooks["startContainer"], dict(state, status="created"))
        proc.load_late_seccomp(process, seccomp)
        proc.prepare_fds(plan.get("preserve_fds", 0))
    except (HookError, OCIError, OSError) as error:
        # `!` first: it tells `start` the process will not run, and must get there even
        # when the container's stderr is closed or a broken pipe.
        os.write(fifo, b"!")
        try:
            os.write(2, f"pyruntime init: {describe(error)}\n".encode())
        except OSError:
            pass
        os._exit(1)
    proc.exec_process(executable, process["args"], process.get("env", []), process)


def import_what_init_needs(config: dict) -> None:
    """Import every module init will use, while the host's Python library is reachable
    (see the bootstrap module's docstring)."""
    import _signal  # noqa: F401

    import pyruntime.linux.capabilities  # noqa: F401
    import pyruntime.linux.process_control  # noqa: F401
    import pyruntime.oci.rootfs  # noqa: F401

    # The kinds init runs itself (validation gives every kind a list, often empty).
    hooks = config.get("hooks", {})
    if hooks.get("createContainer") or hooks.get("startContainer"):
        import pyruntime.oci.hooks  # noqa: F401

    if config["process"].get("apparmorProfile") or config["process"].get("selinuxLabel"):
        import pyruntime.oci.lsm  # noqa: F401
    if config.get("linux", {}).get("seccomp") is not None:
        import pyruntime.linux.seccomp  # noqa: F401
    if config["process"].get("terminal"):
        import socket  # noqa: F401

        import pyruntime.oci.console  # noqa: F401


def _create_cwd(builder, cwd: str) -> None:
    """runc creates a missing working directory in the rootfs before the root switch."""
    builder.root_fd = os.open(builder.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.close(builder.ensure_in_root(cwd, True))
    except OSError:
        pass  # a read-only rootfs: entering it later reports the real problem
    finally:
        os.close(builder.root_fd)
        builder.root_fd = -1


def _write_sysctl(key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        write_kernel_file(path, value)
    except OSError as error:
        raise ContainerStartError(f"linux.sysctl: {key}={value}: {error.strerror}") from None
