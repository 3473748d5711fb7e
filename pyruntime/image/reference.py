"""Image references: parsing and normalising `name[:tag][@digest]` the way Docker and
Kubernetes do (`busybox` is `docker.io/library/busybox:latest`), and pull policies
(`Always`, `IfNotPresent`, `Never`) with the Kubernetes default.

Grammar (github.com/distribution/reference): an optional registry host (a first path
component containing `.` or `:`, or `localhost`, or a bracketed IPv6 address), then
lowercase path components separated by `/`, then an optional `:tag`, then an optional
`@algorithm:hex` digest.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pyruntime.image.digest import is_digest
from pyruntime.image.errors import ImageError, InvalidReference

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
#: Docker Hub's user-facing name and the hosts it is served from.
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DOMAIN = re.compile(
    r"(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]+)?\Z")

ALWAYS = "Always"
IF_NOT_PRESENT = "IfNotPresent"
NEVER = "Never"
PULL_POLICIES = (ALWAYS, IF_NOT_PRESENT, NEVER)


@dataclass(frozen=True)
class Reference:
    """A normalised reference. `tag` is "latest" when neither a tag nor a digest was
    given; with only a digest, `tag` is None."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        """`domain/path`, e.g. `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    @property
    def name(self) -> str:
        """The name the store keeps the image under: `repository:tag`, or
        `repository@digest` for a digest-only reference."""
        if self.tag is not None:
            return f"{self.repository}:{self.tag}"
        return f"{self.repository}@{self.digest}"

    def __str__(self) -> str:
        s = self.repository
        if self.tag is not None:
            s += f":{self.tag}"
        if self.digest is not None:
            s += f"@{self.digest}"
        return s

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.domain, self.path, self.tag, digest)

    def with_tag(self, tag: str) -> "Reference":
        return Reference(self.domain, self.path, tag, None)


def parse_reference(value: str) -> Reference:
    """Parse and normalise an image reference; InvalidReference names what is wrong."""
    if not isinstance(value, str) or not value or value != value.strip():
        raise InvalidReference(f"invalid image reference {value!r}: empty or has spaces")
    if len(value) > 4096:
        raise InvalidReference("invalid image reference: longer than 4096 characters")
    rest, digest = value, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not is_digest(digest):
            raise InvalidReference(f"invalid image reference {value!r}: {digest!r} is not a "
                                   "digest (expected sha256:<64 hex digits>)")
    # The tag is after the last ':' that comes after the last '/': a ':' before a '/'
    # belongs to the registry's port.
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid image reference {value!r}: bad tag {tag!r} "
                                   "(letters, digits, '_', '.', '-'; at most 128)")
    domain, path = _split_domain(rest, value)
    components = path.split("/")
    for c in components:
        if not _COMPONENT.match(c):
            hint = " (repository names must be lowercase)" if c.lower() != c else ""
            raise InvalidReference(f"invalid image reference {value!r}: bad path component "
                                   f"{c!r}{hint}")
    if len(path) + len(domain) + 1 > 255:
        raise InvalidReference(f"invalid image reference {value!r}: name longer than 255")
    if domain == DEFAULT_REGISTRY and len(components) == 1:
        path = f"library/{path}"
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def _split_domain(name: str, original: str) -> tuple[str, str]:
    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _DOMAIN.match(first):
            raise InvalidReference(f"invalid image reference {original!r}: bad registry host "
                                   f"{first!r}")
        if not remainder:
            raise InvalidReference(f"invalid image reference {original!r}: no repository name")
        domain = DEFAULT_REGISTRY if first in _DOCKER_HUB_ALIASES else first
        return domain, remainder
    if not name:
        raise InvalidReference(f"invalid image reference {original!r}: no repository name")
    return DEFAULT_REGISTRY, name


def normalize(value: str) -> str:
    """`busybox` -> `docker.io/library/busybox:latest` (the full string form)."""
    return str(parse_reference(value))


def default_pull_policy(image: str) -> str:
    """Kubernetes' default imagePullPolicy for a container's `image`: Always when the tag
    is `latest` or there is no tag at all, else IfNotPresent (a digest without a tag is
    IfNotPresent; `name:latest@digest` is Always, as in Kubernetes, which looks at the
    tag only). A reference that does not parse raises InvalidReference."""
    ref = parse_reference(image)
    return ALWAYS if ref.tag == DEFAULT_TAG else IF_NOT_PRESENT


def check_pull_policy(policy: str) -> str:
    if policy not in PULL_POLICIES:
        raise ImageError(f"unknown pull policy {policy!r} (use {', '.join(PULL_POLICIES)})")
    return policy
