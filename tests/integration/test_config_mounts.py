"""Mount fields of config.json seen from inside a real container: linux.rootfsPropagation
and the propagation options of a bind mount (the optional fields of
/proc/self/mountinfo), the atime options (strictatime, noatime, relatime), and an
overlay mount whose writes land in its upperdir on the host.

The sources are mounts the test makes shared on the host (in pytest's own mount
namespace), so that what the container sees without the option (runc's default: `/`
rslave, hence mounts that are slaves of the host's) differs from what the option asks
for."""
from __future__ import annotations

import os
import subprocess

import pytest

from . import ROOT_ONLY
from .bundle import bind_mount, tmpfs_mount

pytestmark = ROOT_ONLY


def run(runtime, b):
    return runtime.run("run", "--bundle", b, runtime.new_id())


def mountinfo_entry(text: str, mount_point: str) -> tuple[list[str], set[str]]:
    """(optional fields, mount options) of the last mount on `mount_point`."""
    entry = None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[4] == mount_point:
            entry = fields
    assert entry is not None, f"nothing mounted on {mount_point}:\n{text}"
    optional = entry[6:entry.index("-")]
    return optional, set(entry[5].split(","))


SHOW_MOUNTS = ["cat", "/proc/self/mountinfo"]


def mount_inside(runtime, b, mount_point: str) -> tuple[list[str], set[str]]:
    """Run bundle `b` (whose process is SHOW_MOUNTS): `mountinfo_entry` of `mount_point`
    as the container sees it."""
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    return mountinfo_entry(proc.stdout, mount_point)


def peer_group(mount_point: str) -> str:
    """The shared peer group ID of a mount of pytest's mount namespace."""
    with open("/proc/self/mountinfo") as f:
        optional, _ = mountinfo_entry(f.read(), mount_point)
    groups = [o.split(":", 1)[1] for o in optional if o.startswith("shared:")]
    assert groups, f"{mount_point} is not shared: {optional}"
    return groups[0]


@pytest.fixture
def shared_mount(request):
    """`shared_mount(source, target) -> peer group`: bind `source` on `target` (made if
    missing) in pytest's mount namespace and make it shared; unmounted at the end."""
    def make(source: str, target: str) -> str:
        os.makedirs(target, exist_ok=True)
        subprocess.run(["mount", "--bind", source, target], check=True)
        request.addfinalizer(lambda: subprocess.run(["umount", "-l", target]))
        subprocess.run(["mount", "--make-shared", target], check=True)
        return peer_group(target)
    return make


def host_dir(work_dir: str, name: str) -> str:
    path = os.path.join(work_dir, name)
    os.makedirs(path)
    return path


# --------------------------------------------------------------------------- rootfsPropagation
def root_mount_of(runtime, bundle, rootfs: str, propagation: str | None) -> list[str]:
    def mutate(config: dict) -> None:
        if propagation is not None:
            config["linux"]["rootfsPropagation"] = propagation
    return mount_inside(runtime, bundle(SHOW_MOUNTS, rootfs=rootfs, mutate=mutate), "/")[0]


@pytest.fixture
def shared_rootfs(busybox_rootfs, work_dir, shared_mount):
    """The busybox rootfs bound on a shared mount of its own: (path, peer group)."""
    target = os.path.join(work_dir, "shared-rootfs")
    return target, shared_mount(busybox_rootfs, target)


def test_default_root_is_a_slave_of_the_host(runtime, bundle, shared_rootfs):
    # The reference for the tests below: without rootfsPropagation, runc makes `/`
    # rslave, so the root is a slave of the host's peer group.
    rootfs, group = shared_rootfs
    assert root_mount_of(runtime, bundle, rootfs, None) == [f"master:{group}"]


def test_rootfs_propagation_private(runtime, bundle, shared_rootfs):
    rootfs, _group = shared_rootfs
    assert root_mount_of(runtime, bundle, rootfs, "private") == []


# Set before the root switch, these would not hold: pivot_root needs the rootfs's parent
# mount private, and an unbindable mount cannot be bound onto itself.
@pytest.mark.parametrize("propagation", ["shared", "rshared"])
def test_rootfs_propagation_shared(runtime, bundle, shared_rootfs, propagation):
    rootfs, _group = shared_rootfs
    optional = root_mount_of(runtime, bundle, rootfs, propagation)
    assert any(o.startswith("shared:") for o in optional), optional


@pytest.mark.parametrize("propagation", ["unbindable", "runbindable"])
def test_rootfs_propagation_unbindable(runtime, bundle, shared_rootfs, propagation):
    rootfs, _group = shared_rootfs
    assert "unbindable" in root_mount_of(runtime, bundle, rootfs, propagation)


