"""How a new container's init comes to be in its namespaces: stage 1, or none.

With a user or time namespace, stage 1 (forked by the runtime, which is single-threaded:
forking Python from a threaded process can deadlock) becomes non-dumpable before touching
any namespace, joins the namespaces given by path (user first), creates the new ones (user
first, so it owns the rest; the runtime writes its id mappings before it answers
`bootstrap-ok`), then forks the container's init, which is PID 1 of a new PID namespace
and is born in the container's cgroup (the runtime's answer comes after the placement),
reports init's pid and exits. Init is then reparented to the runtime, a child subreaper.
A time namespace, like a PID namespace, is entered by children only, and its offsets
must be written before any process is in it: stage 1 does that too.

Without either (the common case), the runtime forks init itself, with one process and
one exchange fewer: it sets its own namespace for children to the container's PID
namespace just for that fork (`fork_in_container_pid_namespace`; non-dumpable for it when
that namespace exists already, so init is from its first instant), before it makes the
cgroup.
Init (`run_direct_init`) imports what it needs, joins or makes the other namespaces and
does the mounts that do not show the container's cgroup (RootfsBuilder.begin) while the
runtime makes the cgroup and places it there, then waits for `placed`, and does the rest
in the cgroup. The `pyruntime` command's launcher may have started this init already,
as a fresh interpreter next to the runtime's own (pyruntime.oci.early_init); it then
runs the same function.

A mount namespace given by path is where init builds the rootfs, as runc does: it must
show the runtime's tree (`_check_joined_mount_namespace`).

Everything init will need is imported before the first namespace is entered: in a new
user namespace the host's Python library may be unreadable, and after pivot_root it is
gone.
"""
from __future__ import annotations

import os

from pyruntime.linux import syscalls as sc
from pyruntime.linux.kernel_files import write_kernel_file
from pyruntime.oci.channel import Channel
from pyruntime.oci.errors import ContainerStartError
from pyruntime.oci.namespaces import NAMESPACES, by_type, fork_in_pid_namespace


def run_bootstrap(plan: dict, channel: Channel) -> None:
    from pyruntime.linux import process_control

    from pyruntime.oci.init import import_what_init_needs, run_init

    process_control.set_dumpable(False)
    config = plan["config"]
    # Now, while the host's Python library is readable: a process in a new user
    # namespace (and init after pivot_root) may no longer be able to read it.
    import_what_init_needs(config)
    linux = config.get("linux", {})
    wanted = by_type(linux.get("namespaces", []))

    join_fds = _open_namespace_paths(wanted)
    _set_oom_score_adj(config)

    new_user = "user" in wanted and not wanted["user"]
    if "user" in join_fds:
        sc.setns(join_fds.pop("user"), sc.CLONE_NEWUSER, "user namespace")
    elif new_user:
        sc.unshare(sc.CLONE_NEWUSER)
    if "user" not in wanted:
        # Nothing to wait for: the namespaces are made while the runtime places us.
        _enter_namespaces(wanted, join_fds, linux)
    channel.send({"type": "bootstrap", "pid": os.getpid(), "new_user": new_user})
    channel.expect("bootstrap-ok")
    if "user" in wanted:
        # Become the namespace's root, which the mappings make (some) host uid.
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        _enter_namespaces(wanted, join_fds, linux)

    pid = os.fork()
    if pid == 0:
        run_init(plan, channel)  # never returns
    channel.send({"type": "init", "pid": pid})


def forks_init_directly(config: dict) -> bool:
    """Whether the runtime forks init itself (see the module docstring)."""
    wanted = by_type(config.get("linux", {}).get("namespaces", []))
    return "user" not in wanted and "time" not in wanted


def fork_in_container_pid_namespace(config: dict, fork) -> int:
    """Call `fork` (which forks and returns the child's pid) so that the child is born in
    the container's PID namespace: a new one, whose PID 1 it is, the one at the given
    path, or ours when the config asks for none."""
    wanted = by_type(config.get("linux", {}).get("namespaces", []))
    if "pid" not in wanted:
        return fork()
    path = wanted["pid"]
    if not path:
        return fork_in_pid_namespace(None, fork)
    join_fd = _open_namespace_paths({"pid": path})["pid"]
    try:
        return fork_in_pid_namespace(join_fd, fork, f"pid namespace {path}")
    finally:
        os.close(join_fd)


