"""Build (once) and cache the boot files of the cgroup-v2 test VM: a Debian kernel and an
initramfs made of the host's static busybox, the kernel modules needed to mount the host's
root over 9p under an overlay, tests/vm/init.sh as /init, and the systemd units of
tests/vm/systemd/ (for `runner.py --systemd`) in /etc/vm-systemd.

    .venv/bin/python tests/vm/build_boot_files.py [--cache DIR] [--kernel-package PKG]

prints the directory holding `vmlinuz` and `initrd.cpio`.

Layout of the cache (default /var/cache/pyruntime-vm, or $PYRUNTIME_VM_CACHE):

    debs/linux-image-<ver>_*.deb      the downloaded package (`apt-get download`)
    kernel-<ver>/                     the package unpacked (`dpkg-deb -x`) + `depmod -b`;
                                      inside the VM its lib/modules/<ver> is bind-mounted
                                      on /lib/modules/<ver>, so `modprobe` works there
    boot-<ver>-<hash>/                vmlinuz + initrd.cpio; <hash> covers init.sh, the
                                      systemd units, this script, the busybox binary and
                                      the module list, so a change to any of them builds a
                                      new initramfs

The kernel is the newest `linux-image-6.1.0-N-amd64` already in the cache; only when none is
cached is apt asked for the newest one (`--kernel-package` picks one explicitly). The
`-cloud-` flavour is never used: it lacks 9p. Builds take a lock (`.lock`) and land by
rename, so concurrent runs neither collide nor see half-built files.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
INIT_SCRIPT = HERE / "init.sh"
SYSTEMD_UNITS = HERE / "systemd"      # the systemd VM's units (init.sh installs them)
DEFAULT_CACHE = Path(os.environ.get("PYRUNTIME_VM_CACHE", "/var/cache/pyruntime-vm"))
BUSYBOX = Path("/bin/busybox")

#: Modules the initramfs loads, in this order (their dependencies from modules.dep are
#: added before them): virtio PCI transport, 9p over virtio, overlayfs.
MODULES = ["virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
           "virtio_pci", "netfs", "fscache", "9pnet", "9pnet_virtio", "9p", "overlay"]

KERNEL_PACKAGE_RE = re.compile(r"^linux-image-(6\.1\.0-(\d+)-amd64)$")


class BootFilesError(Exception):
    """The boot files could not be built; the message says what to do."""


@dataclass(frozen=True)
class BootFiles:
    kernel_version: str
    directory: Path
    modules_dir: Path      # host path of lib/modules/<ver> of the unpacked kernel
    notes: tuple[str, ...] = ()

    @property
    def vmlinuz(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.cpio"


def _log(msg: str) -> None:
    print(f"build_boot_files: {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    except FileNotFoundError as e:
        raise BootFilesError(f"{cmd[0]} is not installed: {e}") from None
    except subprocess.CalledProcessError as e:
        raise BootFilesError(f"`{' '.join(cmd)}` failed ({e.returncode}):\n"
                             f"{e.stderr.strip() or e.stdout.strip()}") from None


# --------------------------------------------------------------------------- the kernel
def _version_key(version: str) -> int:
    m = re.match(r"6\.1\.0-(\d+)-amd64$", version)
    return int(m.group(1)) if m else -1


def _cached_kernels(cache: Path) -> list[str]:
    found = []
    for d in cache.glob("kernel-6.1.0-*-amd64"):
        version = d.name[len("kernel-"):]
        if (d / "boot" / f"vmlinuz-{version}").is_file() and \
                (d / "lib" / "modules" / version / "modules.dep").is_file():
            found.append(version)
    return sorted(found, key=_version_key)


def _newest_package_in_apt() -> str:
    out = _run(["apt-cache", "search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-amd64$"]).stdout
    candidates = []
    for line in out.splitlines():
        name = line.split(" ", 1)[0]
        m = KERNEL_PACKAGE_RE.match(name)
        if m:
            candidates.append((int(m.group(2)), name))
    if not candidates:
        raise BootFilesError(
            "apt knows no linux-image-6.1.0-N-amd64 package: run `apt-get update` "
            "(Debian 12 sources are needed), or pass --kernel-package")
    return max(candidates)[1]


def _unpack_kernel(cache: Path, package: str) -> str:
    m = KERNEL_PACKAGE_RE.match(package)
    if not m:
        raise BootFilesError(f"{package!r} is not a linux-image-6.1.0-N-amd64 package "
                             "(the -cloud- flavour lacks 9p)")
    version = m.group(1)
    target = cache / f"kernel-{version}"
    if version in _cached_kernels(cache):
        return version
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        _log(f"downloading {package}")
        # Into a scratch dir, then moved: an interrupted download leaves no partial .deb.
        # (apt warns that it downloads as root, since _apt cannot write here: harmless.)
        with tempfile.TemporaryDirectory(dir=debs) as tmp:
            _run(["apt-get", "download", "-q", package], cwd=tmp)
            for f in Path(tmp).glob("*.deb"):
                f.rename(debs / f.name)
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            raise BootFilesError(f"apt-get download {package} produced no .deb")
    _log(f"unpacking {found[-1].name}")
    tmp = Path(tempfile.mkdtemp(prefix=f".kernel-{version}.", dir=cache))
    try:
        _run(["dpkg-deb", "-x", str(found[-1]), str(tmp)])
        # The package's postinst runs depmod; dpkg-deb -x does not. modules.dep is needed
        # both here (module order) and in the VM (modprobe).
        _run(["depmod", "-b", str(tmp), version])
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return version


def ensure_kernel(cache: Path, package: str | None = None) -> str:
    """The kernel version to boot, unpacked in the cache."""
    if package:
        return _unpack_kernel(cache, package)
    cached = _cached_kernels(cache)
    if cached:
        return cached[-1]
    return _unpack_kernel(cache, _newest_package_in_apt())


# --------------------------------------------------------------------------- modules
def _module_files(modules_dir: Path) -> tuple[dict[str, str], dict[str, list[str]], set[str]]:
    """name -> relative path, relative path -> its dependencies, built-in names."""
    def name_of(rel: str) -> str:
        base = os.path.basename(rel)
        base = re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", base)
        return base.replace("-", "_")

    paths: dict[str, str] = {}
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        mod, rest = line.split(":", 1)
        paths[name_of(mod)] = mod
        deps[mod] = rest.split()
    builtin = set()
    builtin_file = modules_dir / "modules.builtin"
    if builtin_file.exists():
        builtin = {name_of(l.strip()) for l in builtin_file.read_text().splitlines() if l.strip()}
    return paths, deps, builtin


def module_load_order(modules_dir: Path) -> tuple[list[str], list[str]]:
    """Relative paths of the modules to insmod, dependencies first; and notes on modules
    that are built in or missing."""
    paths, deps, builtin = _module_files(modules_dir)
    order: list[str] = []
    notes: list[str] = []

    def add(rel: str) -> None:
        if rel in order:
            return
        # modules.dep lists the full closure, deepest last: load it reversed.
        for dep in reversed(deps.get(rel, [])):
            add(dep)
        order.append(rel)

    for name in MODULES:
        key = name.replace("-", "_")
        if key in paths:
            add(paths[key])
        elif key in builtin:
            notes.append(f"module {name} is built into the kernel")
        else:
            notes.append(f"module {name} not found (neither a module nor built in); skipped")
    return order, notes


# --------------------------------------------------------------------------- cpio (newc)
class CpioWriter:
    """A minimal writer of the 'newc' cpio format the kernel unpacks as the initramfs.
    Written here so that building needs neither root (device nodes) nor the cpio tool."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
               nlink: int = 1) -> None:
        encoded = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(encoded), 0]
        self.ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.chunks.append(header + encoded)
        self._pad()
        self.chunks.append(data)
        self._pad()

    def _pad(self) -> None:
        size = sum(len(c) for c in self.chunks)
        self.chunks.append(b"\0" * (-size % 4))

    def directory(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, 0o040000 | mode, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, 0o020000 | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        data = b"".join(self.chunks)
        return data + b"\0" * (-len(data) % 512)


def _module_bytes(path: Path) -> bytes:
    """The module's ELF; .ko.xz/.ko.zst/.ko.gz are decompressed (busybox insmod reads raw)."""
    if path.suffix == ".xz":
        return _run_bytes(["xz", "-dc", str(path)])
    if path.suffix == ".zst":
        return _run_bytes(["zstd", "-dc", str(path)])
    if path.suffix == ".gz":
        return _run_bytes(["gzip", "-dc", str(path)])
    return path.read_bytes()


def _run_bytes(cmd: list[str]) -> bytes:
    try:
        return subprocess.run(cmd, check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise BootFilesError(f"`{' '.join(cmd)}` failed: {e}") from None


def _initrd_inputs(version: str, modules_dir: Path, order: list[str]) -> tuple[str, str]:
    """(vm.conf text, hash of everything the initramfs is made of)."""
    if not BUSYBOX.is_file():
        raise BootFilesError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    conf = (f"KVER={version}\n"
            f"HOST_MODULES_DIR={modules_dir}\n"
            f"MODULES='{' '.join(os.path.basename(m).split('.ko')[0] for m in order)}'\n")
    h = hashlib.sha256()
    units = b"".join(f.name.encode() + b"\0" + f.read_bytes() for f in _systemd_units())
    for part in (INIT_SCRIPT.read_bytes(), Path(__file__).read_bytes(), BUSYBOX.read_bytes(),
                 conf.encode(), "\n".join(order).encode(), units):
        h.update(hashlib.sha256(part).digest())
    return conf, h.hexdigest()[:16]


def _systemd_units() -> list[Path]:
    return sorted(f for f in SYSTEMD_UNITS.iterdir() if f.is_file())


def build_initrd(modules_dir: Path, order: list[str], conf: str) -> bytes:
    cpio = CpioWriter()
    for d in ("bin", "dev", "proc", "sys", "host", "newroot", "rw", "lib", "lib/modules",
              "etc", "etc/vm-systemd"):
        cpio.directory(d)
    for unit in _systemd_units():
        cpio.file(f"etc/vm-systemd/{unit.name}", unit.read_bytes())
    # The kernel opens /dev/console for /init's stdio before /init can mount devtmpfs.
    cpio.char_device("dev/console", 5, 1)
    cpio.char_device("dev/null", 1, 3, 0o666)
    cpio.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.file("init", INIT_SCRIPT.read_bytes(), 0o755)
    cpio.file("etc/vm.conf", conf.encode())
    for rel in order:
        name = os.path.basename(rel).split(".ko")[0]
        cpio.file(f"lib/modules/{name}.ko", _module_bytes(modules_dir / rel))
    return cpio.finish()


def ensure_boot_files(cache: Path = DEFAULT_CACHE, kernel_package: str | None = None
                      ) -> BootFiles:
    """Build what is missing and return the boot files (cached: cheap when up to date)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        version = ensure_kernel(cache, kernel_package)
        kernel_dir = cache / f"kernel-{version}"
        modules_dir = kernel_dir / "lib" / "modules" / version
        order, notes = module_load_order(modules_dir)
        conf, digest = _initrd_inputs(version, modules_dir, order)
        boot = cache / f"boot-{version}-{digest}"
        if not ((boot / "vmlinuz").is_file() and (boot / "initrd.cpio").is_file()):
            for note in notes:
                _log(note)
            _log(f"building {boot.name}: {len(order)} modules")
            tmp = Path(tempfile.mkdtemp(prefix=f".{boot.name}.", dir=cache))
            os.chmod(tmp, 0o755)
            try:
                shutil.copyfile(kernel_dir / "boot" / f"vmlinuz-{version}", tmp / "vmlinuz")
                (tmp / "initrd.cpio").write_bytes(
                    build_initrd(modules_dir, order, conf))
                shutil.rmtree(boot, ignore_errors=True)
                tmp.rename(boot)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            _remove_stale(cache, keep=boot)
        os.utime(boot)      # last use, for _remove_stale
        return BootFiles(version, boot, modules_dir, tuple(notes))


def _remove_stale(cache: Path, keep: Path, max_age: float = 24 * 3600) -> None:
    """Initramfs builds superseded by an edit of init.sh, once unused for a day (another
    checkout sharing the cache may still boot an older one)."""
    now = time.time()
    for d in cache.glob("boot-*"):
        try:
            if d != keep and d.is_dir() and now - d.stat().st_mtime > max_age:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--kernel-package", help="e.g. linux-image-6.1.0-56-amd64")
    args = ap.parse_args(argv)
    try:
        boot = ensure_boot_files(args.cache, args.kernel_package)
    except BootFilesError as e:
        print(f"build_boot_files: {e}", file=sys.stderr)
        return 1
    for note in boot.notes:
        _log(note)
    print(boot.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
