"""The `pyruntime` command's early init (native/launcher/early_init.c,
pyruntime/oci/early_init.py): for `create` and `run` of a config whose init the runtime
would fork itself, the launcher starts init as a fresh interpreter next to the runtime's.

With `--debug` the runtime says when it adopts such an init; PYRUNTIME_PYTHON_ONLY=1
turns the launcher's work off, so the same container can be made both ways and compared.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from . import ROOT_ONLY, pyruntime_only, wait_for
from .bundle import bind_mount, hook, tmpfs_mount

pytestmark = [*ROOT_ONLY, pyruntime_only]

ADOPTED = "was started by the command's launcher"
UNFIT = "does not fit this container"

# What a container is made of, as far as init makes it: ids, capabilities, limits, cwd,
# env, namespaces, cgroups, mounts, hostname, fds, and the protected paths.
_PROBE = ("id; pwd; umask; ulimit -n; env | sort; hostname; "
          "grep -E '^(Uid|Gid|Groups|Cap|NoNewPrivs|Seccomp|Cpus_allowed_list)' "
          "/proc/self/status; "
          "cat /proc/self/cgroup; ls -l /proc/self/ns | sed 's/.* -> //'; ls /proc/self/fd; "
          "cut -d' ' -f2-4 /proc/self/mounts; ls -l /dev /proc/kcore; "
          "echo x 2>&1 > /proc/sys/kernel/domainname; echo pid $$")

_DETAILED = dict(
    hostname="early", cwd="/tmp/work", env={"FROM_CONFIG": "1"}, user="1000:1000",
    additional_gids=[5, 20], umask=0o027, capabilities=["CAP_KILL", "CAP_CHOWN"],
    rlimits={"RLIMIT_NOFILE": (77, 99)},
    mounts=[tmpfs_mount("/tmp"), bind_mount("/etc", "/tmp/host-etc", "rbind", "ro")],
)


def debug_run(runtime, *args, python_only: bool = False, global_flags=()):
    env = dict(os.environ, PYRUNTIME_PYTHON_ONLY="1" if python_only else "0")
    return runtime.run("--debug", *global_flags, *args, env=env)


def init_processes(word: str) -> list[int]:
    """Live host processes with `word` (a bundle, an ID) as an argument: an early init
    of a bundle still running Python, a launcher's warm-up child."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if word.encode() in argv:
            found.append(int(name))
    return found


def _host_or_new(probe_output: str) -> str:
    """Namespace links (`net:[4026532175]`) as `net:host` or `net:new`: each container
    has new ones of its own."""
    def replace(match: re.Match) -> str:
        kind = match.group(1)
        host = os.readlink(f"/proc/self/ns/{kind}")
        return f"{kind}:{'host' if match.group(0) == host else 'new'}"

    return re.sub(r"(?m)^(\w+):\[\d+\]$", replace, probe_output)


