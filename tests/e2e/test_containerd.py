"""containerd's runc shim (io.containerd.runc.v2) driving the runtime under test, through
ctr, in place of runc."""
from __future__ import annotations

import base64
import json
import os

from . import ENGINE_TEST, NeedsCgroupResources, needs_cgroup_resources, unsupported_if_quoted
from .containerd import IMAGE, SLEEPER
from .engines import (cgroup_dir, cgroup_frozen, cgroup_limit, lines, process_state, read_text,
                      wait_for)

pytestmark = ENGINE_TEST

MiB = 1024 * 1024


def start_sleeper(ctr, hint: str, *options: str) -> str:
    ident = ctr.new_id(hint)
    ctr.run_container("--detach", *options, IMAGE, ident, *SLEEPER)
    ctr.wait_status(ident, "RUNNING")
    return ident


def test_shim_runs_the_runtime_under_test(ctr):
    ident = start_sleeper(ctr, "which")
    runtime = json.loads(ctr.run("containers", "info", ident).stdout)["Runtime"]
    # Options: containerd.runc.v1.Options (protobuf) with BinaryName and Root.
    options = base64.b64decode(runtime["Options"]["value"])
    assert runtime["Name"] == "io.containerd.runc.v2"
    assert ctr.runtime_path.encode() in options, runtime
    # The runtime's state of the container is in the --runc-root the shim was given.
    assert os.path.isdir(os.path.join(ctr.daemon.runc_root, "pyrt-e2e", ident))


def test_run_rm_returns_the_exit_code(ctr):
    ident = ctr.new_id("run")
    result = ctr.run_container("--rm", IMAGE, ident, "sh", "-c", "echo hi; exit 4", expect=4)
    assert lines(result.stdout) == ["hi"], result.describe()
    assert ident not in ctr.run("containers", "list", "--quiet").stdout.split()


def test_killed_by_a_signal_exits_128_plus_signal(ctr, work_dir):
    # The container's PID 1 is killed from outside (SIGKILL from inside its own PID
    # namespace would not kill it): the shim reports 128+9, which `ctr run` returns.
    ident = ctr.new_id("sigkill")
    out, err = os.path.join(work_dir, "out"), os.path.join(work_dir, "err")
    proc = ctr.launch("run", *ctr.runtime_flags, "--rm", IMAGE, ident, "sleep", "300",
                     stdout_path=out, stderr_path=err)
    try:
        ctr.wait_status(ident, "RUNNING")
        ctr.run("tasks", "kill", "--signal", "SIGKILL", ident)
    finally:
        result = ctr.finish(proc, out, err)
    assert result.returncode == 137, result.describe()


def test_run_missing_command_fails(ctr):
    result = ctr.run_container("--rm", IMAGE, ctr.new_id("missing"), "/no/such/program",
                               check=False)
    assert result.returncode != 0
    assert "/no/such/program" in result.output, result.describe()
    assert "no such file or directory" in result.output.lower() \
        or "not found" in result.output.lower(), result.describe()


def test_run_with_a_tty(ctr):
    ident = ctr.new_id("tty")
    result = ctr.run_on_pty("run", *ctr.runtime_flags, "--rm", "--tty", IMAGE, ident,
                            "sh", "-c", "tty; exit 2", check_exit=2)
    assert "/dev/pts/0" in result.stdout, result.describe()


def test_detached_exec_ps_kill_delete(ctr):
    ident = start_sleeper(ctr, "exec")
    init_pid = ctr.task_pid(ident)

    result = ctr.run("tasks", "exec", "--fifo-dir", ctr.daemon.fifo_dir, "--exec-id", "e1",
                     ident, "sh", "-c", "echo in-container; id -u; exit 6", expect=6)
    assert lines(result.stdout) == ["in-container", "0"], result.describe()

    result = ctr.run("tasks", "exec", "--fifo-dir", ctr.daemon.fifo_dir, "--exec-id", "e2",
                     "--user", "1001", "--cwd", "/tmp", ident, "sh", "-c", "id -u; pwd")
    assert lines(result.stdout) == ["1001", "/tmp"], result.describe()

    result = ctr.run_on_pty("tasks", "exec", "--fifo-dir", ctr.daemon.fifo_dir,
                            "--exec-id", "e3", "--tty", ident, "sh", "-c", "tty; exit 3",
                            check_exit=3)
    assert "/dev/pts/" in result.stdout, result.describe()

    ctr.run("tasks", "exec", "--fifo-dir", ctr.daemon.fifo_dir, "--exec-id", "e4",
            "--detach", ident, "sleep", "300")
    result = ctr.run("tasks", "ps", ident)
    pids = [int(line.split()[0]) for line in lines(result.stdout)[1:]]
    assert init_pid in pids and len(pids) >= 2, result.describe()

    ctr.run("tasks", "kill", "--all", "--signal", "SIGKILL", ident)
    ctr.wait_status(ident, "STOPPED")
    ctr.run("tasks", "delete", ident)
    assert ident not in ctr.tasks()
    ctr.run("containers", "delete", ident)
    assert ident not in ctr.run("containers", "list", "--quiet").stdout.split()


