"""Index, manifest and config parsing (OCI and Docker media types) and platform
selection."""
from __future__ import annotations

import json

import pytest

from pyruntime.image.errors import ManifestError, PlatformNotFound
from pyruntime.image.manifest import (DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LIST,
                                      DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP,
                                      OCI_LAYER_ZSTD, OCI_MANIFEST, Index, Manifest, Platform,
                                      check_config_platform, layer_compression, parse_config,
                                      parse_document, parse_platform, select_manifest)


def d(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def entry(n: int, arch: str, variant: str | None = None, os_: str = "linux",
          media_type: str = OCI_MANIFEST) -> dict:
    platform = {"architecture": arch, "os": os_}
    if variant:
        platform["variant"] = variant
    return {"mediaType": media_type, "digest": d(n), "size": 100 + n, "platform": platform}


def index_doc(media_type: str = OCI_INDEX, entries: list | None = None) -> bytes:
    entries = entries if entries is not None else [
        entry(1, "amd64"), entry(2, "arm64", "v8"), entry(3, "arm", "v7"), entry(4, "arm", "v6"),
        entry(5, "unknown", os_="unknown"), entry(6, "ppc64le")]
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}).encode()


def manifest_doc(media_type=OCI_MANIFEST, config_type=OCI_CONFIG, layer_type=OCI_LAYER_GZIP,
                 with_media_type=True) -> bytes:
    doc = {"schemaVersion": 2,
           "config": {"mediaType": config_type, "digest": d(10), "size": 50},
           "layers": [{"mediaType": layer_type, "digest": d(11), "size": 1000},
                      {"mediaType": layer_type, "digest": d(12), "size": 2000}]}
    if with_media_type:
        doc["mediaType"] = media_type
    return json.dumps(doc).encode()


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_parse_index(media_type):
    index = parse_document(index_doc(media_type), "test")
    assert isinstance(index, Index) and index.media_type == media_type
    assert [m.digest for m in index.manifests][:2] == [d(1), d(2)]
    assert index.manifests[1].platform == Platform("linux", "arm64", "v8")


@pytest.mark.parametrize("media_type,config_type,layer_type", [
    (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP),
    (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_ZSTD),
    (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP),
])
def test_parse_manifest(media_type, config_type, layer_type):
    m = parse_document(manifest_doc(media_type, config_type, layer_type), "test")
    assert isinstance(m, Manifest) and m.media_type == media_type
    assert m.config.digest == d(10) and [layer.size for layer in m.layers] == [1000, 2000]
    assert layer_compression(m.layers[0]) == ("zstd" if "zstd" in layer_type else "gzip")


def test_media_type_from_content_type_or_shape():
    m = parse_document(manifest_doc(DOCKER_MANIFEST, with_media_type=False), "t", DOCKER_MANIFEST)
    assert m.media_type == DOCKER_MANIFEST
    assert isinstance(parse_document(manifest_doc(with_media_type=False), "t"), Manifest)
    doc = json.loads(index_doc())
    del doc["mediaType"]
    assert isinstance(parse_document(json.dumps(doc).encode(), "t"), Index)


@pytest.mark.parametrize("doc,message", [
    (b"not json", "not valid JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({"schemaVersion": 1, "name": "x"}).encode(), "schema 1"),
    (json.dumps({"schemaVersion": 2, "mediaType": "application/x-foo"}).encode(), "unknown media type"),
    (manifest_doc(layer_type="application/x-tar-bz2"), "not a layer type"),
    (manifest_doc(config_type="application/vnd.cncf.helm.config.v1+json"), "not a container image"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                 "config": {"mediaType": OCI_CONFIG, "digest": "sha256:xyz", "size": 1},
                 "layers": []}).encode(), "not a valid sha256 digest"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                 "config": {"mediaType": OCI_CONFIG, "digest": d(1), "size": -1},
                 "layers": []}).encode(), "no valid size"),
])
def test_invalid_documents(doc, message):
    with pytest.raises(ManifestError if message != "not a valid sha256 digest" else Exception,
                       match=message):
        parse_document(doc, "test")


@pytest.mark.parametrize("wanted,expected", [
    ("linux/amd64", 1),
    ("linux/arm64", 2),
    ("linux/arm64/v8", 2),
    ("linux/arm/v7", 3),
    ("linux/arm", 3),       # arm means arm/v7
    ("linux/arm/v6", 4),
    ("linux/ppc64le", 6),
])
def test_select_platform(wanted, expected):
    index = parse_document(index_doc(), "test")
    assert select_manifest(index, parse_platform(wanted), "test").digest == d(expected)


def test_platform_not_found_lists_what_there_is():
    index = parse_document(index_doc(), "busybox")
    with pytest.raises(PlatformNotFound) as e:
        select_manifest(index, parse_platform("linux/s390x"), "busybox")
    message = str(e.value)
    assert "linux/s390x" in message and "linux/arm64/v8" in message and "unknown" not in message


def test_index_without_platforms_is_a_list_of_images():
    doc = index_doc(entries=[{"mediaType": OCI_MANIFEST, "digest": d(7), "size": 7}])
    assert select_manifest(parse_document(doc, "t"), parse_platform("linux/arm64"), "t").digest == d(7)


def test_parse_platform():
    assert parse_platform("linux/amd64") == Platform("linux", "amd64", "v1")
    assert parse_platform("linux/aarch64") == Platform("linux", "arm64", "v8")
    assert str(parse_platform("linux/arm/v7")) == "linux/arm/v7"
    with pytest.raises(Exception, match="OS/ARCH"):
        parse_platform("amd64")


def test_config_platform_check():
    config = {"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    with pytest.raises(PlatformNotFound, match="linux/arm64, not linux/amd64"):
        check_config_platform(config, parse_platform("linux/amd64"), "img")
    check_config_platform(config, parse_platform("linux/arm64"), "img")
    check_config_platform({"rootfs": {}}, parse_platform("linux/amd64"), "img")  # unknown: fine


def test_parse_config():
    good = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [d(1)]}}
    assert parse_config(json.dumps(good).encode(), "c")["config"]["Cmd"] == ["sh"]
    with pytest.raises(ManifestError, match="rootfs"):
        parse_config(json.dumps({"os": "linux"}).encode(), "c")
    with pytest.raises(Exception, match="diff_ids"):
        parse_config(json.dumps({"rootfs": {"type": "layers", "diff_ids": ["x"]}}).encode(), "c")
