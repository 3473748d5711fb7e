"""The content-addressed blob store: `<store>/blobs/<algorithm>/<hex>`.

Nothing enters it unverified: content is written to a file under `<store>/ingest/`,
checked against the digest and size its descriptor promised, and only then renamed into
place, so a blob path that exists always holds exactly its digest's content, and a
failure (mismatch, truncation, crash) leaves no blob behind. A download can be resumed:
`PartialBlob` keeps what arrived in `ingest/<algorithm>-<hex>.partial`, locked against
concurrent writers, and carries on from its end.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
from typing import BinaryIO, Iterator

from pyruntime.image.digest import ALGORITHMS, Digest
from pyruntime.image.errors import DigestMismatch, ImageError

_CHUNK = 1 << 20


class BlobStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.blob_dir = os.path.join(root, "blobs")
        self.ingest_dir = os.path.join(root, "ingest")

    # ------------------------------------------------------------------ reading
    def path(self, digest: str) -> str:
        d = Digest.parse(digest)
        return os.path.join(self.blob_dir, d.algorithm, d.hex)

    def has(self, digest: str, size: int | None = None) -> bool:
        try:
            st = os.stat(self.path(digest))
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def size(self, digest: str) -> int:
        return os.stat(self.path(digest)).st_size

    def open(self, digest: str, what: str = "blob") -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise ImageError(f"{what} {digest} is missing from the store at {self.root} "
                             "(pull or import the image again)") from None

    def read_bytes(self, digest: str, what: str = "blob") -> bytes:
        with self.open(digest, what) as f:
            return f.read()

    def digests(self) -> Iterator[str]:
        for algorithm in ALGORITHMS:
            try:
                names = os.listdir(os.path.join(self.blob_dir, algorithm))
            except FileNotFoundError:
                continue
            for name in names:
                yield f"{algorithm}:{name}"

    # ------------------------------------------------------------------ writing
    def put_bytes(self, data: bytes, digest: str | None = None, size: int | None = None,
                  what: str = "blob", algorithm: str = "sha256") -> str:
        """Store `data`; when `digest`/`size` are given they are verified first."""
        if digest is None:
            digest = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
        d = Digest.parse(digest, what)
        if size is not None and size != len(data):
            raise DigestMismatch(f"{what} {digest}: {len(data)} bytes, expected {size}")
        actual = f"{d.algorithm}:{hashlib.new(d.algorithm, data).hexdigest()}"
        if actual != digest:
            raise DigestMismatch(f"{what}: content has digest {actual}, expected {digest}")
        if not self.has(digest, len(data)):
            tmp = self._temp_path()
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                self._commit(tmp, d)
            finally:
                _unlink_quietly(tmp)
        return digest

    def put_stream(self, stream: BinaryIO, digest: str | None, size: int | None,
                   what: str = "blob", algorithm: str = "sha256") -> tuple[str, int]:
        """Copy `stream` into the store, verifying it on the way: (digest, size). With
        `digest` None the digest is computed (content we made ourselves)."""
        with self.writer(digest, size, what, algorithm) as w:
            while chunk := stream.read(_CHUNK):
                w.write(chunk)
            return w.commit()

    def writer(self, digest: str | None = None, size: int | None = None, what: str = "blob",
               algorithm: str = "sha256") -> "BlobWriter":
        """A new blob written piece by piece, then `commit()`ed (verified and moved in);
        one that is closed uncommitted leaves nothing behind."""
        return BlobWriter(self, digest, size, what, algorithm)

    def put_file(self, path: str, digest: str | None, size: int | None,
                 what: str | None = None) -> tuple[str, int]:
        with open(path, "rb") as f:
            return self.put_stream(f, digest, size, what or path)

    def partial(self, digest: str, size: int, what: str = "blob") -> "PartialBlob":
        return PartialBlob(self, digest, size, what)

    def delete(self, digest: str) -> None:
        _unlink_quietly(self.path(digest))

    def _temp_path(self) -> str:
        os.makedirs(self.ingest_dir, exist_ok=True)
        return os.path.join(self.ingest_dir, f"tmp-{secrets.token_hex(8)}")

    def _commit(self, tmp: str, d: Digest) -> None:
        target_dir = os.path.join(self.blob_dir, d.algorithm)
        os.makedirs(target_dir, exist_ok=True)
        os.chmod(tmp, 0o444)  # blobs are immutable: no one should open one for writing
        os.rename(tmp, os.path.join(target_dir, d.hex))


class BlobWriter:
    """A blob being written to a temporary file under ingest/, hashed as it goes."""

    def __init__(self, store: BlobStore, digest: str | None, size: int | None, what: str,
                 algorithm: str) -> None:
        self.store = store
        self.expected = digest
        self.expected_size = size
        self.what = what
        alg = Digest.parse(digest, what).algorithm if digest is not None else algorithm
        self._hash = hashlib.new(alg)
        self._algorithm = alg
        self.size = 0
        self.path = store._temp_path()
        self._file: BinaryIO | None = open(self.path, "wb")

    def write(self, data: bytes) -> int:
        assert self._file is not None
        self.size += len(data)
        if self.expected_size is not None and self.size > self.expected_size:
            raise DigestMismatch(f"{self.what} {self.expected}: more than the "
                                 f"{self.expected_size} bytes its descriptor says")
        self._hash.update(data)
        self._file.write(data)
        return len(data)

    def flush(self) -> None:
        pass  # the data is flushed and synced at commit

    def commit(self) -> tuple[str, int]:
        """Verify against the expected digest and size and move into the store:
        (digest, size)."""
        assert self._file is not None
        actual = f"{self._algorithm}:{self._hash.hexdigest()}"
        if self.expected_size is not None and self.size != self.expected_size:
            raise DigestMismatch(f"{self.what} {self.expected}: truncated: {self.size} bytes, "
                                 f"expected {self.expected_size}")
        if self.expected is not None and actual != self.expected:
            raise DigestMismatch(f"{self.what}: content has digest {actual}, expected "
                                 f"{self.expected}")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        self.store._commit(self.path, Digest.parse(actual))
        return actual, self.size

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        _unlink_quietly(self.path)

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PartialBlob:
    """A resumable, verified write of one blob (a registry download).

    The partial file is locked (flock) for the writer's lifetime, so two pulls of the
    same blob (threads or processes) take turns: the second finds the blob done. On
    entry the bytes already there are hashed again, so `offset` is where to resume.
    """

    def __init__(self, store: BlobStore, digest: str, size: int, what: str) -> None:
        self.store = store
        self.digest = digest
        self.size = size
        self.what = what
        d = Digest.parse(digest, what)
        self._digest = d
        os.makedirs(store.ingest_dir, exist_ok=True)
        self.path = os.path.join(store.ingest_dir, f"{d.algorithm}-{d.hex}.partial")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.done = store.has(digest, size)
        self._hash = hashlib.new(d.algorithm)
        self.offset = 0
        if not self.done:
            self._rehash()

    def _rehash(self) -> None:
        length = os.fstat(self._fd).st_size
        if length > self.size:
            length = 0
        os.ftruncate(self._fd, length)
        os.lseek(self._fd, 0, os.SEEK_SET)
        remaining = length
        while remaining:
            chunk = os.read(self._fd, min(_CHUNK, remaining))
            if not chunk:
                break
            self._hash.update(chunk)
            remaining -= len(chunk)
        self.offset = length - remaining
        os.lseek(self._fd, self.offset, os.SEEK_SET)

    def restart(self) -> None:
        """Throw away what is there (the server ignored our Range request)."""
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._hash = hashlib.new(self._digest.algorithm)
        self.offset = 0

    def write(self, data: bytes) -> None:
        if self.offset + len(data) > self.size:
            self.restart()
            raise DigestMismatch(f"{self.what} {self.digest}: the registry sent more than "
                                 f"the {self.size} bytes its descriptor says")
        self._hash.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self.offset += len(data)

    def commit(self) -> None:
        """Verify and move into the store; on a mismatch the partial is discarded."""
        if self.offset != self.size:
            raise DigestMismatch(f"{self.what} {self.digest}: truncated: {self.offset} "
                                 f"bytes, expected {self.size}")
        actual = f"{self._digest.algorithm}:{self._hash.hexdigest()}"
        if actual != self.digest:
            self.restart()
            raise DigestMismatch(f"{self.what}: content has digest {actual}, expected "
                                 f"{self.digest}")
        os.fsync(self._fd)
        self.store._commit(self.path, self._digest)
        self.done = True

    def close(self) -> None:
        if self._fd >= 0:
            if self.done:
                # Our (empty) partial file is not needed: remove it unless it has been
                # committed (renamed away) or replaced by another writer's.
                try:
                    st = os.stat(self.path)
                    mine = os.fstat(self._fd)
                    if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                        os.unlink(self.path)
                except FileNotFoundError:
                    pass
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "PartialBlob":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
