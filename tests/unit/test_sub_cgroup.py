"""`exec --cgroup`'s placement (pyruntime.cgroups.sub_cgroup), on directories standing in
for the container's cgroups: which hierarchies move, and what is refused before anything
is changed."""
from __future__ import annotations

import os

import pytest

from pyruntime.cgroups.errors import CgroupError, SubCgroupError
from pyruntime.cgroups.placement import CgroupPlacement
from pyruntime.cgroups.sub_cgroup import sub_cgroup_placement

KEYS = ("cpu,cpuacct", "memory", "pids", "name=systemd", "")


@pytest.fixture
def container(tmp_path) -> CgroupPlacement:
    paths = {}
    for index, key in enumerate(KEYS):
        path = tmp_path / f"h{index}" / "ctr"
        (path / "sub").mkdir(parents=True)
        paths[key] = str(path)
    (tmp_path / "h2" / "escaped").mkdir()
    return CgroupPlacement(paths, ["/made/by/create"])


def test_one_path_for_every_hierarchy(container):
    placement = sub_cgroup_placement(container, {"": "sub"})
    assert placement.paths == {k: os.path.join(p, "sub") for k, p in container.paths.items()}
    assert placement.created == []  # nothing of it is the exec's to remove
    assert sub_cgroup_placement(container, {"": "/sub"}).paths == placement.paths


@pytest.mark.parametrize("sub_paths, moved", [
    ({"memory": "sub"}, {"memory"}),
    ({"cpu": "sub"}, {"cpu,cpuacct"}),                    # found in a shared hierarchy
    ({"cpu": "sub", "cpuacct": "sub"}, {"cpu,cpuacct"}),
    ({"memory": "/sub", "pids": "sub"}, {"memory", "pids"}),
    ({"name=systemd": "sub"}, {"name=systemd"}),
])
def test_per_controller_paths(container, sub_paths, moved):
    placement = sub_cgroup_placement(container, sub_paths)
    for key, path in container.paths.items():
        assert placement.paths[key] == (os.path.join(path, "sub") if key in moved else path)
    assert container.paths["memory"].endswith("/ctr")  # the container's, unchanged


@pytest.mark.parametrize("sub_paths, message", [
    ({"memory": "nosuch"}, "the sub-cgroup nosuch does not exist"),
    ({"": "sub/deeper"}, "the sub-cgroup sub/deeper does not exist"),
    ({"pids": "../escaped"}, "../escaped is not a sub-cgroup of the container's cgroup"),
    ({"pids": "sub/../../escaped"}, "is not a sub-cgroup"),
    ({"": "/.."}, "is not a sub-cgroup"),
    ({"nosuch": "sub"}, "unknown controller 'nosuch'"),
    ({"systemd": "sub"}, "unknown controller 'systemd'"),  # only as name=systemd
    ({"cpu": "sub", "cpuacct": "other"}, "two different sub-cgroups"),
])
def test_refused(container, sub_paths, message):
    with pytest.raises(SubCgroupError, match=message.replace("'", ".")) as info:
        sub_cgroup_placement(container, sub_paths)
    assert isinstance(info.value, CgroupError) and info.value.exit_code == 255


def test_the_container_itself_is_allowed(container):
    assert sub_cgroup_placement(container, {"": "."}).paths == container.paths


def test_a_container_without_cgroup():
    with pytest.raises(SubCgroupError, match="has no cgroup"):
        sub_cgroup_placement(None, {"": "sub"})


def test_on_a_v2_host_a_controller_is_unknown(tmp_path):
    (tmp_path / "ctr" / "sub").mkdir(parents=True)
    container = CgroupPlacement({"": str(tmp_path / "ctr")})
    assert sub_cgroup_placement(container, {"": "sub"}).paths == {"": str(tmp_path / "ctr/sub")}
    with pytest.raises(SubCgroupError, match="unknown controller"):
        sub_cgroup_placement(container, {"memory": "sub"})
