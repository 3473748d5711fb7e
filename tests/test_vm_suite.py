"""The VM tiers, run from the host: each boots the test VM once (tests/vm/runner.py) and
runs its marked tests there against this checkout, failing with the in-VM output when
anything fails there.

- cgroup v2: `pytest -q -m vm tests/vm` in the VM with a shell as PID 1;
- the systemd cgroup driver: `pytest -q -m systemd tests/vm` in the VM booted with
  systemd as PID 1 (runner.py --systemd)."""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

RUNNER_PATH = Path(__file__).resolve().parent / "vm" / "runner.py"

pytestmark = [
    pytest.mark.root,
    # Boots qemu: out of `-m "root and not vm"`, like the VM tests it runs.
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: boots qemu, reads /var/cache"),
    # Nested: inside the VM itself this would boot another VM.
    pytest.mark.skipif(os.environ.get("PYRUNTIME_IN_VM") == "1", reason="already in the VM"),
]


def _load_runner():
    # By path: tests/ is not a package, and the runner is also a script.
    spec = importlib.util.spec_from_file_location("pyruntime_vm_runner", RUNNER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_marked_tests_in_vm(marker: str, systemd: bool, timeout: int,
                            must_not_skip: str) -> None:
    runner = _load_runner()
    # A missing qemu is a failure, not a skip: .ci/setup installs qemu-system-x86, so its
    # absence means a broken setup, and a skip would silently drop every VM test.
    if runner.qemu_binary() is None:
        pytest.fail(f"{runner.QEMU} is not installed, so the `{marker}` VM tests cannot run: "
                    "apt-get install -y qemu-system-x86 (or run .ci/setup)", pytrace=False)
    command = [".venv/bin/python", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
               "-m", marker, "tests/vm"]
    code, output = runner.run_in_vm(command, timeout=timeout, systemd=systemd)
    if code != 0:
        pytest.fail(f"in-VM `{' '.join(command)}` exited {code}:\n{output}", pytrace=False)
    # Exit 0 with these tests skipped would mean the VM (or systemd as its PID 1) was not
    # detected as such.
    skipped = re.findall(rf"^SKIPPED .*{re.escape(must_not_skip)}.*$", output, re.M)
    assert not skipped, f"{must_not_skip} skipped inside the VM:\n" + output
    assert re.search(r"\b\d+ passed\b", output), output


def test_cgroup_v2_tests_pass_in_the_vm():
    # Boot ~6 s, the tests a minute or two with software emulation; room for a loaded host.
    _run_marked_tests_in_vm("vm", systemd=False, timeout=600, must_not_skip="test_vm_smoke.py")


def test_systemd_driver_tests_pass_in_the_systemd_vm():
    # Boot with systemd ~8 s, the tests about a minute and a half.
    _run_marked_tests_in_vm("systemd", systemd=True, timeout=420,
                            must_not_skip="test_systemd_cgroup.py")
