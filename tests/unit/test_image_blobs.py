"""The blob store: nothing enters unverified. A blob whose digest or size is wrong, or
that is cut short, is rejected with a message naming it, and leaves nothing behind
(no blob, no temporary file). Partial downloads resume."""
from __future__ import annotations

import hashlib
import io
import os

import pytest

from pyruntime.image.blobs import BlobStore
from pyruntime.image.digest import Digest
from pyruntime.image.errors import DigestMismatch, ImageError

DATA = b"layer content " * 1000
SHA256 = "sha256:" + hashlib.sha256(DATA).hexdigest()
SHA512 = "sha512:" + hashlib.sha512(DATA).hexdigest()


def stored_files(root) -> list[str]:
    out = []
    for dirpath, _, filenames in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, n), root) for n in filenames]
    return sorted(out)


@pytest.fixture
def blobs(tmp_path) -> BlobStore:
    return BlobStore(str(tmp_path / "store"))


@pytest.mark.parametrize("digest", [SHA256, SHA512])
def test_put_and_read(blobs, digest):
    assert blobs.put_stream(io.BytesIO(DATA), digest, len(DATA), "layer") == (digest, len(DATA))
    assert blobs.has(digest, len(DATA)) and blobs.read_bytes(digest) == DATA
    algorithm, hex_ = digest.split(":")
    assert os.path.isfile(os.path.join(blobs.root, "blobs", algorithm, hex_))
    assert os.stat(blobs.path(digest)).st_mode & 0o222 == 0  # immutable


def test_wrong_digest_is_rejected_and_nothing_stored(blobs):
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatch) as e:
        blobs.put_stream(io.BytesIO(DATA), wrong, len(DATA), "layer 3 of busybox")
    assert "layer 3 of busybox" in str(e.value) and wrong in str(e.value) and SHA256 in str(e.value)
    assert stored_files(blobs.root) == []
    with pytest.raises(DigestMismatch):
        blobs.put_bytes(DATA, wrong, None, "config")
    assert stored_files(blobs.root) == []


def test_truncated_blob_is_rejected_and_nothing_stored(blobs):
    with pytest.raises(DigestMismatch, match=r"truncated: 100 bytes, expected 14000"):
        blobs.put_stream(io.BytesIO(DATA[:100]), SHA256, len(DATA), "layer")
    assert stored_files(blobs.root) == []


def test_oversized_blob_is_rejected(blobs):
    with pytest.raises(DigestMismatch, match="more than the 10 bytes"):
        blobs.put_stream(io.BytesIO(DATA), SHA256, 10, "layer")
    assert stored_files(blobs.root) == []


def test_right_digest_wrong_size_is_rejected(blobs):
    with pytest.raises(DigestMismatch, match="expected 13999"):
        blobs.put_bytes(DATA, SHA256, len(DATA) - 1, "manifest")
    assert stored_files(blobs.root) == []


def test_digest_strings_cannot_name_other_files(blobs):
    for bad in ("sha256:../../etc/passwd", "sha256:" + "A" * 64, "md5:" + "0" * 32, "nonsense"):
        with pytest.raises(ImageError):
            blobs.path(bad)
    assert Digest.parse(SHA512).algorithm == "sha512"


def test_partial_download_resumes(blobs):
    with blobs.partial(SHA256, len(DATA), "layer") as p:
        assert p.offset == 0
        p.write(DATA[:5000])
    # Interrupted: the next writer continues from byte 5000, rehashing what is there.
    with blobs.partial(SHA256, len(DATA), "layer") as p:
        assert p.offset == 5000 and not p.done
        p.write(DATA[5000:])
        p.commit()
    assert blobs.read_bytes(SHA256) == DATA
    assert stored_files(os.path.join(blobs.root, "ingest")) == []
    with blobs.partial(SHA256, len(DATA), "layer") as p:
        assert p.done  # already stored: nothing to download


def test_partial_with_bad_content_is_discarded(blobs):
    with blobs.partial(SHA256, len(DATA), "layer") as p:
        p.write(b"x" * len(DATA))
        with pytest.raises(DigestMismatch):
            p.commit()
        assert p.offset == 0  # restarted: the next try downloads from scratch
    assert not blobs.has(SHA256)
