"""pyruntime.linux.process_control: each prctl(2) call has its effect, read back through
the kernel's own interfaces in a forked child (the calls cannot be undone in-process)."""
from __future__ import annotations

import os

import pytest

from pyruntime.linux import process_control

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_SETPCAP)"),
]


def _in_child(body) -> str:
    """Run `body()` in a forked child; return what it returned (a short string)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            result = str(body())
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            result = f"{type(error).__name__}: {error}"
        os.write(write_fd, result.encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        result = pipe.read()
    os.waitpid(pid, 0)
    return result


def _status_field(name: str) -> str:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in /proc/self/status")


def test_no_new_privs():
    def body():
        before = _status_field("NoNewPrivs")
        process_control.set_no_new_privs()
        return before + _status_field("NoNewPrivs")
    assert _in_child(body) == "01"


def test_dumpable_off_makes_proc_entries_root_owned_and_back():
    def body():
        import _prctl
        process_control.set_dumpable(False)
        off = _prctl.prctl(_prctl.PR_GET_DUMPABLE)
        process_control.set_dumpable(True)
        return f"{int(off)}{int(_prctl.prctl(_prctl.PR_GET_DUMPABLE))}"
    assert _in_child(body) == "01"


def test_keepcaps_and_child_subreaper():
    def body():
        import _prctl
        process_control.set_keepcaps(True)
        process_control.set_child_subreaper(True)
        return (f"{int(_prctl.prctl(_prctl.PR_GET_KEEPCAPS))}"
                f"{int(_prctl.prctl(_prctl.PR_GET_CHILD_SUBREAPER))}")
    assert _in_child(body) == "11"


def test_capbset_drop_removes_one_capability_from_the_bounding_set():
    cap_net_raw = 13

    def body():
        before = int(_status_field("CapBnd"), 16)
        process_control.capbset_drop(cap_net_raw)
        after = int(_status_field("CapBnd"), 16)
        return f"{before >> cap_net_raw & 1}{after >> cap_net_raw & 1}{before ^ after}"
    assert _in_child(body) == f"10{1 << cap_net_raw}"


def test_capbset_drop_of_a_capability_python_prctl_does_not_know_is_a_value_error():
    assert _in_child(lambda: process_control.capbset_drop(63)).startswith("ValueError")
