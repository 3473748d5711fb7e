"""Writing images: deterministic layer tarballs and OCI image layouts.

`write_oci_layout` is the reproducibility helper `rootfs-tools/` builds images with: the
same root filesystem, config and reference always give the same bytes, hence the same
digests. `write_layer_tar` is the deterministic tar writer it uses (the store's own
rootfs-directory import uses it too).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import tarfile
import tempfile
from typing import Any, BinaryIO

from pyruntime.image.manifest import (OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_LAYER_GZIP,
                                      OCI_MANIFEST, Platform, host_platform, parse_platform)
from pyruntime.image.reference import parse_reference

OCI_LAYOUT_VERSION = "1.0.0"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
#: containerd's (and buildkit's) annotation for the full image name in an index.json
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
#: xattrs worth carrying into an image: others (security.selinux...) describe the host
_KEPT_XATTRS = ("user.", "security.capability", "trusted.")


def canonical_json(doc: Any) -> bytes:
    """One byte sequence per document: sorted keys, no spaces (digests are of bytes)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH (the reproducible-builds convention) or 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else 0


def rfc3339(epoch: int | float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO | None) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        if self.raw is not None:
            self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        if self.raw is not None:
            self.raw.flush()

    def digest(self) -> str:
        return f"sha256:{self.hash.hexdigest()}"


def write_layer_tar(rootfs_dir: str, fileobj: BinaryIO, *, mtime: int | None = None,
                    owner: tuple[int, int] | None = None) -> None:
    """Write the tree at `rootfs_dir` as a layer tarball (uncompressed) to `fileobj`.

    Deterministic: entries in byte order of their paths (`bin/`, `bin/busybox`, ...; no
    `./` prefix, no entry for the root itself), PAX format, empty user and group names,
    hard links as links to the first path in that order. `mtime` fixes every entry's
    mtime (None keeps each file's own); `owner` = (uid, gid) fixes owners (None keeps
    the numeric owners, e.g. 1001 for a home directory). Sockets are left out;
    `user.*`, `security.capability` and `trusted.*` xattrs are kept.
    """
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                      encoding="utf-8", errors="surrogateescape") as tf:
        links: dict[tuple[int, int], str] = {}
        root_fd = os.open(rootfs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _add_tree(tf, root_fd, "", mtime, owner, links)
        finally:
            os.close(root_fd)


def _add_tree(tf: tarfile.TarFile, dir_fd: int, prefix: str, mtime: int | None,
              owner: tuple[int, int] | None, links: dict[tuple[int, int], str]) -> None:
    names = sorted(os.listdir(dir_fd), key=os.fsencode)
    for name in names:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        path = prefix + name
        info = tarfile.TarInfo(path)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = owner if owner is not None else (st.st_uid, st.st_gid)
        info.uname = info.gname = ""
        info.mtime = mtime if mtime is not None else int(st.st_mtime)
        xattrs = _xattrs(dir_fd, name)
        if xattrs:
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs}
        data = None
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(name, dir_fd=dir_fd)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                info.type = tarfile.LNKTYPE
                info.linkname = links[key]
            else:
                if st.st_nlink > 1:
                    links[key] = path
                info.type = tarfile.REGTYPE
                info.size = st.st_size
                data = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(st.st_mode):
            info.type = tarfile.FIFOTYPE
        else:
            continue  # sockets cannot be archived
        if data is not None:
            with os.fdopen(data, "rb") as f:
                tf.addfile(info, f)
        else:
            tf.addfile(info)
        if info.type == tarfile.DIRTYPE:
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=dir_fd)
            try:
                _add_tree(tf, sub, path + "/", mtime, owner, links)
            finally:
                os.close(sub)


def _xattrs(dir_fd: int, name: str) -> list[tuple[str, str]]:
    path = f"/proc/self/fd/{dir_fd}/{name}"
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    out = []
    for xname in sorted(n for n in names if n.startswith(_KEPT_XATTRS)):
        if xname.startswith(("trusted.overlay.", "user.overlay.")):
            continue
        try:
            value = os.getxattr(path, xname, follow_symlinks=False)
        except OSError:
            continue
        out.append((xname, value.decode("utf-8", "surrogateescape")))
    return out


def write_layer_blob(rootfs_dir: str, out: BinaryIO, *, mtime: int | None,
                     owner: tuple[int, int] | None, compress: bool = True) -> tuple[str, int, str]:
    """Write the tree as a (gzip-compressed, header mtime 0) layer to `out`:
    (digest, size, diff_id)."""
    blob = _HashingWriter(out)
    if compress:
        # mtime=0 and no file name in the gzip header: the same tar gives the same bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=6) as gz:  # type: ignore[arg-type]
            tar = _HashingWriter(gz)  # type: ignore[arg-type]
            write_layer_tar(rootfs_dir, tar, mtime=mtime, owner=owner)  # type: ignore[arg-type]
    else:
        tar = blob
        write_layer_tar(rootfs_dir, tar, mtime=mtime, owner=owner)  # type: ignore[arg-type]
    return blob.digest(), blob.size, tar.digest()


def image_config_document(runtime_config: dict[str, Any], diff_ids: list[str],
                          platform: Platform, created: int) -> dict[str, Any]:
    """A whole image config around a runtime `config` section."""
    doc: dict[str, Any] = {
        "created": rfc3339(created),
        "architecture": platform.architecture,
        "os": platform.os,
        "config": dict(runtime_config),
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": rfc3339(created), "created_by": "pyruntime image layout"}],
    }
    if platform.variant and platform.architecture not in ("amd64",):
        doc["variant"] = platform.variant
    return doc


