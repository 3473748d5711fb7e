"""runc's flags and commands as a script uses them, each shown to do what it says: `kill
ID 0`, exec's `--ignore-paused`, `--cgroup`, `-g`, `--cap`, `--no-new-privs`,
`--preserve-fds`, `-t` and `-p`, `$LISTEN_FDS` socket activation of `create` and `run`,
`list`'s owner, `help`, a bad global flag's log line, `events` into a closed pipe, and
the short forms (`-b`, `-a`, `-f`, `-v`, `-r`).

Where the `pyruntime` command has a C path (native/launcher/), a test runs through the
real launcher and with PYRUNTIME_PYTHON_ONLY=1 (the `mode_env` fixture), and a launcher
built without Python (`native_only`, as in test_native_commands.py) shows which of the
two did the work: a command that reaches Python fails there with "cannot run".
"""
from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import time

import pytest

from . import IS_RUNC, REPO_ROOT, ROOT_ONLY, pyruntime_only, read_pty, wait_for

pytestmark = ROOT_ONLY

MISSING_PYTHON = "/nonexistent/pyruntime-test/python"
HANDED_TO_PYTHON = f"cannot run {MISSING_PYTHON}"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
CAP_SYS_ADMIN = 21


@pytest.fixture(scope="module")
def native_only(tmp_path_factory) -> str:
    """The launcher, built as .ci/setup builds it, with no Python to hand over to."""
    if IS_RUNC:
        pytest.skip("the launcher's C path is pyruntime's")
    binary = tmp_path_factory.mktemp("native-only") / "pyruntime"
    subprocess.run([str(REPO_ROOT / "native" / "launcher" / "build.sh"), str(binary),
                    MISSING_PYTHON, "/nonexistent/pyruntime-test/script"], check=True)
    return str(binary)


@pytest.fixture(params=["launcher", "python-only"])
def mode_env(request) -> dict:
    """The environment of a command run through the launcher's C path where it has one,
    or with every command sent to Python."""
    if request.param == "python-only":
        if IS_RUNC:
            pytest.skip("PYRUNTIME_PYTHON_ONLY is pyruntime's")
        return dict(os.environ, PYRUNTIME_PYTHON_ONLY="1")
    return dict(os.environ)


def run_native(binary: str, runtime, *args) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "--root", runtime.root, *map(str, args)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def running(runtime, bundle, args=("sleep", "3600"), **changes) -> tuple[str, int]:
    cid = runtime.new_id()
    pid = runtime.run_detached(bundle(list(args), **changes), cid)
    return cid, pid


def stopped(runtime, bundle) -> str:
    cid = runtime.new_id()
    runtime.create(bundle(["true"]), cid)
    runtime.start(cid)
    runtime.wait_status(cid, "stopped")
    return cid


def ps_pids(runtime, cid: str) -> list[int]:
    return json.loads(runtime.run("ps", "-f", "json", cid, check=True).stdout)


def status_field(text: str, name: str) -> str:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    raise AssertionError(f"no {name} in {text!r}")


# --------------------------------------------------------------------------- kill 0
def test_kill_0_probes_a_live_container(runtime, bundle, mode_env):
    cid, _ = running(runtime, bundle)
    for args in ((cid, "0"), ("-a", cid, "0"), ("--all", cid, "0")):
        proc = runtime.run("kill", *args, env=mode_env)
        assert (proc.returncode, proc.stderr) == (0, ""), (args, proc.stderr)
    assert runtime.status(cid) == "running"


def test_kill_0_of_a_live_container_is_done_in_c(runtime, bundle, native_only):
    cid, _ = running(runtime, bundle)
    proc = run_native(native_only, runtime, "kill", cid, "0")
    assert (proc.returncode, proc.stderr) == (0, "")


def test_kill_0_of_a_stopped_container_fails_as_any_signal_does(runtime, bundle, mode_env):
    """As runc: "container not running" (an exit code of failure), not a refused signal."""
    cid = stopped(runtime, bundle)
    for signal in ("0", "TERM"):
        proc = runtime.run("kill", cid, signal, env=mode_env)
        assert proc.returncode != 0 and "container not running" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- exec --ignore-paused
