"""podman (through conmon) driving the runtime under test in place of runc."""
from __future__ import annotations

import json
import os
import textwrap

import pytest

from . import ENGINE_TEST, RUNTIME_NAME, NeedsCgroupResources, needs_cgroup_resources
from . import unsupported_if_quoted
from .engines import cgroup_dir, cgroup_frozen, cgroup_limit, lines, read_text, wait_for
from .podman import IMAGE, SLEEPER, write_file

pytestmark = ENGINE_TEST

MiB = 1024 * 1024


def start_sleeper(podman, hint: str, *options: str) -> str:
    name = podman.new_name(hint)
    podman.run("run", "--detach", "--name", name, *options, IMAGE, *SLEEPER)
    podman.wait_status(name, "running")
    return name


# --------------------------------------------------------------------------- basics
def test_podman_uses_the_runtime_under_test(podman):
    info = podman.run("info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Path}}")
    assert info.stdout.split() == [RUNTIME_NAME, podman.runtime_path], info.describe()
    name = start_sleeper(podman, "which")
    assert podman.inspect(name, "{{.OCIRuntime}}") == RUNTIME_NAME


def test_run_rm_returns_the_exit_code(podman):
    result = podman.run("run", "--rm", IMAGE, "sh", "-c",
                        "echo to-stdout; echo to-stderr >&2; exit 3", expect=3)
    assert lines(result.stdout) == ["to-stdout"], result.describe()
    assert "to-stderr" in result.stderr, result.describe()
    assert podman.run("ps", "--all", "--quiet").stdout.strip() == ""


def test_killed_by_a_signal_exits_128_plus_signal(podman):
    # SIGKILL from outside (from inside its own PID namespace it would not kill PID 1).
    name = podman.new_name("sigkill")
    podman.run("run", "--detach", "--name", name, IMAGE, "sleep", "300")
    podman.run("kill", "--signal", "KILL", name)
    assert podman.run("wait", name).stdout.strip() == "137"
    assert podman.inspect(name, "{{.State.ExitCode}}") == "137"


def test_run_missing_command_exits_127(podman):
    # podman maps the runtime's error to 127 by its text ("no such file or directory",
    # "executable file not found in $PATH"), as runc words it.
    result = podman.run("run", "--rm", IMAGE, "/no/such/program", expect=127)
    assert "/no/such/program" in result.stderr, result.describe()


def test_run_non_executable_command_exits_126(podman):
    # ... and to 126 for "permission denied".
    podman.run("run", "--rm", IMAGE, "/etc/passwd", expect=126)


def test_run_with_a_tty(podman):
    result = podman.run("run", "--rm", "--tty", IMAGE, "sh", "-c", "tty; exit 5", expect=5)
    assert lines(result.stdout)[0].startswith("/dev/pts/"), result.describe()


def test_run_process_options(podman):
    result = podman.run("run", "--rm", "--read-only", "--user", "1001", "--hostname", "e2e-host",
                        "--cap-drop", "all", "--env", "GREETING=hello", "--workdir", "/tmp",
                        IMAGE, "sh", "-c",
                        'id -u; id -g; hostname; echo "$GREETING"; pwd; '
                        'grep CapEff /proc/self/status; touch /x 2>/dev/null || echo read-only')
    assert lines(result.stdout) == ["1001", "1001", "e2e-host", "hello", "/tmp",
                                    "CapEff:\t0000000000000000", "read-only"], result.describe()


def test_run_kernel_settings(podman):
    # --ulimit replaces containers.conf's default_ulimits: nproc too, or podman would ask
    # for 1048576, more than this host allows.
    result = podman.run("run", "--rm", "--sysctl", "net.ipv4.ip_forward=1",
                        "--ulimit", "nofile=100:200", "--ulimit", "nproc=1000:2000",
                        "--oom-score-adj", "500", IMAGE, "sh", "-c",
                        "cat /proc/sys/net/ipv4/ip_forward; ulimit -n; ulimit -Hn; ulimit -u; "
                        "cat /proc/self/oom_score_adj")
    assert lines(result.stdout) == ["1", "100", "200", "1000", "500"], result.describe()


