"""Seccomp: build a filter from the OCI `linux.seccomp` object with libseccomp and load it.

The translation follows runc (libcontainer/seccomp/seccomp_linux.go): the native arch is
always in the filter and the listed ones are added; a rule whose action is the default
action is skipped; a syscall name libseccomp does not know is skipped (so one profile works
across kernels and libseccomp versions); conditions that name the same argument twice are
added as one rule each, because libseccomp refuses them in one rule. libseccomp's own
no_new_privs handling is turned off: the container init sets no_new_privs itself, so
without it the filter must be loaded while the process still has CAP_SYS_ADMIN.

Not done yet: SCMP_ACT_NOTIFY (needs the listener socket; refused with a clear error), and
runc's patchbpf stub that makes syscalls newer than the profile return ENOSYS instead of
the default action.
"""
from __future__ import annotations

import os

from pyruntime._native import ffi, lib
from pyruntime.linux.errors import SeccompError

# Filter return values (linux/seccomp.h). KILL is KILL_THREAD, as in runc.
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_ERRNO = 0x00050000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_TRACE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000

_EPERM = 1  # the errno of ERRNO and TRACE when the profile gives none, as in runc

_PLAIN_ACTIONS = {
    "SCMP_ACT_KILL": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": SCMP_ACT_TRAP,
    "SCMP_ACT_LOG": SCMP_ACT_LOG,
    "SCMP_ACT_ALLOW": SCMP_ACT_ALLOW,
}

# enum scmp_compare (seccomp.h).
_OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr (seccomp.h). WAITKILL is 10 from libseccomp 2.6 on; older ones
# answer EINVAL for it.
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_CTL_WAITKILL = 10

_FLAG_ATTRIBUTES = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": _ATTR_CTL_WAITKILL,
}

_NR_SCMP_ERROR = -1  # what seccomp_syscall_resolve_name answers for an unknown name
_MAX_ARGS = 6  # a syscall has at most six arguments
_EEXIST = 17
_EINVAL = 22