def test_run_adopts_the_init_the_launcher_started(runtime, bundle):
    b = bundle(["sh", "-c", "echo pid $$"])
    proc = debug_run(runtime, "run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    assert ADOPTED in proc.stderr
    assert proc.stdout == "pid 1\n"


def test_early_and_forked_init_make_the_same_container(runtime, bundle):
    b = bundle(["sh", "-c", _PROBE], **_DETAILED)
    outputs = {}
    for python_only in (False, True):
        cid = runtime.new_id()
        proc = debug_run(runtime, "run", "--bundle", b, cid, python_only=python_only)
        assert proc.returncode == 0, proc.stderr
        assert (ADOPTED in proc.stderr) is not python_only
        outputs[python_only] = _host_or_new(proc.stdout.replace(cid, "ID"))
    assert outputs[False] == outputs[True]
    # And it is the container the config asks for, not just the same one twice.
    lines = outputs[False].splitlines()
    assert lines[0].startswith("uid=1000 gid=1000 groups=5"), lines[0]
    assert {"/tmp/work", "0027", "77", "FROM_CONFIG=1", "early", "pid 1"} <= set(lines)
    assert any(line.startswith("/tmp/host-etc ") and " ro," in line for line in lines)
    assert {"pid:new", "net:new", "mnt:new", "user:host"} <= set(lines)


def test_the_runtime_of_a_run_is_a_subreaper_without_loading_init_s_modules(
        runtime, bundle, work_dir):
    """The launcher makes the runtime of a `run` a child subreaper when it starts the
    early init (runc's `run` is one too), so the runtime need not import python-prctl's
    module for it; nor does it load the cffi module. A poststart hook, the runtime's
    child, reads the runtime's maps, and orphans a process of its own, which must be
    reparented to the runtime."""
    script = (f"echo $PPID > {work_dir}/runtime; cat /proc/$PPID/maps > {work_dir}/maps; "
              f"sh -c 'sleep 0.3; grep PPid /proc/$$/status > {work_dir}/orphan.tmp; "
              f"mv {work_dir}/orphan.tmp {work_dir}/orphan' </dev/null >/dev/null 2>&1 &")
    b = bundle(["sleep", "1"], hooks={"poststart": [hook(script)]})
    proc = debug_run(runtime, "run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    assert ADOPTED in proc.stderr
    with open(os.path.join(work_dir, "runtime")) as f:
        runtime_pid = int(f.read())
    with open(os.path.join(work_dir, "maps")) as f:
        maps = f.read()
    assert "python3" in maps  # the runtime's own, read before it exited
    assert "_prctl" not in maps and "_cffi_backend" not in maps
    wait_for(lambda: os.path.exists(os.path.join(work_dir, "orphan")),
             message="the orphaned process to say who its parent is")
    with open(os.path.join(work_dir, "orphan")) as f:
        assert f.read().split() == ["PPid:", str(runtime_pid)]


@pytest.mark.parametrize("command", ["create", "run-detached"])
def test_create_and_detached_run_adopt_it_too(runtime, bundle, work_dir, command):
    cid = runtime.new_id()
    pid_file = os.path.join(work_dir, "pid")
    b = bundle(["sleep", "3600"])
    args = (("create", "--bundle", b, "--pid-file", pid_file, cid) if command == "create"
            else ("run", "-d", f"--bundle={b}", "--pid-file", pid_file, cid))
    proc = debug_run(runtime, *args)
    assert proc.returncode == 0, proc.stderr
    assert ADOPTED in proc.stderr
    with open(pid_file) as f:
        pid = int(f.read())
    assert runtime.state(cid)["pid"] == pid
    assert runtime.status(cid) == ("created" if command == "create" else "running")
    if command == "create":
        runtime.start(cid)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"3600"]
    runtime.delete(cid, force=True)


def test_the_early_init_is_not_handed_the_warm_up_child(runtime, bundle):
    """The launcher forks its warm-up child first and tells the runtime its pid, which
    stops it; init, started next, is not to have it (its environment as exec'd)."""
    cid = runtime.new_id()
    proc = debug_run(runtime, "create", "--bundle", bundle(["true"]), cid)
    assert proc.returncode == 0 and ADOPTED in proc.stderr, proc.stderr
    with open(f"/proc/{runtime.state(cid)['pid']}/environ", "rb") as f:
        names = {entry.partition(b"=")[0] for entry in f.read().split(b"\0")}
    assert b"PYRUNTIME_EARLY_INIT" in names  # init's, as exec'd: the file shows that
    assert b"PYRUNTIME_WARMUP_PID" not in names
    runtime.delete(cid, force=True)


def _pid_namespace_path(runtime, bundle) -> dict:
    pid = runtime.run_detached(bundle(["sleep", "3600"]), runtime.new_id("pidns"))
    return {"namespace_paths": {"pid": f"/proc/{pid}/ns/pid"}}


# Configs and command lines the launcher leaves to the runtime, which forks init itself
# (or stage 1), and the ones it takes.
_CONFIGS = {
    "user namespace": (False, lambda runtime, bundle: {
        "uid_mappings": [(0, 100000, 65536)], "gid_mappings": [(0, 100000, 65536)]}),
    "pid namespace by path": (False, _pid_namespace_path),
    "no pid namespace": (True, lambda runtime, bundle: {"drop_namespaces": ["pid"]}),
    "cgroup namespace": (True, lambda runtime, bundle: {
        "namespaces": ["pid", "network", "ipc", "uts", "mount", "cgroup"]}),
}


@pytest.mark.parametrize("name", list(_CONFIGS))
def test_which_configs_get_an_early_init(runtime, bundle, name):
    expected, changes = _CONFIGS[name]
    b = bundle(["sh", "-c", "echo ran"], **changes(runtime, bundle))
    proc = debug_run(runtime, "run", "--bundle", b, runtime.new_id())
    assert (proc.returncode, proc.stdout) == (0, "ran\n"), proc.stderr
    assert (ADOPTED in proc.stderr) is expected
    assert UNFIT not in proc.stderr  # the launcher did not start one in vain


@pytest.mark.parametrize("flags, global_flags, expected", [
    (("--preserve-fds", "0"), (), False),
    (("--no-pivot",), (), True),
    (("--no-new-keyring", "--keep"), (), True),
    ((), ("--systemd-cgroup",), False),
    ((), ("--log-format", "json"), True),
])
def test_which_command_lines_get_an_early_init(runtime, bundle, flags, global_flags,
                                               expected):
    cid = runtime.new_id()
    b = bundle(["sh", "-c", "echo ran"])
    proc = debug_run(runtime, "run", "--bundle", b, *flags, cid, global_flags=global_flags)
    assert (proc.returncode, proc.stdout) == (0, "ran\n"), proc.stderr
    assert (ADOPTED in proc.stderr) is expected
    assert UNFIT not in proc.stderr
    if "--keep" in flags:
        runtime.delete(cid)


def _error(proc, cid: str) -> str:
    return re.sub(r'time="[^"]*"', "", proc.stderr).replace(cid, "ID")


@pytest.mark.parametrize("problem", ["capability", "cwd", "process"])
def test_a_bad_config_fails_alike_and_leaves_no_init(runtime, bundle, problem):
    changes = {"capability": {"capabilities": ["CAP_NOT_A_THING"]},
               "cwd": {"cwd": "relative"},
               "process": {"mutate": lambda config: config.pop("process") and None}}[problem]
    b = bundle(["true"], **changes)
    reports = []
    for python_only in (False, True):
        cid = runtime.new_id()
        proc = debug_run(runtime, "run", "--bundle", b, cid, python_only=python_only)
        reports.append((proc.returncode, _error(proc, cid)))
        assert not os.path.exists(os.path.join(runtime.root, cid))
        assert init_processes(b) == []
    assert reports[0] == reports[1]
    assert reports[0][0] == 255
    assert "process" in reports[0][1]


@pytest.mark.parametrize("python_only", [False, True])
def test_init_failing_before_it_is_placed_is_reported_in_its_words(runtime, bundle,
                                                                   python_only):
    """Init (early or forked) that cannot open a namespace goes before the runtime has
    placed it, maybe before the runtime writes `placed` to it: either way the error is
    init's own, not a broken pipe."""
    b = bundle(["true"], namespace_paths={"network": "/nonexistent/ns/net"})
    for _ in range(8):
        cid = runtime.new_id()
        proc = debug_run(runtime, "create", "--bundle", b, cid, python_only=python_only)
        assert proc.returncode == 255, proc.stderr
        assert "linux.namespaces: cannot open /nonexistent/ns/net" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert runtime.status(cid) is None


def test_a_refused_id_kills_the_unused_init_quietly(runtime, bundle):
    b = bundle(["true"])
    proc = debug_run(runtime, "run", "--bundle", b, "not/an-id")
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "level=debug" not in line]
    assert len(lines) == 1 and "invalid container ID" in lines[0], proc.stderr
    assert init_processes(b) == []


