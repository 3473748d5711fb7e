"""The image store: OCI image layouts, docker-save archives and root filesystems
imported, images pulled from (and pushed to) registries, layers unpacked safely and
shared, containers' root filesystems as overlay snapshots, and OCI bundles made from
images. Depends on nothing else of pyruntime's (but its root exception class).

    from pyruntime.image import ImageStore
    store = ImageStore()                      # /var/lib/pyruntime/images, $PYRUNTIME_STORE
    store.pull("busybox:1.36")                # policy, platform, insecure, credentials
    store.import_path("image.tar", "app:1", changes=['CMD ["/app"]'])
    rootfs = store.create_snapshot("app:1", "ctr-1") ... store.remove_snapshot("ctr-1")
    store.make_bundle("app:1", "/run/bundles/ctr-1")

Modules: `reference` (names, pull policies), `digest`, `blobs` (verified content),
`manifest` (OCI/Docker documents, platforms), `unpack` (safe layer extraction),
`importer`, `registry`, `progress`, `layout` (writing reproducible OCI layouts),
`changes` (Dockerfile-style config changes), `snapshot`, `bundle`, `store`, `errors`.
"""
from __future__ import annotations

from pyruntime.image.errors import (DigestMismatch, ImageError, ImageInUse, ImageNotFound,
                                    InvalidReference, ManifestError, PlatformNotFound,
                                    RegistryError, SnapshotError, UnsafeLayer)
from pyruntime.image.reference import (ALWAYS, IF_NOT_PRESENT, NEVER, Reference,
                                       default_pull_policy, normalize, parse_reference)
from pyruntime.image.store import ImageStore

__all__ = [
    "ImageStore", "Reference", "parse_reference", "normalize", "default_pull_policy",
    "ALWAYS", "IF_NOT_PRESENT", "NEVER",
    "ImageError", "DigestMismatch", "UnsafeLayer", "ImageNotFound", "ImageInUse",
    "RegistryError", "PlatformNotFound", "InvalidReference", "ManifestError", "SnapshotError",
]
