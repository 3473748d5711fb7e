"""Fixtures of the end-to-end tests (see README.md in this directory).

- `busybox_image`: one busybox root filesystem per session (rootfs-tools/
  build-busybox-rootfs), as a plain tarball (`podman import`) and as an OCI image layout
  archive (`ctr images import`), in the session's temporary directory.
- `podman_store` (session): podman's configuration, storage and image, isolated from the
  host's (podman.py); `podman` (per test): commands, unique names, and a teardown that
  removes every pod and container of the test, waits for conmon, and checks that the
  runtime kept no state.
- `containerd` (session): a containerd of the session's own, stopped and removed at the
  end, always (containerd.py); `ctr` (per test): commands with the runtime flags, unique
  IDs, and a teardown that kills and deletes every task and container of the test.

While a test runs, `engines.REAPER` reaps the daemons the engines orphan (conmon, the
shims, podman's exit commands; pytest is the session's child subreaper).
Every fixture cleans up when the test fails too; the suite's leak detector
(tests/conftest.py) then checks that nothing was left: processes, mounts, cgroups named
by the test's container IDs, and state in the shim's --runc-root.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import IS_ROOT, REPO_ROOT, RUNTIME_BINARY
from .containerd import ContainerdDaemon, Ctr
from .engines import REAPER, remove_tree
from .images import oci_archive, rootfs_tarball
from .podman import Podman, PodmanStore

BUILD_ROOTFS = REPO_ROOT / "rootfs-tools" / "build-busybox-rootfs"

#: binary -> the Debian package that has it (what .ci/setup installs).
PACKAGES = {
    "podman": "podman", "conmon": "conmon", "catatonit": "catatonit",
    "containerd": "containerd", "ctr": "containerd",
    "containerd-shim-runc-v2": "containerd",
}


def require(*binaries: str, paths: tuple[str, ...] = ()) -> None:
    """Skip (with the package to install) when an engine's binary is missing."""
    for binary in binaries:
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed (Debian package {PACKAGES[binary]}; "
                        f".ci/setup installs it)")
    for path in paths:
        if not os.path.exists(path):
            name = os.path.basename(path)
            pytest.skip(f"{path} is missing (Debian package {PACKAGES.get(name, name)}; "
                        f".ci/setup installs it)")


def require_runtime() -> None:
    if not os.access(RUNTIME_BINARY, os.X_OK):
        pytest.fail(f"the runtime under test {RUNTIME_BINARY} does not exist "
                    f"(set PYRUNTIME_E2E_RUNTIME)", pytrace=False)


@dataclass
class BusyboxImage:
    rootfs: str
    rootfs_tar: str
    oci_archive: str


# --------------------------------------------------------------------------- session
@pytest.fixture(scope="session")
def e2e_dir():
    """/tmp/pyrt-e2e-XXXX: the session's image files (removed at the end)."""
    if not IS_ROOT:
        pytest.skip("needs root: the engines run containers as root")
    path = tempfile.mkdtemp(prefix="pyrt-e2e-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    remove_tree(path)


@pytest.fixture(scope="session")
def busybox_image(e2e_dir) -> BusyboxImage:
    if not os.access(BUILD_ROOTFS, os.X_OK):
        pytest.fail(f"{BUILD_ROOTFS} is missing or not executable", pytrace=False)
    rootfs = os.path.join(e2e_dir, "rootfs")
    proc = subprocess.run([str(BUILD_ROOTFS), rootfs], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"build-busybox-rootfs failed ({proc.returncode}): {proc.stderr}",
                    pytrace=False)
    assert os.stat(rootfs).st_mode & stat.S_IXOTH
    tarball = rootfs_tarball(Path(rootfs), Path(e2e_dir, "busybox-rootfs.tar"))
    archive = oci_archive(tarball, Path(e2e_dir, "busybox-oci.tar"), "localhost/busybox:e2e")
    return BusyboxImage(rootfs, str(tarball), str(archive))


@pytest.fixture(scope="session")
def podman_installed():
    require("podman", "conmon",
            paths=("/usr/libexec/podman/catatonit", "/usr/lib/podman/netavark"))
    require_runtime()


@pytest.fixture(scope="session")
def containerd_installed():
    require("containerd", "ctr", "containerd-shim-runc-v2")
    require_runtime()


@pytest.fixture(scope="session")
def podman_store(podman_installed, busybox_image):
    base = tempfile.mkdtemp(prefix="pyrt-e2e-podman-", dir="/tmp")
    os.chmod(base, 0o755)
    store = PodmanStore(base)
    try:
        store.prepare_netns_dir()
        store.import_image(busybox_image.rootfs_tar)
        yield store
    finally:
        store.close()


@pytest.fixture(scope="session")
def containerd(containerd_installed, busybox_image):
    base = tempfile.mkdtemp(prefix="pyrt-e2e-ctrd-", dir="/tmp")
    os.chmod(base, 0o755)
    daemon = ContainerdDaemon(base)
    try:
        daemon.start()
        daemon.import_image(busybox_image.oci_archive)
        yield daemon
    finally:
        daemon.stop()


# --------------------------------------------------------------------------- per test
@pytest.fixture
def podman(request, podman_store, leak_check):
    REAPER.start()
    engine = Podman(podman_store, leak_check, request.node.name)
    try:
        yield engine
    finally:
        try:
            engine.close()
        finally:
            REAPER.stop()


@pytest.fixture
def ctr(request, containerd, leak_check):
    REAPER.start()
    engine = Ctr(containerd, leak_check, request.node.name)
    try:
        yield engine
    finally:
        try:
            engine.close()
        finally:
            REAPER.stop()


@pytest.fixture
def work_dir(e2e_dir):
    """A directory of the test's own (files for the containers, YAML), removed after."""
    path = tempfile.mkdtemp(prefix="t-", dir=e2e_dir)
    os.chmod(path, 0o755)
    yield path
    remove_tree(path)
