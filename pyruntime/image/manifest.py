"""Image indexes, manifests and configs, parsed per the OCI image spec and Docker's
image manifest v2 schema 2 (both families of media types), and platform selection.

Only what the store needs is modelled; the original bytes are what is stored (a
manifest's digest is the digest of its exact bytes, so it is never re-serialised).
"""
from __future__ import annotations

import json
import platform as _host
from dataclasses import dataclass, field
from typing import Any

from pyruntime.image.digest import Digest
from pyruntime.image.errors import ImageError, ManifestError, PlatformNotFound

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
#: layer media type -> its compression ("tar", "gzip" or "zstd")
LAYER_TYPES = {
    OCI_LAYER: "tar",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    # Deprecated in image-spec 1.1 but still found in the wild.
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    DOCKER_LAYER: "tar",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_ZSTD: "zstd",
    DOCKER_FOREIGN_LAYER_GZIP: "gzip",
}
#: what a registry is asked for, best first
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

#: Largest index/manifest/config accepted (the distribution registry's own limit is 4 MiB).
MAX_DOCUMENT = 4 << 20


# --------------------------------------------------------------------------- platforms
_ARCH_ALIASES = {
    "x86_64": ("amd64", ""), "x86-64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""), "arm64": ("arm64", ""),
    "armhf": ("arm", "v7"), "armel": ("arm", "v6"), "arm": ("arm", ""),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"), "armv5l": ("arm", "v5"),
    "i386": ("386", ""), "i686": ("386", ""), "386": ("386", ""),
    "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
    "mips64le": ("mips64le", ""), "loong64": ("loong64", ""),
}
#: the variant an architecture means when none is written (containerd's normalisation)
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": "v1"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        return f"{s}/{self.variant}" if self.variant else s

    def normalized(self) -> "Platform":
        arch, implied = _ARCH_ALIASES.get(self.architecture.lower(),
                                          (self.architecture.lower(), ""))
        variant = (self.variant or implied).lower()
        if arch in _DEFAULT_VARIANT and not variant:
            variant = _DEFAULT_VARIANT[arch]
        return Platform(self.os.lower(), arch, variant)

    def matches(self, other: "Platform") -> bool:
        """Whether an image for `other` runs on this (wanted) platform: same OS,
        architecture and variant once both are normalised (`linux/arm64` is
        `linux/arm64/v8`, `linux/arm` is `linux/arm/v7`)."""
        return self.normalized() == other.normalized()

    @classmethod
    def from_json(cls, data: Any, what: str) -> "Platform | None":
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ManifestError(f"{what}: platform is not an object")
        os_ = data.get("os")
        arch = data.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str):
            raise ManifestError(f"{what}: platform needs string 'os' and 'architecture'")
        variant = data.get("variant") or ""
        if not isinstance(variant, str):
            raise ManifestError(f"{what}: platform 'variant' is not a string")
        return cls(os_, arch, variant)


def parse_platform(value: str | None) -> Platform:
    """`linux/arm64`, `linux/arm/v7`, `linux/amd64`; None means this host's platform."""
    if value is None:
        return host_platform()
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ImageError(f"invalid platform {value!r} (expected OS/ARCH[/VARIANT], "
                         "e.g. linux/arm64 or linux/arm/v7)")
    return Platform(*parts).normalized()


def host_platform() -> Platform:
    """The platform images are selected for by default: this machine's (linux/amd64 on
    x86-64 hosts)."""
    return Platform("linux", _host.machine() or "amd64").normalized()


# --------------------------------------------------------------------------- documents
@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Any, what: str) -> "Descriptor":
        if not isinstance(data, dict):
            raise ManifestError(f"{what}: descriptor is not an object")
        media_type = data.get("mediaType")
        digest = data.get("digest")
        size = data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise ManifestError(f"{what}: descriptor has no mediaType")
        if not isinstance(digest, str):
            raise ManifestError(f"{what}: descriptor has no digest")
        Digest.parse(digest, f"{what}: digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{what}: descriptor {digest} has no valid size")
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise ManifestError(f"{what}: annotations is not an object")
        urls = data.get("urls") or ()
        return cls(media_type, digest, size, Platform.from_json(data.get("platform"), what),
                   {str(k): str(v) for k, v in annotations.items()}, tuple(urls))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}
        if self.platform is not None:
            out["platform"] = {"architecture": self.platform.architecture,
                               "os": self.platform.os}
            if self.platform.variant:
                out["platform"]["variant"] = self.platform.variant
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str]


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str]


def load_json(data: bytes, what: str) -> Any:
    if len(data) > MAX_DOCUMENT:
        raise ManifestError(f"{what}: {len(data)} bytes is larger than the "
                            f"{MAX_DOCUMENT} bytes accepted")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{what}: not valid JSON: {e}") from None


