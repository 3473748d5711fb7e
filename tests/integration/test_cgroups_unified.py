"""cgroup v2 features that need no controller, tested on the hybrid host itself: its
controller-less cgroup2 hierarchy (/sys/fs/cgroup/unified) still runs eBPF device
filters, `cgroup.freeze` and `cgroup.kill`. A placement with only the unified directory
(key "") is what a cgroup v2 host gives the runtime, so these go through the v2 code paths
of the facade; the limits that need controllers are tested in the VM
(tests/vm/test_cgroups_v2.py).
"""
from __future__ import annotations

import os
import signal
import tempfile
import time

import pytest

from pyruntime.cgroups import api, devices_bpf
from pyruntime.cgroups.errors import ResourceUnsupported
from pyruntime.cgroups.placement import CgroupPlacement, mounted_hierarchies

from . import ROOT_ONLY
from .test_cgroups_v1 import (
    COUNTER,
    DEVICES,
    FORK_LOOP,
    block_device_for_test,
    cleanup_placement,
    wait_until,
    workloads,  # noqa: F401  (fixture)
)


def _hybrid_unified_mount() -> str | None:
    """The cgroup2 mount of a hybrid host (v1 controllers elsewhere), or None."""
    if os.geteuid() != 0:
        return None
    hierarchies = mounted_hierarchies()
    mount = hierarchies.get("")
    if mount is None or list(hierarchies) == [""]:
        return None
    return mount


UNIFIED = _hybrid_unified_mount()

pytestmark = ROOT_ONLY + [
    pytest.mark.skipif(UNIFIED is None, reason="needs a hybrid host's cgroup2 hierarchy "
                                               "(a pure v2 host is covered in the VM tests)"),
]


@pytest.fixture
def v2_cgroup(leak_check):
    """A unified-only placement (what a v2 host gives the runtime), created; its processes
    are killed and it is removed at the end."""
    made: list[CgroupPlacement] = []

    def make(name: str) -> CgroupPlacement:
        container_id = f"{leak_check.id_prefix}-u-{name}-{len(made)}"
        leak_check.add_container_id(container_id)
        placement = CgroupPlacement({"": os.path.join(UNIFIED, "pyruntime", container_id)})
        placement.create()
        made.append(placement)
        return placement

    yield make
    for placement in reversed(made):
        cleanup_placement(placement)


DENY_ALL_BUT_NULL = [{"allow": False, "access": "rwm"},
                     {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]


def test_ebpf_filter_denies_a_block_device_and_update_replaces_it(v2_cgroup, workloads):
    cgroup = v2_cgroup("bpf")
    assert api.cgroup_version(cgroup) == 2
    major, minor = block_device_for_test()
    api.apply_resources(cgroup, {"devices": DENY_ALL_BUT_NULL})
    directory = cgroup.paths[""]
    first = devices_bpf.attached_program_ids(directory)
    assert len(first) == 1
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        node = os.path.join(tmp, "disk")
        result = workloads(cgroup, DEVICES, node, str(major), str(minor)).start().json()
        assert result == {"mknod": "ok", "block": "Operation not permitted", "null": "ok"}
        os.unlink(node)

        # update: the new rules allow reading that device; the old program is replaced.
        api.update_resources(cgroup, {"devices": DENY_ALL_BUT_NULL + [
            {"allow": True, "type": "b", "major": major, "minor": minor, "access": "r"}]})
        second = devices_bpf.attached_program_ids(directory)
        assert len(second) == 1 and second != first
        result = workloads(cgroup, DEVICES, node, str(major), str(minor)).start().json()
        assert result == {"mknod": "ok", "block": "ok", "null": "ok"}


def test_ebpf_filter_allow_all(v2_cgroup, workloads):
    cgroup = v2_cgroup("priv")
    major, minor = block_device_for_test()
    api.apply_resources(cgroup, {"devices": [{"allow": True, "access": "rwm"}]})
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        result = workloads(cgroup, DEVICES, os.path.join(tmp, "disk"),
                           str(major), str(minor)).start().json()
    assert result == {"mknod": "ok", "block": "ok", "null": "ok"}


def test_v2_freezer(v2_cgroup, workloads, tmp_path):
    cgroup = v2_cgroup("freeze")
    counter = str(tmp_path / "counter")
    workloads(cgroup, COUNTER, counter).start()

    def value() -> int:
        try:
            with open(counter) as f:
                return int(f.read().strip() or 0)
        except FileNotFoundError:
            return 0

    wait_until(lambda: value() > 3, what="the counter to run")
    api.freeze(cgroup)
    assert api.is_frozen(cgroup)
    with open(os.path.join(cgroup.paths[""], "cgroup.events")) as f:
        assert "frozen 1" in f.read()
    frozen_at = value()
    time.sleep(0.3)
    assert value() == frozen_at
    api.thaw(cgroup)
    assert not api.is_frozen(cgroup)
    wait_until(lambda: value() > frozen_at + 3, what="the counter to advance after thaw")


def test_cgroup_kill(v2_cgroup, workloads):
    cgroup = v2_cgroup("kill")
    if not os.path.exists(os.path.join(cgroup.paths[""], "cgroup.kill")):
        pytest.skip("cgroup.kill needs Linux 5.14")
    forker = workloads(cgroup, FORK_LOOP).start()
    forker.line()
    assert len(cgroup.pids()) >= 5
    api.kill_all(cgroup, signal.SIGKILL)
    assert forker.wait() == -signal.SIGKILL
    wait_until(lambda: not cgroup.pids(), what="every process to die")


def test_signal_other_than_kill_while_paused_keeps_it_paused(v2_cgroup, workloads):
    cgroup = v2_cgroup("sig")
    sleeper = workloads(cgroup, "import time\ntime.sleep(60)\n").start()
    wait_until(lambda: cgroup.pids(), what="the process to be in the cgroup")
    api.freeze(cgroup)
    api.kill_all(cgroup, signal.SIGTERM)
    # kill did not thaw what `pause` froze (the requested state: the frozen task may be
    # on its way out, a fatal signal being the one thing a v2-frozen task acts on).
    with open(os.path.join(cgroup.paths[""], "cgroup.freeze")) as f:
        assert f.read().strip() == "1"
    api.thaw(cgroup)
    assert sleeper.wait() == -signal.SIGTERM


def test_limit_without_its_controller_is_refused_before_anything_is_done(v2_cgroup):
    cgroup = v2_cgroup("nopids")
    with open(os.path.join(cgroup.paths[""], "cgroup.controllers")) as f:
        if "pids" in f.read().split():
            pytest.skip("this host's cgroup2 hierarchy has the pids controller")
    with pytest.raises(ResourceUnsupported) as info:
        api.apply_resources(cgroup, {"devices": DENY_ALL_BUT_NULL, "pids": {"limit": 5}})
    assert str(info.value).startswith(
        "linux.resources.pids.limit: the pids controller is not available in this cgroup "
        "hierarchy")
    assert devices_bpf.attached_program_ids(cgroup.paths[""]) == []
    stats = api.stats(cgroup)  # zeros, not an error, for what is not accounted
    assert stats["pids"] == {"current": 0, "limit": 0}