def run_direct_init(plan: dict, channel: Channel) -> None:
    """Init forked by the runtime itself (or started early), already in its PID
    namespace: join or make the others, begin the rootfs, wait until the runtime has
    placed us in the cgroup, then be init."""
    from pyruntime.linux import process_control

    from pyruntime.oci.init import begin_rootfs, import_what_init_needs, run_init

    process_control.set_dumpable(False)
    config = plan["config"]
    # Here rather than in the runtime: while it makes the cgroup, on the other CPU.
    import_what_init_needs(config)
    linux = config.get("linux", {})
    wanted = by_type(linux.get("namespaces", []))
    wanted.pop("pid", None)  # the runtime's doing
    join_fds = _open_namespace_paths(wanted)
    _set_oom_score_adj(config)
    _enter_namespaces(wanted, join_fds, linux)
    rootfs = begin_rootfs(plan)
    channel.send({"type": "begun"})
    placed = channel.expect("placed")
    plan["cgroup_paths"] = placed["cgroup_paths"]
    plan["host_pid"] = placed["pid"]
    plan["ask_for_hooks"] = placed["ask_for_hooks"]
    if "plan" in placed:  # an early init (pyruntime.oci.early_init)
        plan.update(placed["plan"])
        plan["state_dir_fd"] = _open_state_dir(placed["state_dir"])
    run_init(plan, channel, rootfs)  # never returns


def _open_state_dir(state_dir: dict) -> int:
    """The container's state directory, which the runtime opened too: the same one, or
    an error (it was replaced in between)."""
    fd = os.open(state_dir["path"], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    info = os.fstat(fd)
    if (info.st_dev, info.st_ino) != (state_dir["dev"], state_dir["ino"]):
        os.close(fd)
        raise ContainerStartError(f"state directory {state_dir['path']} was replaced")
    return fd


def _enter_namespaces(wanted: dict[str, str | None], join_fds: dict[str, int],
                      linux: dict) -> None:
    """Join the namespaces given by path, then create the new ones but user (already
    done) and cgroup (init's, once it is in its cgroup)."""
    our_root = os.stat("/") if "mount" in join_fds else None
    for ns_type, (name, flag) in NAMESPACES.items():
        fd = join_fds.get(ns_type)
        if fd is not None:
            sc.setns(fd, flag, f"{ns_type} namespace {wanted[ns_type]}")
            os.close(fd)
            if ns_type == "mount" and our_root is not None:
                _check_joined_mount_namespace(our_root, linux["namespaces"])

    flags = 0
    for ns_type, path in wanted.items():
        if not path and ns_type not in ("user", "cgroup"):
            flags |= NAMESPACES[ns_type][1]
    if flags:
        sc.unshare(flags)
    if wanted.get("time", 1) is None and linux.get("timeOffsets"):
        offsets = "".join(
            f"{clock} {value.get('secs', 0)} {value.get('nanosecs', 0)}\n"
            for clock, value in linux["timeOffsets"].items()
        )
        _write_proc_self("timens_offsets", offsets, "linux.timeOffsets")


def _check_joined_mount_namespace(our_root: os.stat_result, namespaces: list[dict]) -> None:
    """Init builds the rootfs inside a mount namespace it joins, as runc does: one made
    for the container from the runtime's (`unshare --mount`), where root.path and /proc
    mean what they mean to the runtime. Refused before the first mount, with the entry
    named (the rootfs code would fail half-way with a bare ENOENT): one rooted elsewhere,
    such as another container's, pivoted into its rootfs (root.path means nothing there,
    and every mount, and the pivot_root, would land in that container; runc fails there
    too), and one whose /proc does not show us (the mounts go through /proc/self/fd)."""
    index = next(i for i, ns in enumerate(namespaces) if ns["type"] == "mount")
    where = f"linux.namespaces[{index}]: mount namespace {namespaces[index]['path']}"
    root = os.stat("/")
    if (root.st_dev, root.st_ino) != (our_root.st_dev, our_root.st_ino):
        raise ContainerStartError(
            f"{where} has another root than the runtime's (another container's?): the "
            "rootfs can only be built in one made from the runtime's (`exec` runs a "
            "process in an existing container)")
    if not os.path.isdir("/proc/self/fd"):
        raise ContainerStartError(
            f"{where}: its /proc does not show the container's processes (a procfs of "
            "another PID namespace)")


def _open_namespace_paths(wanted: dict[str, str | None]) -> dict[str, int]:
    join_fds = {}
    for ns_type, path in wanted.items():
        if path:
            try:
                join_fds[ns_type] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as error:
                raise ContainerStartError(
                    f"linux.namespaces: cannot open {path}: {error.strerror}"
                ) from None
    return join_fds


def _set_oom_score_adj(config: dict) -> None:
    oom_score_adj = (config.get("process") or {}).get("oomScoreAdj")
    if oom_score_adj is not None:
        _write_proc_self("oom_score_adj", str(oom_score_adj), "process.oomScoreAdj")


def _write_proc_self(name: str, value: str, field: str) -> None:
    try:
        write_kernel_file(f"/proc/self/{name}", value)
    except OSError as error:
        raise ContainerStartError(
            f"{field}: writing {value.strip()!r}: {error.strerror}"
        ) from None