def parse_document(data: bytes, what: str, media_type: str | None = None) -> Index | Manifest:
    """Parse an index or manifest. The type comes from the document's own `mediaType`,
    else from `media_type` (a registry's Content-Type), else from its shape."""
    doc = load_json(data, what)
    if not isinstance(doc, dict):
        raise ManifestError(f"{what}: not a JSON object")
    if doc.get("schemaVersion") == 1 or media_type in DOCKER_SCHEMA1:
        raise ManifestError(f"{what}: Docker schema 1 manifests are not supported "
                            "(push the image again with a current client)")
    if doc.get("schemaVersion") != 2:
        raise ManifestError(f"{what}: schemaVersion is {doc.get('schemaVersion')!r}, "
                            "expected 2")
    kind = doc.get("mediaType")
    if kind is None:
        if media_type in INDEX_TYPES + MANIFEST_TYPES:
            kind = media_type
        elif "manifests" in doc:
            kind = OCI_INDEX
        elif "config" in doc and "layers" in doc:
            kind = OCI_MANIFEST
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ManifestError(f"{what}: annotations is not an object")
    if kind in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError(f"{what}: index has no 'manifests' list")
        return Index(kind, tuple(Descriptor.from_json(d, f"{what}: manifests[{i}]")
                                 for i, d in enumerate(entries)), annotations)
    if kind in MANIFEST_TYPES:
        config = Descriptor.from_json(doc.get("config"), f"{what}: config")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise ManifestError(f"{what}: manifest has no 'layers' list")
        parsed = tuple(Descriptor.from_json(d, f"{what}: layers[{i}]")
                       for i, d in enumerate(layers))
        for i, layer in enumerate(parsed):
            if layer.media_type not in LAYER_TYPES:
                raise ManifestError(f"{what}: layers[{i}] ({layer.digest}) has media type "
                                    f"{layer.media_type!r}, which is not a layer type this "
                                    "store can unpack")
        if config.media_type not in CONFIG_TYPES:
            raise ManifestError(f"{what}: config has media type {config.media_type!r}: not "
                                "a container image (expected an OCI or Docker image config)")
        return Manifest(kind, config, parsed, annotations)
    raise ManifestError(f"{what}: unknown media type {kind!r} (expected an OCI or Docker "
                        "image index or manifest)")


def parse_config(data: bytes, what: str) -> dict[str, Any]:
    """An image config, checked for what the store relies on: rootfs.diff_ids."""
    doc = load_json(data, what)
    if not isinstance(doc, dict):
        raise ManifestError(f"{what}: image config is not a JSON object")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise ManifestError(f"{what}: image config has no rootfs of type 'layers'")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise ManifestError(f"{what}: image config has no rootfs.diff_ids list")
    for i, d in enumerate(diff_ids):
        Digest.parse(d, f"{what}: rootfs.diff_ids[{i}]")
    cfg = doc.get("config")
    if cfg is not None and not isinstance(cfg, dict):
        raise ManifestError(f"{what}: image config 'config' is not an object")
    return doc


def config_platform(config: dict[str, Any]) -> Platform | None:
    os_, arch = config.get("os"), config.get("architecture")
    if not isinstance(os_, str) or not isinstance(arch, str) or not os_ or not arch:
        return None
    variant = config.get("variant") or ""
    return Platform(os_, arch, variant if isinstance(variant, str) else "")


def select_manifest(index: Index, wanted: Platform, what: str) -> Descriptor:
    """The index entry for `wanted`. Entries that are not images (attestations, which
    have platform unknown/unknown) never match. Raises PlatformNotFound listing what the
    index has."""
    candidates = [d for d in index.manifests
                  if d.media_type in MANIFEST_TYPES + INDEX_TYPES
                  and d.platform is not None and wanted.matches(d.platform)]
    if candidates:
        return candidates[0]
    # An index without platforms (e.g. an OCI layout's index.json naming one image) is a
    # list of images, not of platforms: the caller checks the config's platform.
    untagged = [d for d in index.manifests
                if d.platform is None and d.media_type in MANIFEST_TYPES + INDEX_TYPES]
    if untagged and all(d.platform is None for d in index.manifests):
        return untagged[0]
    have = sorted({str(d.platform) for d in index.manifests
                   if d.platform is not None and d.platform.os != "unknown"})
    raise PlatformNotFound(f"{what}: no image for platform {wanted} (it has "
                           f"{', '.join(have) if have else 'no platforms'}); choose one with "
                           "--platform")


def check_config_platform(config: dict[str, Any], wanted: Platform, what: str) -> None:
    """Reject an image whose config says it is for another platform."""
    have = config_platform(config)
    if have is not None and not wanted.matches(have):
        raise PlatformNotFound(f"{what}: the image is for {have}, not {wanted}; choose its "
                               f"platform with --platform {have}")


def layer_compression(descriptor: Descriptor) -> str:
    return LAYER_TYPES.get(descriptor.media_type, "tar")