def action_value(action: str, errno_ret: int | None) -> int:
    """The filter return value of the OCI action name `action` (errno for ERRNO/TRACE)."""
    value = _PLAIN_ACTIONS.get(action)
    if value is not None:
        return value
    if action == "SCMP_ACT_ERRNO":
        return SCMP_ACT_ERRNO | ((_EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if action == "SCMP_ACT_TRACE":
        return SCMP_ACT_TRACE | ((_EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if action == "SCMP_ACT_NOTIFY":
        raise SeccompError("SCMP_ACT_NOTIFY is not supported yet: remove it from linux.seccomp")
    raise SeccompError(
        f"unknown seccomp action {action!r}: expected one of "
        + ", ".join(sorted([*_PLAIN_ACTIONS, "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"]))
    )


def _arch_token(arch: str) -> int:
    # The spec writes SCMP_ARCH_X86_64; libseccomp's names are the same words in lower case.
    name = arch[len("SCMP_ARCH_"):] if arch.startswith("SCMP_ARCH_") else arch
    token = lib.seccomp_arch_resolve_name(name.lower().encode())
    if token == 0:
        raise SeccompError(
            f"seccomp architecture {arch!r} in linux.seccomp.architectures is not known to"
            " the installed libseccomp: remove it, or upgrade libseccomp"
        )
    return token


def _check(rc: int, what: str) -> None:
    """Raise SeccompError for a negative libseccomp return (a negated errno)."""
    if rc < 0:
        raise SeccompError(f"{what}: {os.strerror(-rc)} (errno {-rc})")


def _conditions(syscall: str, args: list[dict]) -> list[tuple[int, int, int, int]]:
    conditions = []
    for arg in args:
        index = arg.get("index", 0)
        if not 0 <= index < _MAX_ARGS:
            raise SeccompError(
                f"seccomp rule for {syscall}: argument index {index} is out of range 0..5"
            )
        op = _OPERATORS.get(arg.get("op"))
        if op is None:
            raise SeccompError(
                f"seccomp rule for {syscall}: unknown operator {arg.get('op')!r}: expected"
                " one of " + ", ".join(_OPERATORS)
            )
        value, value_two = arg.get("value", 0), arg.get("valueTwo") or 0
        if not (0 <= value < 1 << 64 and 0 <= value_two < 1 << 64):
            raise SeccompError(
                f"seccomp rule for {syscall}: argument values must be 64-bit unsigned integers"
            )
        conditions.append((index, op, value, value_two))
    return conditions


def _add_rule(ctx, action: int, nr: int, syscall: str, conditions: list) -> None:
    if not conditions:
        _check(
            lib.seccomp_rule_add_array(ctx, action, nr, 0, ffi.NULL),
            f"adding the seccomp rule for syscall {syscall}",
        )
        return
    array = ffi.new("struct scmp_arg_cmp[]", len(conditions))
    for slot, (index, op, value, value_two) in zip(array, conditions):
        slot.arg = index
        slot.op = op
        slot.datum_a = value
        slot.datum_b = value_two
    _check(
        lib.seccomp_rule_add_array(ctx, action, nr, len(conditions), array),
        f"adding the seccomp rule for syscall {syscall} with conditions {conditions}",
    )


def _build(ctx, profile: dict, default_action: int) -> None:
    # Off: no_new_privs is the container init's decision (process.noNewPrivileges).
    _check(
        lib.pyrt_seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0), "turning off libseccomp's no_new_privs"
    )

    for arch in profile.get("architectures") or []:
        rc = lib.seccomp_arch_add(ctx, _arch_token(arch))
        if rc != -_EEXIST:  # the native arch is already there
            _check(rc, f"adding seccomp architecture {arch}")

    for flag in profile.get("flags") or []:
        attr = _FLAG_ATTRIBUTES.get(flag)
        if attr is None:
            raise SeccompError(
                f"unknown seccomp flag {flag!r} in linux.seccomp.flags: expected one of "
                + ", ".join(_FLAG_ATTRIBUTES)
            )
        rc = lib.pyrt_seccomp_attr_set(ctx, attr, 1)
        if rc == -_EINVAL and attr == _ATTR_CTL_WAITKILL:
            raise SeccompError(
                f"seccomp flag {flag} needs libseccomp 2.6 or newer; remove the flag"
                " or upgrade libseccomp"
            )
        _check(rc, f"setting seccomp flag {flag}")

    syscalls = profile.get("syscalls") or []
    # A binary tree beats a linear list for long profiles; libseccomp <= 2.5.4 misbehaves
    # with it on an empty filter, hence runc's threshold. Not fatal if unavailable.
    if len(syscalls) > 32:
        lib.pyrt_seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)

    for rule in syscalls:
        action = action_value(rule.get("action", ""), rule.get("errnoRet"))
        if action == default_action:
            continue  # libseccomp refuses it (EACCES); it changes nothing anyway
        names = rule.get("names") or []
        conditions = _conditions(",".join(names), rule.get("args") or [])
        # libseccomp refuses two conditions on the same argument in one rule; runc then
        # adds each condition as a rule of its own (any of them matching applies the action).
        indexes = [c[0] for c in conditions]
        split = len(set(indexes)) != len(indexes)
        for name in names:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            # Only __NR_SCMP_ERROR means unknown: other negative numbers are libseccomp's
            # pseudo-syscalls (e.g. socketcall on x86_64) that it maps per architecture.
            if nr == _NR_SCMP_ERROR:
                continue
            if split:
                for condition in conditions:
                    _add_rule(ctx, action, nr, name, [condition])
            else:
                _add_rule(ctx, action, nr, name, conditions)


def load_seccomp(profile: dict) -> None:
    """Build the filter the OCI `linux.seccomp` object `profile` describes and load it.

    `profile` is validated and normalized (defaultAction, defaultErrnoRet, architectures,
    flags, listenerPath, syscalls with names/action/errnoRet/args). Raises SeccompError
    naming the action, arch, flag or syscall libseccomp or the kernel refused.
    """
    default_action = action_value(
        profile.get("defaultAction", ""), profile.get("defaultErrnoRet")
    )
    ctx = lib.seccomp_init(default_action)
    if ctx == ffi.NULL:
        raise SeccompError(
            f"creating a seccomp filter with default action {profile.get('defaultAction')}"
            " failed: the kernel or libseccomp does not support it"
        )
    try:
        _build(ctx, profile, default_action)
        _check(lib.seccomp_load(ctx), "loading the seccomp filter into the kernel")
    finally:
        lib.seccomp_release(ctx)


def seccomp_supported() -> bool:
    """True when libseccomp is usable and the kernel has seccomp (a `Seccomp:` status line)."""
    try:
        lib.seccomp_arch_native()
    except Exception:  # noqa: BLE001 - any failure of the binding means no libseccomp
        return False
    try:
        with open("/proc/self/status", "rb") as f:
            return any(line.startswith(b"Seccomp:") for line in f)
    except OSError:
        return False
