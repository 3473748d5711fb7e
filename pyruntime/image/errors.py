"""Errors of the image store. Every message names the blob, file or reference at fault
and, where there is one, what the user can do about it.

`ImageError` is the root: the CLI turns any of them into a message and exit code 1.
(`pyruntime.errors.PyruntimeError` is the project-wide root every package derives from;
it is not a sub-package, so importing it keeps `pyruntime.image` independent.)
"""
from __future__ import annotations

from pyruntime.errors import PyruntimeError


class ImageError(PyruntimeError):
    """Something about an image, a blob or the store went wrong."""

    exit_code = 1


class InvalidReference(ImageError):
    """An image reference (`name[:tag][@digest]`) that does not parse."""


class DigestMismatch(ImageError):
    """Content whose digest or size is not the one its descriptor promised."""


class UnsafeLayer(ImageError):
    """A layer tarball that tries to write outside its root (or something else hostile)."""


class ImageNotFound(ImageError):
    """No image by that reference in the store (or, for a pull, in the registry)."""


class ImageInUse(ImageError):
    """The image is the base of a snapshot (a container's root) and cannot be removed."""


class RegistryError(ImageError):
    """A registry refused a request, answered nonsense or could not be reached."""


class PlatformNotFound(ImageError):
    """The image has no manifest for the requested platform (e.g. linux/arm64)."""


class ManifestError(ImageError):
    """An index, manifest or config that is not valid per the OCI / Docker image specs."""


class SnapshotError(ImageError):
    """A snapshot (a container's writable root) could not be made, found or removed."""
