"""`exec` into a running container: it joins all the container's namespaces, takes
--user, --env, --cwd, --tty with --console-socket, --process FILE, --preserve-fds, and
returns the exit code of the process."""
from __future__ import annotations

import json
import os

import pytest

from pyruntime.oci import lsm

from . import DEFAULT_PATH, NAMESPACE_FILES, ROOT_ONLY, ns_link, pyruntime_only, read_pty

pytestmark = ROOT_ONLY


@pytest.fixture
def running(runtime, bundle):
    """A running container (`sleep 3600`) with a tmpfs on /tmp: (id, init pid)."""
    b = bundle(["sleep", "3600"], mounts=[{"destination": "/tmp", "type": "tmpfs",
                                           "source": "tmpfs", "options": ["mode=1777"]}])
    cid = runtime.new_id()
    pid = runtime.run_detached(b, cid)
    return cid, pid


def exec_(runtime, cid, *options, cmd):
    return runtime.run("exec", *options, cid, *cmd)


def test_exec_joins_all_namespaces(runtime, bundle):
    # A container with a namespace of its own of every kind compared (the default config
    # has no cgroup namespace: add one), so that each comparison says something.
    def with_cgroup_namespace(config):
        config["linux"]["namespaces"].append({"type": "cgroup"})

    cid = runtime.new_id()
    pid = runtime.run_detached(bundle(["sleep", "3600"], mutate=with_cgroup_namespace), cid)
    for kind in NAMESPACE_FILES:
        assert ns_link(pid, kind) != ns_link("self", kind), f"{kind} namespace is the host's"
    script = "; ".join(f"echo {k} $(readlink /proc/self/ns/{k})" for k in NAMESPACE_FILES)
    proc = exec_(runtime, cid, cmd=["sh", "-c", script])
    assert proc.returncode == 0, proc.stderr
    inside = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    for kind in NAMESPACE_FILES:
        assert inside[kind] == ns_link(pid, kind), kind


