"""Pulls from Debian's docker-registry (distribution v2) on loopback, of images pushed to it
by the store's own `push`: a multi-layer image whose second layer deletes a file and
replaces a directory opaquely, checked file by file in an overlay snapshot, in a copy
snapshot and in a running container; basic (htpasswd) and token (basic -> bearer) auth."""
from __future__ import annotations

import io
import json
import os
import stat

import pytest

from . import ROOT_ONLY
from .image_fixtures import (REGISTRY_PASSWORD, REGISTRY_USER, build_layout,  # noqa: F401
                             busybox_layout, docker_registry, image_cli, image_store, layer_blob)
from pyruntime.image.errors import RegistryError
from pyruntime.image.layout import write_layer_blob
from pyruntime.image.snapshot import is_mountpoint

pytestmark = ROOT_ONLY

LAYER1 = [("dir", "data"), ("file", "data/gone", b"deleted by layer 2"),
          ("file", "data/kept", b"kept"), ("dir", "data/opaque"),
          ("file", "data/opaque/old1", b"o1"), ("dir", "data/opaque/sub"),
          ("file", "data/opaque/sub/old2", b"o2"), ("file", "data/replaced", b"v1"),
          ("symlink", "data/link", "kept")]
LAYER2 = [("dir", "data"), ("file", "data/.wh.gone", b""), ("dir", "data/opaque"),
          ("file", "data/opaque/.wh..wh..opq", b""), ("file", "data/opaque/new", b"new"),
          ("file", "data/replaced", b"v2"), ("file", "data/added", b"added")]
EXPECTED = {
    "data": "dir", "data/kept": b"kept", "data/link": "-> kept", "data/opaque": "dir",
    "data/opaque/new": b"new", "data/replaced": b"v2", "data/added": b"added",
}
LIST_CMD = ["/bin/sh", "-c", "cd /data && find . | sort && cat replaced opaque/new"]


def tree(root: str, under: str) -> dict:
    out = {}
    base = os.path.join(root, under)
    out[under] = "dir"
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "-> " + os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            elif stat.S_ISCHR(st.st_mode):
                out[rel] = f"chr {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            else:
                out[rel] = open(path, "rb").read()
    return out


def push_whiteout_image(store, busybox_rootfs, work_dir, target: str, **push_kwargs) -> str:
    """Import a 3-layer image (busybox, LAYER1, LAYER2) and push it to `target`."""
    raw = io.BytesIO()
    digest, size, diff_id = write_layer_blob(busybox_rootfs, raw, mtime=0, owner=None)
    layers = [(raw.getvalue(), diff_id), layer_blob(LAYER1), layer_blob(LAYER2)]
    layout = os.path.join(work_dir, "whiteout-layout")
    build_layout(layout, layers, {"Cmd": LIST_CMD}, "whiteout:1")
    store.import_path(layout)
    return store.push("whiteout:1", target, **push_kwargs)


def test_pull_multilayer_image_with_whiteouts(docker_registry, image_store, busybox_rootfs,
                                              work_dir, runtime):
    registry = docker_registry()
    ref = f"{registry.host}/test/whiteout:1"
    pushed = push_whiteout_image(image_store("src", snapshot_mode="copy"), busybox_rootfs,
                                 work_dir, ref)
    store = image_store("dst")
    proc = image_cli(store.root, "pull", ref)
    assert proc.returncode == 0, proc.stderr
    info = store.inspect(ref)
    assert info["digest"] == pushed and len(info["layers"]) == 3
    # Each layer unpacked once, in overlay form.
    layer2 = store.snapshotter.layer_path(info["layers"][2]["diff_id"])
    assert tree(layer2, "data")["data/gone"] == "chr 0:0"
    assert os.getxattr(os.path.join(layer2, "data", "opaque"), "trusted.overlay.opaque") == b"y"
    rootfs = store.create_snapshot(ref, "whiteouts")
    try:
        assert is_mountpoint(rootfs)
        assert tree(rootfs, "data") == EXPECTED
        assert os.path.isfile(os.path.join(rootfs, "bin", "busybox"))
    finally:
        store.remove_snapshot("whiteouts")
    assert not is_mountpoint(rootfs)
    # The copy mode applies the same whiteouts itself.
    copy_store = image_store("copy", snapshot_mode="copy")
    copy_store.pull(ref)
    assert tree(copy_store.create_snapshot(ref, "copied"), "data") == EXPECTED
    # And the container sees it.
    bundle = store.make_bundle(ref, os.path.join(work_dir, "bundle"))
    try:
        result = runtime.run("run", "--bundle", bundle, runtime.new_id("wh"))
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n") == [
            ".", "./added", "./kept", "./link", "./opaque", "./opaque/new", "./replaced",
            "v2new"]
    finally:
        store.remove_bundle(bundle)


