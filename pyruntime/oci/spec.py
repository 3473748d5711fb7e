"""config.json: load, validate and normalize an OCI runtime-spec (1.0-1.2) Linux config.

`validate_spec` checks the type of every field the runtime reads and raises `SpecError`
naming the JSON path of the first problem (`linux.namespaces[1].type`). It returns a new
dict in which every such field is present, with its default where config.json leaves it
out, so the container's init never has to ask whether a key exists. Keys the runtime
does not know are kept and otherwise ignored, as the spec asks of runtimes.

This module is on the `run` hot path: it imports only cheap modules, and its tables are
plain tuples and dicts.
"""
from __future__ import annotations

import os
import stat

from pyruntime import jsonlite
from pyruntime.linux.capability_names import CAPABILITIES
from pyruntime.oci.errors import SpecError

# `typing` costs milliseconds to import; the names are needed by type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Collection

_U32 = 2**32 - 1
_U64 = 2**64 - 1

NAMESPACE_TYPES = ("cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts")
HOOK_KINDS = (
    "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop",
)
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
RLIMIT_TYPES = tuple(
    "RLIMIT_" + name
    for name in (
        "AS", "CORE", "CPU", "DATA", "FSIZE", "LOCKS", "MEMLOCK", "MSGQUEUE", "NICE",
        "NOFILE", "NPROC", "RSS", "RTPRIO", "RTTIME", "SIGPENDING", "STACK",
    )
)
# The spec's names and their kernel values (linux/ioprio.h, linux/sched.h), which
# pyruntime.oci.process passes to ioprio_set and sched_setattr.
IOPRIO_CLASSES = {"IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3, "IOPRIO_CLASS_RT": 1}
SCHED_POLICIES = {
    "SCHED_BATCH": 3, "SCHED_DEADLINE": 6, "SCHED_FIFO": 1, "SCHED_IDLE": 5, "SCHED_ISO": 4,
    "SCHED_OTHER": 0, "SCHED_RR": 2,
}
SCHED_FLAGS = {
    "SCHED_FLAG_DL_OVERRUN": 0x04, "SCHED_FLAG_KEEP_PARAMS": 0x10,
    "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_RECLAIM": 0x02,
    "SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40,
    "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
}
DEVICE_TYPES = ("b", "c", "p", "u")
ROOTFS_PROPAGATIONS = (
    "private", "rprivate", "rshared", "rslave", "runbindable", "shared", "slave", "unbindable",
)
PERSONALITY_DOMAINS = ("LINUX", "LINUX32")
TIME_CLOCKS = ("boottime", "monotonic")
SECCOMP_ACTIONS = (
    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
)
SECCOMP_ARCHS = tuple(
    "SCMP_ARCH_" + name
    for name in (
        "AARCH64", "ARM", "LOONGARCH64", "MIPS", "MIPS64", "MIPS64N32", "MIPSEL", "MIPSEL64",
        "MIPSEL64N32", "PARISC", "PARISC64", "PPC", "PPC64", "PPC64LE", "RISCV64", "S390",
        "S390X", "X32", "X86", "X86_64",
    )
)
SECCOMP_FLAGS = (
    "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
)
SECCOMP_OPERATORS = (
    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE",
)

# runc's list of the kernel.* sysctls that live in the IPC namespace (fs.mqueue.* too).
_IPC_SYSCTLS = frozenset((
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
    "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
))

_TYPE_NAMES = {
    str: "str", int: "int", float: "float", bool: "bool", list: "list", dict: "object",
    type(None): "null",
}


# ---------------------------------------------------------------------------------------
# Loading


def load_spec(bundle: str, data: bytes | None = None) -> dict:
    """Read, validate and normalize `<bundle>/config.json`, or `data`: its text as read
    already."""
    bundle = os.path.abspath(bundle)
    try:
        if data is None:
            with open(os.path.join(bundle, "config.json"), "rb") as f:
                data = f.read()
    except FileNotFoundError:
        raise SpecError("config.json", f"not found in bundle {bundle}") from None
    except OSError as e:
        raise SpecError("config.json", f"cannot be read from bundle {bundle}: {e.strerror}") from None
    try:
        raw = jsonlite.loads(data)
    except ValueError as e:
        raise SpecError("config.json", _json_problem(e)) from None
    return validate_spec(raw, bundle)


def load_container_spec(bundle: str, data: bytes | None = None) -> dict:
    """load_spec for a container to be created, which needs a `process` (the spec lets a
    config without one through: it may describe a container made by other means)."""
    config = load_spec(bundle, data)
    if config.get("process") is None:
        raise SpecError("process", "is required to create a container")
    return config


def _json_problem(error: ValueError) -> str:
    lineno = getattr(error, "lineno", None)
    if lineno is None:  # not a JSONDecodeError: bytes that are not UTF-8
        return f"invalid JSON: {error}"
    return f"invalid JSON: {error.msg} at line {lineno} column {error.colno}"  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------
# Typed checkers: each returns the value it checked or raises SpecError naming `field`.


def _type(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _key(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _need(obj: dict, key: str, prefix: str) -> Any:
    # JSON null counts as absent, as it does for Go's encoding/json.
    value = obj.get(key)
    if value is None:
        raise SpecError(_key(prefix, key), "is required")
    return value


def _opt(obj: dict, key: str, prefix: str, check: Callable[..., Any], default: Any = None,
         **limits: Any) -> Any:
    value = obj.get(key)
    if value is None:
        return default
    return check(value, _key(prefix, key), **limits)


def _obj(value: object, field: str) -> dict:
    if type(value) is not dict:
        raise SpecError(field, f"expected an object, got {_type(value)}")
    return value  # type: ignore[return-value]


def _str(value: object, field: str) -> str:
    if type(value) is not str:
        raise SpecError(field, f"expected a string, got {_type(value)}")
    return value  # type: ignore[return-value]


def _bool(value: object, field: str) -> bool:
    if type(value) is not bool:
        raise SpecError(field, f"expected true or false, got {_type(value)}")
    return value  # type: ignore[return-value]


def _int(value: object, field: str, lo: int | None = None, hi: int | None = None) -> int:
    # `type(...) is int` on purpose: JSON true must not pass as 1, nor 1.0 as 1 (Go agrees).
    if type(value) is not int:
        raise SpecError(field, f"expected an integer, got {_type(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):  # type: ignore[operator]
        if hi is None or (lo is not None and value < lo and hi >= _U32):  # type: ignore[operator]
            raise SpecError(field, f"must be >= {lo}, got {value}")
        if lo is None:
            raise SpecError(field, f"must be <= {hi}, got {value}")
        raise SpecError(field, f"must be between {lo} and {hi}, got {value}")
    return value  # type: ignore[return-value]


def _list(value: object, field: str) -> list:
    """A JSON array; null (or absent, for the caller's `.get`) is an empty one."""
    if value is None:
        return []
    if type(value) is not list:
        raise SpecError(field, f"expected a list, got {_type(value)}")
    return value  # type: ignore[return-value]


def _list_of_str(value: object, field: str) -> list[str]:
    if value is None:
        return []
    if type(value) is not list:
        raise SpecError(field, f"expected a list of strings, got {_type(value)}")
    for i, item in enumerate(value):  # type: ignore[arg-type]
        if type(item) is not str:
            raise SpecError(f"{field}[{i}]", f"expected a string, got {_type(item)}")
    return list(value)  # type: ignore[arg-type]


def _abs(value: object, field: str) -> str:
    path = _str(value, field)
    if not path.startswith("/"):
        raise SpecError(field, f'must be an absolute path, got "{path}"')
    return path


def _list_of_abs(value: object, field: str) -> list[str]:
    paths = _list_of_str(value, field)
    for i, path in enumerate(paths):
        _abs(path, f"{field}[{i}]")
    return paths


def _one_of(value: object, field: str, choices: Collection[str], what: str) -> str:
    name = _str(value, field)
    if name not in choices:
        raise SpecError(field, f'unknown {what} "{name}" (known: {", ".join(choices)})')
    return name


def _str_map(value: object, field: str) -> dict[str, str]:
    if value is None:
        return {}
    for key, item in _obj(value, field).items():
        _str(item, f'{field}["{key}"]')
    return dict(value)  # type: ignore[call-overload]


def _no_nul(values: list[str], field: str) -> None:
    # execve(2) cannot pass a string with a NUL in it; say so now rather than at exec.
    for i, item in enumerate(values):
        if "\0" in item:
            raise SpecError(f"{field}[{i}]", "contains a NUL byte")


# ---------------------------------------------------------------------------------------
# The whole document


def validate_spec(raw: dict, bundle: str | None = None) -> dict:
    """Validate `raw` (a parsed config.json) and return a normalized copy.

    With `bundle`, `root.path` is resolved against it and must be an existing directory.
    """
    raw = _obj(raw, "config.json")
    if bundle is not None:
        bundle = os.path.abspath(bundle)
    spec = dict(raw)
    spec["ociVersion"] = _str(_need(raw, "ociVersion", ""), "ociVersion")
    spec["root"] = _root(_need(raw, "root", ""), bundle)
    process = raw.get("process")
    spec["process"] = None if process is None else _process(_obj(process, "process"))
    spec["hostname"] = _opt(raw, "hostname", "", _str)
    spec["domainname"] = _opt(raw, "domainname", "", _str)
    spec["mounts"] = [_mount(m, f"mounts[{i}]") for i, m in enumerate(_list(raw.get("mounts"), "mounts"))]
    spec["hooks"] = _hooks(raw.get("hooks"))
    spec["annotations"] = _str_map(raw.get("annotations"), "annotations")
    linux = raw.get("linux")
    spec["linux"] = _linux(_obj({} if linux is None else linux, "linux"))
    _cross_check(spec)
    return spec


def _root(value: object, bundle: str | None) -> dict:
    root = dict(_obj(value, "root"))
    path = _str(_need(root, "path", "root"), "root.path")
    if not path:
        raise SpecError("root.path", "must not be empty")
    path = os.path.normpath(os.path.join(bundle or os.getcwd(), path))
    if bundle is not None:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise SpecError("root.path", f"{path} does not exist") from None
        except OSError as e:
            raise SpecError("root.path", f"{path}: {e.strerror}") from None
        if not stat.S_ISDIR(mode):
            raise SpecError("root.path", f"{path} is not a directory")
    root["path"] = path
    root["readonly"] = _opt(root, "readonly", "root", _bool, False)
    return root


# ---------------------------------------------------------------------------------------
# process


def _process(raw: dict) -> dict:
    process = dict(raw)
    args = _list_of_str(_need(raw, "args", "process"), "process.args")
    if not args:
        raise SpecError("process.args", "must not be empty")
    _no_nul(args, "process.args")
    process["args"] = args
    process["env"] = _environment(raw.get("env"), "process.env")
    process["cwd"] = _abs(_need(raw, "cwd", "process"), "process.cwd")
    process["terminal"] = _opt(raw, "terminal", "process", _bool, False)
    process["consoleSize"] = _opt(raw, "consoleSize", "process", _console_size)
    process["user"] = _user(_opt(raw, "user", "process", _obj, {}), "process.user")
    process["capabilities"] = _opt(raw, "capabilities", "process", _capabilities)
    process["rlimits"] = _rlimits(raw.get("rlimits"), "process.rlimits")
    process["noNewPrivileges"] = _opt(raw, "noNewPrivileges", "process", _bool, False)
    process["oomScoreAdj"] = _opt(raw, "oomScoreAdj", "process", _int, lo=-1000, hi=1000)
    process["apparmorProfile"] = _opt(raw, "apparmorProfile", "process", _str)
    process["selinuxLabel"] = _opt(raw, "selinuxLabel", "process", _str)
    process["ioPriority"] = _opt(raw, "ioPriority", "process", _io_priority)
    process["scheduler"] = _opt(raw, "scheduler", "process", _scheduler)
    return process


def _console_size(value: object, field: str) -> dict:
    size = _obj(value, field)
    # struct winsize holds unsigned shorts.
    return {
        "height": _int(_need(size, "height", field), f"{field}.height", lo=0, hi=65535),
        "width": _int(_need(size, "width", field), f"{field}.width", lo=0, hi=65535),
    }


def _user(raw: dict, field: str) -> dict:
    user = {
        "uid": _opt(raw, "uid", field, _int, 0, lo=0, hi=_U32),
        "gid": _opt(raw, "gid", field, _int, 0, lo=0, hi=_U32),
        "umask": _opt(raw, "umask", field, _int, lo=0, hi=_U32),
        "additionalGids": [
            _int(gid, f"{field}.additionalGids[{i}]", lo=0, hi=_U32)
            for i, gid in enumerate(_list(raw.get("additionalGids"), f"{field}.additionalGids"))
        ],
    }
    if raw.get("username") is not None:
        user["username"] = _str(raw["username"], f"{field}.username")
    return user


def _capabilities(value: object, field: str) -> dict[str, list[str]]:
    raw = _obj(value, field)
    caps = {}
    for kind in CAPABILITY_SETS:
        names = _list_of_str(raw.get(kind), f"{field}.{kind}")
        for i, name in enumerate(names):
            if name not in CAPABILITIES:
                raise SpecError(f"{field}.{kind}[{i}]", f'unknown capability "{name}"')
        caps[kind] = names
    return caps


def _rlimits(value: object, field: str) -> list[dict]:
    rlimits = []
    seen = set()
    for i, item in enumerate(_list(value, field)):
        at = f"{field}[{i}]"
        raw = _obj(item, at)
        kind = _one_of(_need(raw, "type", at), f"{at}.type", RLIMIT_TYPES, "rlimit type")
        if kind in seen:
            raise SpecError(f"{at}.type", f"duplicate rlimit type {kind}")
        seen.add(kind)
        hard = _int(_need(raw, "hard", at), f"{at}.hard", lo=0, hi=_U64)
        soft = _int(_need(raw, "soft", at), f"{at}.soft", lo=0, hi=_U64)
        if soft > hard:
            raise SpecError(f"{at}.soft", f"soft limit {soft} is greater than hard limit {hard}")
        rlimits.append({"type": kind, "hard": hard, "soft": soft})
    return rlimits


def _io_priority(value: object, field: str) -> dict:
    raw = _obj(value, field)
    return {
        "class": _one_of(_need(raw, "class", field), f"{field}.class", IOPRIO_CLASSES, "I/O priority class"),
        # REQUIRED in the spec, but runc reads a missing one as 0 (Go's zero value).
        "priority": _opt(raw, "priority", field, _int, 0, lo=0, hi=7),
    }


def _scheduler(value: object, field: str) -> dict:
    """The spec's types and values, and runc's rules for which fields go with which
    policy; the kernel judges the rest (sched_setattr's EINVAL fails the create)."""
    scheduler = dict(_obj(value, field))
    policy = _one_of(_need(scheduler, "policy", field), f"{field}.policy", SCHED_POLICIES, "policy")
    scheduler["policy"] = policy
    scheduler["nice"] = _opt(scheduler, "nice", field, _int, 0, lo=-20, hi=19)
    scheduler["priority"] = _opt(scheduler, "priority", field, _int, 0, lo=-2**31, hi=2**31 - 1)
    if scheduler["priority"] and policy not in ("SCHED_FIFO", "SCHED_RR"):
        raise SpecError(f"{field}.priority", f"is for SCHED_FIFO and SCHED_RR only, not {policy}")
    flags = _list_of_str(scheduler.get("flags"), f"{field}.flags")
    for i, flag in enumerate(flags):
        _one_of(flag, f"{field}.flags[{i}]", SCHED_FLAGS, "flag")
    scheduler["flags"] = flags
    for key in ("runtime", "deadline", "period"):
        scheduler[key] = _opt(scheduler, key, field, _int, 0, lo=0, hi=_U64)
        if scheduler[key] and policy != "SCHED_DEADLINE":
            raise SpecError(f"{field}.{key}", f"is for SCHED_DEADLINE only, not {policy}")
    return scheduler


# ---------------------------------------------------------------------------------------
# mounts, hooks


def _mount(value: object, at: str) -> dict:
    mount = dict(_obj(value, at))
    destination = _abs(_need(mount, "destination", at), f"{at}.destination")
    # normpath keeps a leading "//" (POSIX allows it a meaning); a mount target has none.
    mount["destination"] = os.path.normpath("/" + destination.lstrip("/"))
    options = _list_of_str(mount.get("options"), f"{at}.options")
    is_bind = "bind" in options or "rbind" in options
    kind = _opt(mount, "type", at, _str, "")
    if not kind and is_bind:
        kind = "bind"
    source = _opt(mount, "source", at, _str, "")
    if (kind == "bind" or is_bind) and not source:
        raise SpecError(f"{at}.source", "a bind mount needs a source")
    mount["type"] = kind
    mount["source"] = source
    mount["options"] = options
    for key in ("uidMappings", "gidMappings"):
        if mount.get(key) is not None:
            mount[key] = _id_mappings(mount[key], f"{at}.{key}")
    return mount


def _hooks(value: object) -> dict[str, list[dict]]:
    hooks: dict[str, list[dict]] = {kind: [] for kind in HOOK_KINDS}
    if value is None:
        return hooks
    for kind, entries in _obj(value, "hooks").items():
        field = f"hooks.{kind}"
        if kind not in hooks:
            raise SpecError(field, f'unknown hook kind "{kind}" (known: {", ".join(HOOK_KINDS)})')
        hooks[kind] = [_hook(hook, f"{field}[{i}]") for i, hook in enumerate(_list(entries, field))]
    return hooks


def _hook(value: object, at: str) -> dict:
    raw = _obj(value, at)
    return {
        "path": _abs(_need(raw, "path", at), f"{at}.path"),
        "args": _list_of_str(raw.get("args"), f"{at}.args"),
        "env": _environment(raw.get("env"), f"{at}.env"),
        "timeout": _opt(raw, "timeout", at, _int, lo=1),
    }


def _environment(value: object, at: str) -> list[str]:
    """An environment: NAME=VALUE strings, as execve takes them."""
    env = _list_of_str(value, at)
    for i, item in enumerate(env):
        if "=" not in item:
            raise SpecError(f"{at}[{i}]", f'must be NAME=VALUE, got "{item}"')
    _no_nul(env, at)
    return env


# ---------------------------------------------------------------------------------------
# linux


def _linux(raw: dict) -> dict:
    linux = dict(raw)
    linux["namespaces"] = _namespaces(raw.get("namespaces"), "linux.namespaces")
    linux["uidMappings"] = _id_mappings(raw.get("uidMappings"), "linux.uidMappings")
    linux["gidMappings"] = _id_mappings(raw.get("gidMappings"), "linux.gidMappings")
    linux["devices"] = [
        _device(d, f"linux.devices[{i}]")
        for i, d in enumerate(_list(raw.get("devices"), "linux.devices"))
    ]
    linux["cgroupsPath"] = _opt(raw, "cgroupsPath", "linux", _str)
    linux["resources"] = _opt(raw, "resources", "linux", _resources)
    linux["maskedPaths"] = _list_of_abs(raw.get("maskedPaths"), "linux.maskedPaths")
    linux["readonlyPaths"] = _list_of_abs(raw.get("readonlyPaths"), "linux.readonlyPaths")
    # Go writes an unset propagation as "" when a tool forgets omitempty.
    propagation = raw.get("rootfsPropagation")
    linux["rootfsPropagation"] = None if propagation in (None, "") else _one_of(
        propagation, "linux.rootfsPropagation", ROOTFS_PROPAGATIONS, "rootfs propagation"
    )
    linux["mountLabel"] = _opt(raw, "mountLabel", "linux", _str)
    linux["sysctl"] = _str_map(raw.get("sysctl"), "linux.sysctl")
    linux["personality"] = _opt(raw, "personality", "linux", _personality)
    linux["seccomp"] = _opt(raw, "seccomp", "linux", _seccomp)
    linux["timeOffsets"] = _opt(raw, "timeOffsets", "linux", _time_offsets)
    return linux


def _namespaces(value: object, field: str) -> list[dict]:
    namespaces = []
    seen = set()
    for i, item in enumerate(_list(value, field)):
        at = f"{field}[{i}]"
        raw = _obj(item, at)
        kind = _one_of(_need(raw, "type", at), f"{at}.type", NAMESPACE_TYPES, "namespace type")
        if kind in seen:
            raise SpecError(f"{at}.type", f'duplicate namespace type "{kind}"')
        seen.add(kind)
        # An empty path is Go's way of writing "no path": a new namespace.
        path = raw.get("path")
        if path is not None and path != "":
            path = _abs(path, f"{at}.path")
        namespaces.append({"type": kind, "path": path or None})
    return namespaces


def _id_mappings(value: object, field: str) -> list[dict]:
    mappings = []
    for i, item in enumerate(_list(value, field)):
        at = f"{field}[{i}]"
        raw = _obj(item, at)
        mappings.append({
            "containerID": _int(_need(raw, "containerID", at), f"{at}.containerID", lo=0, hi=_U32),
            "hostID": _int(_need(raw, "hostID", at), f"{at}.hostID", lo=0, hi=_U32),
            "size": _int(_need(raw, "size", at), f"{at}.size", lo=1, hi=_U32),
        })
    return mappings


def _device(value: object, at: str) -> dict:
    raw = _obj(value, at)
    kind = _one_of(_need(raw, "type", at), f"{at}.type", DEVICE_TYPES, "device type")
    if kind == "p":  # a FIFO has no device number
        major = _opt(raw, "major", at, _int, 0, lo=0)
        minor = _opt(raw, "minor", at, _int, 0, lo=0)
    else:
        major = _int(_need(raw, "major", at), f"{at}.major", lo=0, hi=_U32)
        minor = _int(_need(raw, "minor", at), f"{at}.minor", lo=0, hi=_U32)
    return {
        "type": kind,
        "path": _abs(_need(raw, "path", at), f"{at}.path"),
        "major": major,
        "minor": minor,
        "fileMode": _opt(raw, "fileMode", at, _int, lo=0, hi=_U32),
        "uid": _opt(raw, "uid", at, _int, lo=0, hi=_U32),
        "gid": _opt(raw, "gid", at, _int, lo=0, hi=_U32),
    }


def _resources(value: object, field: str) -> dict:
    # The cgroup code validates the rest of resources; the device rules are checked here
    # because the device cgroup is set up from them even when no limit is asked for.
    resources = dict(_obj(value, field))
    for i, rule in enumerate(_list(resources.get("devices"), f"{field}.devices")):
        at = f"{field}.devices[{i}]"
        _bool(_need(_obj(rule, at), "allow", at), f"{at}.allow")
    return resources


def _personality(value: object, field: str) -> dict:
    raw = _obj(value, field)
    return {
        "domain": _one_of(_need(raw, "domain", field), f"{field}.domain", PERSONALITY_DOMAINS, "personality domain"),
        "flags": _list_of_str(raw.get("flags"), f"{field}.flags"),
    }


def _time_offsets(value: object, field: str) -> dict:
    offsets = {}
    for clock, item in _obj(value, field).items():
        at = f"{field}.{clock}"
        if clock not in TIME_CLOCKS:
            raise SpecError(at, f'unknown clock "{clock}" (known: {", ".join(TIME_CLOCKS)})')
        raw = _obj(item, at)
        offsets[clock] = {
            "secs": _opt(raw, "secs", at, _int, 0, lo=-(2**63), hi=2**63 - 1),
            # The kernel refuses a nanosecond part of a whole second or more.
            "nanosecs": _opt(raw, "nanosecs", at, _int, 0, lo=0, hi=999_999_999),
        }
    return offsets


def _seccomp(value: object, field: str) -> dict:
    raw = _obj(value, field)
    seccomp = dict(raw)
    default_action = _one_of(
        _need(raw, "defaultAction", field), f"{field}.defaultAction", SECCOMP_ACTIONS, "seccomp action"
    )
    if default_action == "SCMP_ACT_NOTIFY":
        # runc's rule: every syscall of the runtime itself would wait on the listener.
        raise SpecError(f"{field}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default action")
    seccomp["defaultAction"] = default_action
    seccomp["defaultErrnoRet"] = _opt(raw, "defaultErrnoRet", field, _int, lo=0, hi=_U32)
    archs = _list_of_str(raw.get("architectures"), f"{field}.architectures")
    for i, arch in enumerate(archs):
        _one_of(arch, f"{field}.architectures[{i}]", SECCOMP_ARCHS, "seccomp architecture")
    seccomp["architectures"] = archs
    flags = _list_of_str(raw.get("flags"), f"{field}.flags")
    for i, flag in enumerate(flags):
        _one_of(flag, f"{field}.flags[{i}]", SECCOMP_FLAGS, "seccomp flag")
    seccomp["flags"] = flags
    seccomp["listenerPath"] = _opt(raw, "listenerPath", field, _str)
    seccomp["listenerMetadata"] = _opt(raw, "listenerMetadata", field, _str)
    seccomp["syscalls"] = [
        _syscall_rule(rule, f"{field}.syscalls[{i}]")
        for i, rule in enumerate(_list(raw.get("syscalls"), f"{field}.syscalls"))
    ]
    notify = any(rule["action"] == "SCMP_ACT_NOTIFY" for rule in seccomp["syscalls"])
    if notify and not seccomp["listenerPath"]:
        raise SpecError(f"{field}.listenerPath", "is required when a rule uses SCMP_ACT_NOTIFY")
    return seccomp


def _syscall_rule(value: object, at: str) -> dict:
    raw = _obj(value, at)
    names = _list_of_str(_need(raw, "names", at), f"{at}.names")
    if not names:
        raise SpecError(f"{at}.names", "must not be empty")
    return {
        "names": names,
        "action": _one_of(_need(raw, "action", at), f"{at}.action", SECCOMP_ACTIONS, "seccomp action"),
        "errnoRet": _opt(raw, "errnoRet", at, _int, lo=0, hi=_U32),
        "args": [
            _syscall_arg(arg, f"{at}.args[{i}]")
            for i, arg in enumerate(_list(raw.get("args"), f"{at}.args"))
        ],
    }


def _syscall_arg(value: object, at: str) -> dict:
    raw = _obj(value, at)
    return {
        "index": _int(_need(raw, "index", at), f"{at}.index", lo=0, hi=5),
        "value": _int(_need(raw, "value", at), f"{at}.value", lo=0, hi=_U64),
        "valueTwo": _opt(raw, "valueTwo", at, _int, 0, lo=0, hi=_U64),
        "op": _one_of(_need(raw, "op", at), f"{at}.op", SECCOMP_OPERATORS, "seccomp operator"),
    }


# ---------------------------------------------------------------------------------------
# Rules across sections (runc's validator)


def _cross_check(spec: dict) -> None:
    linux = spec["linux"]
    namespaces = {ns["type"]: ns["path"] for ns in linux["namespaces"]}
    if "mount" not in namespaces:
        raise SpecError("linux.namespaces", "a mount namespace is required")
    _check_user_namespace(linux, namespaces)
    for key in ("hostname", "domainname"):
        if spec[key] and "uts" not in namespaces:
            raise SpecError(key, "requires a uts namespace in linux.namespaces")
    if linux["timeOffsets"]:
        if "time" not in namespaces:
            raise SpecError("linux.timeOffsets", "requires a time namespace in linux.namespaces")
        if namespaces["time"] is not None:
            # Offsets can only be written before a time namespace has its first process.
            raise SpecError("linux.timeOffsets", "cannot be set when joining an existing time namespace")
    _check_sysctl(spec, namespaces)


def _check_user_namespace(linux: dict, namespaces: dict[str, str | None]) -> None:
    if "user" not in namespaces:
        for key in ("uidMappings", "gidMappings"):
            if linux[key]:
                raise SpecError(f"linux.{key}", "mappings need a user namespace in linux.namespaces")
    elif namespaces["user"] is None:
        for key in ("uidMappings", "gidMappings"):
            if not linux[key]:
                raise SpecError(f"linux.{key}", "a new user namespace needs uidMappings and gidMappings")


def _sysctl_namespace(key: str) -> str | None:
    """The namespace that makes sysctl `key` private to the container, or None."""
    name = key.replace("/", ".")
    if name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
        return "ipc"
    if name.startswith("net."):
        return "network"
    if name in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


def _check_sysctl(spec: dict, namespaces: dict[str, str | None]) -> None:
    for key in spec["linux"]["sysctl"]:
        field = f'linux.sysctl["{key}"]'
        namespace = _sysctl_namespace(key)
        if namespace is None:
            raise SpecError(field, f'"{key}" is not namespaced: setting it would change the host')
        if namespace not in namespaces:
            article = "an" if namespace == "ipc" else "a"
            raise SpecError(field, f"needs {article} {namespace} namespace in linux.namespaces")
        if key.replace("/", ".") == "kernel.hostname" and spec["hostname"]:
            raise SpecError(field, "conflicts with the hostname field; set only one")


def validate_process(raw: object) -> dict:
    """Validate a lone OCI process object (`exec --process process.json`)."""
    return _process(_obj(raw, "process"))
