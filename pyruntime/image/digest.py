"""Content digests (`sha256:<hex>`, `sha512:<hex>`): parsing, hashing and verification.

A digest is kept as its canonical string everywhere; `Digest` only splits and checks it.
Only the algorithms the OCI image spec registers are accepted, and the encoded part must
have the algorithm's exact length: a digest string is also used to build file names in
the store, so nothing else may get through (no `/`, no `..`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import BinaryIO

from pyruntime.image.errors import DigestMismatch, ImageError

#: algorithm -> length of its lowercase hex encoding
ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str, what: str = "digest") -> "Digest":
        """Split and check `value`; `what` names it in the error (e.g. a file's name)."""
        if not isinstance(value, str) or ":" not in value:
            raise ImageError(f"{what}: {value!r} is not a digest (expected sha256:<64 hex>)")
        algorithm, _, encoded = value.partition(":")
        if algorithm not in ALGORITHMS:
            raise ImageError(f"{what}: {value!r}: unsupported digest algorithm {algorithm!r} "
                             f"(supported: {', '.join(ALGORITHMS)})")
        if len(encoded) != ALGORITHMS[algorithm] or not set(encoded) <= _HEX:
            raise ImageError(f"{what}: {value!r} is not a valid {algorithm} digest "
                             f"({ALGORITHMS[algorithm]} lowercase hex digits expected)")
        return cls(algorithm, encoded)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self) -> "hashlib._Hash":
        return hashlib.new(self.algorithm)


def is_digest(value: str) -> bool:
    try:
        Digest.parse(value)
    except ImageError:
        return False
    return True


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def digest_file(path: str, algorithm: str = "sha256") -> tuple[str, int]:
    """(digest, size) of a file's content."""
    h = hashlib.new(algorithm)
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return f"{algorithm}:{h.hexdigest()}", size


def verify_bytes(data: bytes, digest: str, size: int | None, what: str) -> None:
    """Raise DigestMismatch unless `data` has `digest` (and `size`, when given)."""
    d = Digest.parse(digest, what)
    if size is not None and len(data) != size:
        raise DigestMismatch(f"{what} ({digest}): size is {len(data)} bytes, expected {size}")
    actual = f"{d.algorithm}:{hashlib.new(d.algorithm, data).hexdigest()}"
    if actual != digest:
        raise DigestMismatch(f"{what}: content has digest {actual}, expected {digest}")


class HashingReader:
    """A read-only file object that hashes (and counts) what is read through it, so a
    stream can be verified while it is being consumed (e.g. a layer's uncompressed tar
    against its diff_id while it is unpacked)."""

    def __init__(self, raw: BinaryIO, algorithm: str = "sha256") -> None:
        self.raw = raw
        self.hash = hashlib.new(algorithm)
        self.algorithm = algorithm
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read to the end (a tar reader stops at the end-of-archive blocks; the
        digest covers every byte)."""
        while self.read(1 << 20):
            pass

    def digest(self) -> str:
        return f"{self.algorithm}:{self.hash.hexdigest()}"
