"""pyruntime.oci.process: what process.ioPriority and process.scheduler become in the
ioprio_set and sched_setattr calls (the kernel's numbers, runc's), where they come in
become_process, and the error that names the field when the kernel refuses."""
from __future__ import annotations

import errno

import pytest

from pyruntime.linux import syscalls
from pyruntime.linux.errors import LinuxError
from pyruntime.oci import process as proc
from pyruntime.oci.errors import ContainerStartError


@pytest.fixture
def calls(monkeypatch) -> list:
    made: list = []
    monkeypatch.setattr(syscalls, "ioprio_set", lambda *args: made.append(("ioprio", args)))
    monkeypatch.setattr(syscalls, "sched_setattr",
                        lambda *args, **kwargs: made.append(("sched", args, kwargs)))
    return made


def refuse(monkeypatch, name: str, code: int) -> None:
    def fail(*args, **kwargs):
        raise LinuxError(code, name)
    monkeypatch.setattr(syscalls, name, fail)


@pytest.mark.parametrize("name, number", [
    ("IOPRIO_CLASS_RT", 1), ("IOPRIO_CLASS_BE", 2), ("IOPRIO_CLASS_IDLE", 3),
])
def test_io_priority_classes(calls, name, number):
    proc.apply_io_priority({"class": name, "priority": 6})
    assert calls == [("ioprio", (number, 6))]


def test_scheduler_policy_flags_and_values(calls):
    proc.apply_scheduler({
        "policy": "SCHED_DEADLINE", "nice": 0, "priority": 0,
        "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_KEEP_PARAMS",
                  "SCHED_FLAG_UTIL_CLAMP_MAX"],
        "runtime": 1, "deadline": 2, "period": 3,
    })
    assert calls == [("sched", (6, 0x01 | 0x10 | 0x40), {
        "nice": 0, "priority": 0, "runtime": 1, "deadline": 2, "period": 3})]


def test_a_scheduler_missing_fields_gets_zeros(calls):
    # A record written before validation filled them in.
    proc.apply_scheduler({"policy": "SCHED_BATCH", "nice": 5})
    assert calls == [("sched", (3, 0), {
        "nice": 5, "priority": 0, "runtime": 0, "deadline": 0, "period": 0})]


def test_become_process_sets_both_before_the_rest(monkeypatch, calls):
    monkeypatch.setattr(proc, "load_seccomp", lambda profile: calls.append(("seccomp",)))
    monkeypatch.setattr(proc, "enter_cwd", lambda cwd: calls.append(("cwd",)))
    monkeypatch.setattr(proc, "switch_user", lambda *args: calls.append(("user",)))
    monkeypatch.setattr(proc, "find_executable", lambda *args: "/bin/true")
    process = {"args": ["true"], "cwd": "/", "env": [],
               "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0},
               "scheduler": {"policy": "SCHED_IDLE"}}
    assert proc.become_process(process, {"defaultAction": "SCMP_ACT_ALLOW"}) == "/bin/true"
    assert [call[0] for call in calls] == ["ioprio", "sched", "seccomp", "cwd", "user"]


def test_a_refused_io_priority_names_the_field(monkeypatch):
    refuse(monkeypatch, "ioprio_set", errno.EPERM)
    with pytest.raises(ContainerStartError) as error:
        proc.apply_io_priority({"class": "IOPRIO_CLASS_RT", "priority": 0})
    assert str(error.value) == (
        "process.ioPriority: setting IOPRIO_CLASS_RT priority 0: Operation not permitted")


def test_a_refused_scheduler_names_the_field_and_what_was_asked(monkeypatch):
    refuse(monkeypatch, "sched_setattr", errno.EINVAL)
    with pytest.raises(ContainerStartError) as error:
        proc.apply_scheduler({"policy": "SCHED_RR", "nice": 0, "priority": 100,
                              "flags": ["SCHED_FLAG_RESET_ON_FORK"]})
    assert str(error.value) == (
        "process.scheduler: setting SCHED_RR priority 100 SCHED_FLAG_RESET_ON_FORK: "
        "Invalid argument")
