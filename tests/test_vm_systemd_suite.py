"""The systemd cgroup driver's tests, run inside the test VM booted with systemd as PID 1
(tests/vm/runner.py --systemd): `pytest -q -m systemd tests/vm` there against this
checkout, failing with the in-VM output when anything fails there."""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

RUNNER_PATH = Path(__file__).resolve().parent / "vm" / "runner.py"
IN_VM_COMMAND = [".venv/bin/python", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                 "-m", "systemd", "tests/vm"]
#: Boot with systemd takes ~8 s and the tests about a minute and a half with software
#: emulation; the limit leaves room for a loaded machine.
TIMEOUT = 420

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


def test_systemd_driver_tests_pass_in_the_systemd_vm():
    runner = _load_runner()
    # A missing qemu is a failure, not a skip: .ci/setup installs it (see test_vm_suite).
    if runner.qemu_binary() is None:
        pytest.fail(f"{runner.QEMU} is not installed, so the systemd driver tests cannot "
                    "run: apt-get install -y qemu-system-x86 (or run .ci/setup)",
                    pytrace=False)
    code, output = runner.run_in_vm(IN_VM_COMMAND, timeout=TIMEOUT, systemd=True)
    if code != 0:
        pytest.fail(f"in-VM (systemd) `{' '.join(IN_VM_COMMAND)}` exited {code}:\n{output}",
                    pytrace=False)
    # Exit 0 with the tests skipped would mean systemd was not detected as PID 1.
    skipped = re.findall(r"^SKIPPED .*test_systemd_cgroup\.py.*$", output, re.M)
    assert not skipped, "the systemd tests skipped inside the systemd VM:\n" + output
    assert re.search(r"\b\d+ passed\b", output), output
