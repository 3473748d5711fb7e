"""Seccomp filters loaded for real: each case loads a profile in a forked child, makes the
syscalls in question and reports their errno through a pipe. Profiles allow by default and
deny a few syscalls: the child is a Python interpreter, which needs many syscalls."""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from pyruntime._native import lib
from pyruntime.linux import seccomp
from pyruntime.linux.errors import SeccompError
from pyruntime.linux.seccomp import action_value, load_seccomp, seccomp_supported

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

AF_INET, AF_INET6, AF_UNIX = 2, 10, 1
SOCK_DGRAM = 2


def run_child(fn, *args):
    """Run `fn(*args)` in a forked child: (outcome, wait status).

    outcome is {"ok": result} or {"error": class name, "message": ...}, or None when the
    child died before reporting. The child always leaves with os._exit.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                outcome = {"ok": fn(*args)}
            except BaseException as e:  # noqa: BLE001 - everything is reported to the parent
                outcome = {"error": type(e).__name__, "message": str(e)}
            data = json.dumps(outcome).encode()
            while data:
                data = data[os.write(w, data):]
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    return (json.loads(data) if data else None), status


def in_child(fn, *args):
    outcome, status = run_child(fn, *args)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status:#x}"
    return outcome


def ok(outcome):
    assert outcome is not None and "ok" in outcome, f"child failed: {outcome}"
    return outcome["ok"]


def profile(*syscalls: dict, default: str = "SCMP_ACT_ALLOW", **extra) -> dict:
    p = {
        "defaultAction": default,
        "defaultErrnoRet": None,
        "architectures": [],
        "flags": [],
        "listenerPath": "",
        "syscalls": list(syscalls),
    }
    p.update(extra)
    return p


def rule(names, action="SCMP_ACT_ERRNO", errno_ret=None, args=()) -> dict:
    return {"names": list(names), "action": action, "errnoRet": errno_ret, "args": list(args)}


def arg(index, value, op="SCMP_CMP_EQ", value_two=0) -> dict:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def errno_of(call, *args):
    try:
        result = call(*args)
    except OSError as e:
        return e.errno
    if isinstance(result, socket.socket):
        result.close()
    return 0


def status_field(name: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return ""


DENY_MKDIR = rule(["mkdir", "mkdirat"], errno_ret=errno.EPERM)


def test_seccomp_supported():
    assert seccomp_supported() is True


def test_action_values():
    assert action_value("SCMP_ACT_KILL", None) == 0
    assert action_value("SCMP_ACT_KILL_THREAD", None) == 0
    assert action_value("SCMP_ACT_KILL_PROCESS", None) == 0x80000000
    assert action_value("SCMP_ACT_TRAP", None) == 0x00030000
    assert action_value("SCMP_ACT_ERRNO", None) == 0x00050001
    assert action_value("SCMP_ACT_ERRNO", 38) == 0x00050026
    assert action_value("SCMP_ACT_TRACE", None) == 0x7FF00001
    assert action_value("SCMP_ACT_TRACE", 5) == 0x7FF00005
    assert action_value("SCMP_ACT_LOG", None) == 0x7FFC0000
    assert action_value("SCMP_ACT_ALLOW", None) == 0x7FFF0000
    with pytest.raises(SeccompError, match="SCMP_ACT_NOTIFY is not supported yet"):
        action_value("SCMP_ACT_NOTIFY", None)
    with pytest.raises(SeccompError, match="SCMP_ACT_BOGUS"):
        action_value("SCMP_ACT_BOGUS", None)


def test_mkdir_denied_with_eperm_getpid_allowed(tmp_path):
    target = tmp_path / "denied"

    def child():
        load_seccomp(profile(DENY_MKDIR))
        return errno_of(os.mkdir, target), os.getpid() > 0, status_field("Seccomp")

    mkdir_errno, getpid_works, mode = ok(in_child(child))
    assert mkdir_errno == errno.EPERM
    assert getpid_works
    assert mode == "2"  # SECCOMP_MODE_FILTER
    assert not target.exists()
    os.mkdir(target)  # the parent is unfiltered


def test_libseccomp_does_not_set_no_new_privs():
    def child():
        load_seccomp(profile(DENY_MKDIR))
        return status_field("NoNewPrivs")

    assert ok(in_child(child)) == "0"


def test_custom_errno_ret(tmp_path):
    def child():
        load_seccomp(profile(rule(["mkdir", "mkdirat"], errno_ret=errno.ENOSYS)))
        return errno_of(os.mkdir, tmp_path / "x")

    assert ok(in_child(child)) == errno.ENOSYS


def test_default_errno_ret_applies_to_default_action_only(tmp_path):
    # defaultErrnoRet is for the default action; a rule's ERRNO without errnoRet is EPERM.
    def child():
        load_seccomp(profile(rule(["mkdir", "mkdirat"]), default="SCMP_ACT_ALLOW",
                             defaultErrnoRet=errno.ENOSYS))
        return errno_of(os.mkdir, tmp_path / "x")

    assert ok(in_child(child)) == errno.EPERM


def test_arg_condition_denies_af_inet_only():
    def child():
        load_seccomp(profile(rule(["socket"], args=[arg(0, AF_INET)])))
        return (
            errno_of(socket.socket, socket.AF_INET, socket.SOCK_STREAM),
            errno_of(socket.socket, socket.AF_UNIX, socket.SOCK_STREAM),
        )

    inet, unix = ok(in_child(child))
    assert inet == errno.EPERM
    assert unix == 0


def test_conditions_on_different_args_must_all_match():
    # Python adds SOCK_CLOEXEC to the type, hence the mask on arg 1.
    def child():
        load_seccomp(profile(rule(
            ["socket"],
            args=[arg(0, AF_INET), arg(1, 0xF, "SCMP_CMP_MASKED_EQ", SOCK_DGRAM)],
        )))
        return (
            errno_of(socket.socket, socket.AF_INET, socket.SOCK_DGRAM),
            errno_of(socket.socket, socket.AF_INET, socket.SOCK_STREAM),
            errno_of(socket.socket, socket.AF_UNIX, socket.SOCK_DGRAM),
        )

    assert ok(in_child(child)) == [errno.EPERM, 0, 0]


def test_two_conditions_on_the_same_arg_become_separate_rules():
    def child():
        load_seccomp(profile(rule(["socket"], args=[arg(0, AF_INET), arg(0, AF_INET6)])))
        return (
            errno_of(socket.socket, socket.AF_INET, socket.SOCK_STREAM),
            errno_of(socket.socket, socket.AF_INET6, socket.SOCK_STREAM),
            errno_of(socket.socket, socket.AF_UNIX, socket.SOCK_STREAM),
        )

    assert ok(in_child(child)) == [errno.EPERM, errno.EPERM, 0]


def test_unknown_syscall_name_is_skipped(tmp_path):
    def child():
        load_seccomp(profile(rule(["no_such_syscall_pyrt", "mkdir", "mkdirat"])))
        return errno_of(os.mkdir, tmp_path / "x")

    assert ok(in_child(child)) == errno.EPERM


def test_pseudo_syscall_of_another_arch_is_accepted(tmp_path):
    # socketcall does not exist on x86_64: libseccomp gives it a negative pseudo number,
    # which is not an error (Docker's default profile lists it).
    def child():
        load_seccomp(profile(rule(["socketcall", "mkdir", "mkdirat"]),
                             architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                            "SCMP_ARCH_X32"]))
        return errno_of(os.mkdir, tmp_path / "x")

    assert ok(in_child(child)) == errno.EPERM


def test_rule_with_the_default_action_is_skipped(tmp_path):
    def child():
        load_seccomp(profile(rule(["getpid"], action="SCMP_ACT_ALLOW"), DENY_MKDIR))
        return errno_of(os.mkdir, tmp_path / "x")

    assert ok(in_child(child)) == errno.EPERM


def test_rule_equal_to_default_is_skipped_but_other_errno_is_not():
    # An ERRNO default cannot be loaded into a Python child (it needs too many syscalls), so
    # this builds the filter without loading it: libseccomp would refuse (EACCES) a rule
    # whose action is the default one; the same action with another errno is a real rule.
    default = action_value("SCMP_ACT_ERRNO", None)
    ctx = lib.seccomp_init(default)
    try:
        seccomp._build(ctx, profile(rule(["mkdir"]), rule(["mkdir"], errno_ret=errno.EPERM),
                                    rule(["mkdirat"], errno_ret=errno.ENOSYS),
                                    default="SCMP_ACT_ERRNO"), default)
    finally:
        lib.seccomp_release(ctx)


def test_kill_process_action_kills_with_sigsys(tmp_path):
    def child():
        load_seccomp(profile(rule(["mkdir", "mkdirat"], action="SCMP_ACT_KILL_PROCESS")))
        os.mkdir(tmp_path / "x")
        return "survived"

    outcome, status = run_child(child)
    assert outcome is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS
    assert not (tmp_path / "x").exists()


def test_trap_action_raises_sigsys(tmp_path):
    def child():
        load_seccomp(profile(rule(["mkdir", "mkdirat"], action="SCMP_ACT_TRAP")))
        os.mkdir(tmp_path / "x")
        return "survived"

    outcome, status = run_child(child)
    assert outcome is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


def test_flags_tsync_log_spec_allow_load(tmp_path):
    def child():
        load_seccomp(profile(DENY_MKDIR, flags=["SECCOMP_FILTER_FLAG_TSYNC",
                                                "SECCOMP_FILTER_FLAG_LOG",
                                                "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]))
        return errno_of(os.mkdir, tmp_path / "x")

    assert ok(in_child(child)) == errno.EPERM


def _libseccomp_has_waitkill() -> bool:
    ctx = lib.seccomp_init(0x7FFF0000)
    try:
        return lib.pyrt_seccomp_attr_set(ctx, 10, 1) == 0
    finally:
        lib.seccomp_release(ctx)


def test_wait_killable_recv_needs_newer_libseccomp():
    if _libseccomp_has_waitkill():
        pytest.skip("this libseccomp supports SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")

    def child():
        load_seccomp(profile(DENY_MKDIR, flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]))

    outcome = in_child(child)
    assert outcome["error"] == "SeccompError"
    assert "libseccomp 2.6" in outcome["message"]


def test_long_profile_uses_binary_tree(tmp_path):
    many = [rule([name], errno_ret=errno.EPERM)
            for name in ("mkdir", "mkdirat", "rmdir", "link", "linkat", "symlink", "symlinkat",
                         "mknod", "mknodat", "acct", "swapon", "swapoff", "reboot",
                         "init_module", "finit_module", "delete_module", "kexec_load",
                         "kexec_file_load", "pivot_root", "chroot", "mount", "umount2",
                         "syslog", "quotactl", "settimeofday", "clock_settime", "adjtimex",
                         "ioperm", "iopl", "vhangup", "lookup_dcookie", "nfsservctl",
                         "bpf", "perf_event_open")]
    assert len(many) > 32

    def child():
        load_seccomp(profile(*many))
        return errno_of(os.mkdir, tmp_path / "x"), errno_of(os.rmdir, tmp_path)

    assert ok(in_child(child)) == [errno.EPERM, errno.EPERM]


@pytest.mark.parametrize(
    "bad, message",
    [
        (profile(DENY_MKDIR, architectures=["SCMP_ARCH_NOPE"]), "SCMP_ARCH_NOPE"),
        (profile(DENY_MKDIR, flags=["SECCOMP_FILTER_FLAG_NOPE"]), "SECCOMP_FILTER_FLAG_NOPE"),
        (profile(rule(["mkdir"], action="SCMP_ACT_NOTIFY")), "SCMP_ACT_NOTIFY"),
        (profile(DENY_MKDIR, default="SCMP_ACT_NOTIFY"), "SCMP_ACT_NOTIFY"),
        (profile(rule(["socket"], args=[arg(0, 2, op="SCMP_CMP_NOPE")])), "SCMP_CMP_NOPE"),
        (profile(rule(["socket"], args=[arg(6, 2)])), "argument index 6"),
    ],
)
def test_bad_profiles_raise_seccomp_error_and_load_nothing(bad, message):
    def child():
        try:
            load_seccomp(bad)
        except SeccompError as e:
            return str(e), status_field("Seccomp")
        return None

    text, mode = ok(in_child(child))
    assert message in text
    assert mode == "0"


def test_module_imports_stay_light():
    # The container init imports this just before exec: no heavy stdlib modules.
    code = (
        "import sys; import pyruntime.linux.seccomp; "
        "print(sorted({'json', 're', 'enum', 'dataclasses', 'typing'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
