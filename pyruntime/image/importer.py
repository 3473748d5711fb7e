"""Importing images from files: an OCI image layout (a directory or a tarball of one), a
`docker save` archive (manifest.json + repositories, old or new style), and a plain root
filesystem (a directory or a tarball, plain/gzip/zstd/bzip2/xz) with Dockerfile-style
changes, as `docker import --change` does. `detect_kind` tells them apart.

Every blob is verified against its descriptor as it enters the store, the platform is
checked before any layer is copied (a manifest for another platform stores nothing), and
`changes` (if any) give the image a new config and manifest. The store records the
result (`ImportedImage`) under its names.
"""
from __future__ import annotations

import bz2
import io
import json
import lzma
import os
import re
import tarfile
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable

from pyruntime.image.blobs import BlobStore
from pyruntime.image.changes import apply_changes
from pyruntime.image.digest import Digest, HashingReader, verify_bytes
from pyruntime.image.errors import ImageError, ManifestError
from pyruntime.image.layout import (IMAGE_NAME_ANNOTATION, REF_NAME_ANNOTATION, canonical_json,
                                    image_config_document, write_layer_blob)
from pyruntime.image.manifest import (INDEX_TYPES, OCI_CONFIG, OCI_LAYER, OCI_LAYER_GZIP,
                                      OCI_LAYER_ZSTD, OCI_MANIFEST, Descriptor, Index,
                                      Manifest, Platform, check_config_platform, load_json,
                                      parse_config, parse_document, select_manifest)
from pyruntime.image.reference import parse_reference
from pyruntime.image.unpack import decompressed

OCI_LAYOUT = "oci-layout"
OCI_ARCHIVE = "oci-archive"
DOCKER_ARCHIVE = "docker-archive"
ROOTFS_DIR = "rootfs-dir"
ROOTFS_TAR = "rootfs-tar"
KINDS = (OCI_LAYOUT, OCI_ARCHIVE, DOCKER_ARCHIVE, ROOTFS_DIR, ROOTFS_TAR)

_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2",
          b"\xfd7zXZ\x00": "xz"}
_COMPRESSED_LAYER = {"tar": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}
_HEX_NAME = re.compile(r"(?:^|/)(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?$")
_MAX_NESTING = 4


@dataclass
class ImportedImage:
    """What an import stored: the manifest's digest (its config and layers are in the
    blob store too) and the names to record for it."""

    manifest_digest: str
    names: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- sources
class _Source:
    """Files of an archive, by their path inside it, for a directory or a tarball."""

    what: str

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def read(self, name: str, limit: int = 4 << 20) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ManifestError(f"{self.what}: {name} is larger than {limit} bytes")
        return data

    def close(self) -> None:
        pass


class _DirSource(_Source):
    def __init__(self, path: str) -> None:
        self.root = path
        self.what = path

    def _path(self, name: str) -> str:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ImageError(f"{self.what}: {name!r} points outside the archive")
        return os.path.join(self.root, *parts)

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def open(self, name: str) -> BinaryIO:
        try:
            return open(self._path(name), "rb")
        except FileNotFoundError:
            raise ImageError(f"{self.what}: {name} is missing") from None


class _TarSource(_Source):
    def __init__(self, path: str) -> None:
        self.what = path
        try:
            self.tf = tarfile.open(path, "r:*")
        except (tarfile.TarError, OSError) as e:
            raise ImageError(f"{path}: cannot read as a tar archive: {e}") from None
        self.members = {_tar_name(m.name): m for m in self.tf.getmembers()}

    def exists(self, name: str) -> bool:
        m = self.members.get(_tar_name(name))
        return m is not None and (m.isreg() or m.issym() or m.islnk())

    def open(self, name: str) -> BinaryIO:
        m = self.members.get(_tar_name(name))
        if m is None:
            raise ImageError(f"{self.what}: {name} is missing")
        try:
            # extractfile follows symlinks and hard links inside the archive (old
            # `docker save` links duplicate layers to the first copy).
            f = self.tf.extractfile(m)
        except (KeyError, tarfile.TarError) as e:
            raise ImageError(f"{self.what}: {name}: {e}") from None
        if f is None:
            raise ImageError(f"{self.what}: {name} is not a file")
        return f  # type: ignore[return-value]

    def close(self) -> None:
        self.tf.close()


