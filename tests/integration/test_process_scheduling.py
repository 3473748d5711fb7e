"""process.ioPriority and process.scheduler: the I/O class and level and the scheduling
policy, nice and RT priority of a container's process, for create (init, before `start`,
and the program it execs) and for exec. The container keeps runc's default capabilities,
without CAP_SYS_NICE or CAP_SYS_ADMIN: the runtime sets both before it drops them.

The I/O priority is read with `ionice` (busybox's inside, util-linux's on the host), the
scheduling from /proc/PID/stat: nice (field 19), rt_priority (40) and policy (41)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from . import ROOT_ONLY, pyruntime_only

pytestmark = ROOT_ONLY

# A cgroup v1 cpu hierarchy with RT group scheduling gives a new cgroup no RT time, and
# the kernel then refuses an RT policy (EPERM) to its tasks: such a host needs a budget.
RT_GROUPS = os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us")

IO_PRIORITIES = {
    "idle": ({"class": "IOPRIO_CLASS_IDLE", "priority": 0}, "idle"),
    "best-effort 7": ({"class": "IOPRIO_CLASS_BE", "priority": 7}, "best-effort: prio 7"),
}

SCHEDULERS = {
    "batch nice 5": ({"policy": "SCHED_BATCH", "nice": 5}, (5, 0, 3)),
    "idle": ({"policy": "SCHED_IDLE"}, (0, 0, 5)),
    "fifo 1": ({"policy": "SCHED_FIFO", "priority": 1}, (0, 1, 1)),
    # A negative nice needs CAP_SYS_NICE, which the container does not keep.
    "other nice -5": ({"policy": "SCHED_OTHER", "nice": -5}, (-5, 0, 0)),
}


def settings(io_priority: dict | None = None, scheduler: dict | None = None):
    """A `mutate` for the bundle: the process's settings, and an RT budget where the
    host needs one."""
    def mutate(config: dict) -> None:
        if io_priority is not None:
            config["process"]["ioPriority"] = io_priority
        if scheduler is not None:
            config["process"]["scheduler"] = scheduler
        if RT_GROUPS:
            resources = config["linux"].setdefault("resources", {})
            resources["cpu"] = {"realtimeRuntime": 10000, "realtimePeriod": 1000000}
    return mutate


def scheduling(stat: str) -> tuple[int, int, int]:
    """(nice, rt_priority, policy) from the text of a /proc/PID/stat."""
    fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3
    return int(fields[16]), int(fields[37]), int(fields[38])


def host_scheduling(pid: int) -> tuple[int, int, int]:
    with open(f"/proc/{pid}/stat") as f:
        return scheduling(f.read())


def host_ionice(pid: int) -> str:
    return subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True,
                          check=True).stdout.strip()


def create(runtime, bundle_dir: str, work_dir: str) -> tuple[str, str]:
    """Create the container, its stdout going to a file: (id, the file)."""
    cid = runtime.new_id()
    output = os.path.join(work_dir, f"{cid}.out")
    runtime.create(bundle_dir, cid, stdout_path=output)
    return cid, output


def finish(runtime, cid: str, output: str) -> str:
    """Start it, wait for its end, and return what it wrote."""
    runtime.start(cid)
    runtime.wait_status(cid, "stopped")
    with open(output) as f:
        return f.read()


@pytest.fixture
def running(runtime, bundle):
    """A running container (`sleep 3600`) with neither setting, and an RT budget where
    the host needs one: its id."""
    cid = runtime.new_id()
    runtime.run_detached(bundle(["sleep", "3600"], mutate=settings()), cid)
    return cid


def exec_process_file(runtime, cid: str, work_dir: str, args: list[str], **members):
    process = {"args": args, "cwd": "/", "env": ["PATH=/bin:/usr/bin"], **members}
    path = os.path.join(work_dir, "process.json")
    with open(path, "w") as f:
        json.dump(process, f)
    return runtime.run("exec", "--process", path, cid)


# --------------------------------------------------------------------------- ioPriority
@pytest.mark.parametrize("case", IO_PRIORITIES)
def test_io_priority_of_init_and_of_its_program(runtime, bundle, work_dir, case):
    io_priority, shown = IO_PRIORITIES[case]
    b = bundle(["ionice"], mutate=settings(io_priority=io_priority))
    cid, output = create(runtime, b, work_dir)
    assert host_ionice(runtime.pid(cid)) == shown
    assert finish(runtime, cid, output).strip() == shown


@pytest.mark.parametrize("case", IO_PRIORITIES)
def test_io_priority_of_an_exec(runtime, running, work_dir, case):
    io_priority, shown = IO_PRIORITIES[case]
    proc = exec_process_file(runtime, running, work_dir, ["ionice"], ioPriority=io_priority)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == shown


# --------------------------------------------------------------------------- scheduler
@pytest.mark.parametrize("case", SCHEDULERS)
def test_scheduler_of_init_and_of_its_program(runtime, bundle, work_dir, case):
    scheduler, expected = SCHEDULERS[case]
    b = bundle(["cat", "/proc/self/stat"], mutate=settings(scheduler=scheduler))
    cid, output = create(runtime, b, work_dir)
    assert host_scheduling(runtime.pid(cid)) == expected
    assert scheduling(finish(runtime, cid, output)) == expected


@pytest.mark.parametrize("case", SCHEDULERS)
def test_scheduler_of_an_exec(runtime, running, work_dir, case):
    scheduler, expected = SCHEDULERS[case]
    proc = exec_process_file(runtime, running, work_dir, ["cat", "/proc/self/stat"],
                             scheduler=scheduler)
    assert proc.returncode == 0, proc.stderr
    assert scheduling(proc.stdout) == expected


def test_an_exec_without_a_process_file_takes_the_containers_settings(runtime, bundle):
    """As runc: the exec'd process is the container's own with the command line's
    changes, its ioPriority and scheduler among what it keeps."""
    cid = runtime.new_id()
    mutate = settings(io_priority={"class": "IOPRIO_CLASS_BE", "priority": 7},
                      scheduler={"policy": "SCHED_BATCH", "nice": 5})
    runtime.run_detached(bundle(["sleep", "3600"], mutate=mutate), cid)
    proc = runtime.run("exec", cid, "sh", "-c", "ionice; cat /proc/self/stat")
    assert proc.returncode == 0, proc.stderr
    first, stat = proc.stdout.split("\n", 1)
    assert first == "best-effort: prio 7"
    assert scheduling(stat) == (5, 0, 3)


# --------------------------------------------------------------------------- errors
@pyruntime_only
def test_a_scheduler_the_kernel_refuses_fails_the_create(runtime, bundle):
    # An RT policy needs a priority of 1-99: sched_setattr says EINVAL.
    b = bundle(["true"], mutate=settings(scheduler={"policy": "SCHED_FIFO"}))
    proc = runtime.run("create", "--bundle", b, runtime.new_id())
    assert proc.returncode != 0
    assert "process.scheduler: setting SCHED_FIFO: Invalid argument" in proc.stderr


@pyruntime_only
def test_a_scheduler_the_kernel_refuses_fails_the_exec(runtime, running, work_dir):
    proc = exec_process_file(runtime, running, work_dir, ["true"],
                             scheduler={"policy": "SCHED_RR", "priority": 100})
    assert proc.returncode != 0
    assert ("process.scheduler: setting SCHED_RR priority 100: Invalid argument"
            in proc.stderr)


@pyruntime_only
@pytest.mark.parametrize("member, value, message", [
    ("scheduler", {"policy": "SCHED_FAST"}, 'process.scheduler.policy: unknown policy "SCHED_FAST"'),
    ("scheduler", {"policy": "SCHED_BATCH", "priority": 1},
     "process.scheduler.priority: is for SCHED_FIFO and SCHED_RR only, not SCHED_BATCH"),
    ("scheduler", {"policy": "SCHED_FIFO", "priority": 1, "runtime": 1000},
     "process.scheduler.runtime: is for SCHED_DEADLINE only, not SCHED_FIFO"),
])
def test_an_invalid_setting_fails_the_create_naming_the_field(runtime, bundle, member,
                                                              value, message):
    b = bundle(["true"], mutate=lambda config: config["process"].update({member: value}))
    proc = runtime.run("create", "--bundle", b, runtime.new_id())
    assert proc.returncode != 0
    assert message in proc.stderr.replace('\\"', '"')  # the log line's quoting undone