def test_an_existing_id_kills_the_unused_init(runtime, bundle):
    b = bundle(["sleep", "3600"])
    cid = runtime.new_id()
    runtime.run_detached(b, cid)
    proc = debug_run(runtime, "run", "--bundle", b, cid)
    assert proc.returncode == 255 and "already exists" in proc.stderr, proc.stderr
    assert ADOPTED not in proc.stderr
    assert init_processes(b) == []
    assert runtime.status(cid) == "running"


def test_a_runtime_killed_before_adopting_it_leaves_no_init(runtime, bundle, work_dir):
    """The runtime gone before it made anything (killed as soon as the launcher had
    started init): init reads EOF on its channel and exits."""
    b = bundle(["true"])
    cid = runtime.new_id()
    proc = runtime.popen("run", "--bundle", b, cid, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not init_processes(b) and proc.poll() is None and time.monotonic() < deadline:
        pass  # no sleep: the runtime is to be caught before its interpreter is up
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    made = os.path.exists(os.path.join(runtime.root, cid))
    if made:
        runtime.run("delete", "--force", cid)
    # And the launcher's warm-up child, orphaned too, ends by itself within a second.
    wait_for(lambda: init_processes(b) == [] and init_processes(cid) == [], timeout=10)
    assert not made, "the runtime had got as far as the state directory: nothing shown"


def test_an_api_caller_s_early_init_is_killed_when_the_config_lacks_a_process(tmp_path,
                                                                              bundle):
    """Runtime.create with an early init and a config it refuses (here: no `process`,
    refused after validation proper) kills and reaps that init itself, without the
    CLI's last-resort discard."""
    from pyruntime.oci.channel import channel_pair
    from pyruntime.oci.early_init import EarlyInit
    from pyruntime.oci.errors import SpecError
    from pyruntime.oci.runtime import Runtime

    b = bundle(["true"], mutate=lambda config: config.pop("process") and None)
    config_fd = os.memfd_create("config")
    with open(os.path.join(b, "config.json"), "rb") as f:
        os.write(config_fd, f.read())
    init = subprocess.Popen(["sleep", "60"])
    ours, theirs = channel_pair()
    theirs.close()
    early_init = EarlyInit(init.pid, ours, config_fd)
    try:
        with pytest.raises(SpecError, match="process"):
            Runtime(str(tmp_path / "root")).create("no-process", b, early_init=early_init)
        assert early_init.pid == 0 and early_init.channel is None
        with pytest.raises(ProcessLookupError):
            os.kill(init.pid, 0)  # killed and reaped
    finally:
        if early_init.pid:
            init.kill()
            init.wait()
