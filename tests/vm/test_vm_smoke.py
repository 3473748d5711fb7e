"""Is the VM fit for the cgroup-v2 tests? cgroup v2 with its controllers, user namespaces
(proves init switch_roots rather than chroots), the checkout's compiled module, a memory
limit that OOM-kills, and containers run by runc and by pyruntime. Skipped outside the VM.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[2]
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = {"cpu", "cpuset", "memory", "pids", "io"}


def find_tool(name: str, *fallbacks: str) -> str:
    for candidate in (shutil.which(name), *fallbacks):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"{name} not found in the VM (it runs the host's root: install it there)")


def test_cgroup2_is_mounted_with_controllers_delegated():
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    assert any(m[1] == "/sys/fs/cgroup" and m[2] == "cgroup2" for m in mounts), mounts
    available = set((CGROUP_ROOT / "cgroup.controllers").read_text().split())
    enabled = set((CGROUP_ROOT / "cgroup.subtree_control").read_text().split())
    assert CONTROLLERS <= available, f"missing controllers: {CONTROLLERS - available}"
    assert CONTROLLERS <= enabled, f"not enabled for children: {CONTROLLERS - enabled}"


def test_user_namespaces_work():
    out = subprocess.run([find_tool("unshare"), "-U", "-r", "id", "-u"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "0", out


def test_environment_is_sane():
    assert os.environ.get("HOME") == "/root"
    assert socket.gethostname() == "pyruntime-vm"
    assert time.time() > 1704067200, "the clock was not set (before 2024)"
    assert sys.dont_write_bytecode
    assert os.path.ismount("/dev/shm") and os.path.ismount("/tmp")
    lo = subprocess.run(["ip", "-o", "link", "show", "lo"], capture_output=True, text=True)
    assert ",UP" in lo.stdout, f"loopback is down: {lo}"
    # The VM runs this checkout's own interpreter and code.
    assert Path(sys.prefix).resolve() == (REPO / ".venv").resolve()


def test_checkout_native_module_imports():
    import pyruntime._native  # noqa: F401  (compiled cffi module of the checkout)
    assert Path(pyruntime._native.__file__).resolve().is_relative_to(REPO)


def test_memory_limit_oom_kills_a_hog(cgroup):
    cgroup.write("memory.max", str(16 * 1024 * 1024))
    if (cgroup.path / "memory.swap.max").exists():
        cgroup.write("memory.swap.max", "0")
    assert cgroup.read("memory.max").strip() == str(16 * 1024 * 1024)
    # The shell moves itself into the cgroup, then becomes the hog: one process, one kill.
    hog = ("b = []\n"
           "while True:\n"
           "    b.append(b'x' * (1 << 20))\n")
    proc = subprocess.run(
        ["sh", "-c", f'echo $$ > {cgroup.path}/cgroup.procs && exec "$0" -c "$1"',
         sys.executable, hog],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, f"the hog was not SIGKILLed: {proc}"
    events = cgroup.events("memory.events")
    assert events.get("oom_kill") == 1, events
    assert events.get("max", 0) >= 1, events


def _run_busybox(binary: str, vm_bundle, runtime_root, leak_check, name: str):
    container_id = f"pyruntime-vm-{name}-{os.getpid()}"
    leak_check.add_container_id(container_id)
    bundle = vm_bundle(["sh", "-c", "echo hello from the container; cat /proc/self/cgroup"],
                       name=name)
    proc = subprocess.run([binary, "--root", runtime_root(binary), "run", "--bundle",
                           str(bundle), container_id],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{binary} run failed: {proc}"
    lines = proc.stdout.splitlines()
    assert lines[0] == "hello from the container", proc
    # cgroup v2 only: one "0::<path>" line.
    assert len(lines) == 2 and lines[1].startswith("0::/"), proc


def test_runc_runs_a_busybox_container(vm_bundle, runtime_root, leak_check):
    _run_busybox(find_tool("runc", "/usr/sbin/runc"), vm_bundle, runtime_root, leak_check,
                 "runc")


def test_pyruntime_runs_a_busybox_container(vm_bundle, runtime_root, leak_check):
    _run_busybox(str(REPO / ".venv" / "bin" / "pyruntime"), vm_bundle, runtime_root,
                 leak_check, "pyruntime")
