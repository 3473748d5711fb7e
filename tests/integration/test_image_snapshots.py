"""Overlay snapshots: two containers' roots from one image are separate and writable,
while the image's layers exist once on disk; `rm` of an image in use is refused; prune
frees what no image needs; copy mode keeps owners; removal unmounts."""
from __future__ import annotations

import os
import subprocess

import pytest

from . import ROOT_ONLY
from .image_fixtures import busybox_layout, image_cli, image_store  # noqa: F401
from pyruntime.image.errors import ImageInUse, SnapshotError
from pyruntime.image.snapshot import is_mountpoint

pytestmark = ROOT_ONLY


def du(path: str) -> int:
    out = subprocess.run(["du", "-s", "--block-size=1", path], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[0])


def test_two_snapshots_share_layers_and_write_apart(image_store, busybox_layout):
    store = image_store()
    store.import_path(busybox_layout)
    [layer] = store.inspect("busybox:hello")["layers"]
    layer_dir = store.snapshotter.layer_path(layer["diff_id"])
    assert os.path.isdir(layer_dir)  # unpacked at import, not on the start path
    one = store.create_snapshot("busybox:hello", "one")
    two = store.create_snapshot("busybox:hello", "two")
    assert one != two and is_mountpoint(one) and is_mountpoint(two)
    # Writes stay in their own root.
    with open(os.path.join(one, "etc", "only-in-one"), "w") as f:
        f.write("1")
    os.unlink(os.path.join(two, "bin", "ls"))
    assert not os.path.exists(os.path.join(two, "etc", "only-in-one"))
    assert os.path.lexists(os.path.join(one, "bin", "ls"))
    assert not os.path.lexists(os.path.join(two, "bin", "ls"))
    assert os.path.lexists(os.path.join(layer_dir, "bin", "ls"))
    # One copy of the layer: both roots show the layer's own inode of busybox...
    inodes = {os.stat(os.path.join(p, "bin", "busybox")).st_ino for p in (one, two, layer_dir)}
    assert len(inodes) == 1
    assert os.listdir(os.path.join(store.root, "layers", "sha256")) == [layer_dir.rsplit("/", 1)[1]]
    # ...and the snapshots themselves hold only what was written (a few kB, not a rootfs).
    busybox_size = du(layer_dir)
    for sid in ("one", "two"):
        assert du(os.path.join(store.root, "snapshots", sid, "upper")) < busybox_size / 10
    store.remove_snapshot("one")
    store.remove_snapshot("two")
    assert not is_mountpoint(one) and not os.path.exists(os.path.join(store.root, "snapshots", "one"))
    assert store.remove_snapshot("one") is False  # idempotent


def test_rm_in_use_refused_then_prune(image_store, busybox_layout, work_dir):
    store = image_store()
    store.import_path(busybox_layout)
    small = os.path.join(work_dir, "small")
    os.makedirs(os.path.join(small, "bin"))
    with open(os.path.join(small, "bin", "tool"), "w") as f:
        f.write("tool")
    store.import_path(small, "other:1", changes=["CMD /bin/tool"])
    store.create_snapshot("busybox:hello", "ctr")
    with pytest.raises(ImageInUse, match="ctr"):
        store.remove("busybox:hello")
    proc = image_cli(store.root, "rm", "busybox:hello")
    assert proc.returncode == 1 and "in use by snapshot(s) ctr" in proc.stderr
    store.tag("busybox:hello", "alias:1")
    assert store.remove("alias:1") == ["docker.io/library/alias:1"]  # another name: fine
    assert store.prune()["layers"] == 0  # everything is still used
    store.remove_snapshot("ctr")
    proc = image_cli(store.root, "rm", "busybox:hello")
    assert proc.returncode == 0, proc.stderr
    layers_before = store.snapshotter.layer_dirs()
    proc = image_cli(store.root, "prune")
    assert proc.returncode == 0 and "3 blobs, 1 unpacked layers" in proc.stdout
    other = store.inspect("other:1")
    assert store.snapshotter.layer_dirs() == [other["layers"][0]["diff_id"]]
    assert len(layers_before) == 2
    assert sorted(store.blobs.digests()) == sorted(
        [other["digest"], other["id"], other["layers"][0]["digest"]])
    # The remaining image still works.
    rootfs = store.create_snapshot("other:1", "again")
    assert open(os.path.join(rootfs, "bin", "tool")).read() == "tool"
    store.remove_snapshot("again")


def test_copy_mode_keeps_owners_and_modes(image_store, busybox_layout):
    store = image_store(snapshot_mode="copy")
    store.import_path(busybox_layout)
    rootfs = store.create_snapshot("busybox:hello", "copy")
    assert not is_mountpoint(rootfs)
    st = os.stat(os.path.join(rootfs, "home", "user"))
    assert (st.st_uid, st.st_gid) == (1001, 1001)
    assert oct(os.stat(os.path.join(rootfs, "tmp")).st_mode & 0o7777) == "0o1777"
    assert not os.path.exists(os.path.join(store.root, "layers"))  # no layer dirs in copy mode
    store.remove_snapshot("copy")
    assert not os.path.exists(rootfs)


def test_snapshot_errors(image_store, busybox_layout, work_dir):
    store = image_store()
    store.import_path(busybox_layout)
    store.create_snapshot("busybox:hello", "dup")
    with pytest.raises(SnapshotError, match="already exists"):
        store.create_snapshot("busybox:hello", "dup")
    with pytest.raises(SnapshotError, match="invalid snapshot id"):
        store.create_snapshot("busybox:hello", "../escape")
    target = os.path.join(work_dir, "not-empty")
    os.makedirs(target)
    open(os.path.join(target, "f"), "w").close()
    with pytest.raises(SnapshotError, match="not an empty directory"):
        store.create_snapshot("busybox:hello", "t", target=target)
    assert os.path.exists(os.path.join(target, "f"))
    assert [s["id"] for s in store.snapshots()] == ["dup"]
    store.remove_snapshot("dup")
