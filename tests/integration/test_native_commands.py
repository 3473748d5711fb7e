"""The `pyruntime` command does `start` and `delete` of plain containers in C
(native/launcher/), and hands every other case to the Python CLI before changing anything.

To see which of the two did the work, these tests also build the launcher with an
interpreter path that does not exist (`native_only`): there, a command that reaches Python
fails with "cannot run", and one done in C succeeds. The normal command then shows that
Python does the case right, and where both paths can report the same error, they are
made to and compared.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from . import REPO_ROOT, ROOT_ONLY, pyruntime_only, wait_for
from .bundle import bind_mount, hook, tmpfs_mount

pytestmark = [*ROOT_ONLY, pyruntime_only]

MISSING_PYTHON = "/nonexistent/pyruntime-test/python"
HANDED_TO_PYTHON = f"cannot run {MISSING_PYTHON}"


@pytest.fixture(scope="module")
def native_only(tmp_path_factory) -> str:
    """The launcher, built as .ci/setup builds it, with no Python to hand over to."""
    binary = tmp_path_factory.mktemp("native-only") / "pyruntime"
    subprocess.run([str(REPO_ROOT / "native" / "launcher" / "build.sh"), str(binary),
                    MISSING_PYTHON, "/nonexistent/pyruntime-test/script"], check=True)
    return str(binary)


def run_binary(binary: str, runtime, *args, env: dict | None = None,
               global_flags: tuple = ()) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "--root", runtime.root, *global_flags, *map(str, args)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
                          env=env)


def state_record(runtime, cid: str) -> dict:
    with open(os.path.join(runtime.root, cid, "state.json")) as f:
        return json.load(f)


def snapshot(runtime, cid: str) -> tuple:
    """What a command must leave alone when it hands over: the state directory's files
    and the cgroup directories."""
    directory = os.path.join(runtime.root, cid)
    files = sorted(os.listdir(directory)) if os.path.isdir(directory) else None
    paths = state_record(runtime, cid).get("cgroup_paths", {}) if files else {}
    return files, sorted(p for p in paths.values() if os.path.isdir(p))


# --------------------------------------------------------------------------- done in C
def test_start_of_a_created_container_needs_no_python(runtime, bundle, native_only):
    cid = runtime.new_id()
    runtime.create(bundle(["sleep", "3600"]), cid)
    proc = run_binary(native_only, runtime, "start", cid)
    assert (proc.returncode, proc.stderr) == (0, "")
    state = runtime.state(cid)
    assert state["status"] == "running"
    with open(f"/proc/{state['pid']}/cmdline") as f:
        assert f.read().split("\0")[:2] == ["sleep", "3600"]
    assert not os.path.exists(os.path.join(runtime.root, cid, "exec.fifo"))


def test_delete_of_a_stopped_container_needs_no_python(runtime, bundle, native_only):
    cid = runtime.new_id()
    runtime.create(bundle(["true"]), cid)
    runtime.start(cid)
    runtime.wait_status(cid, "stopped")
    cgroups = list(state_record(runtime, cid)["cgroup_paths"].values())
    assert cgroups and all(os.path.isdir(p) for p in cgroups)
    # A cgroup below the container's, as a container's own cgroup manager would make.
    os.mkdir(os.path.join(cgroups[0], "inner"))

    proc = run_binary(native_only, runtime, "delete", cid)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert not os.path.exists(os.path.join(runtime.root, cid))
    assert [p for p in cgroups if os.path.exists(p)] == []
    assert runtime.status(cid) is None


@pytest.mark.parametrize("flags", [("--force",), ("-f",), ()])
def test_delete_flags_the_native_path_takes(runtime, bundle, native_only, flags):
    cid = runtime.new_id()
    runtime.create(bundle(["true"]), cid)
    runtime.start(cid)
    runtime.wait_status(cid, "stopped")
    proc = run_binary(native_only, runtime, "delete", *flags, cid,
                      global_flags=("--log-format", "json", "--systemd-cgroup"))
    assert (proc.returncode, proc.stderr) == (0, "")
    assert runtime.status(cid) is None


# --------------------------------------------------------------------------- errors alike
def _without_times(text: str) -> str:
    return re.sub(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z', "TIME", text)


def _failed_start(runtime, bundle, binary: str, global_flags: tuple, env: dict) -> tuple:
    cid = runtime.new_id()
    runtime.create(bundle(["true"], hooks={"startContainer": [hook("exit 3")]}), cid)
    proc = run_binary(binary, runtime, "start", cid, global_flags=global_flags, env=env)
    return cid, proc


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("to_file", [False, True])
def test_a_failed_start_is_reported_as_python_reports_it(runtime, bundle, native_only,
                                                        work_dir, log_format, to_file):
    reports = {}
    for mode in ("native", "python"):
        log = os.path.join(work_dir, f"{mode}.log")
        flags = ("--log-format", log_format, *(("--log", log) if to_file else ()))
        env = dict(os.environ, PYRUNTIME_PYTHON_ONLY="1" if mode == "python" else "0")
        binary = native_only if mode == "native" else runtime.binary
        cid, proc = _failed_start(runtime, bundle, binary, flags, env)
        logged = open(log).read() if to_file else ""
        reports[mode] = (proc.returncode, _without_times(proc.stderr.replace(cid, "ID")),
                         _without_times(logged.replace(cid, "ID")))
        assert runtime.status(cid) == "stopped"
        assert not os.path.exists(os.path.join(runtime.root, cid, "exec.fifo"))
    assert reports["native"] == reports["python"]
    code, stderr, logged = reports["native"]
    assert code == 255
    assert "container ID: the process was not started" in (logged or stderr)
    if log_format == "json":
        line = json.loads((logged or stderr).splitlines()[0])
        assert line["level"] == "error" and line["msg"].startswith("container ID:")


def test_init_dying_during_start_is_reported_as_python_reports_it(runtime, bundle,
                                                                   native_only):
    reports = {}
    for mode in ("native", "python"):
        cid = runtime.new_id()
        runtime.create(bundle(["true"]), cid)
        init = runtime.pid(cid)
        # A stopped init never gets to write to the FIFO: `start` waits, watching it.
        os.kill(init, signal.SIGSTOP)
        env = dict(os.environ, PYRUNTIME_PYTHON_ONLY="1" if mode == "python" else "0")
        binary = native_only if mode == "native" else runtime.binary
        start = subprocess.Popen([binary, "--root", runtime.root, "start", cid],
                                 stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 env=env)
        fifo = os.path.join(runtime.root, cid, "exec.fifo")
        wait_for(lambda: _has_open(start.pid, fifo), timeout=30,
                 message="start did not open the exec FIFO")
        os.kill(init, signal.SIGKILL)
        _, errors = start.communicate(timeout=30)
        reports[mode] = (start.returncode, _without_times(errors.replace(cid, "ID")))
        runtime.reap()
    assert reports["native"] == reports["python"]
    assert reports["native"][0] == 255
    assert "container ID: init exited before start" in reports["native"][1]


def _has_open(pid: int, path: str) -> bool:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == path:
                return True
        except FileNotFoundError:
            continue
    return False


# --------------------------------------------------------------------------- handed over
def _running(runtime, bundle) -> str:
    cid = runtime.new_id()
    runtime.run_detached(bundle(["sleep", "3600"]), cid)
    return cid


def _created(runtime, bundle, **changes) -> str:
    cid = runtime.new_id()
    runtime.create(bundle(["sleep", "3600"], **changes), cid)
    return cid


def _stopped(runtime, bundle, args=("true",), **changes) -> str:
    cid = runtime.new_id()
    runtime.create(bundle(list(args), **changes), cid)
    runtime.start(cid)
    runtime.wait_status(cid, "stopped")
    return cid


def _stopped_with_a_process_left(runtime, bundle) -> str:
    # Without a PID namespace init's child outlives it, still in the container's cgroup.
    cid = _stopped(runtime, bundle, ("sh", "-c", "sleep 3600 & echo started"),
                   drop_namespaces=["pid"])
    return cid


def _with_record_changed(change):
    def make(runtime, bundle) -> str:
        cid = _stopped(runtime, bundle)
        path = os.path.join(runtime.root, cid, "state.json")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(change(text))
        return cid
    return make


_POSTSTART = {"poststart": [hook("true")]}
_POSTSTOP = {"poststop": [hook("true")]}


def _pid_start_as_a_float(text: str) -> str:
    # Python compares it equal to the int; the C reader wants an integer and hands over.
    return re.sub(r'"pid_start":(\d+)', r'"pid_start":\1.0', text)


# case: (make the container, the command, whether Python's command succeeds, its status after)
HANDOVERS = {
    "start of a running container": (_running, ["start"], False, "running"),
    "start with poststart hooks": (lambda r, b: _created(r, b, hooks=_POSTSTART), ["start"],
                                   True, "running"),
    "delete of a running container": (_running, ["delete"], False, "running"),
    "delete --force of a running container": (_running, ["delete", "--force"], True, None),
    "delete of a created container": (_created, ["delete"], True, None),
    "delete with poststop hooks": (lambda r, b: _stopped(r, b, hooks=_POSTSTOP), ["delete"],
                                   True, None),
    "delete while a process is left in the cgroup": (_stopped_with_a_process_left,
                                                     ["delete"], True, None),
    "delete of a record in a form it does not read": (
        _with_record_changed(_pid_start_as_a_float), ["delete"], True, None),
}


@pytest.mark.parametrize("case", HANDOVERS)
def test_what_the_native_commands_hand_to_python(runtime, bundle, native_only, case):
    make, command, python_succeeds, status_after = HANDOVERS[case]
    cid = make(runtime, bundle)
    before = snapshot(runtime, cid)
    status_before = runtime.status(cid)

    proc = run_binary(native_only, runtime, *command, cid)
    assert proc.returncode == 255 and HANDED_TO_PYTHON in proc.stderr, proc.stderr
    assert snapshot(runtime, cid) == before
    assert runtime.status(cid) == status_before

    proc = run_binary(runtime.binary, runtime, *command, cid)
    assert (proc.returncode == 0) is python_succeeds, proc.stderr
    runtime.reap()
    assert runtime.status(cid) == status_after


def test_a_systemd_units_container_is_not_deleted_in_c(runtime, bundle, native_only):
    cid = _stopped(runtime, bundle)
    path = os.path.join(runtime.root, cid, "state.json")
    with open(path) as f:
        original = f.read()
    with open(path, "w") as f:
        f.write(original[:-1] + ',"cgroup_unit":"test-native.scope"}')
    try:
        before = snapshot(runtime, cid)
        proc = run_binary(native_only, runtime, "delete", cid)
        assert proc.returncode == 255 and HANDED_TO_PYTHON in proc.stderr, proc.stderr
        assert snapshot(runtime, cid) == before
    finally:
        # Python would ask systemd to stop the unit; this host's cleanup must not.
        with open(path, "w") as f:
            f.write(original)


@pytest.mark.parametrize("args", [
    ("--debug", "delete", "ID"),
    ("delete", "ID", "ID"),
    ("delete", "--force=true", "ID"),
    ("--log-format", "xml", "delete", "ID"),
    ("--log", "", "delete", "ID"),
    ("delete", "ID", "--force"),
    ("start", "--help"),
    ("-h", "start", "ID"),
    ("start", "no-such-container"),
    ("delete", "bad/id"),
])
def test_other_forms_of_the_commands_go_to_python(runtime, bundle, native_only, args):
    cid = _stopped(runtime, bundle)
    before = snapshot(runtime, cid)
    proc = run_binary(native_only, runtime, *(cid if a == "ID" else a for a in args))
    assert proc.returncode == 255 and HANDED_TO_PYTHON in proc.stderr, proc.stderr
    assert snapshot(runtime, cid) == before


def test_pyruntime_python_only_sends_every_command_to_python(runtime, bundle, native_only):
    cid = _stopped(runtime, bundle)
    env = dict(os.environ, PYRUNTIME_PYTHON_ONLY="1")
    proc = run_binary(native_only, runtime, "delete", cid, env=env)
    assert HANDED_TO_PYTHON in proc.stderr
    assert os.path.isdir(os.path.join(runtime.root, cid))


def test_delete_takes_the_containers_lock(runtime, bundle, native_only):
    import fcntl

    cid = _stopped(runtime, bundle)
    directory = os.path.join(runtime.root, cid)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        delete = subprocess.Popen([native_only, "--root", runtime.root, "delete", cid],
                                  stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        assert delete.poll() is None and os.path.isdir(directory)
    finally:
        os.close(fd)
    _, errors = delete.communicate(timeout=30)
    assert delete.returncode == 0, errors
    assert not os.path.exists(directory)


# --------------------------------------------------------------------------- exec in C
# What an exec'd process can see of how it was set up: ids and groups, capability sets,
# no_new_privs, cgroups, namespaces, limits, umask, cwd, environment, open fds.
_PROBE = ("id; pwd; umask; ulimit -n; ulimit -s; env | sort; "
          "grep -E '^(Uid|Gid|Groups|Cap|NoNewPrivs|Seccomp)' /proc/self/status; "
          "cat /proc/self/cgroup; ls -l /proc/self/ns | sed 's/.* -> //'; ls /proc/self/fd")


def _exec_both_ways(runtime, native_only, cid: str, *args):
    """The same exec through the C path (a launcher with no Python) and through Python."""
    native = run_binary(native_only, runtime, "exec", *args[:-1], cid, *args[-1])
    python = run_binary(runtime.binary, runtime, "exec", *args[:-1], cid, *args[-1],
                        env=dict(os.environ, PYRUNTIME_PYTHON_ONLY="1"))
    return native, python


_DETAILED = dict(
    user={"uid": 1000, "gid": 1000, "additionalGids": [5, 7], "umask": 0o027},
    capabilities={"bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
                  "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                  "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                  "inheritable": ["CAP_NET_BIND_SERVICE"],
                  "ambient": ["CAP_NET_BIND_SERVICE", "CAP_KILL"]},
    rlimits={"RLIMIT_NOFILE": (321, 654), "RLIMIT_STACK": (4 << 20, 8 << 20)},
    no_new_privileges=True, env={"FROM_CONFIG": "1", "SHARED": "config"}, cwd="/tmp",
)


@pytest.mark.parametrize("flags", [
    (),
    ("--env", "SHARED=flag", "-e", "EXTRA=x y", "--cwd", "/etc", "--user", "0:0"),
    ("-u", "1234",),
    ("--",),
])
def test_exec_in_c_sets_up_the_process_as_python_does(runtime, bundle, native_only, flags):
    cid = runtime.new_id()
    runtime.run_detached(bundle(["sleep", "3600"], **_DETAILED), cid)
    native, python = _exec_both_ways(runtime, native_only, cid, *flags,
                                     ["sh", "-c", _PROBE])
    assert (native.returncode, native.stderr) == (0, ""), native.stderr
    assert (python.returncode, python.stderr) == (0, ""), python.stderr
    assert native.stdout == python.stdout
    # And the probe saw what the config and the flags ask for, not just the same twice.
    lines = native.stdout.splitlines()
    status = runtime.state(cid)
    with open(f"/proc/{status['pid']}/cgroup") as f:
        assert set(f.read().splitlines()) <= set(lines)
    if flags[:1] == ("--env",):
        assert {"SHARED=flag", "EXTRA=x y", "FROM_CONFIG=1", "/etc"} <= set(lines)
        assert lines[0].startswith("uid=0(root) gid=0(root)")
    elif flags[:1] == ("-u",):
        assert lines[0].startswith("uid=1234 gid=1000")
    else:
        assert {"SHARED=config", "/tmp", "0027", "321"} <= set(lines)
        assert lines[0].startswith("uid=1000 gid=1000 groups=5,7")
    assert "NoNewPrivs:\t1" in lines
    assert lines[-4:] == ["0", "1", "2", "3"]  # stdio, and ls's own directory


def test_exec_in_c_exit_codes_and_signals(runtime, bundle, native_only):
    cid = runtime.new_id()
    runtime.run_detached(bundle(["sleep", "3600"], mounts=[tmpfs_mount("/tmp")]), cid)
    for script, code in (("exit 0", 0), ("exit 3", 3), ("kill -9 $$", 137)):
        proc = run_binary(native_only, runtime, "exec", cid, "sh", "-c", script)
        assert (proc.returncode, proc.stderr) == (code, ""), (script, proc.stderr)
    # Signals to the runtime reach the process, as a foreground runc exec passes them on.
    marker = f"/proc/{runtime.state(cid)['pid']}/root/tmp/trapped"
    exec_proc = subprocess.Popen(
        [native_only, "--root", runtime.root, "exec", cid, "sh", "-c",
         "trap 'exit 7' TERM; touch /tmp/trapped; while :; do sleep 0.05; done"],
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: os.path.exists(marker), timeout=20)
    exec_proc.send_signal(signal.SIGTERM)
    _, errors = exec_proc.communicate(timeout=20)
    assert (exec_proc.returncode, errors) == (7, "")


def test_exec_in_c_passes_no_fd_and_holds_no_lock_while_it_runs(runtime, bundle, native_only):
    import fcntl

    cid = runtime.new_id()
    runtime.run_detached(bundle(["sleep", "3600"], mounts=[tmpfs_mount("/tmp")]), cid)
    marker = f"/proc/{runtime.state(cid)['pid']}/root/tmp/fds"
    read_end, write_end = os.pipe()  # inheritable, as an engine's stray fd would be
    os.set_inheritable(write_end, True)
    try:
        exec_proc = subprocess.Popen(
            [native_only, "--root", runtime.root, "exec", cid, "sh", "-c",
             "ls /proc/self/fd > /tmp/fds; sleep 30"],
            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            pass_fds=(write_end,))
        wait_for(lambda: os.path.exists(marker) and os.path.getsize(marker) > 0, timeout=20)
        with open(marker) as f:
            assert f.read().split() == ["0", "1", "2", "3"]
        directory = os.open(os.path.join(runtime.root, cid), os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(directory, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: delete can go on
        finally:
            os.close(directory)
    finally:
        os.close(read_end)
        os.close(write_end)
    runtime.run("kill", "--all", cid, "KILL", check=True)
    exec_proc.communicate(timeout=20)
    assert exec_proc.returncode == 137


def _paused(runtime, bundle) -> str:
    cid = _running(runtime, bundle)
    runtime.run("pause", cid, check=True)
    return cid


def _seccomp_value_beyond_a_long_long(runtime, bundle) -> str:
    rule = {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 1, "value": (1 << 64) - 1, "op": "SCMP_CMP_EQ"}]}
    return _created(runtime, bundle, seccomp={"defaultAction": "SCMP_ACT_ALLOW",
                                              "syscalls": [rule]})


def _user_namespace(runtime, bundle) -> str:
    return _created(runtime, bundle, uid_mappings=[(0, 100000, 65536)],
                    gid_mappings=[(0, 100000, 65536)])


def _process_setting(member: str, value: dict):
    """A created container whose process has `member`, which Python sets and C does not
    (an exec without --process takes it from the config)."""
    def make(runtime, bundle) -> str:
        return _created(runtime, bundle,
                        mutate=lambda config: config["process"].update({member: value}))
    return make


# case: (make the container, the exec's flags before the ID, its command)
EXEC_HANDOVERS = {
    "a stopped container": (_stopped, (), ["true"]),
    "a paused container": (_paused, (), ["true"]),
    "a seccomp value the C reader does not take": (_seccomp_value_beyond_a_long_long, (),
                                                   ["true"]),
    "a user namespace": (_user_namespace, (), ["true"]),
    "an I/O priority": (_process_setting("ioPriority", {"class": "IOPRIO_CLASS_BE",
                                                        "priority": 7}), (), ["true"]),
    "a scheduler": (_process_setting("scheduler", {"policy": "SCHED_BATCH"}), (), ["true"]),
    "a command not found": (_running, (), ["no-such-command"]),
    "a cwd that is not there": (_running, ("--cwd", "/no/such/dir"), ["true"]),
    "--tty": (_running, ("--tty",), ["true"]),
    "--env=VALUE": (_running, ("--env=A=B",), ["true"]),
    "-g": (_running, ("-g", "5"), ["true"]),
    "--cap": (_running, ("--cap", "CAP_SYS_ADMIN"), ["true"]),
    "a relative --cwd": (_running, ("--cwd", "tmp"), ["true"]),
    "a --user Python reads differently": (_running, ("--user", "+5"), ["true"]),
    "no command": (_running, (), []),
}


@pytest.mark.parametrize("case", EXEC_HANDOVERS)
def test_what_exec_hands_to_python(runtime, bundle, native_only, case):
    make, flags, command = EXEC_HANDOVERS[case]
    cid = make(runtime, bundle)
    before = snapshot(runtime, cid)
    status_before = runtime.status(cid)
    proc = run_binary(native_only, runtime, "exec", *flags, cid, *command)
    assert proc.returncode == 255 and HANDED_TO_PYTHON in proc.stderr, proc.stderr
    assert snapshot(runtime, cid) == before
    assert runtime.status(cid) == status_before
    if status_before in ("running", "created"):
        pids = json.loads(runtime.run("ps", "--format", "json", cid).stdout)
        assert pids == [runtime.state(cid)["pid"]]  # nothing of the attempt is left
    if status_before == "paused":
        runtime.run("resume", cid)


def _process_file(work_dir: str, name: str, **members) -> str:
    process = {"args": ["sh", "-c", _PROBE], "cwd": "/", "env": ["PATH=/bin:/usr/bin"]}
    process.update(members)
    path = os.path.join(work_dir, name)
    with open(path, "w") as f:
        json.dump(process, f)
    return path


def test_exec_in_c_of_a_process_file_is_set_up_as_python_does(runtime, bundle, native_only,
                                                              work_dir):
    cid = runtime.new_id()
    runtime.run_detached(bundle(["sleep", "3600"], **_DETAILED), cid)
    path = _process_file(
        work_dir, "process.json", cwd="/etc", terminal=False, oomScoreAdj=100,
        apparmorProfile="", noNewPrivileges=True,
        env=["PATH=/bin:/usr/bin", "ONLY=file", "ONLY=twice"],
        user={"uid": 42, "gid": 43, "additionalGids": [44], "umask": 0o077},
        capabilities={"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
                      "permitted": ["CAP_KILL"], "inheritable": ["CAP_KILL"],
                      "ambient": ["CAP_KILL"]},
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 99, "hard": 100}])
    native, python = _exec_both_ways(runtime, native_only, cid, "--process", path, [])
    assert (native.returncode, native.stderr) == (0, ""), native.stderr
    assert (python.returncode, python.stderr) == (0, ""), python.stderr
    assert native.stdout == python.stdout
    lines = native.stdout.splitlines()
    assert lines[0] == "uid=42 gid=43 groups=44"
    assert {"/etc", "0077", "99", "ONLY=twice", "CapAmb:\t0000000000000020"} <= set(lines)
    assert "SHARED=config" not in lines  # the file is the whole process


def test_exec_in_c_detached_with_a_pid_file(runtime, bundle, native_only, work_dir):
    cid = runtime.new_id()
    runtime.run_detached(bundle(["sleep", "3600"]), cid)
    init = runtime.state(cid)["pid"]
    for flags, pid_file in (((), "exec.pid"), (("--process", _process_file(
            work_dir, "sleep.json", args=["sleep", "300"])), os.path.join(work_dir, "p.pid"))):
        command = [] if flags else ["sleep", "300"]
        # Not pipes: the detached process keeps its stdio open.
        with open(os.path.join(work_dir, "err"), "w+") as err:
            proc = subprocess.run([native_only, "--root", runtime.root, "exec", "--detach",
                                   "--pid-file", pid_file, *flags, cid, *command],
                                  cwd=work_dir, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=err, timeout=30)
            err.seek(0)
            assert (proc.returncode, err.read()) == (0, "")
        with open(os.path.join(work_dir, pid_file)) as f:
            pid = int(f.read())
        assert f".{os.path.basename(pid_file)}.tmp" not in os.listdir(work_dir)
        with open(f"/proc/{pid}/cmdline") as f:
            assert f.read().split("\0")[:2] == ["sleep", "300"]
        with open(f"/proc/{pid}/cgroup") as mine, open(f"/proc/{init}/cgroup") as theirs:
            assert mine.read() == theirs.read()
        for name in ("mnt", "pid", "net", "ipc", "uts"):
            assert os.readlink(f"/proc/{pid}/ns/{name}") == os.readlink(f"/proc/{init}/ns/{name}")
    pids = json.loads(runtime.run("ps", "--format", "json", cid).stdout)
    assert len(pids) == 3


_FILE_HANDOVERS = {
    "a terminal": dict(terminal=True),
    "a member it does not read": dict(commandLine="sh"),
    "a console size": dict(consoleSize={"height": 10, "width": 10}),
    "an I/O priority": dict(ioPriority={"class": "IOPRIO_CLASS_BE"}),
    "a scheduler": dict(scheduler={"policy": "SCHED_BATCH", "nice": 5}),
    "a user name": dict(user={"uid": 0, "gid": 0, "username": "root"}),
    # (uid_t)-1 to setresuid changes nothing: the process would stay root.
    "a uid of -1": dict(user={"uid": -1, "gid": 0}),
    "a uid of 2^32-1": dict(user={"uid": 4294967295, "gid": 0}),
    # Lowering twice would work (raising needs CAP_SYS_RESOURCE, which this host lacks).
    "a duplicate rlimit": dict(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 20, "hard": 20},
                                        {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10}]),
    "a soft limit above the hard": dict(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 9,
                                                  "hard": 8}]),
    "an env item without =": dict(env=["PATH"]),
    "a relative cwd": dict(cwd="tmp"),
    "no args": dict(args=[]),
    "a number for a boolean": dict(noNewPrivileges=1),
    "an out of range oomScoreAdj": dict(oomScoreAdj=1001),
    "an AppArmor profile": dict(apparmorProfile="unconfined"),
    "an unknown capability": dict(capabilities={"bounding": ["CAP_NOPE"]}),
    "a capability set that is not a list": dict(capabilities={"bounding": ""}),
    "args that are not a list": dict(args="sh"),
}


@pytest.mark.parametrize("case", _FILE_HANDOVERS)
def test_what_exec_of_a_process_file_hands_to_python(runtime, bundle, native_only, work_dir,
                                                     case):
    cid = _running(runtime, bundle)
    path = _process_file(work_dir, "process.json", **_FILE_HANDOVERS[case])
    before = snapshot(runtime, cid)
    proc = run_binary(native_only, runtime, "exec", "--process", path, cid)
    assert proc.returncode == 255 and HANDED_TO_PYTHON in proc.stderr, proc.stderr
    assert snapshot(runtime, cid) == before
    assert json.loads(runtime.run("ps", "--format", "json", cid).stdout) == [
        runtime.state(cid)["pid"]]


@pytest.mark.parametrize("args", [
    ("--process", "{file}", "ID", "true"),
    ("--process", "{file}", "--env", "A=B", "ID"),
    ("--process", "/no/such/file.json", "ID"),
    ("--process", "{bad}", "ID"),
    ("--pid-file", "/no/such/dir/x.pid", "ID", "true"),
    ("--pid-file=x.pid", "ID", "true"),
    ("--pid-file", "a/../x.pid", "ID", "true"),
    ("--detach=true", "ID", "true"),
    ("--no-new-privs", "ID", "true"),
    ("--preserve-fds", "1", "ID", "true"),
])
def test_other_forms_of_exec_go_to_python(runtime, bundle, native_only, work_dir, args):
    cid = _running(runtime, bundle)
    bad = os.path.join(work_dir, "bad.json")
    with open(bad, "w") as f:
        f.write('{"args": ["true"], "cwd": "/",}')
    values = {"ID": cid, "{file}": _process_file(work_dir, "p.json"), "{bad}": bad}
    before = snapshot(runtime, cid)
    proc = subprocess.run([native_only, "--root", runtime.root, "exec",
                           *(values.get(a, a) for a in args)], cwd=work_dir,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 255 and HANDED_TO_PYTHON in proc.stderr, proc.stderr
    assert snapshot(runtime, cid) == before
    assert not [n for n in os.listdir(work_dir) if n.endswith(".pid") or n.endswith(".tmp")]


def _profile(extra_rules: int = 0) -> dict:
    rules = [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        # Two conditions on one argument: one rule each (either matching denies).
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                  {"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]},
        {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["no_such_syscall_at_all"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},  # the default: skipped
    ]
    # Past 32 rules libseccomp is asked for a binary tree.
    spare = ["acct", "swapon", "swapoff", "reboot", "sethostname", "setdomainname",
             "init_module", "delete_module", "kexec_load", "pivot_root", "syslog",
             "quotactl", "nfsservctl", "lookup_dcookie", "perf_event_open", "bpf",
             "userfaultfd", "open_by_handle_at", "name_to_handle_at", "add_key",
             "request_key", "keyctl", "uselib", "vhangup", "iopl", "ioperm", "ptrace",
             "process_vm_readv", "process_vm_writev", "kcmp", "finit_module", "fanotify_init"]
    rules += [{"names": [name], "action": "SCMP_ACT_ERRNO"} for name in spare[:extra_rules]]
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64",
                                                                 "SCMP_ARCH_X86"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"], "syscalls": rules}


@pytest.mark.parametrize("no_new_privileges", [False, True])
@pytest.mark.parametrize("extra_rules", [0, 32])
def test_exec_in_c_loads_the_containers_seccomp_filter_as_python_does(
        runtime, bundle, native_only, no_new_privileges, extra_rules):
    cid = runtime.new_id()
    runtime.run_detached(bundle(["sleep", "3600"], seccomp=_profile(extra_rules),
                                no_new_privileges=no_new_privileges,
                                mounts=[tmpfs_mount("/tmp")]), cid)
    probe = ("mkdir /tmp/made; kill -0 1; echo kill-0=$?; kill -10 1; echo kill-10=$?; "
             "kill -CONT 1; echo kill-cont=$?; chroot / true; echo chroot=$?; "
             "grep -E '^(Seccomp|NoNewPrivs)' /proc/self/status")
    native, python = _exec_both_ways(runtime, native_only, cid, ["sh", "-c", "{ " + probe + "; } 2>&1"])
    assert (native.returncode, native.stderr) == (0, ""), native.stderr
    assert native.stdout == python.stdout
    lines = native.stdout.splitlines()
    assert "mkdir: can't create directory '/tmp/made': Permission denied" in lines
    assert {"kill-0=1", "kill-10=1", "kill-cont=0", "Seccomp:\t2",
            "Seccomp_filters:\t1"} <= set(lines)
    assert any("Function not implemented" in line for line in lines)  # chroot's ENOSYS
    assert f"NoNewPrivs:\t{int(no_new_privileges)}" in lines


# --------------------------------------------------------------------------- kill in C
def _trapping(runtime, bundle, out_dir: str) -> str:
    """A container whose init writes the name of each signal it gets into OUT/got."""
    script = ("for s in TERM USR1 HUP; do trap \"echo $s >> /tmp/out/got\" $s; done; "
              "touch /tmp/out/ready; while :; do sleep 0.05; done")
    cid = runtime.new_id()
    # The mount point is made in a tmpfs: the rootfs is shared and read-only.
    runtime.run_detached(bundle(["sh", "-c", script], mounts=[
        tmpfs_mount("/tmp"), bind_mount(out_dir, "/tmp/out")]), cid)
    wait_for(lambda: os.path.exists(os.path.join(out_dir, "ready")), timeout=20)
    return cid


def _got(out_dir: str, count: int) -> list[str]:
    path = os.path.join(out_dir, "got")
    wait_for(lambda: os.path.exists(path) and len(open(path).read().split()) >= count,
             timeout=20)
    with open(path) as f:
        return f.read().split()


def test_kill_needs_no_python(runtime, bundle, native_only, work_dir):
    out_dir = os.path.join(work_dir, "out")
    os.makedirs(out_dir)
    cid = _trapping(runtime, bundle, out_dir)
    forms = [(), ("USR1",), ("SIGHUP",), ("term",), ("sigusr1",), ("1",)]
    for count, form in enumerate(forms, 1):
        proc = run_binary(native_only, runtime, "kill", cid, *form)
        assert (proc.returncode, proc.stderr) == (0, ""), (form, proc.stderr)
        _got(out_dir, count)
    assert _got(out_dir, len(forms)) == ["TERM", "USR1", "HUP", "TERM", "USR1", "HUP"]
    runtime.run("pause", cid, check=True)
    proc = run_binary(native_only, runtime, "kill", cid, "TERM")  # queued while frozen
    assert (proc.returncode, proc.stderr) == (0, "")
    runtime.run("resume", cid, check=True)
    assert _got(out_dir, 7)[-1] == "TERM"
    proc = run_binary(native_only, runtime, "kill", cid, "KILL")
    assert (proc.returncode, proc.stderr) == (0, "")
    runtime.wait_status(cid, "stopped")


# case: (make the container, kill's arguments after the ID, Python's exit code, status after)
KILL_HANDOVERS = {
    "a stopped container": (_stopped, (), 255, "stopped"),
    "SIGKILL to a paused container": (_paused, ("KILL",), 0, "stopped"),
    "--all": (_running, ("--all",), 0, "running"),  # TERM: sleep as PID 1 ignores it
    "a real-time signal by name": (_running, ("SIGRTMIN+1",), 0, "running"),
    "an unknown signal": (_running, ("NOSUCH",), 255, "running"),
    "a number out of range": (_running, ("65",), 255, "running"),
    "a second argument": (_running, ("TERM", "TERM"), 1, "running"),  # a usage error
}


@pytest.mark.parametrize("case", KILL_HANDOVERS)
def test_what_kill_hands_to_python(runtime, bundle, native_only, case):
    make, args, python_code, status_after = KILL_HANDOVERS[case]
    cid = make(runtime, bundle)
    status_before = runtime.status(cid)
    argv = ("kill", *args, cid) if args[:1] == ("--all",) else ("kill", cid, *args)
    proc = run_binary(native_only, runtime, *argv)
    assert proc.returncode == 255 and HANDED_TO_PYTHON in proc.stderr, proc.stderr
    assert runtime.status(cid) == status_before
    proc = run_binary(runtime.binary, runtime, *argv)
    assert proc.returncode == python_code, proc.stderr
    if status_after == "stopped":
        runtime.wait_status(cid, "stopped")
    else:
        assert runtime.status(cid) == status_after