def stopped_task(ctr, hint: str) -> str:
    ident = start_sleeper(ctr, hint)
    ctr.run("tasks", "kill", "--signal", "SIGKILL", ident)
    ctr.wait_status(ident, "STOPPED")
    return ident


def test_kill_all_of_a_stopped_task(ctr):
    # runc: `kill --all` of a stopped container succeeds (nothing is left to signal).
    ident = stopped_task(ctr, "killall")
    ctr.run("tasks", "kill", "--all", "--signal", "SIGKILL", ident)


def test_force_delete_of_a_stopped_task(ctr):
    # `ctr tasks delete --force` kills first (`RUNTIME kill --all ID 9`) whatever the
    # task's state.
    ident = stopped_task(ctr, "forcedel")
    ctr.run("tasks", "delete", "--force", ident)
    assert ident not in ctr.tasks()


def test_kill_of_a_stopped_task_is_not_found(ctr):
    # The shim takes a runtime error that says "container not running" (runc's words) as
    # "process already finished" (NotFound, which clients such as the CRI plugin ignore);
    # any other error is "unknown".
    ident = stopped_task(ctr, "killstopped")
    result = ctr.run("tasks", "kill", "--signal", "SIGKILL", ident, check=False)
    assert result.returncode != 0, result.describe()
    assert "process already finished: not found" in result.stderr, result.describe()


def test_kill_with_a_signal_returns_the_exit_code(ctr, work_dir):
    ident = ctr.new_id("kill")
    out, err = os.path.join(work_dir, "out"), os.path.join(work_dir, "err")
    proc = ctr.launch("run", *ctr.runtime_flags, "--rm", IMAGE, ident, "sh", "-c",
                     "trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 0.1; done",
                     stdout_path=out, stderr_path=err)
    try:
        wait_for(lambda: "ready" in read_text(out) or proc.poll() is not None,
                 message="the trap to be set")
        ctr.run("tasks", "kill", "--signal", "SIGUSR1", ident)
    finally:
        result = ctr.finish(proc, out, err)
    assert result.returncode == 7, result.describe()
    assert "got-usr1" in result.stdout, result.describe()


def test_new_task_of_an_existing_container(ctr):
    # A container outlives its task: `tasks start` makes a new one (create + start again,
    # same container ID, with the runtime options the container was made with).
    ident = start_sleeper(ctr, "again")
    first = ctr.task_pid(ident)
    ctr.run("tasks", "kill", ident)  # SIGTERM: the trap exits 0
    ctr.wait_status(ident, "STOPPED")
    ctr.run("tasks", "delete", ident)
    ctr.run("tasks", "start", "--detach", "--fifo-dir", ctr.daemon.fifo_dir, ident)
    ctr.wait_status(ident, "RUNNING")
    assert ctr.task_pid(ident) != first
    result = ctr.run("tasks", "exec", "--fifo-dir", ctr.daemon.fifo_dir, "--exec-id", "e1",
                     ident, "echo", "again")
    assert lines(result.stdout) == ["again"], result.describe()


def test_metrics(ctr):
    ident = start_sleeper(ctr, "metrics")
    result = ctr.run("tasks", "metrics", ident, check=False)
    unsupported_if_quoted(result)
    assert result.ok, result.describe()
    names = [line.split()[0] for line in lines(result.stdout) if line.split()]
    assert any(n.startswith("memory.usage") for n in names), result.describe()
    assert "pids.current" in names or any(n.startswith("pids") for n in names), result.describe()


def test_run_process_and_security_options(ctr):
    script = ("id -u; pwd; echo \"$GREETING\"; touch /x 2>/dev/null || echo read-only; "
              "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status | tr -d '\\t'")
    result = ctr.run_container("--rm", "--read-only", "--cwd", "/tmp", "--env", "GREETING=hello",
                               "--seccomp", IMAGE, ctr.new_id("opts"), "sh", "-c", script)
    assert lines(result.stdout) == ["0", "/tmp", "hello", "read-only", "NoNewPrivs:1",
                                    "Seccomp:2"], result.describe()


