"""The last steps before a container process execs: shared by init and `exec`.

Order (runc's finalizeNamespace and standard init): rlimits; I/O priority and scheduler
(while the process still has CAP_SYS_ADMIN and CAP_SYS_NICE, which an RT class or policy
or a negative nice needs and the container may not keep); seccomp early only when
no_new_privs is off (loading it then needs CAP_SYS_ADMIN, which is about to go); bounding
set; user and groups (keeping capabilities across setuid); the other capability sets;
no_new_privs; executable look-up as the new user; and, right before execve, seccomp when
no_new_privs is on, every fd but stdio and the preserved ones made close-on-exec, and the
signal dispositions Python changed put back.
"""
from __future__ import annotations

import os
import stat

from pyruntime.oci.errors import ContainerStartError, ProcessNotExecutable, ProcessNotFound
from pyruntime.oci.spec import IOPRIO_CLASSES, SCHED_FLAGS, SCHED_POLICIES

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}


def become_process(process: dict, seccomp: dict | None) -> str:
    """The steps init and `exec` share, in runc's order, up to but not including the
    wait for `start` and the late seccomp load: returns the executable's path."""
    apply_rlimits(process.get("rlimits", []))
    if process.get("ioPriority") is not None:
        apply_io_priority(process["ioPriority"])
    if process.get("scheduler") is not None:
        apply_scheduler(process["scheduler"])
    if seccomp is not None and not process.get("noNewPrivileges", False):
        load_seccomp(seccomp)
    enter_cwd(process["cwd"])
    switch_user(process.get("user", {}), process.get("capabilities"))
    if process.get("noNewPrivileges", False):
        set_no_new_privileges()
    return find_executable(process["args"], env_dict(process.get("env", [])))


def load_late_seccomp(process: dict, seccomp: dict | None) -> None:
    """With no_new_privs set, the filter goes on last, just before execve."""
    if seccomp is not None and process.get("noNewPrivileges", False):
        load_seccomp(seccomp)


def env_dict(env: list[str]) -> dict[str, str]:
    result = {}
    for item in env:
        key, _, value = item.partition("=")
        result[key] = value
    return result


def apply_rlimits(rlimits: list[dict]) -> None:
    from pyruntime.linux import syscalls as sc

    for limit in rlimits or ():
        soft = min(limit["soft"], sc.RLIM_INFINITY)
        hard = min(limit["hard"], sc.RLIM_INFINITY)
        try:
            sc.setrlimit(_RLIMITS[limit["type"]], soft, hard)
        except OSError as error:
            shown = ["unlimited" if value == sc.RLIM_INFINITY else str(value)
                     for value in (soft, hard)]
            raise ContainerStartError(
                f"process.rlimits: setting {limit['type']} to {shown[0]}/{shown[1]}: "
                f"{os.strerror(error.errno)}") from None


def apply_io_priority(io_priority: dict) -> None:
    """ioprio_set of the process itself, which its children inherit (runc sets it on
    itself before it starts the container's process, which inherits it from there)."""
    from pyruntime.linux import syscalls as sc

    name = io_priority["class"]
    level = io_priority.get("priority", 0)
    try:
        sc.ioprio_set(IOPRIO_CLASSES[name], level)
    except OSError as error:
        raise ContainerStartError(
            f"process.ioPriority: setting {name} priority {level}: "
            f"{os.strerror(error.errno)}") from None


def apply_scheduler(scheduler: dict) -> None:
    """sched_setattr with every field of process.scheduler, as runc's setupScheduler; the
    kernel judges the combination (an RT policy needs a priority of 1-99, for one)."""
    from pyruntime.linux import syscalls as sc

    policy = scheduler["policy"]
    values = {key: scheduler.get(key) or 0
              for key in ("nice", "priority", "runtime", "deadline", "period")}
    flags = scheduler.get("flags") or []
    mask = 0
    for flag in flags:
        mask |= SCHED_FLAGS[flag]
    try:
        sc.sched_setattr(SCHED_POLICIES[policy], mask, **values)
    except OSError as error:
        shown = [policy] + [f"{key} {value}" for key, value in values.items() if value]
        shown += flags
        raise ContainerStartError(
            f"process.scheduler: setting {' '.join(shown)}: {os.strerror(error.errno)}"
        ) from None


