"""ContainerRecord.status() when the container's cgroup disappears under it, as systemd
makes a scope's disappear once its last process exits: never an error."""
from __future__ import annotations

import os
import subprocess

from pyruntime.oci.state import ContainerRecord, process_start_time


def _record(tmp_path, pid: int, cgroup_paths: dict) -> ContainerRecord:
    return ContainerRecord(str(tmp_path), {
        "id": "c1", "pid": pid, "pid_start": process_start_time(pid),
        "bundle": str(tmp_path), "config": {}, "cgroup_paths": cgroup_paths,
    })


GONE = {"": "/sys/fs/cgroup/pyruntime-test-no-such-cgroup",
        "freezer": "/sys/fs/cgroup/freezer/pyruntime-test-no-such-cgroup"}


def test_a_live_init_whose_cgroup_is_gone_is_running(tmp_path):
    assert _record(tmp_path, os.getpid(), GONE).status() == "running"


def test_an_init_that_died_with_its_cgroup_is_stopped(tmp_path, monkeypatch):
    child = subprocess.Popen(["sleep", "30"])
    try:
        record = _record(tmp_path, child.pid, GONE)
        # Init dies between the liveness check and the freezer read.
        checks = iter([True, False])
        monkeypatch.setattr(ContainerRecord, "init_alive", lambda self: next(checks))
        assert record.status() == "stopped"
    finally:
        child.kill()
        child.wait()
