"""The cgroup-attach warm-up (pyruntime.cgroups.attach_warmup) must be a no-op move: it
writes to the cgroup.procs of the cgroup the runtime is already in, never another one.
Its whole point is timing, which tests do not assert; what they check is that it touches
nothing."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pyruntime.cgroups import attach_warmup

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


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


@pytest.fixture
def nested_process(tmp_path):
    """A Python process in a cgroup of its own, below the root, in every hierarchy (a
    warm-up that wrote to a hierarchy's root instead would move it)."""
    from pyruntime.cgroups.placement import mounted_hierarchies

    name = f"pyruntime-warmup-test-{os.getpid()}"
    directories = []
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
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
