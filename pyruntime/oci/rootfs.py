"""Building the container's filesystem view, inside its new mount namespace.

Order (runc's): make `/` non-propagating, bind the rootfs onto itself, apply the spec's
mounts, create /dev, switch root (pivot_root, or MS_MOVE + chroot with --no-pivot), then,
after the sysctls, read-only root, read-only paths and masked paths.

Mount targets are resolved with openat2(RESOLVE_IN_ROOT): a symlink in the rootfs is
followed as if the rootfs were `/`, so `/evil -> /etc` lands on `<rootfs>/etc`, never on
the host. The mount then goes onto `/proc/self/fd/N` of that resolved directory.
"""
from __future__ import annotations

import errno
import os
import stat

from pyruntime.linux import syscalls as sc
from pyruntime.linux.errors import LinuxError
from pyruntime.oci.errors import ContainerStartError
from pyruntime.oci.mount_options import (MountOptions, parse_mount_options, root_propagation,
                                         root_propagation_after_switch)
from pyruntime.oci.rootfs_order import devices_made_before_cgroup, first_cgroup_mount

_RESOLVE = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS
_O_PATH = os.O_PATH | os.O_CLOEXEC

# statvfs f_flag bits that a bind remount must keep (locked flags in a user namespace).
_LOCKED_STATVFS_FLAGS = (
    (os.ST_RDONLY, sc.MS_RDONLY),
    (os.ST_NOSUID, sc.MS_NOSUID),
    (os.ST_NODEV, sc.MS_NODEV),
    (os.ST_NOEXEC, sc.MS_NOEXEC),
    (os.ST_NOATIME, sc.MS_NOATIME),
    (os.ST_NODIRATIME, sc.MS_NODIRATIME),
    (os.ST_RELATIME, sc.MS_RELATIME),
)

# The devices every container gets (runc's default set): name, major, minor.
DEFAULT_DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)

_DEV_SYMLINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


