"""systemd cgroupsPath (slice:prefix:name) mapped to cgroupfs paths."""
from __future__ import annotations

import pytest

from pyruntime.cgroups import systemd_path
from pyruntime.cgroups.placement import CgroupError


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch):
    monkeypatch.setattr(systemd_path, "systemd_running", lambda: False)


@pytest.mark.parametrize("given, expected", [
    ("system.slice:docker:abc", "/system.slice/docker-abc.scope"),
    ("machine-web.slice:libpod:c1", "/machine.slice/machine-web.slice/libpod-c1.scope"),
    (":crio:x", "/system.slice/crio-x.scope"),
    ("user.slice::y", "/user.slice/y.scope"),
    ("-.slice:p:z", "/p-z.scope"),
    (None, "/system.slice/pyruntime-ctr.scope"),
])
def test_mapping(given, expected):
    assert systemd_path.to_cgroupfs_path(given, "ctr") == expected


@pytest.mark.parametrize("bad", ["/abs/path", "a:b", "nota-slice:p:n", "a--b.slice:p:n"])
def test_bad_paths_are_refused(bad):
    with pytest.raises(CgroupError, match="cgroupsPath"):
        systemd_path.to_cgroupfs_path(bad, "ctr")


def test_refused_when_systemd_runs(monkeypatch):
    monkeypatch.setattr(systemd_path, "systemd_running", lambda: True)
    with pytest.raises(CgroupError, match="D-Bus"):
        systemd_path.to_cgroupfs_path("system.slice:docker:abc", "ctr")