def test_exec_sees_container_root_and_pid_1(runtime, running):
    cid, _ = running
    proc = exec_(runtime, cid, cmd=["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["sleep 3600 ", "runc"]


def test_exec_user(runtime, running):
    cid, _ = running
    proc = exec_(runtime, cid, "--user", "1001:1001", cmd=["id"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("uid=1001(user) gid=1001(user)")


def test_exec_env(runtime, running):
    cid, _ = running
    proc = exec_(runtime, cid, "--env", "FOO=bar", cmd=["sh", "-c", "echo $FOO; echo $PATH"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["bar", DEFAULT_PATH]


def test_exec_cwd(runtime, running):
    cid, _ = running
    proc = exec_(runtime, cid, "--cwd", "/tmp", cmd=["pwd"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "/tmp"


@pytest.mark.parametrize("code", [0, 7, 255])
def test_exec_exit_code(runtime, running, code):
    cid, _ = running
    assert exec_(runtime, cid, cmd=["sh", "-c", f"exit {code}"]).returncode == code


def test_exec_killed_by_signal(runtime, running):
    cid, _ = running
    assert exec_(runtime, cid, cmd=["sh", "-c", "kill -9 $$"]).returncode == 137


def test_exec_stdin(runtime, running):
    cid, _ = running
    proc = runtime.run("exec", cid, "cat", input="piped in\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "piped in\n"


def test_exec_does_not_disturb_init(runtime, running):
    cid, pid = running
    for _ in range(3):
        assert exec_(runtime, cid, cmd=["true"]).returncode == 0
    assert runtime.state(cid)["status"] == "running"
    assert runtime.pid(cid) == pid


def test_exec_tty_with_console_socket(runtime, running, console_socket):
    # runc takes a console socket only with --detach: the pty is the caller's business.
    cid, _ = running
    sock = console_socket()
    runtime.run("exec", "--detach", "--tty", "--console-socket", sock.path, cid,
                "sh", "-c", "tty; echo ok", check=True)
    master = sock.receive()
    out = read_pty(master, until="ok\r\n")
    lines = out.splitlines()
    assert lines[0].startswith("/dev/pts/"), repr(out)
    assert lines[1] == "ok"


def test_exec_process_json(runtime, running, work_dir):
    cid, _ = running
    process = {
        "terminal": False,
        "user": {"uid": 1001, "gid": 1001, "additionalGids": [5]},
        "args": ["sh", "-c", "echo from-process-json $X; id -u; id -G; pwd"],
        "env": [f"PATH={DEFAULT_PATH}", "X=42"],
        "cwd": "/tmp",
    }
    path = os.path.join(work_dir, "process.json")
    with open(path, "w") as f:
        json.dump(process, f)
    proc = runtime.run("exec", "--process", path, cid)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "from-process-json 42"
    assert lines[1] == "1001"
    assert sorted(lines[2].split()) == ["1001", "5"]
    assert lines[3] == "/tmp"


def test_exec_detached(runtime, running):
    cid, pid = running
    proc = runtime.run("exec", "-d", cid, "sleep", "3600")
    assert proc.returncode == 0, proc.stderr
    ps = runtime.run("ps", "--format", "json", cid, check=True)
    assert len(json.loads(ps.stdout)) == 2


def test_exec_into_stopped_container_fails(runtime, bundle):
    b = bundle(["true"])
    cid = runtime.new_id()
    runtime.create(b, cid)
    runtime.start(cid)
    runtime.wait_status(cid, "stopped")
    proc = runtime.run("exec", cid, "true")
    assert proc.returncode != 0


def test_exec_unknown_container_fails(runtime):
    proc = runtime.run("exec", runtime.new_id("nope"), "true")
    assert proc.returncode != 0
    assert proc.stderr


def test_exec_runs_in_the_containers_cgroups(runtime, running, tmp_path):
    """The exec'd process is in init's cgroup in every hierarchy from its first
    instruction: it reads its own /proc/self/cgroup before anything else can move it."""
    cid, pid = running
    with open(f"/proc/{pid}/cgroup") as f:
        init_cgroups = f.read()
    proc = exec_(runtime, cid, cmd=["cat", "/proc/self/cgroup"])
    assert proc.returncode == 0, proc.stderr
    inside = proc.stdout
    # With a cgroup namespace the paths read inside are relative to init's: compare the
    # hierarchies and, without one, the paths too.
    assert [line.split(":")[:2] for line in inside.splitlines()] == \
        [line.split(":")[:2] for line in init_cgroups.splitlines()]
    if ns_link(pid, "cgroup") == os.readlink("/proc/self/ns/cgroup"):
        assert inside == init_cgroups
    else:
        assert all(line.split(":", 2)[2] == "/" for line in inside.splitlines())


@pyruntime_only
@pytest.mark.parametrize("python_only", [False, True], ids=["launcher", "python"])
@pytest.mark.parametrize("field, value", [("apparmorProfile", "pyruntime-test"),
                                          ("selinuxLabel", "system_u:system_r:container_t:s0")])
def test_exec_of_an_unavailable_security_label_names_the_field(runtime, running, work_dir,
                                                               field, value, python_only):
    """As `create`: a label this host cannot apply is refused with the field named, not
    with the kernel's EINVAL from /proc/self/attr."""
    if field == "apparmorProfile" and lsm.apparmor_enabled():
        pytest.skip("AppArmor is enabled here")
    if field == "selinuxLabel" and lsm.selinux_enabled():
        pytest.skip("SELinux is enabled here")
    cid, _ = running
    path = os.path.join(work_dir, "process.json")
    with open(path, "w") as f:
        json.dump({"args": ["true"], "cwd": "/", "env": [f"PATH={DEFAULT_PATH}"],
                   field: value}, f)
    env = dict(os.environ, PYRUNTIME_PYTHON_ONLY="1") if python_only else None
    proc = runtime.run("exec", "--process", path, cid, env=env)
    assert proc.returncode == 255
    assert f"process.{field}" in proc.stderr and "not enabled on this host" in proc.stderr
