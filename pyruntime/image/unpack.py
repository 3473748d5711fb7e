"""Unpacking layer tarballs into a directory, safely, whatever the tarball says.

Every entry's path is resolved inside the root one component at a time, with directory
file descriptors and O_NOFOLLOW, never by handing a joined path to the kernel:

- `..` that would climb above the root is refused (UnsafeLayer); `a/../b` is `b`;
- absolute names (`/etc/passwd`) are taken relative to the root, as Docker does;
- a symlink met as a *parent* component (`evil -> /etc`, then `evil/passwd`) is resolved
  relative to the root and never above it, the way the kernel's RESOLVE_IN_ROOT (and a
  chroot) would, so the write lands in `<root>/etc/passwd`;
- an existing entry is unlinked before a file, link or node is created in its place, so
  nothing is ever written *through* an old symlink or into an old hard-linked inode;
- hard link targets are resolved the same way and must already be in the root;
- device nodes are made only when `allow_devices` is set and we run as root; otherwise
  they are skipped (and reported in the result);
- `trusted.overlay.*`/`user.overlay.*` xattrs in the tarball are dropped: they would let
  a layer forge overlayfs whiteouts or redirects.

Whiteouts (`.wh.NAME`, opaque `.wh..wh..opq`) are applied in one of two ways:
`flatten` mode (all layers into one directory, the copy snapshot) deletes what they
name from the lower layers; `overlay` mode (each layer into its own directory, an
overlayfs lower dir) turns them into overlay whiteouts (a 0:0 character device) and the
`trusted.overlay.opaque=y` xattr. Ownership (as root), modes, mtimes and xattrs are kept.
Layers may be plain, gzip or zstd tars (told by their magic bytes); zstd needs the
`zstandard` package.
"""
from __future__ import annotations

import errno
import gzip
import io
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable

from pyruntime.image.digest import Digest, HashingReader
from pyruntime.image.errors import DigestMismatch, ImageError, UnsafeLayer

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_DROPPED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_MAX_SYMLINKS = 40  # the kernel's own limit on links followed in one lookup
_CHUNK = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class UnpackResult:
    diff_id: str            # digest of the uncompressed tar
    size: int               # its size in bytes
    entries: int            # tar entries processed
    skipped: list[str] = field(default_factory=list)  # entries left out (device nodes...)


def decompressed(blob: BinaryIO, what: str) -> BinaryIO:
    """A reader of the tar inside `blob`: plain, gzip or zstd, told by magic bytes (a
    media type is only a label; the bytes are what gets unpacked)."""
    buffered = blob if isinstance(blob, io.BufferedReader) else io.BufferedReader(blob)  # type: ignore[arg-type]
    head = buffered.peek(4)[:4]
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if head == _ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            raise ImageError(f"{what}: zstd layers need the zstandard package "
                             "(pip install zstandard)") from None
        return zstandard.ZstdDecompressor().stream_reader(  # type: ignore[return-value]
            buffered, read_across_frames=True)
    return buffered


def unpack_layer(blob: BinaryIO, dest: str, *, overlay: bool, diff_id: str | None = None,
                 allow_devices: bool = False, what: str = "layer") -> UnpackResult:
    """Unpack the layer read from `blob` (compressed or not) into the existing directory
    `dest`. `overlay` selects how whiteouts are written (see the module docstring).
    With `diff_id`, the uncompressed tar must have that digest (DigestMismatch
    otherwise; the caller throws `dest` away). `what` names the layer in errors."""
    algorithm = Digest.parse(diff_id, f"{what}: diff_id").algorithm if diff_id else "sha256"
    stream = HashingReader(decompressed(blob, what), algorithm)
    unpacker = _Unpacker(dest, overlay=overlay, allow_devices=allow_devices, what=what)
    try:
        try:
            with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8",  # type: ignore[call-overload]
                              errors="surrogateescape") as tf:
                for member in tf:
                    unpacker.entry(tf, member)
            stream.drain()
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise ImageError(f"{what}: not a valid (compressed) tar archive: {e}") from None
        except Exception as e:
            if type(e).__module__.startswith("zstandard") or type(e).__name__ == "ZstdError":
                raise ImageError(f"{what}: not a valid zstd stream: {e}") from None
            raise
        unpacker.finish()
    finally:
        unpacker.close()
    actual = stream.digest()
    if diff_id is not None and actual != diff_id:
        raise DigestMismatch(f"{what}: uncompressed content has digest {actual}, but the "
                             f"image config's diff_id is {diff_id}")
    return UnpackResult(actual, stream.size, unpacker.count, unpacker.skipped)


