"""The cgroup-attach warm-up (pyruntime.cgroups.attach_warmup) must be a no-op move: it
writes to the cgroup.procs of the cgroup the runtime is already in, never another one.
Its whole point is timing, which tests do not assert; what they check is that it touches
nothing."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest

from pyruntime.cgroups import attach_warmup

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]


_CHILD = r"""
import os, sys, time
from pyruntime.cgroups import attach_warmup
sys.stdin.readline()  # moved into the test cgroups by now
with open("/proc/self/cgroup") as f:
    before = f.read()
path = attach_warmup._own_procs_file()
with open(path) as f:
    members = {int(line) for line in f if line.strip()}
attach_warmup.begin()
time.sleep(0.1)  # the detached thread's write waits for a grace period
with open("/proc/self/cgroup") as f:
    after = f.read()
print(path, os.getpid() in members, before == after)
"""


@contextlib.contextmanager
def in_nested_cgroups(argv: list[str], **popen):
    """A process running `argv` (it waits for a line on stdin before it goes on) in a
    cgroup of its own, below the root, in every hierarchy: a warm-up that wrote to a
    hierarchy's root instead would move its writer there."""
    from pyruntime.cgroups.placement import mounted_hierarchies

    name = f"pyruntime-warmup-test-{os.getpid()}"
    directories = []
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             **popen)
    try:
        for mount in mounted_hierarchies().values():
            directory = os.path.join(mount, name)
            try:
                os.mkdir(directory)
            except OSError:
                continue  # a hierarchy we may not write (or a controller-less one)
            directories.append(directory)
            for setting in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset starts empty
                if os.path.exists(os.path.join(directory, setting)):
                    with open(os.path.join(mount, setting)) as f:
                        value = f.read().strip()
                    with open(os.path.join(directory, setting), "w") as f:
                        f.write(value)
            with open(os.path.join(directory, "cgroup.procs"), "w") as f:
                f.write(str(child.pid))
        yield child, directories
    finally:
        child.kill()
        child.wait()
        for directory in directories:
            os.rmdir(directory)


@pytest.fixture
def nested_process():
    with in_nested_cgroups([sys.executable, "-c", _CHILD]) as nested:
        yield nested


def test_a_warm_up_writes_to_its_own_cgroup_and_leaves_the_process_there(nested_process):
    child, directories = nested_process
    assert directories
    output, _ = child.communicate("go\n", timeout=30)
    path, member, unchanged = output.split()
    assert any(path == os.path.join(d, "cgroup.procs") for d in directories), path
    assert member == "True" and unchanged == "True"


def test_the_file_written_is_our_own_cgroups_procs():
    path = attach_warmup._own_procs_file()
    assert path is not None and path.endswith("/cgroup.procs")
    with open(path) as f:
        members = {int(line) for line in f if line.strip()}
    assert os.getpid() in members


def test_warm_ups_are_not_repeated_within_a_grace_period():
    attach_warmup._last_start = -1.0
    attach_warmup.begin()
    first = attach_warmup._last_start
    attach_warmup.begin()
    assert attach_warmup._last_start == first


# ----------------------------------------------------------------- the native launcher
_REPORT_SCRIPT = r"""
import os, sys, time
helper = os.environ.get("PYRUNTIME_WARMUP_PID", "")
if sys.argv[1:2] == ["--wait-for-line"]:
    time.sleep(0.3)  # past the grace period: the helper has written several times
    with open(f"/proc/{helper}/stat") as f:
        state = f.read().rpartition(") ")[2][0]
    # (An exited child's v1 cgroups read as "/", which would pass for a wrong move.)
    assert state != "Z", "the warm-up child stopped before it was told to"
    with open(f"/proc/{helper}/cgroup") as f:
        helper_cgroups = f.read()
    with open("/proc/self/cgroup") as f:
        own_cgroups = f.read()
    print(helper_cgroups == own_cgroups, repr(helper_cgroups))
else:
    print(helper or "-", " ".join(sys.argv[1:]))
if helper:
    os.kill(int(helper), 9)
    os.waitpid(int(helper), 0)
"""


@pytest.fixture(scope="module")
def test_launcher(tmp_path_factory):
    """native/launcher/ built as .ci/setup builds it, but running a script that reports
    on the warm-up child instead of the CLI."""
    from tests.integration import REPO_ROOT

    directory = tmp_path_factory.mktemp("launcher")
    script = directory / "report.py"
    script.write_text(_REPORT_SCRIPT)
    binary = directory / "pyruntime"
    subprocess.run([str(REPO_ROOT / "native" / "launcher" / "build.sh"), str(binary),
                    sys.executable, str(script)], check=True)
    return str(binary)


@pytest.mark.parametrize("args, warmed", [
    (["create", "--bundle", "b", "c1"], True),
    (["--root", "/tmp/r", "run", "c1"], True),
    (["--log-format=json", "--debug", "exec", "c1", "true"], True),
    (["-root", "/tmp/r", "--systemd-cgroup", "create", "c1"], True),
    (["--root", "run", "state", "c1"], False),  # "run" is --root's value
    (["--log", "exec", "delete", "c1"], False),
    (["state", "run"], False),
    (["start", "c1"], False),
    (["--version"], False),
    ([], False),
])
def test_the_launcher_warms_up_for_create_run_and_exec_only(test_launcher, args, warmed):
    proc = subprocess.run([test_launcher, *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    helper, _, passed = proc.stdout.rstrip("\n").partition(" ")
    assert passed == " ".join(args)  # the arguments reach the script unchanged
    assert (helper != "-") is warmed


def test_the_launchers_warm_up_child_stays_in_the_launchers_own_cgroup(test_launcher):
    # The launcher is exec'd by a shell already moved into the nested cgroups, so that
    # the child it forks starts there and must find that cgroup's cgroup.procs.
    argv = ["sh", "-c", 'read line; exec "$0" "$@"', test_launcher, "--wait-for-line", "run"]
    with in_nested_cgroups(argv, stderr=subprocess.PIPE) as (child, directories):
        assert directories
        # Started just before a whole second of CLOCK_MONOTONIC, which the child's time
        # limit must not mistake for a second gone by.
        time.sleep((0.9 - time.monotonic() % 1) % 1)
        output, errors = child.communicate("go\n", timeout=30)
    assert child.returncode == 0, errors
    same, cgroups = output.split(" ", 1)
    assert same == "True", cgroups
    name = os.path.basename(directories[0])
    assert name in cgroups


def test_no_warm_up_child_outlives_a_create(runtime, bundle):
    """The runtime stops and reaps the launcher's child once init is placed: none may be
    left running or reparented to the caller (pytest is a subreaper, as a shim is)."""
    import pathlib

    with open(runtime.binary, "rb") as f:
        if f.read(4) != b"\x7fELF":
            pytest.skip("the command is not the native launcher")
    container = runtime.new_id("warmup")
    runtime.run("create", "--bundle", bundle(["sleep", "10"]), container, check=True)
    time.sleep(0.1)
    me = os.getpid()
    leftovers = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2:].split()[1])
        if comm == "pyruntime" and ppid == me:
            leftovers.append(text)
    runtime.run("delete", "--force", container, check=True)
    assert leftovers == []
