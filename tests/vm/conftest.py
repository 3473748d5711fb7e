"""Tests that run inside the cgroup-v2 test VM (see README.md in this directory).

Tests here are marked `pytest.mark.vm` and skip themselves unless they run inside the VM:
on the development hosts (cgroup v1 hybrid) they cannot work. tests/test_vm_suite.py, on
the host, boots the VM and runs `pytest -q -m vm tests/vm` inside it. Tests marked
`pytest.mark.systemd` need the VM booted with systemd as PID 1 (runner.py --systemd;
tests/test_vm_suite.py runs `pytest -q -m systemd tests/vm` there) and skip
themselves everywhere else.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path

import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")


def in_vm() -> bool:
    """True inside the test VM: its init sets PYRUNTIME_IN_VM=1, and cgroup v2 is mounted on
    /sys/fs/cgroup with the memory controller. (Setting PYRUNTIME_IN_VM=1 by hand on a
    cgroup-v2 machine runs these tests there directly.)"""
    if os.environ.get("PYRUNTIME_IN_VM") != "1":
        return False
    try:
        return "memory" in (CGROUP_ROOT / "cgroup.controllers").read_text().split()
    except OSError:
        return False


def systemd_is_pid1() -> bool:
    """True in the VM booted with systemd as PID 1 (runner.py --systemd): in_vm() and
    PID 1 is systemd, which says it runs (/run/systemd/system)."""
    try:
        comm = Path("/proc/1/comm").read_text().strip()
    except OSError:
        return False
    return in_vm() and comm == "systemd" and Path("/run/systemd/system").is_dir()


IN_VM = in_vm()
SYSTEMD_PID1 = systemd_is_pid1()


_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    # Every vm-marked test of this directory skips itself outside the VM, and every
    # systemd-marked one outside the VM that runs systemd as PID 1. Only this directory's:
    # the hook sees every item of the session, and tests/test_vm_suite.py (marked `vm`
    # too, so that `-m "root and not vm"` leaves it out) is what boots the VM.
    skip_vm = pytest.mark.skip(reason="needs the cgroup-v2 test VM (run by "
                                      "tests/test_vm_suite.py or tests/vm/runner.py)")
    skip_systemd = pytest.mark.skip(reason="needs the test VM with systemd as PID 1 (run by "
                                           "tests/test_vm_suite.py or "
                                           "tests/vm/runner.py --systemd)")
    for item in items:
        if _HERE not in Path(item.path).resolve().parents:
            continue
        if item.get_closest_marker("systemd") and not SYSTEMD_PID1:
            item.add_marker(skip_systemd)
        elif item.get_closest_marker("vm") and not IN_VM:
            item.add_marker(skip_vm)


class ScratchCgroup:
    """A cgroup directly under the root, removed at teardown (its processes killed)."""

    def __init__(self, name: str) -> None:
        self.path = CGROUP_ROOT / name
        self.path.mkdir()

    def write(self, filename: str, value: str) -> None:
        (self.path / filename).write_text(value)

    def read(self, filename: str) -> str:
        return (self.path / filename).read_text()

    def events(self, filename: str = "memory.events") -> dict[str, int]:
        return {k: int(v) for k, v in (line.split() for line in self.read(filename).splitlines())}

    def remove(self) -> None:
        if not self.path.exists():
            return
        kill = self.path / "cgroup.kill"
        if kill.exists():
            kill.write_text("1")
        else:
            for pid in self.read("cgroup.procs").split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@pytest.fixture
def cgroup():
    """A fresh cgroup under the VM's root cgroup (name contains "pyruntime", so the suite's
    leak check would report it if it stayed)."""
    cg = ScratchCgroup(f"pyruntime-vmtest-{secrets.token_hex(3)}")
    yield cg
    cg.remove()


@pytest.fixture
def vm_bundle(tmp_path):
    """Returns make(args) -> bundle dir: a copy of the host's busybox bundle's config.json
    (rootfs: the host-built rootfs, by absolute path) with process.args = args."""
    source = os.environ.get("PYRUNTIME_VM_BUNDLE")
    if not source or not (Path(source) / "config.json").is_file():
        pytest.fail("no busybox bundle: $PYRUNTIME_VM_BUNDLE is unset or has no config.json "
                    "(tests/vm/runner.py builds it on the host with "
                    "rootfs-tools/build-busybox-bundle)")
    base = json.loads((Path(source) / "config.json").read_text())

    def make(args: list[str], name: str = "bundle") -> Path:
        spec = json.loads(json.dumps(base))
        spec["root"]["path"] = str(Path(source) / "rootfs")
        spec["process"]["args"] = args
        spec["root"]["readonly"] = True      # shared with other tests: never written
        spec["process"]["terminal"] = False
        bundle = tmp_path / name
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(spec, indent=2))
        return bundle

    return make


@pytest.fixture
def runtime_root(tmp_path, leak_check):
    """Returns root_for(binary) -> a per-test --root state dir, registered with the leak
    check so that state left behind fails the test."""
    def root_for(binary: str) -> str:
        root = tmp_path / f"state-{os.path.basename(binary)}"
        root.mkdir()
        leak_check.add_root(binary, str(root))
        return str(root)
    return root_for

