"""The store without root: imports of every archive kind, names and lookups, platform
rejection, copy-mode snapshots and bundles, rm refused while in use, prune, and pull
policies that need no registry."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile

import pytest

from pyruntime.image import ImageStore
from pyruntime.image.errors import (DigestMismatch, ImageError, ImageInUse, ImageNotFound,
                                    PlatformNotFound)
from pyruntime.image.importer import detect_kind
from pyruntime.image.layout import write_layer_tar, write_oci_layout

from .test_image_layout import make_tree

CMD = ["/bin/tool"]


@pytest.fixture
def store(tmp_path) -> ImageStore:
    return ImageStore(str(tmp_path / "store"), snapshot_mode="copy")


@pytest.fixture
def tree(tmp_path) -> str:
    return make_tree(tmp_path / "rootfs")


def docker_save_from_layout(layout: str, out: str, repo_tags: list[str], as_tar: bool) -> str:
    """A `docker save` archive (old style: <id>/layer.tar, <config hex>.json,
    manifest.json, repositories) with the image of an OCI layout."""
    index = json.load(open(os.path.join(layout, "index.json")))
    blob = lambda d: os.path.join(layout, "blobs", "sha256", d.split(":")[1])  # noqa: E731
    manifest = json.load(open(blob(index["manifests"][0]["digest"])))
    work = out + ".d" if as_tar else out
    os.makedirs(work)
    config_hex = manifest["config"]["digest"].split(":")[1]
    shutil.copy(blob(manifest["config"]["digest"]), os.path.join(work, f"{config_hex}.json"))
    layers = []
    for i, layer in enumerate(manifest["layers"]):
        os.makedirs(os.path.join(work, f"layer{i}"))
        with open(blob(layer["digest"]), "rb") as f:
            raw = gzip.decompress(f.read())  # docker save writes uncompressed layers
        with open(os.path.join(work, f"layer{i}", "layer.tar"), "wb") as f:
            f.write(raw)
        layers.append(f"layer{i}/layer.tar")
    with open(os.path.join(work, "manifest.json"), "w") as f:
        json.dump([{"Config": f"{config_hex}.json", "RepoTags": repo_tags, "Layers": layers}], f)
    with open(os.path.join(work, "repositories"), "w") as f:
        json.dump({t.rsplit(":", 1)[0]: {t.rsplit(":", 1)[1]: "layer0"} for t in repo_tags}, f)
    if as_tar:
        with tarfile.open(out, "w") as tf:
            for name in sorted(os.listdir(work)):
                tf.add(os.path.join(work, name), name)
        shutil.rmtree(work)
    return out


def files_of(root: str) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = "-> " + os.readlink(path)
            elif os.path.isdir(path):
                out[rel] = "dir"
            else:
                out[rel] = open(path, "rb").read()
    return out


def test_import_every_kind(store, tree, tmp_path):
    layout = str(tmp_path / "layout")
    digest = write_oci_layout(tree, layout, {"Cmd": CMD}, "app:1", mtime=0)
    write_oci_layout(tree, str(tmp_path / "layout.tar"), {"Cmd": CMD}, "app:1", mtime=0)
    docker_save_from_layout(layout, str(tmp_path / "saved"), ["saved:1"], as_tar=False)
    docker_save_from_layout(layout, str(tmp_path / "saved.tar"), ["saved:2"], as_tar=True)
    with tarfile.open(tmp_path / "rootfs.tar.gz", "w:gz") as tf:
        tf.add(tree, ".")
    cases = [
        (layout, "oci-layout", None, "docker.io/library/app:1"),
        (str(tmp_path / "layout.tar"), "oci-archive", "other:2", "docker.io/library/other:2"),
        (str(tmp_path / "saved"), "docker-archive", None, "docker.io/library/saved:1"),
        (str(tmp_path / "saved.tar"), "docker-archive", None, "docker.io/library/saved:2"),
        (tree, "rootfs-dir", "fromdir:1", "docker.io/library/fromdir:1"),
        (str(tmp_path / "rootfs.tar.gz"), "rootfs-tar", "fromtar:1", "docker.io/library/fromtar:1"),
    ]
    for path, kind, ref, name in cases:
        assert detect_kind(path) == kind, path
        info = store.import_path(path, ref, changes=['CMD ["/bin/tool"]'])
        assert name in info["names"], (path, info["names"])
        assert store.image_config(name)["Cmd"] == CMD
        rootfs = store.create_snapshot(name, f"s-{kind}")
        got = files_of(rootfs)
        assert got["bin/tool"] == b"#!/bin/sh\necho tool\n", kind
        assert got["bin/alias"] == "-> tool"
        assert os.stat(os.path.join(rootfs, "bin/tool")).st_ino == \
            os.stat(os.path.join(rootfs, "bin/hardlinked")).st_ino
        store.remove_snapshot(f"s-{kind}")
    # Without changes, the OCI layout's image keeps its digest.
    assert store.import_path(layout)["digest"] == digest
    assert {n for i in store.list() for n in i["names"]} >= {c[3] for c in cases}


def test_lookup_by_digest_id_and_prefix(store, tree, tmp_path):
    info = store.import_path(tree, "app:1", changes=["CMD /bin/tool"])
    assert store.resolve("app:1") == store.resolve("docker.io/library/app:1") == info["digest"]
    assert store.resolve(info["digest"]) == info["digest"]
    assert store.resolve(info["id"]) == info["digest"]
    assert store.resolve(info["digest"].split(":")[1][:12]) == info["digest"]
    assert store.resolve(f"app@{info['digest']}") == info["digest"]
    with pytest.raises(ImageNotFound, match="docker.io/library/nope:latest"):
        store.resolve("nope")
    store.tag("app:1", "other:2")
    assert store.inspect("other:2")["names"] == ["docker.io/library/app:1",
                                                  "docker.io/library/other:2"]


def test_wrong_platform_stores_nothing(store, tree, tmp_path):
    layout = str(tmp_path / "arm")
    write_oci_layout(tree, layout, {"Cmd": CMD}, "app:arm", mtime=0, platform="linux/arm64")
    with pytest.raises(PlatformNotFound, match="linux/arm64/v8, not linux/amd64"):
        store.import_path(layout, platform="linux/amd64")
    assert not os.path.exists(os.path.join(store.root, "blobs", "sha256")) or \
        os.listdir(os.path.join(store.root, "blobs", "sha256")) == []
    assert store.list() == []
    assert store.import_path(layout, platform="linux/arm64")["platform"] == "linux/arm64/v8"


def test_corrupt_layout_blob_is_rejected(store, tree, tmp_path):
    layout = str(tmp_path / "layout")
    write_oci_layout(tree, layout, {"Cmd": CMD}, "app:1", mtime=0)
    manifest = json.load(open(os.path.join(layout, "index.json")))["manifests"][0]
    doc = json.load(open(os.path.join(layout, "blobs", "sha256", manifest["digest"].split(":")[1])))
    layer = os.path.join(layout, "blobs", "sha256", doc["layers"][0]["digest"].split(":")[1])
    data = open(layer, "rb").read()
    with open(layer, "wb") as f:
        f.write(data[:-10])  # truncated
    with pytest.raises(DigestMismatch, match=doc["layers"][0]["digest"]):
        store.import_path(layout)
    assert store.list() == []
    assert os.listdir(os.path.join(store.root, "ingest")) == []


def test_docker_archive_with_wrong_diff_id_is_rejected(store, tree, tmp_path):
    layout = str(tmp_path / "layout")
    write_oci_layout(tree, layout, {"Cmd": CMD}, "app:1", mtime=0)
    saved = docker_save_from_layout(layout, str(tmp_path / "saved"), ["saved:1"], as_tar=False)
    with open(os.path.join(saved, "layer0", "layer.tar"), "ab") as f:
        f.write(b"\0" * 1024)
    with pytest.raises(DigestMismatch):
        store.import_path(saved)
    assert store.list() == []


def test_snapshots_bundles_rm_and_prune(store, tree, tmp_path):
    store.import_path(tree, "app:1", changes=['CMD ["/bin/tool"]', "USER user", "WORKDIR /home/user"])
    with tarfile.open(tmp_path / "other.tar", "w") as tf:
        info = tarfile.TarInfo("only-file")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    store.import_path(str(tmp_path / "other.tar"), "other:1", changes=["CMD /only-file"])
    bundle = str(tmp_path / "bundle")
    assert store.make_bundle("app:1", bundle) == bundle
    spec = json.load(open(os.path.join(bundle, "config.json")))
    assert spec["process"]["args"] == CMD
    assert spec["process"]["user"] == {"uid": 1001, "gid": 1001, "additionalGids": [50]}
    assert spec["process"]["cwd"] == "/home/user"
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["process"]["terminal"] is False
    assert os.path.isfile(os.path.join(bundle, "rootfs", "bin", "tool"))
    snap = store.create_snapshot("app:1", "ctr-1")
    with pytest.raises(ImageInUse, match="bundle-.*ctr-1|ctr-1"):
        store.remove("app:1")
    assert store.exists("app:1")
    store.remove_snapshot("ctr-1")
    assert not os.path.exists(snap)
    with pytest.raises(ImageInUse):
        store.remove("app:1")  # the bundle still uses it
    assert store.remove_bundle(bundle)
    assert not os.path.exists(bundle)
    blobs_before = set(store.blobs.digests())
    assert store.remove("app:1") == ["docker.io/library/app:1"]
    assert not store.exists("app:1")
    assert set(store.blobs.digests()) == blobs_before  # rm keeps content until prune
    freed = store.prune()
    assert freed["blobs"] == 3 and freed["bytes"] > 0  # manifest, config, layer
    remaining = set(store.blobs.digests())
    other = store.inspect("other:1")
    assert remaining == {other["digest"], other["id"], other["layers"][0]["digest"]}
    assert store.prune()["blobs"] == 0


def test_pull_policies_that_need_no_registry(store, tree):
    store.import_path(tree, "localhost:1/app:1", changes=["CMD /bin/tool"])
    # Present: IfNotPresent (the default for a non-latest tag) does not reach the
    # registry at port 1, which would refuse the connection.
    assert store.pull("localhost:1/app:1")["names"] == ["localhost:1/app:1"]
    assert store.pull("localhost:1/app:1", policy="Never")["digest"]
    with pytest.raises(ImageNotFound, match="pull policy is Never"):
        store.pull("localhost:1/app:2", policy="Never")
    with pytest.raises(ImageError, match="unknown pull policy"):
        store.pull("localhost:1/app:1", policy="Sometimes")


def test_bundle_needs_a_command(store, tree, tmp_path):
    store.import_path(tree, "nocmd:1")
    with pytest.raises(ImageError, match="neither Entrypoint nor Cmd"):
        store.make_bundle("nocmd:1", str(tmp_path / "b"))
    assert store.snapshots() == []


def test_rootfs_tar_layer_is_the_tarball_itself(store, tree, tmp_path):
    raw = io.BytesIO()
    write_layer_tar(tree, raw, mtime=0, owner=(0, 0))
    (tmp_path / "plain.tar").write_bytes(raw.getvalue())
    info = store.import_path(str(tmp_path / "plain.tar"), "plain:1")
    layer = info["layers"][0]
    assert layer["digest"] == layer["diff_id"] == "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()


def test_zstd_rootfs_tarball(store, tree, tmp_path):
    zstandard = pytest.importorskip("zstandard")
    raw = io.BytesIO()
    write_layer_tar(tree, raw, mtime=0, owner=(0, 0))
    (tmp_path / "rootfs.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))
    assert detect_kind(str(tmp_path / "rootfs.tar.zst")) == "rootfs-tar"
    info = store.import_path(str(tmp_path / "rootfs.tar.zst"), "zstd:1", changes=["CMD /bin/tool"])
    assert info["layers"][0]["media_type"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert info["layers"][0]["diff_id"] == "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    rootfs = store.create_snapshot("zstd:1", "z")
    assert open(os.path.join(rootfs, "bin", "tool"), "rb").read() == b"#!/bin/sh\necho tool\n"
