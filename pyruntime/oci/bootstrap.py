"""Stage 1 of a new container: the process that enters or creates the namespaces.

Forked by the runtime (which is single-threaded: forking Python from a threaded process
can deadlock), it becomes non-dumpable before touching any namespace, joins the
namespaces given by path (user first), creates the new ones (user first, so it owns the
rest; the runtime writes its id mappings before it answers `bootstrap-ok`, and without a
user namespace the others are made while the runtime places stage 1 in its cgroup),
then forks the container's init, which is PID 1 of a new PID namespace and is born in
the container's cgroup (the runtime's answer comes after the placement), reports init's
pid and exits. Init is then
reparented to the runtime, a child subreaper.

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
from pyruntime.oci.namespaces import NAMESPACES, by_type


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

    join_fds = {}
    for ns_type, path in wanted.items():
        if path:
            try:
                join_fds[ns_type] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as error:
                raise ContainerStartError(
                    f"linux.namespaces: cannot open {path}: {error.strerror}"
                ) from None

    oom_score_adj = (config.get("process") or {}).get("oomScoreAdj")
    if oom_score_adj is not None:
        _write_proc_self("oom_score_adj", str(oom_score_adj), "process.oomScoreAdj")

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


def _enter_namespaces(wanted: dict[str, str | None], join_fds: dict[str, int],
                      linux: dict) -> None:
    """Join the namespaces given by path, then create the new ones but user (already
    done) and cgroup (init's, once it is in its cgroup)."""
    for ns_type, (name, flag) in NAMESPACES.items():
        fd = join_fds.get(ns_type)
        if fd is not None:
            sc.setns(fd, flag, f"{ns_type} namespace {wanted[ns_type]}")
            os.close(fd)

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


def _write_proc_self(name: str, value: str, field: str) -> None:
    try:
        write_kernel_file(f"/proc/self/{name}", value)
    except OSError as error:
        raise ContainerStartError(
            f"{field}: writing {value.strip()!r}: {error.strerror}"
        ) from None