def test_run_privileged(ctr):
    result = ctr.run_container("--rm", "--privileged", IMAGE, ctr.new_id("priv"), "sh", "-c",
                               "grep CapEff /proc/self/status | tr -d '\\t'; "
                               "test -e /dev/loop-control && echo host-devices")
    with open("/proc/self/status") as f:
        host_caps = [line.split()[1] for line in f if line.startswith("CapBnd:")][0]
    # Every capability of the host's bounding set, and the host's devices.
    assert lines(result.stdout) == [f"CapEff:{host_caps}", "host-devices"], result.describe()


def test_run_in_a_user_namespace(ctr):
    result = ctr.run_container("--rm", "--uidmap", "0:300000:65536", "--gidmap",
                               "0:300000:65536", IMAGE, ctr.new_id("userns"), "sh", "-c",
                               "id -u; cat /proc/self/uid_map; touch /tmp/f && stat -c %u /tmp/f")
    assert [" ".join(line.split()) for line in lines(result.stdout)] == \
        ["0", "0 300000 65536", "0"], result.describe()


def test_run_with_the_host_network(ctr):
    result = ctr.run_container("--rm", "--net-host", IMAGE, ctr.new_id("nethost"),
                               "readlink", "/proc/self/ns/net")
    assert lines(result.stdout) == [os.readlink("/proc/self/ns/net")], result.describe()


# --------------------------------------------------------------------------- cgroups
@needs_cgroup_resources
def test_pause_and_resume(ctr):
    ident = start_sleeper(ctr, "pause")
    pid = ctr.task_pid(ident)
    result = ctr.run("tasks", "pause", ident, check=False)
    unsupported_if_quoted(result)
    assert result.ok, result.describe()
    assert ctr.tasks()[ident] == "PAUSED"
    assert cgroup_frozen(pid)
    ctr.run("tasks", "resume", ident)
    assert ctr.tasks()[ident] == "RUNNING"
    assert not cgroup_frozen(pid)
    assert process_state(pid) in "RS"


def paused_task(ctr, hint: str) -> str:
    ident = start_sleeper(ctr, hint)
    result = ctr.run("tasks", "pause", ident, check=False)
    unsupported_if_quoted(result)
    assert result.ok, result.describe()
    return ident


@needs_cgroup_resources
def test_kill_of_a_paused_task(ctr):
    # runc thaws a paused container for SIGKILL (a process frozen by the cgroup v1 freezer
    # does not die until thawed).
    ident = paused_task(ctr, "killpaused")
    ctr.run("tasks", "kill", "--signal", "SIGKILL", ident)
    ctr.wait_status(ident, "STOPPED", timeout=20)


@needs_cgroup_resources
def test_kill_all_of_a_paused_task(ctr):
    # runc's `kill --all` freezes, signals every process, and thaws: the container ends
    # up thawed, and dies of SIGKILL.
    ident = paused_task(ctr, "killallpaused")
    ctr.run("tasks", "kill", "--all", "--signal", "SIGKILL", ident)
    ctr.wait_status(ident, "STOPPED", timeout=20)


@needs_cgroup_resources
def test_memory_limit_is_applied(ctr):
    ident = start_sleeper(ctr, "memlimit", "--memory-limit", str(64 * MiB))
    applied = cgroup_limit(ctr.task_pid(ident), "memory")
    if applied != 64 * MiB:
        raise NeedsCgroupResources(f"--memory-limit {64 * MiB} not applied: the cgroup has "
                                   f"{applied}")
    result = ctr.run("tasks", "metrics", ident)
    assert str(64 * MiB) in result.stdout, result.describe()


@needs_cgroup_resources
def test_cpu_limits_are_applied(ctr):
    ident = start_sleeper(ctr, "cpus", "--cpus", "0.5", "--cpu-shares", "512")
    directory, v2 = cgroup_dir(ctr.task_pid(ident), "cpu")
    if v2:
        applied = read_text(os.path.join(directory, "cpu.max")).split()
        wanted = ["50000", "100000"]
    else:
        applied = [read_text(os.path.join(directory, name)).strip()
                   for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares")]
        wanted = ["50000", "100000", "512"]
    if applied != wanted:
        raise NeedsCgroupResources(f"--cpus 0.5 --cpu-shares 512: the cgroup has {applied}")
