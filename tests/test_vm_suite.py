"""The cgroup-v2 tests, run inside the test VM: boots it once (tests/vm/runner.py) and runs
`pytest -q -m vm tests/vm` there against this checkout, failing with the in-VM output
when anything fails there."""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

RUNNER_PATH = Path(__file__).resolve().parent / "vm" / "runner.py"
IN_VM_COMMAND = [".venv/bin/python", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                 "-m", "vm", "tests/vm"]
#: Boot takes ~6 s and the smoke tests ~10 s with software emulation; the limit leaves room
#: for the cgroup tests added to tests/vm and a loaded machine.
TIMEOUT = 600

pytestmark = [
    pytest.mark.root,
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


def test_cgroup_v2_tests_pass_in_the_vm():
    runner = _load_runner()
    # A missing qemu is a failure, not a skip: .ci/setup installs qemu-system-x86, so its
    # absence means a broken setup, and a skip would silently drop every cgroup-v2 test.
    if runner.qemu_binary() is None:
        pytest.fail(f"{runner.QEMU} is not installed, so the cgroup-v2 tests cannot run: "
                    "apt-get install -y qemu-system-x86 (or run .ci/setup)", pytrace=False)
    code, output = runner.run_in_vm(IN_VM_COMMAND, timeout=TIMEOUT)
    if code != 0:
        pytest.fail(f"in-VM `{' '.join(IN_VM_COMMAND)}` exited {code}:\n{output}",
                    pytrace=False)
    # Exit 0 with the smoke tests skipped would mean the VM was not detected as such.
    skipped = re.findall(r"^SKIPPED .*test_vm_smoke\.py.*$", output, re.M)
    assert not skipped, "the VM smoke tests skipped inside the VM:\n" + output
    assert re.search(r"\b\d+ passed\b", output), output