# --------------------------------------------------------------------------- bind propagation
def var_mount_of(runtime, bundle, source: str, *options: str, **changes) -> list[str]:
    b = bundle(SHOW_MOUNTS, mounts=[bind_mount(source, "/var", "rbind", *options)], **changes)
    return mount_inside(runtime, b, "/var")[0]


@pytest.fixture
def shared_source(work_dir, shared_mount):
    """A host directory that is a shared mount: (path, peer group)."""
    source = host_dir(work_dir, "src")
    return source, shared_mount(source, source)


def test_bind_default_is_a_slave_of_the_source(runtime, bundle, shared_source):
    source, group = shared_source
    assert var_mount_of(runtime, bundle, source) == [f"master:{group}"]


def test_bind_rprivate(runtime, bundle, shared_source):
    source, _group = shared_source
    assert var_mount_of(runtime, bundle, source, "rprivate") == []


@pytest.mark.parametrize("option", ["rshared", "shared"])
def test_bind_rshared(runtime, bundle, shared_source, option):
    source, group = shared_source
    optional = var_mount_of(runtime, bundle, source, option)
    # A new peer group of the container's, still receiving from the host's.
    assert any(o.startswith("shared:") for o in optional), optional
    assert f"master:{group}" in optional


def test_bind_rslave(runtime, bundle, shared_source):
    # Under a shared `/` (rootfsPropagation rshared) the bind joins the source's peer
    # group (shared:N, the first call); rslave makes it a slave of that group, no longer
    # one of its peers (it may be shared in a group of its own: runc >= 1.2 applies
    # rshared to `/` again after pivot_root).
    source, group = shared_source
    shared_root = {"mutate": lambda c: c["linux"].update(rootfsPropagation="rshared")}
    assert f"shared:{group}" in var_mount_of(runtime, bundle, source, **shared_root)
    optional = var_mount_of(runtime, bundle, source, "rslave", **shared_root)
    assert f"master:{group}" in optional and f"shared:{group}" not in optional, optional


# --------------------------------------------------------------------------- atime options
def tmpfs_options(runtime, bundle, *options: str) -> set[str]:
    b = bundle(SHOW_MOUNTS, mounts=[tmpfs_mount("/run", "nosuid", "nodev", *options)])
    return mount_inside(runtime, b, "/run")[1]


def test_tmpfs_default_atime_is_relatime(runtime, bundle):
    # The reference: the kernel mounts with relatime unless told otherwise.
    options = tmpfs_options(runtime, bundle)
    assert "relatime" in options and "noatime" not in options


def test_tmpfs_noatime(runtime, bundle):
    options = tmpfs_options(runtime, bundle, "noatime")
    assert "noatime" in options and "relatime" not in options


def test_tmpfs_strictatime(runtime, bundle):
    options = tmpfs_options(runtime, bundle, "strictatime")
    assert not {"relatime", "noatime"} & options, options


def test_relatime_on_a_bind_of_a_noatime_mount(runtime, bundle, work_dir, request):
    # relatime is the kernel's default for a new mount, so it shows only where it changes
    # something: a bind mount keeps its source's noatime unless remounted with relatime.
    source = host_dir(work_dir, "noatime")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "noatime,size=1m", "tmpfs", source],
                   check=True)
    request.addfinalizer(lambda: subprocess.run(["umount", "-l", source]))

    def var_options(*options: str) -> set[str]:
        b = bundle(SHOW_MOUNTS, mounts=[bind_mount(source, "/var", "rbind", *options)])
        return mount_inside(runtime, b, "/var")[1]

    assert "noatime" in var_options()
    options = var_options("relatime")
    assert "relatime" in options and "noatime" not in options


# --------------------------------------------------------------------------- overlay
def test_overlay_mount_writes_to_upperdir(runtime, bundle, work_dir):
    lower = host_dir(work_dir, "lower")
    upper = host_dir(work_dir, "upper")
    work = host_dir(work_dir, "work")
    with open(os.path.join(lower, "from-lower"), "w") as f:
        f.write("lower layer\n")
    overlay = {"destination": "/run/ov", "type": "overlay", "source": "overlay",
               "options": [f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}"]}
    script = ("cat /run/ov/from-lower; echo from-container > /run/ov/new; "
              "echo changed >> /run/ov/from-lower; grep ' /run/ov ' /proc/self/mountinfo")
    proc = run(runtime, bundle(["sh", "-c", script], mounts=[tmpfs_mount("/run"), overlay]))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "lower layer"
    assert " - overlay " in lines[1]
    with open(os.path.join(upper, "new")) as f:
        assert f.read() == "from-container\n"
    with open(os.path.join(upper, "from-lower")) as f:
        assert f.read() == "lower layer\nchanged\n"
    assert os.listdir(lower) == ["from-lower"]
    with open(os.path.join(lower, "from-lower")) as f:
        assert f.read() == "lower layer\n"