def test_exec_into_a_paused_container_only_with_ignore_paused(runtime, bundle, mode_env,
                                                               work_dir):
    cid, init = running(runtime, bundle)
    runtime.run("pause", cid, check=True)
    try:
        proc = runtime.run("exec", cid, "echo", "ran", env=mode_env)
        assert proc.returncode != 0 and "paused" in proc.stderr, proc.stderr
        assert "ran" not in proc.stdout
        out_path = os.path.join(work_dir, "out")
        with open(out_path, "w+") as out:
            exec_proc = runtime.popen("exec", "--ignore-paused", cid, "echo", "ran",
                                      stdout=out, stderr=subprocess.STDOUT, env=mode_env)
            # The exec'd process is in the container's (frozen) cgroup and stays frozen.
            pid = wait_for(lambda: [p for p in ps_pids(runtime, cid) if p != init],
                           message="the exec'd process in the container's cgroup")[0]
            with open(f"/proc/{pid}/cgroup") as mine, open(f"/proc/{init}/cgroup") as its:
                assert mine.read() == its.read()
            time.sleep(0.5)  # a process that was not frozen would have finished by now
            assert exec_proc.poll() is None
            assert runtime.status(cid) == "paused"
    finally:
        runtime.run("resume", cid, check=True)
    assert exec_proc.wait(timeout=30) == 0
    with open(out_path) as f:
        assert f.read() == "ran\n"


def test_exec_ignore_paused_of_a_running_container(runtime, bundle, mode_env):
    cid, _ = running(runtime, bundle)
    proc = runtime.run("exec", "--ignore-paused", cid, "echo", "ran", env=mode_env)
    assert (proc.returncode, proc.stdout) == (0, "ran\n"), proc.stderr


@pytest.mark.parametrize("flags", [("--ignore-paused",), ("--cgroup", "memory:sub")])
def test_the_c_exec_path_hands_these_flags_to_python(runtime, bundle, native_only, flags):
    cid, init = running(runtime, bundle)
    runtime.run("pause", cid, check=True)
    try:
        proc = run_native(native_only, runtime, "exec", *flags, cid, "true")
        assert proc.returncode == 255 and HANDED_TO_PYTHON in proc.stderr, proc.stderr
        assert ps_pids(runtime, cid) == [init]
    finally:
        runtime.run("resume", cid, check=True)
    proc = run_native(native_only, runtime, "exec", *flags, cid, "true")
    assert proc.returncode == 255 and HANDED_TO_PYTHON in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- exec --cgroup
def _hierarchies() -> dict[str, str]:
    from pyruntime.cgroups.placement import mounted_hierarchies

    return mounted_hierarchies()


v1_only = pytest.mark.skipif("memory" not in _hierarchies() or "pids" not in _hierarchies(),
                             reason="the v1 memory and pids hierarchies (a v1 or hybrid host)")


def _cgroups_of(text: str) -> dict[str, str]:
    """hierarchy -> path, from the text of a /proc/PID/cgroup."""
    found = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        found[controllers] = path
    return found


def _container_dirs(pid: int) -> dict[str, str]:
    """/proc/PID/cgroup's key (as it writes the controllers) -> the directory."""
    hierarchies = _hierarchies()
    dirs = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for key, path in _cgroups_of(f.read()).items():
            mount = hierarchies.get(",".join(sorted(key.split(","))) if key else "")
            if key.startswith("name="):
                mount = hierarchies.get(key)
            if mount:
                dirs[key] = os.path.normpath(mount + "/" + path)
    return dirs


def _make_sub_cgroup(directory: str, name: str) -> None:
    path = os.path.join(directory, name)
    os.mkdir(path)
    for file in ("cpuset.cpus", "cpuset.mems"):  # an empty v1 cpuset takes no process
        if os.path.exists(os.path.join(path, file)):
            with open(os.path.join(directory, file)) as f, open(os.path.join(path, file), "w") as g:
                g.write(f.read())


@v1_only
@pytest.mark.parametrize("flags, moved", [
    (("--cgroup", "memory:sub"), {"memory"}),
    (("--cgroup", "memory,pids:sub"), {"memory", "pids"}),
    (("--cgroup", "memory:/sub", "--cgroup", "pids:sub"), {"memory", "pids"}),
    (("--cgroup", "sub"), None),  # every hierarchy
])
def test_exec_cgroup_puts_the_process_in_a_sub_cgroup(runtime, bundle, mode_env, flags, moved):
    cid, init = running(runtime, bundle)
    dirs = _container_dirs(init)
    moved = set(dirs) if moved is None else moved
    for key in moved:
        _make_sub_cgroup(dirs[key], "sub")
    proc = runtime.run("exec", *flags, cid, "sh", "-c",
                       "cat /proc/1/cgroup; echo ---; cat /proc/self/cgroup", env=mode_env)
    assert proc.returncode == 0, proc.stderr
    its, mine = (_cgroups_of(part) for part in proc.stdout.split("---\n"))
    assert set(mine) == set(its)
    for key, path in its.items():
        wanted = os.path.join(path, "sub") if key in moved else path
        assert mine[key] == wanted, key