def clean_path(name: str, what: str, entry: str) -> list[str]:
    """The components of a tar name inside the root. Absolute names are relative to the
    root; `..` may not climb above it (UnsafeLayer)."""
    parts: list[str] = []
    for c in name.split("/"):
        if c in ("", "."):
            continue
        if c == "..":
            if not parts:
                raise UnsafeLayer(f"{what}: entry {entry!r} points outside the layer's root "
                                  f"({name!r} climbs above it with '..')")
            parts.pop()
        else:
            parts.append(c)
    return parts


def resolve_in_root(root_fd: int, comps: list[str], *, create: bool, what: str,
                    entry: str) -> tuple[int, list[str]]:
    """Open the directory named by `comps` inside the root `root_fd`. Symlinks are
    followed as if the root were `/` (never above it: `..` stops at the root, an absolute
    target starts from it); missing directories are made (0755) when `create`. Returns a
    new fd and the real, symlink-free components. `what`/`entry` name it in errors."""
    fds = [os.dup(root_fd)]
    real: list[str] = []
    todo = list(comps)
    links = 0
    try:
        while todo:
            c = todo.pop(0)
            if c in ("", "."):
                continue
            if c == "..":
                if real:
                    os.close(fds.pop())
                    real.pop()
                continue
            parent = fds[-1]
            try:
                fd = os.open(c, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise ImageError(f"{what}: {entry!r}: {'/'.join(real + [c])} does not "
                                     "exist") from None
                os.mkdir(c, 0o755, dir_fd=parent)
                fd = os.open(c, _DIR_FLAGS, dir_fd=parent)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(c, dir_fd=parent, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise ImageError(f"{what}: {entry!r}: {'/'.join(real + [c])} is not a "
                                     "directory") from None
                links += 1
                if links > _MAX_SYMLINKS:
                    raise UnsafeLayer(f"{what}: {entry!r}: too many levels of symbolic "
                                      "links") from None
                target = os.readlink(c, dir_fd=parent)
                if target.startswith("/"):
                    for extra in fds[1:]:
                        os.close(extra)
                    del fds[1:]
                    real.clear()
                todo[:0] = target.split("/")
                continue
            fds.append(fd)
            real.append(c)
        return fds.pop(), real
    finally:
        for fd in fds:
            os.close(fd)


def read_file_in_root(root: str, path: str, limit: int = 1 << 20) -> bytes | None:
    """The content of `path` inside the tree `root` (e.g. an image's /etc/passwd), with
    every symlink, the last component's too, resolved inside the root; None if it does
    not exist or is not a regular file. Reading through a hostile image's symlinks can
    never reach the host's files."""
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        comps = [c for c in path.split("/") if c]
        for _ in range(_MAX_SYMLINKS):
            if not comps or comps[-1] in (".", ".."):
                return None  # a directory, and `..` must never be opened from the root
            try:
                pfd, real = resolve_in_root(root_fd, comps[:-1], create=False, what=root,
                                            entry=path)
            except ImageError:
                return None
            try:
                try:
                    fd = os.open(comps[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                                 os.O_NONBLOCK, dir_fd=pfd)
                except FileNotFoundError:
                    return None
                except OSError as e:
                    if e.errno != errno.ELOOP:
                        return None
                    target = os.readlink(comps[-1], dir_fd=pfd)
                    base = [] if target.startswith("/") else real
                    comps = base + [c for c in target.split("/") if c]
                    continue
            finally:
                os.close(pfd)
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    return None
                return f.read(limit)
        return None
    finally:
        os.close(root_fd)


class _Unpacker:
    """The state of one layer being unpacked: the root's fd, what this layer has written
    (whiteouts and opaque dirs must not hide the layer's own entries), directories whose
    mode and mtime are set at the end (writing into a directory changes its mtime; a
    read-only mode would stop us writing into it)."""

    def __init__(self, dest: str, *, overlay: bool, allow_devices: bool, what: str) -> None:
        self.what = what
        self.overlay = overlay
        self.is_root = os.geteuid() == 0
        self.allow_devices = allow_devices and self.is_root
        try:
            self.root_fd = os.open(dest, _DIR_FLAGS)
        except OSError as e:
            raise ImageError(f"{what}: cannot open {dest}: {e.strerror}") from None
        self.dest = dest
        self.written: set[str] = set()
        self.opaque: list[list[str]] = []
        self.deferred_dirs: list[tuple[list[str], tarfile.TarInfo]] = []
        self.skipped: list[str] = []
        self.count = 0
        # One-entry cache of the last parent directory: tars list a directory's entries
        # together. Marked stale when an entry removes a directory or makes or removes a
        # symlink (the same names could then resolve elsewhere); it is dropped at the next
        # lookup, not at once, as its fd is the parent the current entry is using.
        self._cache: tuple[tuple[str, ...], int, list[str]] | None = None
        self._stale = False

    def close(self) -> None:
        self._drop_cache()
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    # ------------------------------------------------------------------ resolution
    def _drop_cache(self) -> None:
        if self._cache is not None:
            os.close(self._cache[1])
            self._cache = None

    def _parent(self, comps: list[str], entry: str, create: bool = True) -> tuple[int, list[str]]:
        """(fd, real components) of the directory `comps`, cached. The fd belongs to the
        cache: callers must not close it."""
        key = tuple(comps)
        if self._stale:
            self._drop_cache()
            self._stale = False
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        fd, real = self.resolve_dir(comps, entry, create)
        self._drop_cache()
        self._cache = (key, fd, real)
        return fd, real

    def resolve_dir(self, comps: list[str], entry: str, create: bool) -> tuple[int, list[str]]:
        return resolve_in_root(self.root_fd, comps, create=create, what=self.what, entry=entry)

    # ------------------------------------------------------------------ entries
    def entry(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.count += 1
        comps = clean_path(member.name, self.what, member.name)
        if not comps:
            if member.isdir():  # the root directory's own metadata
                self.deferred_dirs.append(([], member))
                return
            raise UnsafeLayer(f"{self.what}: entry {member.name!r} would replace the root")
        name = comps[-1]
        if name.startswith(WHITEOUT_PREFIX):
            self._whiteout(comps, member.name)
            return
        pfd, preal = self._parent(comps[:-1], member.name)
        key = "/".join(preal + [name])
        if member.isdir():
            self._directory(pfd, preal, name, member)
        elif member.isreg():
            self._file(tf, pfd, name, member)
        elif member.issym():
            self._replace(pfd, name)
            self._stale = True
            os.symlink(member.linkname, name, dir_fd=pfd)
            self._owner_mode_time(pfd, name, None, member, symlink=True)
        elif member.islnk():
            self._hardlink(pfd, preal, name, member)
        elif member.ischr() or member.isblk():
            if not self.allow_devices:
                self.skipped.append(key)
                return
            self._replace(pfd, name)
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(name, kind | 0o600, os.makedev(member.devmajor, member.devminor),
                     dir_fd=pfd)
            self._owner_mode_time(pfd, name, None, member)
        elif member.isfifo():
            self._replace(pfd, name)
            os.mkfifo(name, 0o600, dir_fd=pfd)
            self._owner_mode_time(pfd, name, None, member)
        else:
            self.skipped.append(key)
            return
        self.written.add(key)

    def _replace(self, pfd: int, name: str, keep_dir: bool = False) -> bool:
        """Remove whatever is at `name` (a directory with its contents). Returns whether
        an existing directory was kept (`keep_dir`)."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self._stale = True
            shutil.rmtree(name, dir_fd=pfd)
        else:
            if stat.S_ISLNK(st.st_mode):
                self._stale = True
            os.unlink(name, dir_fd=pfd)
        return False

    def _directory(self, pfd: int, preal: list[str], name: str, member: tarfile.TarInfo) -> None:
        if not self._replace(pfd, name, keep_dir=True):
            os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        try:
            if self.is_root:
                os.chown(fd, member.uid, member.gid)
            self._xattrs(fd, member)
        finally:
            os.close(fd)
        self.deferred_dirs.append((preal + [name], member))

    def _file(self, tf: tarfile.TarFile, pfd: int, name: str, member: tarfile.TarInfo) -> None:
        self._replace(pfd, name)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=pfd)
        try:
            src = tf.extractfile(member)
            if src is not None:
                while chunk := src.read(_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            self._owner_mode_time(pfd, name, fd, member)
        finally:
            os.close(fd)

    def _hardlink(self, pfd: int, preal: list[str], name: str, member: tarfile.TarInfo) -> None:
        tcomps = clean_path(member.linkname, self.what, member.name)
        if not tcomps:
            raise UnsafeLayer(f"{self.what}: hard link {member.name!r} points at the root")
        try:
            tfd, treal = self.resolve_dir(tcomps[:-1], member.name, create=False)
        except UnsafeLayer:
            raise
        except ImageError:
            raise ImageError(f"{self.what}: hard link {member.name!r}: its target "
                             f"{member.linkname!r} is not in the layer") from None
        try:
            if treal == preal and tcomps[-1] == name:
                return  # a link to itself: nothing to do
            try:
                st = os.stat(tcomps[-1], dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                raise ImageError(f"{self.what}: hard link {member.name!r}: its target "
                                 f"{member.linkname!r} is not in the layer") from None
            if stat.S_ISDIR(st.st_mode):
                raise UnsafeLayer(f"{self.what}: hard link {member.name!r} points at the "
                                  f"directory {member.linkname!r}")
            self._replace(pfd, name)
            os.link(tcomps[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _whiteout(self, comps: list[str], entry: str) -> None:
        name = comps[-1]
        pfd, preal = self._parent(comps[:-1], entry)
        if name == OPAQUE_WHITEOUT:
            if self.overlay:
                dfd = os.open(".", _DIR_FLAGS, dir_fd=pfd)
                try:
                    self._set_overlay_xattr(dfd, OVERLAY_OPAQUE_XATTR, b"y", entry)
                finally:
                    os.close(dfd)
            else:
                self.opaque.append(preal)
            return
        if name.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not content
        target = name[len(WHITEOUT_PREFIX):]
        if target in ("", ".", ".."):
            raise UnsafeLayer(f"{self.what}: whiteout {entry!r} names no file")
        key = "/".join(preal + [target])
        if key in self.written:
            return  # the layer's own entry wins over its whiteout
        if self.overlay:
            self._replace(pfd, target)
            try:
                os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
            except PermissionError:
                raise ImageError(f"{self.what}: overlay whiteouts (character devices 0:0) "
                                 "need root (CAP_MKNOD); use the copy snapshot mode") from None
        else:
            self._replace(pfd, target)

    # ------------------------------------------------------------------ metadata
    def _owner_mode_time(self, pfd: int, name: str, fd: int | None,
                         member: tarfile.TarInfo, symlink: bool = False) -> None:
        ns = int(member.mtime * 1_000_000_000)
        if symlink:
            if self.is_root:
                os.chown(name, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
            self._xattrs_path(pfd, name, member)
            os.utime(name, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
            return
        if fd is None:
            # A node (fifo, device): never open it (opening a fifo blocks). chown and
            # chmod by name without following: the entry was created just now by us.
            if self.is_root:
                os.chown(name, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
            os.chmod(name, member.mode & 0o7777, dir_fd=pfd)
            self._xattrs_path(pfd, name, member)
            os.utime(name, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
            return
        if self.is_root:
            os.chown(fd, member.uid, member.gid)
        os.chmod(fd, member.mode & 0o7777)  # after chown, which clears setuid bits
        self._xattrs(fd, member)
        os.utime(fd, ns=(ns, ns))

    @staticmethod
    def _xattr_items(member: tarfile.TarInfo) -> Iterable[tuple[str, bytes]]:
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            if name.startswith(_DROPPED_XATTR_PREFIXES):
                continue
            yield name, value.encode("utf-8", "surrogateescape")

    def _xattrs(self, fd: int, member: tarfile.TarInfo) -> None:
        for name, value in self._xattr_items(member):
            self._setxattr(fd, name, value, member.name)

    def _xattrs_path(self, pfd: int, name: str, member: tarfile.TarInfo) -> None:
        items = list(self._xattr_items(member))
        if not items:
            return
        # xattrs on a symlink or node need a path: go through the parent's fd so no
        # component but the last (not followed) is looked up again.
        path = f"/proc/self/fd/{pfd}/{name}"
        for xname, value in items:
            try:
                os.setxattr(path, xname, value, follow_symlinks=False)
            except OSError as e:
                self._xattr_failed(e, xname, member.name)

    def _setxattr(self, fd: int, name: str, value: bytes, entry: str) -> None:
        try:
            os.setxattr(fd, name, value)
        except OSError as e:
            self._xattr_failed(e, name, entry)

    def _xattr_failed(self, e: OSError, name: str, entry: str) -> None:
        # Without privilege (trusted.*, security.* as non-root) or support (a filesystem
        # without user xattrs) an xattr cannot be kept; that is not worth failing for.
        if e.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES):
            self.skipped.append(f"{entry} (xattr {name})")
            return
        raise ImageError(f"{self.what}: entry {entry!r}: cannot set xattr {name}: "
                         f"{e.strerror}") from None

    def _set_overlay_xattr(self, fd: int, name: str, value: bytes, entry: str) -> None:
        try:
            os.setxattr(fd, name, value)
        except PermissionError:
            raise ImageError(f"{self.what}: {entry}: overlay opaque directories need root "
                             "(trusted.* xattrs); use the copy snapshot mode") from None

    # ------------------------------------------------------------------ the end
    def finish(self) -> None:
        self._drop_cache()
        for comps in self.opaque:
            self._prune_opaque(comps)
        for comps, member in self.deferred_dirs:
            fd = self._open_real(comps)
            if fd is None:
                continue  # replaced by a later entry
            try:
                os.chmod(fd, member.mode & 0o7777)
                ns = int(member.mtime * 1_000_000_000)
                os.utime(fd, ns=(ns, ns))
            finally:
                os.close(fd)

    def _open_real(self, comps: list[str]) -> int | None:
        """Open a directory by its real path without following any symlink."""
        fd = os.dup(self.root_fd)
        for c in comps:
            try:
                nfd = os.open(c, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                os.close(fd)
                return None
            os.close(fd)
            fd = nfd
        return fd

    def _prune_opaque(self, comps: list[str]) -> None:
        """Flatten mode: an opaque directory keeps only what this layer wrote in it."""
        fd = self._open_real(comps)
        if fd is None:
            return
        ancestors = set()
        for key in self.written:
            parts = key.split("/")
            for i in range(1, len(parts)):
                ancestors.add("/".join(parts[:i]))
        try:
            self._prune(fd, comps, ancestors)
        finally:
            os.close(fd)

    def _prune(self, fd: int, comps: list[str], ancestors: set[str]) -> None:
        for name in os.listdir(fd):
            key = "/".join(comps + [name])
            if key in self.written or key in ancestors:
                try:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue  # not a directory: nothing below it
                try:
                    self._prune(sub, comps + [name], ancestors)
                finally:
                    os.close(sub)
            else:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(name, dir_fd=fd)
                else:
                    os.unlink(name, dir_fd=fd)
