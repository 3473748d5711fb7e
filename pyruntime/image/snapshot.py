"""Snapshots: a container's root filesystem made from an image.

In overlay mode each layer is unpacked once into its own directory,
`<store>/layers/<algorithm>/<hex of its diff_id>` (whiteouts as overlay whiteouts), shared
read-only by every container of every image that has it; a snapshot is an overlayfs of
those directories with an upper and work directory of its own under
`<store>/snapshots/<id>/`. Where overlayfs cannot be used (not root, no overlay in
the kernel, a store on a filesystem overlayfs refuses) the copy mode unpacks all layers
into one directory per snapshot instead.

A snapshot's record (`snapshots/<id>/snapshot.json`) is written before anything is
mounted or unpacked, so `remove` can always find and finish what a crashed `create`
left; `remove` unmounts and deletes it, and is idempotent.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable

from pyruntime.image.blobs import BlobStore
from pyruntime.image.digest import Digest
from pyruntime.image.errors import ImageError, SnapshotError
from pyruntime.image.unpack import unpack_layer

OVERLAY = "overlay"
COPY = "copy"
AUTO = "auto"
MODES = (AUTO, OVERLAY, COPY)

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_MNT_DETACH = 2
#: overlayfs reads its options from one page
_MAX_OPTIONS = 4000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


@dataclass(frozen=True)
class LayerRef:
    """What a snapshot needs of one layer: its blob and its diff_id."""

    digest: str
    diff_id: str
    media_type: str


def check_snapshot_id(snapshot_id: str) -> str:
    if not isinstance(snapshot_id, str) or not _ID.match(snapshot_id):
        raise SnapshotError(f"invalid snapshot id {snapshot_id!r}: use letters, digits, "
                            "'_', '.', '-' (at most 128, not starting with a symbol)")
    return snapshot_id


def overlay_available() -> bool:
    """Root, and the kernel knows overlayfs (it may still refuse a given filesystem)."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False


def is_mountpoint(path: str) -> bool:
    """Whether something is mounted on `path`, from /proc/self/mountinfo (exact, unlike
    comparing st_dev)."""
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                if _unescape(line.split()[4]) == target:
                    return True
    except OSError:
        pass
    return False