def _tar_name(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


# --------------------------------------------------------------------------- detection
def detect_kind(path: str) -> str:
    """Which of KINDS `path` is: a directory with `oci-layout` is an OCI layout, one with
    a `manifest.json` list is a docker-save archive, any other directory a root
    filesystem; the same for tarballs, by their top-level files."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "oci-layout")):
            return OCI_LAYOUT
        if _is_docker_manifest(os.path.join(path, "manifest.json")):
            return DOCKER_ARCHIVE
        return ROOTFS_DIR
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file or directory")
    compression = _compression(path)
    if compression == "zstd":
        return ROOTFS_TAR  # tarfile cannot read zstd: such a tarball is a layer
    try:
        with tarfile.open(path, "r:*") as tf:
            members = {_tar_name(m.name): m for m in tf}
            if "oci-layout" in members:
                return OCI_ARCHIVE
            manifest = members.get("manifest.json")
            if manifest is not None and manifest.isreg():
                f = tf.extractfile(manifest)
                if f is not None and _is_docker_manifest_bytes(f.read(4 << 20)):
                    return DOCKER_ARCHIVE
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ImageError(f"{path}: not a directory or a tar archive ({e})") from None
    return ROOTFS_TAR


def _is_docker_manifest(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return _is_docker_manifest_bytes(f.read(4 << 20))
    except OSError:
        return False


def _is_docker_manifest_bytes(data: bytes) -> bool:
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return isinstance(doc, list) and bool(doc) and all(
        isinstance(e, dict) and "Config" in e and "Layers" in e for e in doc)


def _compression(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(6)
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    return "tar"


# --------------------------------------------------------------------------- importing
class Importer:
    """Imports into `blobs`, selecting `platform` where an archive has several."""

    def __init__(self, blobs: BlobStore, platform: Platform) -> None:
        self.blobs = blobs
        self.platform = platform

    def import_path(self, path: str, ref: str | None = None,
                    changes: Iterable[str] | None = None,
                    kind: str | None = None) -> list[ImportedImage]:
        kind = kind or detect_kind(path)
        if kind not in KINDS:
            raise ImageError(f"unknown archive kind {kind!r} (one of {', '.join(KINDS)})")
        name = str(parse_reference(ref)) if ref is not None else None
        changes = list(changes or [])
        if kind in (ROOTFS_DIR, ROOTFS_TAR):
            return [self._import_rootfs(path, kind, name, changes)]
        source: _Source = _DirSource(path) if os.path.isdir(path) else _TarSource(path)
        try:
            if kind in (OCI_LAYOUT, OCI_ARCHIVE):
                return [self._import_oci(source, name, changes)]
            return self._import_docker(source, name, changes)
        finally:
            source.close()

    # ------------------------------------------------------------------ OCI layouts
    def _import_oci(self, src: _Source, name: str | None, changes: list[str]) -> ImportedImage:
        layout = load_json(src.read("oci-layout"), f"{src.what}: oci-layout")
        version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
        if not isinstance(version, str) or not version.startswith("1."):
            raise ManifestError(f"{src.what}: oci-layout has imageLayoutVersion {version!r}; "
                                "only 1.x layouts are supported")
        index = parse_document(src.read("index.json"), f"{src.what}: index.json")
        if not isinstance(index, Index):
            raise ManifestError(f"{src.what}: index.json is not an image index")
        entry, entry_name = self._choose_entry(index, name, src.what)
        desc = entry
        for _ in range(_MAX_NESTING):
            if desc.media_type not in INDEX_TYPES:
                break
            nested = parse_document(self._read_blob(src, desc), f"{src.what}: index {desc.digest}",
                                    desc.media_type)
            if not isinstance(nested, Index):
                raise ManifestError(f"{src.what}: {desc.digest} is labelled an index but is not")
            desc = select_manifest(nested, self.platform, f"{src.what}: index {desc.digest}")
        else:
            raise ManifestError(f"{src.what}: indexes nested more than {_MAX_NESTING} deep")
        manifest_bytes = self._read_blob(src, desc)
        manifest = parse_document(manifest_bytes, f"{src.what}: manifest {desc.digest}",
                                  desc.media_type)
        if not isinstance(manifest, Manifest):
            raise ManifestError(f"{src.what}: {desc.digest} is not an image manifest")
        config_bytes = self._read_blob(src, manifest.config)
        config = parse_config(config_bytes, f"{src.what}: config {manifest.config.digest}")
        check_config_platform(config, self.platform, f"{src.what} ({desc.digest})")
        _check_layer_count(manifest, config, f"{src.what}: manifest {desc.digest}")
        for layer in manifest.layers:
            if not self.blobs.has(layer.digest, layer.size):
                with src.open(_blob_path(layer.digest)) as f:
                    self.blobs.put_stream(f, layer.digest, layer.size,
                                          f"{src.what}: layer {layer.digest}")
        self.blobs.put_bytes(config_bytes, manifest.config.digest, manifest.config.size,
                             f"{src.what}: config")
        manifest_digest = self.blobs.put_bytes(manifest_bytes, desc.digest, desc.size,
                                               f"{src.what}: manifest")
        if changes:
            manifest_digest = self._rewrite_config(manifest_bytes, config, changes)
        names = [name] if name else ([entry_name] if entry_name else [])
        return ImportedImage(manifest_digest, names)

    def _choose_entry(self, index: Index, name: str | None,
                      what: str) -> tuple[Descriptor, str | None]:
        entries = list(index.manifests)
        if not entries:
            raise ManifestError(f"{what}: index.json lists no images")
        named = [(d, _entry_name(d)) for d in entries]
        if len(entries) == 1:
            return named[0]
        if name is not None:
            ref = parse_reference(name)
            for d, n in named:
                ann = d.annotations.get(REF_NAME_ANNOTATION)
                if n == name or (ann is not None and ann in (ref.tag, name)):
                    return d, n
        if all(d.platform is not None for d in entries):
            # index.json lists one image per platform (no names to tell images apart).
            d = select_manifest(index, self.platform, f"{what}: index.json")
            return d, _entry_name(d)
        names = [n or d.annotations.get(REF_NAME_ANNOTATION) or d.digest for d, n in named]
        raise ImageError(f"{what}: the layout holds {len(entries)} images ({', '.join(names)}); "
                         "name the one to import as the reference")

    def _read_blob(self, src: _Source, desc: Descriptor) -> bytes:
        data = src.read(_blob_path(desc.digest))
        verify_bytes(data, desc.digest, desc.size, f"{src.what}: blob {desc.digest}")
        return data

    # ------------------------------------------------------------------ docker save
    def _import_docker(self, src: _Source, name: str | None,
                       changes: list[str]) -> list[ImportedImage]:
        entries = load_json(src.read("manifest.json"), f"{src.what}: manifest.json")
        if not isinstance(entries, list) or not entries:
            raise ManifestError(f"{src.what}: manifest.json is not a list of images")
        if name is not None and len(entries) > 1:
            matching = [e for e in entries if name in _repo_tags(e, src.what)]
            if not matching:
                raise ImageError(f"{src.what}: the archive holds {len(entries)} images and "
                                 f"none is tagged {name}; name one of its RepoTags")
            entries = matching
        return [self._import_docker_entry(src, e, i, name, changes)
                for i, e in enumerate(entries)]

    def _import_docker_entry(self, src: _Source, entry: Any, i: int, name: str | None,
                             changes: list[str]) -> ImportedImage:
        what = f"{src.what}: manifest.json[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise ManifestError(f"{what}: needs 'Config' (a path) and 'Layers' (a list)")
        config_path = entry["Config"]
        config_bytes = src.read(config_path)
        config = parse_config(config_bytes, f"{src.what}: {config_path}")
        match = _HEX_NAME.search(config_path)
        if match:  # the file is named after its digest: hold it to that
            verify_bytes(config_bytes, f"sha256:{match.group(1)}", None,
                         f"{src.what}: {config_path}")
        check_config_platform(config, self.platform, f"{src.what} ({config_path})")
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(entry["Layers"]):
            raise ManifestError(f"{what}: {len(entry['Layers'])} layers but the config has "
                                f"{len(diff_ids)} diff_ids")
        layers = []
        for path, diff_id in zip(entry["Layers"], diff_ids):
            with src.open(path) as raw:
                stream = io.BufferedReader(raw)  # type: ignore[arg-type]
                compression = _stream_compression(stream)
                # An uncompressed layer is its own diff: verify it as it is copied in.
                expected = diff_id if compression == "tar" else None
                digest, size = self.blobs.put_stream(stream, expected, None,
                                                     f"{src.what}: layer {path}")
            layers.append({"mediaType": _COMPRESSED_LAYER[compression], "digest": digest,
                           "size": size})
        config_digest = self.blobs.put_bytes(config_bytes, what=f"{src.what}: {config_path}")
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                               "size": len(config_bytes)},
                    "layers": layers}
        manifest_bytes = canonical_json(manifest)
        manifest_digest = self.blobs.put_bytes(manifest_bytes)
        if changes:
            manifest_digest = self._rewrite_config(manifest_bytes, config, changes)
        names = [name] if name else _repo_tags(entry, src.what)
        return ImportedImage(manifest_digest, names)

    # ------------------------------------------------------------------ root filesystems
    def _import_rootfs(self, path: str, kind: str, name: str | None,
                       changes: list[str]) -> ImportedImage:
        if kind == ROOTFS_DIR:
            with self.blobs.writer(what=f"{path}: layer") as w:
                _, _, diff_id = write_layer_blob(path, w, mtime=None, owner=None)  # type: ignore[arg-type]
                digest, size = w.commit()
            media_type = OCI_LAYER_GZIP
        else:
            compression = _compression(path)
            if compression in ("bzip2", "xz"):
                # Not a layer compression the specs know: store the plain tar.
                opener = bz2.open if compression == "bzip2" else lzma.open
                with opener(path, "rb") as f:
                    digest, size = self.blobs.put_stream(f, None, None, f"{path}")  # type: ignore[arg-type]
                compression = "tar"
            else:
                digest, size = self.blobs.put_file(path, None, None, path)
            media_type = _COMPRESSED_LAYER[compression]
            with self.blobs.open(digest) as blob:
                reader = HashingReader(decompressed(blob, path))
                reader.drain()
            diff_id = reader.digest()
        created = int(time.time())
        config = image_config_document({}, [diff_id], self.platform, created)
        config["history"][0]["created_by"] = f"pyruntime image import {os.path.basename(path)}"
        config = apply_changes(config, changes)
        config_bytes = canonical_json(config)
        config_digest = self.blobs.put_bytes(config_bytes)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                               "size": len(config_bytes)},
                    "layers": [{"mediaType": media_type, "digest": digest, "size": size}]}
        manifest_digest = self.blobs.put_bytes(canonical_json(manifest))
        return ImportedImage(manifest_digest, [name] if name else [])

    # ------------------------------------------------------------------ changes
    def _rewrite_config(self, manifest_bytes: bytes, config: dict[str, Any],
                        changes: list[str]) -> str:
        """A new config with `changes`, and a new manifest pointing at it (same type,
        same layers): the image's digest changes with its config."""
        new_config = canonical_json(apply_changes(config, changes))
        config_digest = self.blobs.put_bytes(new_config)
        manifest = json.loads(manifest_bytes)
        manifest["config"] = dict(manifest["config"], digest=config_digest, size=len(new_config))
        return self.blobs.put_bytes(canonical_json(manifest))


def _entry_name(d: Descriptor) -> str | None:
    """The full image name an index.json entry carries, if any: containerd's annotation,
    or a ref.name that is a whole reference (`busybox:1.36`, `host/app:1`), not just a
    tag (`latest`)."""
    full = d.annotations.get(IMAGE_NAME_ANNOTATION)
    if full:
        return str(parse_reference(full))
    ref_name = d.annotations.get(REF_NAME_ANNOTATION)
    if ref_name and ("/" in ref_name or ":" in ref_name):
        try:
            return str(parse_reference(ref_name))
        except ImageError:
            return None
    return None


def _repo_tags(entry: dict[str, Any], what: str) -> list[str]:
    tags = entry.get("RepoTags") or []
    if not isinstance(tags, list):
        raise ManifestError(f"{what}: RepoTags is not a list")
    return [str(parse_reference(t)) for t in tags if isinstance(t, str)]


def _blob_path(digest: str) -> str:
    d = Digest.parse(digest)
    return f"blobs/{d.algorithm}/{d.hex}"


def _stream_compression(stream: io.BufferedReader) -> str:
    head = stream.peek(6)[:6]
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            if name in ("bzip2", "xz"):
                raise ImageError(f"layer compressed with {name}: not a layer format "
                                 "(use plain, gzip or zstd tarballs)")
            return name
    return "tar"


def _check_layer_count(manifest: Manifest, config: dict[str, Any], what: str) -> None:
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(manifest.layers):
        raise ManifestError(f"{what}: {len(manifest.layers)} layers but the config has "
                            f"{len(diff_ids)} diff_ids")


__all__ = ["detect_kind", "Importer", "ImportedImage", "KINDS", "OCI_LAYOUT", "OCI_ARCHIVE",
           "DOCKER_ARCHIVE", "ROOTFS_DIR", "ROOTFS_TAR"]