def enter_cwd(cwd: str) -> None:
    """chdir, then prove the cwd is inside the container's root: a cwd reached through
    a leaked host fd would be unreachable from `/` (the CVE-2024-21626 class)."""
    try:
        os.chdir(cwd)
    except OSError as error:
        raise ContainerStartError(f"process.cwd: cannot enter {cwd}: {error.strerror}") from None
    try:
        where = os.getcwd()
    except FileNotFoundError:
        where = ""
    if not where.startswith("/"):
        raise ContainerStartError(f"process.cwd: {cwd} is outside the container's root")


def switch_user(user: dict, capabilities: dict | None) -> None:
    """setgroups/setgid/setuid keeping the capabilities the spec grants, then set them."""
    from pyruntime.linux import process_control

    from pyruntime.linux import capabilities as caps

    if capabilities is not None:
        caps.drop_bounding_set(caps.cap_numbers(capabilities.get("bounding", [])))
    uid = user.get("uid", 0)
    gid = user.get("gid", 0)
    process_control.set_keepcaps(True)
    try:
        groups = user.get("additionalGids") or []
        try:
            os.setgroups(groups)
        except PermissionError:
            # A user namespace with setgroups denied: only an empty request can be met.
            if groups:
                raise ContainerStartError(
                    "process.user.additionalGids: setgroups is denied in this user namespace"
                ) from None
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as error:
        raise ContainerStartError(
            f"process.user: cannot switch to uid {uid} gid {gid}: {error.strerror}"
        ) from None
    finally:
        process_control.set_keepcaps(False)
    umask = user.get("umask")
    os.umask(0o022 if umask is None else umask)
    if capabilities is not None:
        caps.set_capabilities(
            caps.cap_numbers(capabilities.get("effective", [])),
            caps.cap_numbers(capabilities.get("permitted", [])),
            caps.cap_numbers(capabilities.get("inheritable", [])),
            caps.cap_numbers(capabilities.get("ambient", [])),
        )


def set_no_new_privileges() -> None:
    from pyruntime.linux import process_control

    process_control.set_no_new_privs()


def find_executable(args: list[str], env: dict[str, str]) -> str:
    """Resolve args[0] as execvp would, as the process's own user, inside the container."""
    name = args[0]
    if "/" in name:
        return _check_executable(name, name)
    for directory in env.get("PATH", DEFAULT_PATH).split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            return _check_executable(candidate, name)
        except ProcessNotFound:
            continue
    raise ProcessNotFound(f'exec: "{name}": executable file not found in $PATH')


def _check_executable(path: str, name: str) -> str:
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ProcessNotFound(f'exec: "{name}": no such file or directory') from None
    except PermissionError:
        raise ProcessNotExecutable(f'exec: "{name}": permission denied') from None
    if stat.S_ISDIR(info.st_mode):
        raise ProcessNotExecutable(f'exec: "{name}": is a directory')
    if not os.access(path, os.X_OK):
        raise ProcessNotExecutable(f'exec: "{name}": permission denied')
    return path


def load_seccomp(profile: dict | None) -> None:
    if profile is None:
        return
    from pyruntime.linux.seccomp import load_seccomp as load

    load(profile)


def prepare_fds(preserve_fds: int) -> None:
    """Make every fd above stdio and the preserved ones close-on-exec.

    close_range with CLOSE_RANGE_CLOEXEC rather than closing: the fds the runtime still
    needs until execve (the exec FIFO, the channel) keep working and vanish at exec."""
    from pyruntime.linux import syscalls as sc

    for fd in range(3, 3 + preserve_fds):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    sc.close_range(3 + preserve_fds, 0xFFFFFFFF, sc.CLOSE_RANGE_CLOEXEC)


def restore_signal_dispositions() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored across execve,
    which would break pipelines in the container. `_signal` rather than `signal`: the
    latter imports enum, which is slow."""
    import _signal

    for number in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(number, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def exec_process(path: str, args: list[str], env: list[str], process: dict) -> None:
    if process.get("apparmorProfile") or process.get("selinuxLabel"):
        from pyruntime.oci.lsm import set_exec_labels

        set_exec_labels(process)
    restore_signal_dispositions()
    try:
        os.execve(path, args, env_dict(env))
    except OSError as error:
        os.write(2, f"exec {args[0]}: {error.strerror}\n".encode())
        os._exit(127 if error.errno == 2 else 126)