@v1_only
@pyruntime_only
@pytest.mark.parametrize("flags, message", [
    (("--cgroup", "memory:nosuch"), "exec --cgroup: the sub-cgroup nosuch does not exist"),
    (("--cgroup", "nosuch"), "exec --cgroup: the sub-cgroup nosuch does not exist"),
    (("--cgroup", "memory:../escaped"), "exec --cgroup: ../escaped is not a sub-cgroup"),
    (("--cgroup", "memory:/.."), "exec --cgroup: /.. is not a sub-cgroup"),
    (("--cgroup", "nosuch:sub"), "exec --cgroup: unknown controller 'nosuch'"),
    (("--cgroup", "a:b:c"), "invalid --cgroup argument: a:b:c"),
    (("--cgroup", "sub", "--cgroup", "pids:sub"), "invalid --cgroup argument: sub (missing"),
])
def test_exec_cgroup_errors(runtime, bundle, mode_env, flags, message):
    cid, init = running(runtime, bundle)
    proc = runtime.run("exec", *flags, cid, "echo", "ran", env=mode_env)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert "ran" not in proc.stdout
    assert ps_pids(runtime, cid) == [init]


# --------------------------------------------------------------------------- $LISTEN_FDS
_SHOW_ACTIVATION = ('echo "env: [$LISTEN_FDS] [$LISTEN_PID]"; cat <&3; '
                    '[ -e /proc/self/fd/4 ] && cat <&4; true')


def _activated(runtime, work_dir: str, *args, listen_pid: str = "$$", env=None,
               stdout_path: str | None = None) -> subprocess.CompletedProcess:
    """The runtime started as systemd starts a socket-activated service: LISTEN_PID its
    own pid, LISTEN_FDS=1, fd 3 the "socket" (a file here), fd 4 another fd."""
    for name, text in (("fd3", "from-fd3\n"), ("fd4", "from-fd4\n")):
        with open(os.path.join(work_dir, name), "w") as f:
            f.write(text)
    script = (f'LISTEN_PID={listen_pid} LISTEN_FDS=1 exec "$@" 3<{work_dir}/fd3 '
              f'4<{work_dir}/fd4')
    return runtime.run(*args, prefix=["sh", "-c", script, "sh"], env=env,
                       stdout_path=stdout_path)