def test_warm_pull_and_policies(docker_registry, image_store, busybox_layout):
    registry = docker_registry()
    src = image_store("src", snapshot_mode="copy")
    src.import_path(busybox_layout)
    ref = f"{registry.host}/lib/busybox:hello"
    digest = src.push("busybox:hello", ref)
    store = image_store("dst")
    assert store.pull(ref, policy="IfNotPresent")["digest"] == digest
    layers_before = store.snapshotter.layer_dirs()
    assert store.pull(ref, policy="Always")["digest"] == digest  # warm: nothing new
    assert store.snapshotter.layer_dirs() == layers_before
    assert store.pull(f"{registry.host}/lib/busybox@{digest}")["digest"] == digest
    proc = image_cli(store.root, "pull", f"{registry.host}/lib/missing:1")
    assert proc.returncode == 1 and "not found in registry" in proc.stderr


def test_htpasswd_basic_auth(docker_registry, image_store, busybox_layout):
    registry = docker_registry("htpasswd")
    src = image_store("src", snapshot_mode="copy")
    src.import_path(busybox_layout)
    ref = f"{registry.host}/private/busybox:1"
    with pytest.raises(RegistryError, match="--creds"):
        src.push("busybox:hello", ref)
    creds = (REGISTRY_USER, REGISTRY_PASSWORD)
    digest = src.push("busybox:hello", ref, credentials=creds)
    store = image_store("dst")
    proc = image_cli(store.root, "pull", ref)
    assert proc.returncode == 1 and "needs a login" in proc.stderr
    proc = image_cli(store.root, "pull", ref, "--creds", f"{REGISTRY_USER}:wrong")
    assert proc.returncode == 1 and "401" in proc.stderr
    proc = image_cli(store.root, "pull", ref, "--creds", f"{REGISTRY_USER}:{REGISTRY_PASSWORD}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == digest


def test_token_auth_basic_to_bearer(docker_registry, image_store, busybox_layout, work_dir):
    registry = docker_registry("token")
    src = image_store("src", snapshot_mode="copy")
    src.import_path(busybox_layout)
    ref = f"{registry.host}/private/busybox:1"
    creds = (REGISTRY_USER, REGISTRY_PASSWORD)
    digest = src.push("busybox:hello", ref, credentials=creds)
    store = image_store("dst")
    with pytest.raises(RegistryError, match="token service"):
        store.pull(ref)
    assert store.pull(ref, credentials=creds)["digest"] == digest
    scopes = [r["query"].get("scope") for r in registry.token.requests]
    assert ["repository:private/busybox:pull,push"] in scopes
    assert ["repository:private/busybox:pull"] in scopes
    auth_file = os.path.join(work_dir, "auth.json")
    import base64
    with open(auth_file, "w") as f:
        json.dump({"auths": {registry.host: {"auth": base64.b64encode(
            f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()}}}, f)
    other = image_store("other", auth_file=auth_file)
    assert other.pull(ref)["digest"] == digest