class RootfsBuilder:
    """Sets up one container's mounts and devices below `rootfs` (a host path)."""

    def __init__(self, config: dict, bundle: str, in_user_namespace: bool) -> None:
        self.config = config
        self.linux = config.get("linux", {})
        self.bundle = bundle
        self.rootfs = config["root"]["path"]
        self.in_user_namespace = in_user_namespace
        self.cgroup_paths: dict[str, str] = {}
        self.root_fd = -1
        self._mounted = 0  # how many of the spec's mounts are done
        self._devices_made = False

    # -- resolution inside the rootfs -------------------------------------------------

    def open_in_root(self, path: str) -> int:
        return sc.openat2(self.root_fd, path.lstrip("/") or ".", _O_PATH, _RESOLVE)

    def ensure_in_root(self, path: str, directory: bool, _depth: int = 0) -> int:
        """An O_PATH fd of `path` inside the rootfs, created (with its parents) if missing.

        A dangling symlink on the way is followed as the kernel would inside the rootfs
        (an absolute target is relative to the rootfs), and its target is created."""
        try:
            return self.open_in_root(path)
        except LinuxError as error:
            if error.errno != errno.ENOENT:
                raise
        if _depth > 40:
            raise LinuxError(errno.ELOOP, f"resolving {path} in the rootfs")
        parent, name = os.path.split(path.rstrip("/"))
        parent_fd = self.ensure_in_root(parent or "/", True, _depth + 1)
        try:
            # Reopen the O_PATH parent as a real directory fd for mkdirat/openat.
            dir_fd = os.open(fd_path(parent_fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            os.close(parent_fd)
        try:
            link = os.readlink(name, dir_fd=dir_fd)
        except OSError:
            link = None
        if link is not None:
            os.close(dir_fd)
            target = link if link.startswith("/") else os.path.join(parent or "/", link)
            os.close(self.ensure_in_root(os.path.normpath(target), directory, _depth + 1))
            return self.open_in_root(path)
        try:
            if directory:
                try:
                    os.mkdir(name, 0o755, dir_fd=dir_fd)
                except FileExistsError:
                    pass
            else:
                fd = os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644, dir_fd=dir_fd)
                os.close(fd)
        finally:
            os.close(dir_fd)
        return self.open_in_root(path)

    def reopen(self, path: str) -> int:
        """A fresh O_PATH fd of `path` after something was mounted there.

        An fd opened before the mount still names the directory underneath, and so does
        its /proc/self/fd link: remounts and writes must go through a new lookup."""
        return self.open_in_root(path)

    # -- the steps ----------------------------------------------------------------------

    def begin(self) -> None:
        """The part of the work before the root switch that the container's cgroup does
        not concern: `/`'s propagation, the rootfs bound onto itself, and the spec's
        mounts up to its first cgroup mount (which shows the container's cgroup), and
        /dev's devices when `devices_made_before_cgroup`. Init does it while the runtime
        makes that cgroup; `finish` does the rest."""
        propagation = root_propagation(self.linux.get("rootfsPropagation"))
        sc.mount(None, "/", None, propagation)
        _make_parent_mount_private(self.rootfs)
        sc.mount(self.rootfs, self.rootfs, None, sc.MS_BIND | sc.MS_REC)
        self.root_fd = os.open(self.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        mounts = self.config.get("mounts", [])
        for index in range(first_cgroup_mount(mounts)):
            self.mount_one(mounts[index], f"mounts[{index}]")
            self._mounted = index + 1
        if devices_made_before_cgroup(self.config):
            self._make_devices()

    def finish(self, cgroup_paths: dict[str, str]) -> None:
        """Once init is in the container's cgroup (`cgroup_paths`): the remaining mounts
        and /dev's devices, unless made already."""
        self.cgroup_paths = cgroup_paths
        try:
            mounts = self.config.get("mounts", [])
            for index in range(self._mounted, len(mounts)):
                self.mount_one(mounts[index], f"mounts[{index}]")
            self._mounted = len(mounts)
            self._make_devices()
        finally:
            os.close(self.root_fd)
            self.root_fd = -1

    def mount_one(self, mount: dict, field: str) -> None:
        options = parse_mount_options(mount.get("options", []), f"{field}.options")
        kind = mount.get("type") or ("bind" if options.is_bind else "")
        destination = mount["destination"]
        try:
            if kind == "bind" or options.is_bind:
                self._bind_mount(mount, options)
            elif kind == "cgroup" or kind == "cgroup2":
                self._cgroup_mount(destination, options)
            else:
                self._fs_mount(kind, mount.get("source", "") or kind, destination, options)
        except OSError as error:
            detail = error.strerror or str(error)
            raise ContainerStartError(
                f"{field}: mounting {kind or 'bind'} on {destination}: {detail}"
            ) from None

    def _bind_mount(self, mount: dict, options: MountOptions) -> None:
        source = mount.get("source", "")
        if not os.path.isabs(source):
            source = os.path.join(self.bundle, source)
        try:
            is_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as error:
            raise ContainerStartError(
                f"bind mount source {source}: {os.strerror(error.errno)}"
            ) from None
        target_fd = self.ensure_in_root(mount["destination"], is_dir)
        try:
            sc.mount(source, fd_path(target_fd), None, sc.MS_BIND | (options.flags & sc.MS_REC))
        finally:
            os.close(target_fd)
        mounted_fd = self.reopen(mount["destination"])
        try:
            mounted = fd_path(mounted_fd)
            extra = options.flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
            if extra:
                # A bind mount ignores its flags: they take effect only on a remount.
                self._remount(mounted, sc.MS_BIND | sc.MS_REMOUNT | extra)
            self._apply_propagation_and_recursive(mounted, options)
        finally:
            os.close(mounted_fd)

    def _fs_mount(self, kind: str, source: str, destination: str, options: MountOptions) -> None:
        target_fd = self.ensure_in_root(destination, True)
        try:
            target = fd_path(target_fd)
            if kind == "tmpfs" and options.tmpcopyup:
                self._tmpfs_copy_up(target, options)
            else:
                try:
                    sc.mount(source, target, kind, options.flags, options.data_string)
                except LinuxError as error:
                    if kind != "sysfs" or error.errno != errno.EPERM:
                        raise
                    # A user namespace that does not own the network namespace cannot
                    # mount sysfs: bind the host's, read-only, as runc does.
                    sc.mount("/sys", target, None, sc.MS_BIND | sc.MS_REC)
                    self._remount_path(destination, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY
                                       | (options.flags & ~sc.MS_REMOUNT))
        finally:
            os.close(target_fd)
        if options.propagation or options.recursive_set or options.recursive_clear:
            mounted_fd = self.reopen(destination)
            try:
                self._apply_propagation_and_recursive(fd_path(mounted_fd), options)
            finally:
                os.close(mounted_fd)

    def _remount_path(self, destination: str, flags: int) -> None:
        mounted_fd = self.reopen(destination)
        try:
            self._remount(fd_path(mounted_fd), flags)
        finally:
            os.close(mounted_fd)

    def _tmpfs_copy_up(self, target: str, options: MountOptions) -> None:
        """runc's `tmpcopyup`: the tmpfs starts with what the image had at that path."""
        import shutil
        import tempfile

        staging = tempfile.mkdtemp(prefix="pyruntime-copyup-")
        try:
            sc.mount("tmpfs", staging, "tmpfs", options.flags, options.data_string)
            try:
                shutil.copytree(target, staging, symlinks=True, dirs_exist_ok=True)
                sc.mount(staging, target, None, sc.MS_MOVE)
            except BaseException:
                sc.umount(staging, sc.MNT_DETACH)
                raise
        finally:
            os.rmdir(staging)

    def _cgroup_mount(self, destination: str, options: MountOptions) -> None:
        """Give the container its own cgroup view at `destination`: a bind of its own
        cgroup directory (v2), or a tmpfs with one bind per hierarchy (v1), so it never
        sees its siblings. A bind rather than a fresh cgroup mount because init is not
        in its cgroup namespace yet when the mounts are made (placement overlaps rootfs
        preparation); the view is the same subtree a namespaced mount would show."""
        flags = options.flags & ~(sc.MS_BIND | sc.MS_REC)
        target_fd = self.ensure_in_root(destination, True)
        try:
            target = fd_path(target_fd)
            unified = self.cgroup_paths.get("")
            if unified is not None and len(self.cgroup_paths) == 1:
                sc.mount(unified, target, None, sc.MS_BIND | sc.MS_REC)
                self._remount_path(destination, sc.MS_BIND | sc.MS_REMOUNT | flags)
                return
            sc.mount("tmpfs", target, "tmpfs", flags & ~sc.MS_RDONLY, "mode=755")
        finally:
            os.close(target_fd)
        target_fd = self.reopen(destination)
        try:
            target = fd_path(target_fd)
            target_dir = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                for hierarchy, host_path in sorted(self.cgroup_paths.items()):
                    name = hierarchy or "unified"
                    os.mkdir(name, 0o755, dir_fd=target_dir)
                    sub = f"{destination}/{name}"
                    sub_fd = self.open_in_root(sub)
                    try:
                        sc.mount(host_path, fd_path(sub_fd), None, sc.MS_BIND | sc.MS_REC)
                    finally:
                        os.close(sub_fd)
                    self._remount_path(sub, sc.MS_BIND | sc.MS_REMOUNT | flags)
                    if "," in name:
                        # cpu,cpuacct is reachable as cpu and cpuacct too, as on the host.
                        for alias in name.split(","):
                            os.symlink(name, alias, dir_fd=target_dir)
            finally:
                os.close(target_dir)
        finally:
            os.close(target_fd)
        if flags & sc.MS_RDONLY:
            self._remount_path(destination, sc.MS_REMOUNT | flags)

    def _remount(self, target: str, flags: int) -> None:
        try:
            sc.mount(None, target, None, flags)
        except LinuxError as error:
            if error.errno != errno.EPERM:
                raise
            # In a user namespace, flags the source mount had are locked: keep them.
            sc.mount(None, target, None, flags | _statvfs_mount_flags(target))

    @staticmethod
    def _apply_propagation_and_recursive(target: str, options: MountOptions) -> None:
        for propagation in options.propagation:
            sc.mount(None, target, None, propagation)
        if options.recursive_set or options.recursive_clear:
            sc.mount_setattr(target, options.recursive_set, options.recursive_clear)

    # -- /dev -------------------------------------------------------------------------

    def _make_devices(self) -> None:
        if not self._devices_made and not self._dev_is_bind_mounted():
            self.create_devices()
        self._devices_made = True

    def _dev_is_bind_mounted(self) -> bool:
        for mount in self.config.get("mounts", []):
            if mount["destination"] == "/dev" and (
                mount.get("type") == "bind"
                or "bind" in mount.get("options", ())
                or "rbind" in mount.get("options", ())
            ):
                return True
        return False

    def create_devices(self) -> None:
        devices = [
            {"path": f"/dev/{name}", "type": "c", "major": major, "minor": minor,
             "fileMode": 0o666, "uid": 0, "gid": 0}
            for name, major, minor in DEFAULT_DEVICES
        ]
        custom = {device["path"] for device in self.linux.get("devices", [])}
        devices = [d for d in devices if d["path"] not in custom] + list(
            self.linux.get("devices", [])
        )
        for device in devices:
            self._create_device(device)
        dev_fd = self.ensure_in_root("/dev", True)
        try:
            dev_dir = os.open(fd_path(dev_fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            os.close(dev_fd)
        try:
            links = list(_DEV_SYMLINKS)
            if os.path.exists("/proc/kcore"):
                links.append(("core", "/proc/kcore"))
            links.append(("ptmx", "pts/ptmx"))
            for name, target in links:
                try:
                    os.symlink(target, name, dir_fd=dev_dir)
                except FileExistsError:
                    if name == "ptmx":
                        # The image's own /dev/ptmx would bypass the container's devpts.
                        os.unlink(name, dir_fd=dev_dir)
                        os.symlink(target, name, dir_fd=dev_dir)
            for name in ("pts", "shm"):
                try:
                    os.mkdir(name, 0o755, dir_fd=dev_dir)
                except FileExistsError:
                    pass
        finally:
            os.close(dev_dir)

    def _create_device(self, device: dict) -> None:
        path = device["path"]
        kind = device["type"]
        parent, name = os.path.split(path)
        parent_fd = self.ensure_in_root(parent, True)
        try:
            dir_fd = os.open(fd_path(parent_fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            os.close(parent_fd)
        try:
            if self.in_user_namespace:
                # mknod is not allowed in a user namespace: bind the host's node instead.
                fd = os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o600, dir_fd=dir_fd)
                os.close(fd)
                target_fd = sc.openat2(dir_fd, name, _O_PATH, sc.RESOLVE_NO_SYMLINKS)
                try:
                    sc.mount(path, fd_path(target_fd), None, sc.MS_BIND)
                finally:
                    os.close(target_fd)
                return
            mode = device.get("fileMode")
            mode = 0o666 if mode is None else mode
            type_bits = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                         "p": stat.S_IFIFO}[kind]
            rdev = 0 if kind == "p" else os.makedev(device["major"], device["minor"])
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            os.mknod(name, type_bits | (mode & 0o7777), rdev, dir_fd=dir_fd)
            os.chmod(name, mode & 0o7777, dir_fd=dir_fd, follow_symlinks=False)
            os.chown(name, device.get("uid") or 0, device.get("gid") or 0, dir_fd=dir_fd,
                     follow_symlinks=False)
        except OSError as error:
            raise ContainerStartError(f"creating device {path}: {error.strerror}") from None
        finally:
            os.close(dir_fd)


def _make_parent_mount_private(rootfs: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared: make it private.

    Only when it is shared (runc does the same), so a `rootfsPropagation: shared` spec
    keeps its sharing elsewhere."""
    best = ""
    shared = False
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(b" ")
            mount_point = fields[4].decode()
            if (rootfs == mount_point or rootfs.startswith(mount_point.rstrip("/") + "/")
                    or mount_point == "/") and len(mount_point) >= len(best):
                best = mount_point
                optional = fields[6 : fields.index(b"-")]
                shared = any(o.startswith(b"shared:") for o in optional)
    if shared:
        sc.mount(None, best, None, sc.MS_PRIVATE)


def _statvfs_mount_flags(path: str) -> int:
    flags = os.statvfs(path).f_flag
    return sum(mount_flag for vfs_flag, mount_flag in _LOCKED_STATVFS_FLAGS if flags & vfs_flag)


def switch_root(rootfs: str, no_pivot: bool) -> None:
    """Make `rootfs` the process's `/` and drop every trace of the host's tree."""
    if no_pivot:
        os.chdir(rootfs)
        sc.mount(rootfs, "/", None, sc.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    old_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        # pivot_root(".", ".") stacks the old root on top of the new one; no put_old dir
        # is needed inside the image (runc's trick).
        sc.pivot_root(".", ".")
        os.fchdir(old_root)
        # Slave first, so unmounting the old root cannot propagate to the host.
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount(".", sc.MNT_DETACH)
    finally:
        os.close(old_root)
        os.close(new_root)
    os.chdir("/")


def apply_root_propagation(name: str | None) -> None:
    """After `switch_root` and the masked and read-only paths: `linux.rootfsPropagation`
    on the container's `/`."""
    flags = root_propagation_after_switch(name)
    if flags is not None:
        try:
            sc.mount(None, "/", None, flags)
        except LinuxError as error:
            raise ContainerStartError(f"linux.rootfsPropagation: {name}: {error}") from None


def make_root_readonly() -> None:
    flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY
    try:
        sc.mount(None, "/", None, flags)
    except LinuxError as error:
        if error.errno != errno.EPERM:
            raise
        sc.mount(None, "/", None, flags | _statvfs_mount_flags("/"))


def apply_readonly_paths(paths: list[str]) -> None:
    for path in paths:
        try:
            sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
        except LinuxError as error:
            if error.errno == errno.ENOENT:
                continue
            raise ContainerStartError(f"linux.readonlyPaths: {path}: {error}") from None
        flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC
        try:
            sc.mount(None, path, None, flags | _statvfs_mount_flags(path))
        except LinuxError as error:
            raise ContainerStartError(f"linux.readonlyPaths: {path}: {error}") from None


def apply_masked_paths(paths: list[str]) -> None:
    for path in paths:
        try:
            is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
        except FileNotFoundError:
            continue
        try:
            if is_dir:
                sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, None)
            else:
                sc.mount("/dev/null", path, None, sc.MS_BIND)
        except LinuxError as error:
            if error.errno == errno.ENOENT:
                continue
            raise ContainerStartError(f"linux.maskedPaths: {path}: {error}") from None