def mounts_under(path: str) -> list[str]:
    """Mount points at or below `path` (deleting a tree must never descend into one)."""
    base = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = _unescape(line.split()[4])
                if point == base or point.startswith(base.rstrip("/") + "/"):
                    found.append(point)
    except OSError:
        pass
    return found


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mount_overlay(target: str, options: str) -> None:
    if _libc.mount(b"overlay", os.fsencode(target), b"overlay", 0, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount overlay on {target}: {os.strerror(err)}")


def unmount(target: str) -> None:
    """Unmount `target` (lazily if it is busy); nothing mounted there is fine."""
    for _ in range(10):
        if not is_mountpoint(target):
            return
        if _libc.umount2(os.fsencode(target), 0) == 0:
            continue
        err = ctypes.get_errno()
        if err == errno.EBUSY:
            _libc.umount2(os.fsencode(target), _MNT_DETACH)
            continue
        if err in (errno.EINVAL, errno.ENOENT):
            return
        raise SnapshotError(f"cannot unmount {target}: {os.strerror(err)}")


class Snapshotter:
    def __init__(self, root: str, blobs: BlobStore, mode: str = AUTO,
                 allow_devices: bool = False) -> None:
        if mode not in MODES:
            raise ImageError(f"unknown snapshot mode {mode!r} (one of {', '.join(MODES)})")
        self.root = root
        self.blobs = blobs
        self.mode = mode
        self.allow_devices = allow_devices
        self.layers_dir = os.path.join(root, "layers")
        self.snapshots_dir = os.path.join(root, "snapshots")

    def effective_mode(self) -> str:
        if self.mode == AUTO:
            return OVERLAY if overlay_available() else COPY
        return self.mode

    # ------------------------------------------------------------------ layers
    def layer_path(self, diff_id: str) -> str:
        d = Digest.parse(diff_id, "diff_id")
        return os.path.join(self.layers_dir, d.algorithm, d.hex)

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(self.layer_path(diff_id))

    def ensure_layer(self, layer: LayerRef, what: str) -> str:
        """The layer's own directory, unpacked (overlay whiteouts) on first use."""
        path = self.layer_path(layer.diff_id)
        if os.path.isdir(path):
            return path
        tmp_root = os.path.join(self.layers_dir, "tmp")
        os.makedirs(tmp_root, exist_ok=True)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(tmp_root, f"{Digest.parse(layer.diff_id).hex[:16]}-{secrets.token_hex(4)}")
        os.mkdir(tmp, 0o755)
        try:
            with self.blobs.open(layer.digest, f"{what}: layer") as blob:
                unpack_layer(blob, tmp, overlay=True, diff_id=layer.diff_id,
                             allow_devices=self.allow_devices, what=f"{what}: layer {layer.digest}")
            try:
                os.rename(tmp, path)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # Another process unpacked the same layer meanwhile: use theirs.
        finally:
            if os.path.lexists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    def layer_dirs(self) -> list[str]:
        """diff_ids of every unpacked layer directory."""
        out = []
        for algorithm in ("sha256", "sha512"):
            try:
                names = os.listdir(os.path.join(self.layers_dir, algorithm))
            except FileNotFoundError:
                continue
            out.extend(f"{algorithm}:{n}" for n in names)
        return out

    def remove_layer(self, diff_id: str) -> int:
        path = self.layer_path(diff_id)
        size = _tree_size(path)
        shutil.rmtree(path, ignore_errors=True)
        return size

    def clean_temp(self) -> None:
        shutil.rmtree(os.path.join(self.layers_dir, "tmp"), ignore_errors=True)

    # ------------------------------------------------------------------ snapshots
    def _dir(self, snapshot_id: str) -> str:
        return os.path.join(self.snapshots_dir, check_snapshot_id(snapshot_id))

    def record(self, snapshot_id: str) -> dict[str, Any] | None:
        try:
            with open(os.path.join(self._dir(snapshot_id), "snapshot.json")) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def list(self) -> list[dict[str, Any]]:
        try:
            ids = sorted(os.listdir(self.snapshots_dir))
        except FileNotFoundError:
            return []
        out = []
        for sid in ids:
            if _ID.match(sid):
                rec = self.record(sid)
                if rec is not None:
                    out.append(rec)
        return out

    def create(self, snapshot_id: str, image: str, layers: list[LayerRef], what: str,
               target: str | None = None, on_ready: Callable[[], None] | None = None) -> str:
        """Make snapshot `snapshot_id` of `image` (layers bottom first) and return its
        root path: `target` if given (a bundle's rootfs, made here and empty), else
        `snapshots/<id>/rootfs`."""
        sdir = self._dir(snapshot_id)
        os.makedirs(self.snapshots_dir, exist_ok=True)
        try:
            os.mkdir(sdir, 0o700)
        except FileExistsError:
            raise SnapshotError(f"snapshot {snapshot_id} already exists (remove it first)") from None
        rootfs = os.path.abspath(target) if target else os.path.join(sdir, "rootfs")
        mode = self.effective_mode()
        record = {"id": snapshot_id, "image": image, "mode": mode, "rootfs": rootfs,
                  "layers": [layer.diff_id for layer in layers], "created": time.time(),
                  "made_rootfs": False}
        self._write_record(sdir, record)
        try:
            if os.path.lexists(rootfs):
                if not os.path.isdir(rootfs) or os.path.islink(rootfs) or os.listdir(rootfs):
                    raise SnapshotError(f"{rootfs} exists and is not an empty directory")
            else:
                os.mkdir(rootfs, 0o755)
                record["made_rootfs"] = True
                self._write_record(sdir, record)
            if mode == OVERLAY:
                try:
                    self._mount(sdir, rootfs, layers, what)
                except OSError as e:
                    if self.mode == OVERLAY or e.errno not in (errno.EINVAL, errno.EPERM,
                                                               errno.ENODEV, errno.ENOTSUP):
                        raise SnapshotError(f"snapshot {snapshot_id}: {e.strerror}: cannot "
                                            "mount overlayfs (try the copy snapshot mode)") from None
                    mode = COPY  # overlayfs refuses this filesystem: copy instead
                    record["mode"] = mode
                    self._write_record(sdir, record)
            if mode == COPY:
                for layer in layers:
                    with self.blobs.open(layer.digest, f"{what}: layer") as blob:
                        unpack_layer(blob, rootfs, overlay=False, diff_id=layer.diff_id,
                                     allow_devices=self.allow_devices,
                                     what=f"{what}: layer {layer.digest}")
            if on_ready:
                on_ready()
        except BaseException:
            self.remove(snapshot_id)
            raise
        return rootfs

    def _mount(self, sdir: str, rootfs: str, layers: list[LayerRef], what: str) -> None:
        lowers = [self.ensure_layer(layer, what) for layer in layers]
        if not lowers:
            empty = os.path.join(sdir, "empty")
            os.makedirs(empty, exist_ok=True)
            lowers = [empty]
        upper = os.path.join(sdir, "upper")
        work = os.path.join(sdir, "work")
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        for path in lowers + [upper, work]:
            if "," in path or ":" in path:
                raise SnapshotError(f"{path}: overlayfs cannot take paths with ',' or ':'; "
                                    "move the store")
        # overlayfs stacks the first lowerdir on top: the image's last layer.
        options = (f"lowerdir={':'.join(reversed(lowers))},upperdir={upper},"
                   f"workdir={work},index=off")
        if len(options) <= _MAX_OPTIONS:
            _mount_overlay(rootfs, options)
            return
        # Too many layers for one page of options: name them by short /proc/self/fd
        # paths to directories held open for the mount (the kernel resolves them then).
        fds = [os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for p in lowers]
        try:
            short = ":".join(f"/proc/self/fd/{fd}" for fd in reversed(fds))
            options = f"lowerdir={short},upperdir={upper},workdir={work},index=off"
            if len(options) > _MAX_OPTIONS:
                raise SnapshotError(f"{what}: {len(lowers)} layers are too many for overlayfs")
            _mount_overlay(rootfs, options)
        finally:
            for fd in fds:
                os.close(fd)

    def remove(self, snapshot_id: str) -> bool:
        """Unmount and delete a snapshot; False if there was none."""
        sdir = self._dir(snapshot_id)
        record = self.record(snapshot_id)
        if record is None and not os.path.isdir(sdir):
            return False
        rootfs = (record or {}).get("rootfs") or os.path.join(sdir, "rootfs")
        unmount(rootfs)
        for path in (rootfs, sdir):
            busy = mounts_under(path)
            if busy:
                # rmtree would delete the mounted filesystem's files: leave it all.
                raise SnapshotError(f"snapshot {snapshot_id}: {', '.join(busy)} still mounted; "
                                    "unmount it and remove the snapshot again")
        inside = os.path.realpath(rootfs).startswith(os.path.realpath(sdir) + os.sep)
        if record and not inside and os.path.isdir(rootfs) and not os.path.islink(rootfs):
            # A bundle's rootfs outside the store: delete only what we made there (the
            # directory itself, or the copy we filled an empty one with).
            if record.get("made_rootfs"):
                shutil.rmtree(rootfs, ignore_errors=True)
            elif record.get("mode") == COPY:
                fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                try:
                    for name in os.listdir(fd):
                        if os.path.isdir(os.path.join(rootfs, name)) and \
                                not os.path.islink(os.path.join(rootfs, name)):
                            shutil.rmtree(name, dir_fd=fd, ignore_errors=True)
                        else:
                            os.unlink(name, dir_fd=fd)
                finally:
                    os.close(fd)
        shutil.rmtree(sdir, ignore_errors=True)
        if os.path.exists(sdir):
            raise SnapshotError(f"snapshot {snapshot_id}: cannot delete {sdir}")
        return True

    @staticmethod
    def _write_record(sdir: str, record: dict[str, Any]) -> None:
        tmp = os.path.join(sdir, "snapshot.json.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, os.path.join(sdir, "snapshot.json"))


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total
