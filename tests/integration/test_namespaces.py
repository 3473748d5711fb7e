"""linux.namespaces: new namespaces differ from the host's, the init is PID 1 of its PID
namespace, a namespace not asked for is the host's, and a namespace given by path is
joined (two containers talking over the loopback of one network namespace; a PID
namespace), with the runtime's own PID namespace for children left as it was."""
from __future__ import annotations

import os

import pytest

from . import ROOT_ONLY, ns_link, pyruntime_only, tcp_listening, wait_for

pytestmark = ROOT_ONLY

KINDS = ("ipc", "uts", "net", "pid", "mnt")
SHOW_NS = "; ".join(f"echo {k} $(readlink /proc/1/ns/{k})" for k in KINDS)


def namespaces_inside(runtime, b) -> dict[str, str]:
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines())


def test_pid_namespace_init_is_pid_1(runtime, bundle):
    b = bundle(["sh", "-c", "echo $$; ps -o pid,args; true"])
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "1"
    # Only the container's own processes are visible: sh (1) and ps.
    pids = [l.split()[0] for l in lines[2:]]
    assert len(pids) == 2 and pids[0] == "1", proc.stdout


def test_new_namespaces_differ_from_host(runtime, bundle):
    inside = namespaces_inside(runtime, bundle(["sh", "-c", SHOW_NS]))
    for kind in KINDS:
        assert inside[kind] != ns_link("self", kind), f"{kind} namespace is the host's"
        assert inside[kind].startswith(f"{kind}:[")


def without_hostname(config: dict) -> None:
    # A hostname needs a UTS namespace of the container's own.
    config.pop("hostname", None)


@pytest.mark.parametrize("kind, config_name", [("net", "network"), ("ipc", "ipc"), ("uts", "uts")])
def test_namespace_not_asked_for_is_the_hosts(runtime, bundle, kind, config_name):
    inside = namespaces_inside(runtime, bundle(["sh", "-c", SHOW_NS],
                                               drop_namespaces=[config_name],
                                               mutate=without_hostname))
    assert inside[kind] == ns_link("self", kind)
    others = [k for k in KINDS if k != kind]
    assert all(inside[k] != ns_link("self", k) for k in others)


def test_loopback_is_up_in_new_network_namespace(runtime, bundle):
    b = bundle(["sh", "-c", "ip -o link show lo; ip -o addr show lo"])
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    assert "UP" in proc.stdout.splitlines()[0]
    assert "127.0.0.1/8" in proc.stdout
    assert "eth0" not in proc.stdout


def test_join_network_namespace_by_path(runtime, bundle):
    server = bundle(["nc", "-l", "-p", "8080", "-e", "echo", "hello from A"])
    a = runtime.new_id("server")
    a_pid = runtime.run_detached(server, a)
    wait_for(lambda: tcp_listening(a_pid, 8080), message="container A to listen on 8080")
    a_net = ns_link(a_pid, "net")  # A exits once it has served one connection
    client = bundle(["sh", "-c", "readlink /proc/self/ns/net; nc 127.0.0.1 8080 </dev/null"],
                    namespace_paths={"network": f"/proc/{a_pid}/ns/net"})
    proc = runtime.run("run", "--bundle", client, runtime.new_id("client"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == a_net
    assert lines[1] == "hello from A"


def test_join_uts_and_ipc_by_path(runtime, bundle):
    first = bundle(["sleep", "3600"], hostname="first-box")
    a_pid = runtime.run_detached(first, runtime.new_id("a"))
    second = bundle(["sh", "-c", "hostname; readlink /proc/self/ns/ipc"],
                    namespace_paths={"uts": f"/proc/{a_pid}/ns/uts",
                                     "ipc": f"/proc/{a_pid}/ns/ipc"},
                    mutate=without_hostname)
    proc = runtime.run("run", "--bundle", second, runtime.new_id("b"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["first-box", ns_link(a_pid, "ipc")]


def test_join_pid_namespace_by_path(runtime, bundle):
    first = bundle(["sleep", "3600"])
    a_pid = runtime.run_detached(first, runtime.new_id("a"))
    second = bundle(["sh", "-c", "readlink /proc/self/ns/pid; cat /proc/1/cmdline"],
                    namespace_paths={"pid": f"/proc/{a_pid}/ns/pid"})
    proc = runtime.run("run", "--bundle", second, runtime.new_id("b"))
    assert proc.returncode == 0, proc.stderr
    link, init_cmdline = proc.stdout.splitlines()
    assert link == ns_link(a_pid, "pid")
    assert init_cmdline.split("\0")[:2] == ["sleep", "3600"]


_DIRECT_INIT_SCRIPT = """
import json, os, sys
import pyruntime.oci.launcher as launcher
from pyruntime import Runtime

bodies = []
fork_child = launcher.fork_child
def recording_fork_child(parent, child, body, plan):
    bodies.append(body.__name__)
    return fork_child(parent, child, body, plan)
launcher.fork_child = recording_fork_child

runtime = Runtime(sys.argv[1])
own = os.readlink("/proc/self/ns/pid_for_children")
report = {"own": own, "after": {}, "init": {}, "bodies": bodies}
for cid, bundle in (("new-pid", sys.argv[2]), ("joined-pid", sys.argv[3])):
    pid = runtime.create(cid, bundle)
    report["after"][cid] = os.readlink("/proc/self/ns/pid_for_children")
    report["init"][cid] = os.readlink(f"/proc/{pid}/ns/pid")
    if cid == "new-pid":
        with open(os.path.join(sys.argv[3], "config.json")) as f:
            config = json.load(f)
        for ns in config["linux"]["namespaces"]:
            if ns["type"] == "pid":
                ns["path"] = f"/proc/{pid}/ns/pid"
        with open(os.path.join(sys.argv[3], "config.json"), "w") as f:
            json.dump(config, f)
status = runtime.exec("new-pid", {"args": ["/bin/sh", "-c", "exit 5"], "cwd": "/",
                                   "env": ["PATH=/bin"]})
report["exec"] = [status.code, os.readlink("/proc/self/ns/pid_for_children")]
for cid in ("joined-pid", "new-pid"):
    runtime.delete(cid, force=True)
print(json.dumps(report))
"""


@pyruntime_only
def test_the_runtime_forks_into_pid_namespaces_and_keeps_its_own(bundle, work_dir,
                                                                  leak_check):
    """Without a user namespace the runtime forks init straight into the container's
    PID namespace (pyruntime.oci.bootstrap), and an exec'd process too
    (pyruntime.oci.enter): its own namespace for children must be its own again after
    each, a new PID namespace or a joined one."""
    import json
    import subprocess
    import sys

    root = os.path.join(work_dir, "root")
    proc = subprocess.run([sys.executable, "-c", _DIRECT_INIT_SCRIPT, root,
                           bundle(["sleep", "3600"]), bundle(["sleep", "3600"])],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["bodies"] == ["run_direct_init", "run_direct_init", "enter_directly"]
    assert report["exec"] == [5, report["own"]]
    assert report["after"] == {"new-pid": report["own"], "joined-pid": report["own"]}
    assert report["init"]["new-pid"] != report["own"]
    assert report["init"]["joined-pid"] == report["init"]["new-pid"]