def write_oci_layout(rootfs_dir: str, out_dir_or_tar: str, config: dict[str, Any],
                     ref: str | None, *, mtime: int | None = None,
                     owner: tuple[int, int] | None = None,
                     platform: str | None = None) -> str:
    """Build an OCI image layout of the root filesystem at `rootfs_dir` and return the
    image manifest's digest (`sha256:...`).

    - `out_dir_or_tar`: a directory (made if missing; an existing layout there keeps its
      other images, and an entry with the same name is replaced), or a path ending in
      `.tar` for the layout as one tarball (replaced if it exists).
    - `config`: the image config's runtime section, as a Dockerfile sets it, e.g.
      `{"Cmd": ["/bin/sh", "-c", "echo hi"], "Env": ["PATH=/usr/bin:/bin"],
      "WorkingDir": "/", "User": "1001:1001", "ExposedPorts": {"8080/tcp": {}},
      "Labels": {...}}`.
    - `ref`: the image's name, e.g. `busybox:test` or `localhost:5000/app:1`, written to
      index.json as `org.opencontainers.image.ref.name` (the tag) and
      `io.containerd.image.name` (the normalised full name), which is what
      `ImageStore.import_path` names the image by; None writes no name.
    - `mtime`: the mtime of every entry and the image's `created` time (default:
      $SOURCE_DATE_EPOCH, else 0). `owner`: (uid, gid) for every entry (default: keep
      each file's numeric owner; names are never recorded). `platform`: `os/arch[/variant]`
      (default: this host's, linux/amd64 on x86-64).

    One layer: a deterministic tar (sorted entries, fixed mtimes, no user/group names),
    gzip-compressed with header mtime 0. Blobs, config and manifest are written as
    canonical JSON, so the same inputs give the same digests, on any host with the
    same zlib.
    """
    if ref is not None:
        parse_reference(ref)  # refuse a bad name before writing anything
    epoch = source_date_epoch() if mtime is None else int(mtime)
    plat = parse_platform(platform) if platform else host_platform()
    if out_dir_or_tar.endswith(".tar"):
        parent = os.path.dirname(os.path.abspath(out_dir_or_tar))
        os.makedirs(parent, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=parent, prefix=".layout-") as tmp:
            digest = _write_layout_dir(rootfs_dir, tmp, config, ref, epoch, owner, plat)
            # Fixed modes: the tarball must not depend on the caller's umask.
            for dirpath, dirnames, filenames in os.walk(tmp):
                os.chmod(dirpath, 0o755)
                for name in filenames:
                    os.chmod(os.path.join(dirpath, name), 0o644)
            part = f"{out_dir_or_tar}.part"
            with open(part, "wb") as f:
                write_layer_tar(tmp, f, mtime=epoch, owner=(0, 0))
            os.replace(part, out_dir_or_tar)
        return digest
    return _write_layout_dir(rootfs_dir, out_dir_or_tar, config, ref, epoch, owner, plat)


def _write_layout_dir(rootfs_dir: str, out: str, config: dict[str, Any], ref: str | None,
                      epoch: int, owner: tuple[int, int] | None, plat: Platform) -> str:
    blob_dir = os.path.join(out, "blobs", "sha256")
    os.makedirs(blob_dir, exist_ok=True)
    tmp = os.path.join(blob_dir, ".layer.tmp")
    with open(tmp, "wb") as f:
        layer_digest, layer_size, diff_id = write_layer_blob(rootfs_dir, f, mtime=epoch,
                                                             owner=owner)
    os.replace(tmp, os.path.join(blob_dir, layer_digest.split(":", 1)[1]))
    config_bytes = canonical_json(image_config_document(config, [diff_id], plat, epoch))
    config_digest = _put(blob_dir, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer_size}],
    }
    manifest_bytes = canonical_json(manifest)
    manifest_digest = _put(blob_dir, manifest_bytes)
    entry: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": manifest_digest,
                             "size": len(manifest_bytes),
                             "platform": {"architecture": plat.architecture, "os": plat.os}}
    if "variant" in json.loads(config_bytes):
        entry["platform"]["variant"] = plat.variant
    if ref is not None:
        parsed = parse_reference(ref)
        entry["annotations"] = {IMAGE_NAME_ANNOTATION: str(parsed),
                                REF_NAME_ANNOTATION: parsed.tag or parsed.digest or ""}
    _write_file(os.path.join(out, "oci-layout"),
                canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    index_path = os.path.join(out, "index.json")
    manifests = []
    try:
        with open(index_path, "rb") as f:
            manifests = json.load(f).get("manifests", [])
    except (OSError, ValueError):
        manifests = []
    name = (entry.get("annotations") or {}).get(IMAGE_NAME_ANNOTATION)
    manifests = [m for m in manifests
                 if name is None or (m.get("annotations") or {}).get(IMAGE_NAME_ANNOTATION) != name]
    manifests = [m for m in manifests if m.get("digest") != manifest_digest] + [entry]
    _write_file(index_path, canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                            "manifests": manifests}))
    return manifest_digest


def _put(blob_dir: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    _write_file(os.path.join(blob_dir, digest), data)
    return f"sha256:{digest}"


def _write_file(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


__all__ = ["write_oci_layout", "write_layer_tar", "write_layer_blob", "canonical_json",
           "image_config_document", "OCI_LAYER", "IMAGE_NAME_ANNOTATION", "REF_NAME_ANNOTATION"]
