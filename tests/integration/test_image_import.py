"""Each archive kind imported through `pyruntime image import` (kind detected), made
into a bundle with `image bundle`, and run with `pyruntime run --bundle DIR ID`."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from . import ROOT_ONLY
from .image_fixtures import (HELLO_CMD, busybox_layout, docker_save, image_cli,  # noqa: F401
                             image_store)
from pyruntime.image.layout import write_oci_layout
from pyruntime.image.snapshot import is_mountpoint

pytestmark = ROOT_ONLY

KINDS = ["oci-layout", "oci-archive", "docker-archive-dir", "docker-archive-tar", "rootfs-dir",
         "rootfs-tar"]


def make_archive(kind: str, work_dir: str, busybox_rootfs: str, layout: str) -> tuple[str, list[str]]:
    """(path, extra import args) of an archive of the busybox image of the given kind."""
    change = ["--change", f"CMD {json.dumps(HELLO_CMD)}"]
    if kind == "oci-layout":
        return layout, []
    if kind == "oci-archive":
        path = os.path.join(work_dir, "image.tar")
        write_oci_layout(busybox_rootfs, path, {"Cmd": HELLO_CMD}, "busybox:hello", mtime=0)
        return path, []
    if kind.startswith("docker-archive"):
        as_tar = kind.endswith("tar")
        path = os.path.join(work_dir, "saved.tar" if as_tar else "saved")
        return docker_save(layout, path, ["busybox:hello"], as_tar), []
    if kind == "rootfs-dir":
        return busybox_rootfs, change
    path = os.path.join(work_dir, "rootfs.tar.gz")
    subprocess.run(["tar", "-C", busybox_rootfs, "--numeric-owner", "-czf", path, "."], check=True)
    return path, change


@pytest.mark.parametrize("kind", KINDS)
def test_import_bundle_and_run(kind, work_dir, busybox_rootfs, busybox_layout, runtime,
                               image_store):
    store = image_store().root
    path, extra = make_archive(kind, work_dir, busybox_rootfs, busybox_layout)
    ref = f"imported/{kind}:1"
    proc = image_cli(store, "import", path, ref, *extra)
    assert proc.returncode == 0, proc.stderr
    digest = proc.stdout.strip()
    info = json.loads(image_cli(store, "inspect", ref).stdout)
    assert info["digest"] == digest and info["config"]["Cmd"] == HELLO_CMD
    bundle = os.path.join(work_dir, "bundle")
    proc = image_cli(store, "bundle", ref, bundle)
    assert proc.returncode == 0, proc.stderr
    try:
        assert is_mountpoint(os.path.join(bundle, "rootfs"))
        spec = json.load(open(os.path.join(bundle, "config.json")))
        assert spec["process"]["args"] == HELLO_CMD and spec["root"]["readonly"] is False
        # The busybox tree, owners included, came through the import.
        assert os.stat(os.path.join(bundle, "rootfs", "home", "user")).st_uid == 1001
        result = runtime.run("run", "--bundle", bundle, runtime.new_id(kind[:8]))
        assert result.returncode == 0, result.stderr
        assert result.stdout == "hi\n"
        # The container's root is writable, in the snapshot's upper dir only.
        result = runtime.run("run", "--bundle", bundle, runtime.new_id("w"), check=False)
        assert result.returncode == 0
    finally:
        proc = image_cli(store, "unbundle", bundle)
    assert proc.returncode == 0, proc.stderr
    assert not os.path.exists(bundle)


def test_bundle_of_a_writing_container_keeps_the_image_clean(work_dir, busybox_layout, runtime,
                                                             image_store):
    store = image_store()
    store.import_path(busybox_layout, "busybox:hello",
                      changes=['CMD ["/bin/sh", "-c", "echo data > /etc/new; rm /bin/ls; cat /etc/new"]'])
    bundle = store.make_bundle("busybox:hello", os.path.join(work_dir, "b"))
    try:
        result = runtime.run("run", "--bundle", bundle, runtime.new_id("wr"))
        assert result.returncode == 0, result.stderr
        assert result.stdout == "data\n"
        assert os.path.exists(os.path.join(bundle, "rootfs", "etc", "new"))
        snap = store.snapshots()[0]
        upper = os.path.join(store.root, "snapshots", snap["id"], "upper")
        assert os.path.isfile(os.path.join(upper, "etc", "new"))
        [layer] = store.inspect("busybox:hello")["layers"]
        layer_dir = store.snapshotter.layer_path(layer["diff_id"])
        assert not os.path.exists(os.path.join(layer_dir, "etc", "new"))
        assert os.path.lexists(os.path.join(layer_dir, "bin", "ls"))  # only whited out above
    finally:
        store.remove_bundle(bundle)
    assert store.snapshots() == []


def test_cli_error_exit_codes(work_dir, image_store):
    store = image_store().root
    proc = image_cli(store, "bundle", "missing:1", os.path.join(work_dir, "b"))
    assert proc.returncode == 1 and "no such image" in proc.stderr
    proc = image_cli(store, "unbundle", os.path.join(work_dir, "b"))
    assert proc.returncode == 1 and "no bundle" in proc.stderr
