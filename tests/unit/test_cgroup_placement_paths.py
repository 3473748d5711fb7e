"""Where a container's cgroup goes (CgroupPlacement.for_container), as runc places it: an
absolute cgroupsPath as it is; a relative one, and the container's ID when there is none,
below the runtime's own cgroup in each hierarchy, and below that cgroup's parent on a
cgroup v2 host."""
from __future__ import annotations

import pytest

from pyruntime.cgroups import placement
from pyruntime.cgroups.placement import CgroupPlacement

HYBRID = {"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids",
          "name=systemd": "/sys/fs/cgroup/systemd", "": "/sys/fs/cgroup/unified"}
UNIFIED = {"": "/sys/fs/cgroup"}


@pytest.fixture
def host(monkeypatch):
    def set_host(hierarchies: dict[str, str], own: dict[str, str]) -> None:
        monkeypatch.setattr(placement, "mounted_hierarchies", lambda: dict(hierarchies))
        monkeypatch.setattr(placement, "own_cgroups", lambda pid="self": dict(own))
    return set_host


def test_v1_without_cgroups_path_the_id_goes_below_the_runtimes_own_cgroup(host):
    host(HYBRID, {"memory": "/shim.slice/a", "pids": "/", "name=systemd": "/s/x.scope",
                  "": "/s/x.scope"})
    assert CgroupPlacement.for_container(None, "c1").paths == {
        "memory": "/sys/fs/cgroup/memory/shim.slice/a/c1",
        "pids": "/sys/fs/cgroup/pids/c1",
        "name=systemd": "/sys/fs/cgroup/systemd/s/x.scope/c1",
        "": "/sys/fs/cgroup/unified/s/x.scope/c1",
    }


@pytest.mark.parametrize("own, expected", [
    ("/user.slice/session-1.scope", "/sys/fs/cgroup/user.slice/c1"),
    ("/runtime", "/sys/fs/cgroup/c1"),
    ("/", "/sys/fs/cgroup/c1"),
])
def test_v2_without_cgroups_path_the_id_goes_below_the_parent_of_the_runtimes(host, own,
                                                                                 expected):
    host(UNIFIED, {"": own})
    assert CgroupPlacement.for_container(None, "c1").paths == {"": expected}


def test_a_relative_cgroups_path_is_placed_like_the_id(host):
    host(UNIFIED, {"": "/svc/main"})
    assert CgroupPlacement.for_container("pods/c1", "ignored").paths == {
        "": "/sys/fs/cgroup/svc/pods/c1"}
    host(HYBRID, {key: "/svc/main" for key in HYBRID})
    assert CgroupPlacement.for_container("pods/c1", "x").paths["memory"] == \
        "/sys/fs/cgroup/memory/svc/main/pods/c1"


def test_an_absolute_cgroups_path_is_taken_as_it_is(host):
    host(HYBRID, {key: "/svc/main" for key in HYBRID})
    paths = CgroupPlacement.for_container("/mine/c1", "x").paths
    assert set(paths.values()) == {f"{mount}/mine/c1" for mount in HYBRID.values()}