def test_oci_hooks_from_a_hooks_dir(podman, work_dir):
    # podman puts the hooks of --hooks-dir in config.json; the runtime runs them with the
    # container's state on their stdin.
    hooks_dir = os.path.join(work_dir, "hooks.d")
    os.mkdir(hooks_dir)
    state_file = os.path.join(work_dir, "prestart-state.json")
    write_file(hooks_dir, "e2e.json", json.dumps({
        "version": "1.0.0", "when": {"always": True}, "stages": ["prestart"],
        "hook": {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {state_file}"]}}))
    name = podman.new_name("hooks")
    podman.run("--hooks-dir", hooks_dir, "run", "--name", name, IMAGE, "true")
    with open(state_file) as f:
        state = json.load(f)
    assert state["id"] == podman.inspect(name, "{{.Id}}"), state
    assert state["pid"] > 0 and state["status"] == "creating", state
    assert os.path.basename(state["bundle"]) == "userdata", state


def test_run_with_a_bind_mounted_volume(podman, work_dir):
    write_file(work_dir, "in.txt", "from-the-host\n")
    podman.run("run", "--rm", "--volume", f"{work_dir}:/data", IMAGE, "sh", "-c",
               "cat /data/in.txt; echo from-the-container > /data/out.txt")
    with open(os.path.join(work_dir, "out.txt")) as f:
        assert f.read() == "from-the-container\n"


def test_run_with_init(podman):
    # --init bind-mounts the host's catatonit at /run/podman-init, the container's PID 1.
    result = podman.run("run", "--rm", "--init", IMAGE, "ps", "-o", "pid,args")
    first = [line.split(None, 1) for line in lines(result.stdout)[1:]]
    assert first[0] == ["1", "/run/podman-init -- ps -o pid,args"], result.describe()


def test_run_interactive_with_a_tty(podman):
    result = podman.run_on_pty("run", "--rm", "--interactive", "--tty", IMAGE, "sh", "-c",
                               "tty; exit 4", check_exit=4)
    assert "/dev/pts/0" in result.stdout, result.describe()


def test_run_security_options(podman):
    script = "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status | tr -d '\\t'"
    default = podman.run("run", "--rm", IMAGE, "sh", "-c", script)
    assert "Seccomp:2" in lines(default.stdout), default.describe()  # podman's profile
    assert "NoNewPrivs:0" in lines(default.stdout), default.describe()
    result = podman.run("run", "--rm", "--security-opt", "seccomp=unconfined",
                        "--security-opt", "no-new-privileges", IMAGE, "sh", "-c", script)
    assert "Seccomp:0" in lines(result.stdout) and "NoNewPrivs:1" in lines(result.stdout), \
        result.describe()
    privileged = podman.run("run", "--rm", "--privileged", IMAGE, "sh", "-c", script)
    with open("/proc/self/status") as f:
        host_caps = [line.split()[1] for line in f if line.startswith("CapBnd:")][0]
    assert f"CapEff:{host_caps}" in lines(privileged.stdout), privileged.describe()


def test_run_mounts_and_devices(podman):
    result = podman.run("run", "--rm", "--tmpfs", "/scratch:size=1m", "--shm-size", "8m",
                        "--device", "/dev/zero:/dev/myzero", IMAGE, "sh", "-c",
                        "df -k /scratch /dev/shm | tail -n 2 | awk '{print $2}'; "
                        "head -c 3 /dev/myzero | od -An -tx1; "
                        "echo hi > /scratch/f && cat /scratch/f")
    assert [line.strip() for line in lines(result.stdout)] == \
        ["1024", "8192", "00 00 00", "hi"], result.describe()


def test_run_in_a_user_namespace(podman):
    result = podman.run("run", "--rm", "--uidmap", "0:200000:65536", "--gidmap",
                        "0:200000:65536", IMAGE, "sh", "-c",
                        "id -u; cat /proc/self/uid_map; touch /tmp/f && stat -c %u /tmp/f")
    assert [" ".join(line.split()) for line in lines(result.stdout)] == \
        ["0", "0 200000 65536", "0"], result.describe()


def test_run_with_host_namespaces_and_private_cgroupns(podman):
    result = podman.run("run", "--rm", "--network", "host", "--uts", "host",
                        "--cgroupns", "private", IMAGE, "sh", "-c",
                        "readlink /proc/self/ns/net; hostname; cut -d: -f3 /proc/self/cgroup "
                        "| sort -u")
    out = lines(result.stdout)
    assert out[0] == os.readlink("/proc/self/ns/net"), result.describe()
    assert out[1] == os.uname().nodename, result.describe()
    assert out[2:] == ["/"], result.describe()


def test_stats(podman):
    # podman reads the container's cgroup itself, where cgroupsPath says it is.
    name = start_sleeper(podman, "stats")
    result = podman.run("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", name)
    fields = lines(result.stdout)[0].split()
    assert fields[0] == name and int(fields[1]) >= 1, result.describe()


# --------------------------------------------------------------------------- detached
def test_detached_container_exec_stop_rm(podman):
    name = start_sleeper(podman, "exec")

    result = podman.run("exec", name, "sh", "-c", "echo in-container; id -u; pwd")
    assert lines(result.stdout) == ["in-container", "0", "/"], result.describe()

    result = podman.run("exec", "--user", "1001", "--env", "FOO=bar", "--workdir", "/tmp",
                        name, "sh", "-c", 'id -u; id -g; echo "$FOO"; pwd')
    assert lines(result.stdout) == ["1001", "1001", "bar", "/tmp"], result.describe()

    podman.run("exec", name, "sh", "-c", "exit 6", expect=6)
    podman.run("exec", name, "/no/such/program", expect=127)

    result = podman.run("exec", "--tty", name, "sh", "-c", "tty")
    assert lines(result.stdout)[0].startswith("/dev/pts/"), result.describe()

    podman.run("exec", "--detach", name, "sleep", "300")
    result = podman.run("top", name, "args")
    assert "sleep 300" in result.stdout, result.describe()

    podman.run("stop", "--time", "10", name)
    assert podman.status(name) == "exited"
    assert podman.inspect(name, "{{.State.ExitCode}}") == "0"
    podman.run("rm", name)
    assert podman.run("ps", "--all", "--quiet").stdout.strip() == ""


def test_kill_with_a_signal_and_wait(podman):
    name = podman.new_name("kill")
    podman.run("run", "--detach", "--name", name, IMAGE, "sh", "-c",
               "trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 0.1; done")
    wait_for(lambda: "ready" in podman.run("logs", name).stdout, message="the trap to be set")
    podman.run("kill", "--signal", "USR1", name)
    assert podman.run("wait", name).stdout.strip() == "7"
    assert "got-usr1" in podman.run("logs", name).stdout


def test_restart_runs_a_new_container_process(podman):
    name = start_sleeper(podman, "restart")
    first = podman.pid(name)
    podman.run("restart", "--time", "10", name)
    podman.wait_status(name, "running")
    assert podman.pid(name) != first
    assert lines(podman.run("exec", name, "echo", "again").stdout) == ["again"]


# --------------------------------------------------------------------------- cgroups
@needs_cgroup_resources
def test_pause_and_unpause(podman):
    name = start_sleeper(podman, "pause")
    pid = podman.pid(name)
    result = podman.run("pause", name, check=False)
    unsupported_if_quoted(result)
    assert result.ok, result.describe()
    assert podman.status(name) == "paused"
    assert cgroup_frozen(pid)
    podman.run("unpause", name)
    assert podman.status(name) == "running"
    assert not cgroup_frozen(pid)
    assert lines(podman.run("exec", name, "echo", "thawed").stdout) == ["thawed"]


@needs_cgroup_resources
def test_kill_of_a_paused_container(podman):
    # runc thaws a paused container's cgroup for SIGKILL (a process frozen by the cgroup v1
    # freezer does not die until thawed); podman waits for the exit.
    name = start_sleeper(podman, "killpaused")
    result = podman.run("pause", name, check=False)
    unsupported_if_quoted(result)
    assert result.ok, result.describe()
    podman.run("kill", "--signal", "KILL", name, timeout=60)
    assert podman.run("wait", name, timeout=60).stdout.strip() == "137"


@needs_cgroup_resources
def test_update_memory_limit(podman):
    name = start_sleeper(podman, "update", "--memory", "128m")
    pid = podman.pid(name)
    if cgroup_limit(pid, "memory") != 128 * MiB:
        raise NeedsCgroupResources(f"--memory 128m not applied: {cgroup_limit(pid, 'memory')}")
    result = podman.run("update", "--memory", "64m", name, check=False)
    unsupported_if_quoted(result)
    assert result.ok, result.describe()
    assert cgroup_limit(pid, "memory") == 64 * MiB


@needs_cgroup_resources
def test_pids_limit_is_applied(podman):
    name = start_sleeper(podman, "pids", "--pids-limit", "16")
    limit = cgroup_limit(podman.pid(name), "pids")
    if limit != 16:
        raise NeedsCgroupResources(f"--pids-limit 16 not applied: pids.max is {limit}")


@needs_cgroup_resources
def test_update_cpu_limit(podman):
    name = start_sleeper(podman, "update_cpus", "--cpus", "1")
    result = podman.run("update", "--cpus", "0.5", name, check=False)
    unsupported_if_quoted(result)
    assert result.ok, result.describe()
    directory, v2 = cgroup_dir(podman.pid(name), "cpu")
    if v2:
        applied = read_text(os.path.join(directory, "cpu.max")).split()
    else:
        applied = [read_text(os.path.join(directory, f)).strip()
                   for f in ("cpu.cfs_quota_us", "cpu.cfs_period_us")]
    if applied != ["50000", "100000"]:
        raise NeedsCgroupResources(f"--cpus 0.5 not applied: the cgroup has {applied}")


# --------------------------------------------------------------------------- pods
#: Connects to the pod's localhost:8080 until the server answers (it may not listen yet).
CLIENT = "for i in $(seq 100); do nc 127.0.0.1 8080 </dev/null && break; sleep 0.1; done"


def test_pod_containers_share_localhost(podman):
    pod = podman.new_name("pod")
    podman.run("pod", "create", "--name", pod)
    server = podman.new_name("server")
    podman.run("run", "--detach", "--pod", pod, "--name", server, IMAGE,
               "nc", "-ll", "-p", "8080", "-e", "echo", "hello-from-the-server")
    client = podman.run("run", "--rm", "--pod", pod, IMAGE, "sh", "-c",
                        CLIENT + "; cat /proc/net/dev")
    assert client.stdout.startswith("hello-from-the-server"), client.describe()
    assert "hello-from-the-server" in client.stdout, client.describe()
    # Their network namespace has loopback only: nothing reaches any network.
    devices = [line.split(":")[0].strip() for line in lines(client.stdout) if ":" in line]
    assert devices == ["lo"], client.describe()
    infra = podman.inspect(pod, "{{.InfraContainerID}}", kind="pod")
    assert os.readlink(f"/proc/{podman.pid(server)}/ns/net") == \
        os.readlink(f"/proc/{podman.pid(infra)}/ns/net")
    podman.run("pod", "rm", "--force", "--time", "0", pod)
    assert podman.run("ps", "--all", "--quiet").stdout.strip() == ""


def test_pod_sharing_the_pid_namespace(podman):
    pod = podman.new_name("pidpod")
    podman.run("pod", "create", "--share", "pid,net,ipc,uts", "--name", pod)
    start_sleeper(podman, "first", "--pod", pod)
    podman.run("run", "--detach", "--pod", pod, "--name", podman.new_name("second"), IMAGE,
               "sleep", "301")
    result = podman.run("run", "--rm", "--pod", pod, IMAGE, "ps", "-o", "args")
    assert "sleep 301" in result.stdout and "while :" in result.stdout, result.describe()


KUBE_CLIENT = CLIENT + "; echo client-done; sleep 300"


def kube_yaml(pod: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: {pod}
        spec:
          restartPolicy: Never
          containers:
          - name: server
            image: {IMAGE}
            command: ["nc", "-ll", "-p", "8080", "-e", "echo", "hello-from-the-server"]
            resources:
              limits:
                memory: 64Mi
          - name: client
            image: {IMAGE}
            command: ["sh", "-c", "{KUBE_CLIENT}"]
            resources:
              limits:
                memory: 32Mi
        """)


@pytest.fixture
def kube_pod(podman, work_dir):
    """A two-container pod from Kubernetes YAML (`podman kube play`), taken down after."""
    pod = podman.new_name("kube").lower().replace("_", "-")
    path = write_file(work_dir, "pod.yaml", kube_yaml(pod))
    podman.run("kube", "play", "--network", "none", path)
    yield pod, path
    podman.run("kube", "down", path, check=False)


def test_kube_play_and_down(podman, kube_pod):
    pod, path = kube_pod
    server, client = f"{pod}-server", f"{pod}-client"
    podman.wait_status(server, "running")
    podman.wait_status(client, "running")
    wait_for(lambda: "client-done" in podman.run("logs", client).stdout,
             message="the client to finish")
    assert "hello-from-the-server" in podman.run("logs", client).stdout
    assert podman.inspect(pod, "{{.State}}", kind="pod") == "Running"
    pod_id = podman.inspect(pod, "{{.ID}}", kind="pod")
    result = podman.run("kube", "down", path)
    assert lines(result.stdout) == ["Pods stopped:", pod_id, "Pods removed:", pod_id], \
        result.describe()
    assert podman.run("pod", "ps", "--quiet").stdout.strip() == ""
    assert podman.run("ps", "--all", "--quiet").stdout.strip() == ""


@needs_cgroup_resources
def test_kube_play_applies_memory_limits(podman, kube_pod):
    pod, _ = kube_pod
    for container, limit in (("server", 64 * MiB), ("client", 32 * MiB)):
        name = f"{pod}-{container}"
        podman.wait_status(name, "running")
        assert podman.inspect(name, "{{.HostConfig.Memory}}") == str(limit)
        applied = cgroup_limit(podman.pid(name), "memory")
        if applied != limit:
            raise NeedsCgroupResources(f"{name}: memory limit {limit} not applied "
                                       f"(the cgroup has {applied})")