def test_listen_fds_run(runtime, bundle, work_dir, mode_env):
    b = bundle(["sh", "-c", _SHOW_ACTIVATION])
    proc = _activated(runtime, work_dir, "run", "--preserve-fds", "1", "--bundle",
                      b, runtime.new_id(), env=mode_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "env: [1] [1]\nfrom-fd3\nfrom-fd4\n"


def test_listen_fds_create_and_start(runtime, bundle, work_dir, mode_env):
    b = bundle(["sh", "-c", _SHOW_ACTIVATION])
    cid = runtime.new_id()
    out = os.path.join(work_dir, "out")
    proc = _activated(runtime, work_dir, "--debug", "create", "--bundle", b, cid,
                      env=mode_env, stdout_path=out)
    assert proc.returncode == 0, proc.stderr
    # Not even started and killed: it would hold the sockets meanwhile.
    assert "launcher" not in proc.stderr
    runtime.start(cid)
    runtime.wait_status(cid, "stopped")
    with open(out) as f:
        assert f.read() == "env: [1] [1]\nfrom-fd3\n"


def test_listen_fds_for_another_process_are_not_passed(runtime, bundle, work_dir, mode_env):
    b = bundle(["sh", "-c", _SHOW_ACTIVATION])
    proc = _activated(runtime, work_dir, "run", "--bundle", b, runtime.new_id(),
                      listen_pid="1", env=mode_env)
    assert proc.stdout == "env: [] []\n"
    assert "Bad file descriptor" in proc.stderr


# --------------------------------------------------------------------------- exec's process flags
def test_exec_additional_gids_are_added_to_the_containers(runtime, bundle):
    cid, _ = running(runtime, bundle, additional_gids=[5])
    for flags, groups in ((("-g", "6", "-g", "7"), "5,6,7"), (("--additional-gids", "6"), "5,6"),
                          ((), "5"), (("--user", "1001:1001", "-g", "9"), "5,9")):
        proc = runtime.run("exec", *flags, cid, "id", "-G")
        assert proc.returncode == 0, proc.stderr
        gid = "1001" if "--user" in flags else "0"
        assert proc.stdout.split() == [gid, *groups.split(",")], flags


@pytest.mark.parametrize("flag", ["--cap", "-c"])
def test_exec_cap_adds_a_capability(runtime, bundle, flag):
    cid, _ = running(runtime, bundle)
    for flags, present in (((), False), ((flag, "CAP_SYS_ADMIN"), True)):
        proc = runtime.run("exec", *flags, cid, "cat", "/proc/self/status")
        assert proc.returncode == 0, proc.stderr
        effective = int(status_field(proc.stdout, "CapEff"), 16)
        assert bool(effective & (1 << CAP_SYS_ADMIN)) is present, flags


def test_exec_no_new_privs(runtime, bundle):
    cid, _ = running(runtime, bundle, no_new_privileges=False)
    for flags, value in (((), "0"), (("--no-new-privs",), "1")):
        proc = runtime.run("exec", *flags, cid, "cat", "/proc/self/status")
        assert proc.returncode == 0, proc.stderr
        assert status_field(proc.stdout, "NoNewPrivs") == value, flags


def test_exec_preserve_fds(runtime, bundle, work_dir):
    cid, _ = running(runtime, bundle)
    with open(os.path.join(work_dir, "fd3"), "w") as f:
        f.write("from-fd3\n")
    prefix = ["sh", "-c", f'exec "$@" 3<{work_dir}/fd3', "sh"]
    proc = runtime.run("exec", "--preserve-fds", "1", cid, "sh", "-c", "cat <&3",
                       prefix=prefix)
    assert (proc.returncode, proc.stdout) == (0, "from-fd3\n"), proc.stderr
    proc = runtime.run("exec", cid, "sh", "-c", "cat <&3", prefix=prefix)
    assert proc.returncode != 0 and proc.stdout == ""


@pytest.mark.parametrize("flag", ["-t", "--tty"])
def test_foreground_exec_tty_without_a_console_socket(runtime, bundle, flag):
    """The runtime's own terminal is a pty; the process gets one of the container's."""
    cid, _ = running(runtime, bundle)
    outputs = {}
    for flags in ((flag,), ()):
        master, slave = pty.openpty()
        try:
            proc = runtime.popen("exec", *flags, cid, "sh", "-c",
                                 "tty; [ -t 0 ] && [ -t 1 ] && echo both-ttys; echo done",
                                 stdin=slave, stdout=slave, stderr=slave,
                                 start_new_session=True)
            os.close(slave)
            outputs[flags] = read_pty(master, until="done\r\n", timeout=30)
            assert proc.wait(timeout=30) == 0, outputs[flags]
        finally:
            os.close(master)
    assert re.match(r"/dev/pts/\d+\r\nboth-ttys\r\n", outputs[(flag,)]), outputs
    assert outputs[()].startswith("not a tty"), outputs  # stdio passed as they are


def test_exec_process_file_short_form(runtime, bundle, work_dir, mode_env):
    """A plain process file: the launcher's C path takes `-p` too."""
    cid, _ = running(runtime, bundle)
    path = os.path.join(work_dir, "process.json")
    with open(path, "w") as f:
        json.dump({"args": ["echo", "from-file"], "cwd": "/", "env": ["PATH=/bin"],
                   "user": {"uid": 0, "gid": 0}}, f)
    proc = runtime.run("exec", "-p", path, cid, env=mode_env)
    assert (proc.returncode, proc.stdout) == (0, "from-file\n"), proc.stderr


# --------------------------------------------------------------------------- other commands
def test_list_names_the_owner(runtime, bundle):
    cid, _ = running(runtime, bundle)
    for flags in (("--format", "json"), ("-f", "json")):
        proc = runtime.run("list", *flags, check=True)
        [entry] = [s for s in json.loads(proc.stdout) if s["id"] == cid]
        assert entry["owner"] == "root"
    table = runtime.run("list", check=True).stdout.splitlines()
    assert table[0].split()[-1] == "OWNER"
    assert [line.split()[-1] for line in table[1:] if line.split()[0] == cid] == ["root"]


def test_ps_format_short_form(runtime, bundle):
    cid, init = running(runtime, bundle)
    assert ps_pids(runtime, cid) == [init]


def test_kill_all_short_form(runtime, bundle):
    # sleep as PID 1 ignores TERM; the exec'd sleep does not.
    cid, init = running(runtime, bundle)
    runtime.run("exec", "-d", cid, "sleep", "300", check=True)
    assert len(ps_pids(runtime, cid)) == 2
    runtime.run("kill", "-a", cid, "TERM", check=True)
    wait_for(lambda: ps_pids(runtime, cid) == [init], message="the exec'd sleep to die")
    assert runtime.status(cid) == "running"


def test_bundle_short_form(runtime, bundle, work_dir):
    spec_dir = os.path.join(work_dir, "spec")
    os.mkdir(spec_dir)
    runtime.run("spec", "-b", spec_dir, check=True)
    assert os.path.isfile(os.path.join(spec_dir, "config.json"))
    proc = runtime.run("run", "-b", bundle(["echo", "from-run"]), runtime.new_id())
    assert (proc.returncode, proc.stdout) == (0, "from-run\n"), proc.stderr
    cid = runtime.new_id()
    runtime.run("create", "-b", bundle(["true"]), cid, check=True)
    assert runtime.status(cid) == "created"


def test_version_short_form(runtime):
    proc = runtime.run("-v")
    assert proc.returncode == 0 and "version" in proc.stdout.splitlines()[0], proc.stderr


@pytest.mark.parametrize("flags", [("--rootless", "true"), ("--rootless=false",),
                                   ("--rootless", "auto")])
def test_global_rootless_is_accepted(runtime, bundle, flags):
    cid, _ = running(runtime, bundle)
    proc = runtime.run(*flags, "state", cid)
    assert proc.returncode == 0 and json.loads(proc.stdout)["id"] == cid, proc.stderr


@v1_only
def test_update_resources_file_short_form(runtime, bundle, work_dir):
    cid, init = running(runtime, bundle)
    path = os.path.join(work_dir, "resources.json")
    with open(path, "w") as f:
        json.dump({"pids": {"limit": 42}}, f)
    runtime.run("update", "-r", path, cid, check=True)
    with open(os.path.join(_container_dirs(init)["pids"], "pids.max")) as f:
        assert f.read().strip() == "42"


def test_events_streams_stats(runtime, bundle, work_dir):
    cid, _ = running(runtime, bundle)
    with open(os.path.join(work_dir, "err"), "w+") as err:
        events = runtime.popen("events", "--interval", "1s", cid, stdout=subprocess.PIPE,
                               stderr=err, text=True)
        try:
            line = events.stdout.readline()
        finally:
            events.kill()
            events.wait(timeout=30)
            events.stdout.close()
    event = json.loads(line)
    assert (event["type"], event["id"]) == ("stats", cid)
    assert "memory" in event["data"] and "pids" in event["data"]


def test_events_into_a_closed_pipe_ends_quietly(runtime, bundle, work_dir):
    """`events ID | head -1`: no traceback, the status of a command SIGPIPE ended."""
    cid, _ = running(runtime, bundle)
    with open(os.path.join(work_dir, "err"), "w+") as err:
        events = runtime.popen("events", "--interval", "100ms", cid, stdout=subprocess.PIPE,
                               stderr=err)
        assert events.stdout.readline().startswith(b'{"type":"stats"')
        events.stdout.close()
        assert events.wait(timeout=30) in (141, -13)  # runc: killed by SIGPIPE
        err.seek(0)
        assert err.read() == ""


# --------------------------------------------------------------------------- help and the log
def test_help(runtime):
    proc = runtime.run("help")
    assert proc.returncode == 0 and " kill " in proc.stdout and " exec " in proc.stdout
    proc = runtime.run("h")
    assert proc.returncode == 0 and " kill " in proc.stdout
    proc = runtime.run("help", "kill")
    assert proc.returncode == 0 and "--all, -a" in proc.stdout, proc.stderr
    proc = runtime.run("help", "nosuch")
    assert proc.returncode == 3 and "No help topic for 'nosuch'" in proc.stderr


@pyruntime_only
@pytest.mark.parametrize("flags", [("--log-format", "json", "--bad"),
                                   ("--log-format=json", "-bad")])
def test_a_bad_global_flag_is_logged_as_the_flags_before_it_say(runtime, work_dir, flags):
    log = os.path.join(work_dir, "runtime.log")
    proc = runtime.run("--log", log, *flags, "list")
    assert proc.returncode == 1
    with open(log) as f:
        lines = f.read().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0], object_pairs_hook=list)
    assert [key for key, _ in record] == ["level", "msg", "time"]
    level, msg, stamp = (value for _, value in record)
    assert (level, msg) == ("error", f"flag provided but not defined: {flags[-1]} "
                                     "(global options)")
    assert RFC3339.match(stamp), stamp
    assert proc.stderr == f"pyruntime: {msg}\n"  # and on stderr, as runc's fatal errors
    # Without --log, on stderr in the format asked for.
    proc = runtime.run(*flags, "list")
    assert proc.returncode == 1
    assert [key for key, _ in json.loads(proc.stderr, object_pairs_hook=list)] == [
        "level", "msg", "time"]
