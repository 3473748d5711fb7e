"""`write_oci_layout`: reproducible images (same input, same digest) that the store
imports back into the same tree."""
from __future__ import annotations

import gzip
import io
import json
import os
import tarfile

import pytest

from pyruntime.image.layout import write_oci_layout

CONFIG = {"Cmd": ["/bin/sh", "-c", "echo hi"], "Env": ["PATH=/bin"], "WorkingDir": "/"}


def make_tree(root) -> str:
    os.makedirs(root / "bin")
    os.makedirs(root / "etc")
    os.makedirs(root / "home" / "user")
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho tool\n")
    os.chmod(root / "bin" / "tool", 0o755)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1001:1001::/home/user:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nuser:x:1001:\nstaff:x:50:user\n")
    os.symlink("tool", root / "bin" / "alias")
    os.link(root / "bin" / "tool", root / "bin" / "hardlinked")
    (root / "zz-last").write_text("z")
    (root / "AA-first").write_text("a")
    return str(root)


def layer_members(layout_dir) -> list[tarfile.TarInfo]:
    index = json.load(open(os.path.join(layout_dir, "index.json")))
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.load(open(os.path.join(layout_dir, "blobs", "sha256", manifest_digest)))
    layer = manifest["layers"][0]["digest"].split(":")[1]
    with open(os.path.join(layout_dir, "blobs", "sha256", layer), "rb") as f:
        raw = gzip.decompress(f.read())
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        return tf.getmembers()


def test_same_input_same_digest(tmp_path):
    tree = make_tree(tmp_path / "rootfs")
    a = write_oci_layout(tree, str(tmp_path / "a"), CONFIG, "app:1", mtime=0)
    b = write_oci_layout(tree, str(tmp_path / "b"), dict(CONFIG), "app:1", mtime=0)
    c = write_oci_layout(tree, str(tmp_path / "c.tar"), CONFIG, "app:1", mtime=0)
    assert a == b == c
    # Touching every file does not matter: mtimes are fixed.
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (12345, 12345), follow_symlinks=False)
    assert write_oci_layout(tree, str(tmp_path / "d"), CONFIG, "app:1", mtime=0) == a
    with open(tmp_path / "c.tar", "rb") as f1:
        first = f1.read()
    write_oci_layout(tree, str(tmp_path / "c.tar"), CONFIG, "app:1", mtime=0)
    with open(tmp_path / "c.tar", "rb") as f2:
        assert f2.read() == first  # the tarball itself is byte-identical


def test_inputs_change_the_digest(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "rootfs")
    base = write_oci_layout(tree, str(tmp_path / "a"), CONFIG, "app:1", mtime=0)
    assert write_oci_layout(tree, str(tmp_path / "b"), {"Cmd": ["x"]}, "app:1", mtime=0) != base
    assert write_oci_layout(tree, str(tmp_path / "c"), CONFIG, "app:1", mtime=1) != base
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")
    assert write_oci_layout(tree, str(tmp_path / "e"), CONFIG, "app:1") == \
        write_oci_layout(tree, str(tmp_path / "f"), CONFIG, "app:1", mtime=1)
    (tmp_path / "rootfs" / "new").write_text("n")
    assert write_oci_layout(tree, str(tmp_path / "d"), CONFIG, "app:1", mtime=0) != base


def test_layer_tar_is_normalised(tmp_path):
    tree = make_tree(tmp_path / "rootfs")
    write_oci_layout(tree, str(tmp_path / "a"), CONFIG, "app:1", mtime=7, owner=(0, 0))
    members = layer_members(str(tmp_path / "a"))
    names = [m.name for m in members]
    assert names == sorted(names, key=os.fsencode)
    assert names[0] == "AA-first" and "zz-last" in names
    assert all(m.mtime == 7 and m.uname == "" and m.gname == "" and m.uid == 0 for m in members)
    by_name = {m.name: m for m in members}
    assert by_name["bin/alias"].issym() and by_name["bin/alias"].linkname == "tool"
    assert by_name["bin/tool"].islnk() and by_name["bin/tool"].linkname == "bin/hardlinked"
    assert by_name["bin/hardlinked"].mode == 0o755


def test_index_names_the_image(tmp_path):
    tree = make_tree(tmp_path / "rootfs")
    digest = write_oci_layout(tree, str(tmp_path / "a"), CONFIG, "localhost:5000/app:1", mtime=0,
                              platform="linux/arm64")
    index = json.load(open(tmp_path / "a" / "index.json"))
    [entry] = index["manifests"]
    assert entry["digest"] == digest
    assert entry["annotations"] == {"io.containerd.image.name": "localhost:5000/app:1",
                                    "org.opencontainers.image.ref.name": "1"}
    assert entry["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert json.load(open(tmp_path / "a" / "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    # A second image in the same layout is added beside the first.
    write_oci_layout(tree, str(tmp_path / "a"), CONFIG, "localhost:5000/app:2", mtime=0)
    assert len(json.load(open(tmp_path / "a" / "index.json"))["manifests"]) == 2
    with pytest.raises(Exception):
        write_oci_layout(tree, str(tmp_path / "x"), CONFIG, "Not A Ref")
