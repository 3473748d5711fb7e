"""Image archives for the engines, made from a plain root filesystem directory.

- `rootfs_tarball(rootfs, dest)`: `tar -C rootfs -c .`, what `podman import` takes.
- `oci_archive(layer_tar, dest, name)`: an OCI image layout in a tar (`oci-layout`,
  `index.json`, `blobs/sha256/...`) with one gzip layer, an image config whose
  `rootfs.diff_ids` names the uncompressed layer, and a manifest; the index entry carries
  the image name in `io.containerd.image.name` (what `ctr images import` names the image
  by) and `org.opencontainers.image.ref.name`. Written by hand: no registry and no
  image tool is needed.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

#: The environment of the image's config (podman's `import` and ctr both take PATH from it).
IMAGE_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
IMAGE_CMD = ["/bin/sh"]


def rootfs_tarball(rootfs: Path, dest: Path) -> Path:
    """A tar of the root filesystem's contents (numeric owners kept)."""
    with open(dest, "wb") as out:
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                       stdout=out, check=True, timeout=300)
    return dest


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def oci_archive(layer_tar: Path, dest: Path, name: str, arch: str = "amd64") -> Path:
    """An OCI image layout archive of one layer (the uncompressed tar `layer_tar`)."""
    layer = layer_tar.read_bytes()
    diff_id = _digest(layer)
    # mtime=0: the same rootfs gives the same archive, digests and all.
    layer_gz = gzip.compress(layer, compresslevel=6, mtime=0)
    config = _json({
        "architecture": arch,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Env": IMAGE_ENV, "Cmd": IMAGE_CMD, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "pyruntime tests/e2e"}],
    })
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _digest(layer_gz), "size": len(layer_gz)}],
    })
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = _json({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": _digest(manifest), "size": len(manifest),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": tag},
        }],
    })
    files = [("oci-layout", _json({"imageLayoutVersion": "1.0.0"})), ("index.json", index)]
    files += [(f"blobs/sha256/{_digest(blob)[7:]}", blob)
              for blob in (config, manifest, layer_gz)]
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for path, data in files:
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return dest
