"""Fixtures of the OCI runtime integration tests.

- `runtime`: the runtime under test (`PYRUNTIME_TEST_RUNTIME`, default the checkout's
  `.venv/bin/pyruntime`) with a `--root` of its own for the test; every container ID made
  through `runtime.new_id()` (and anything left in the root) is `delete --force`d when
  the test ends, pass or fail.
- `busybox_rootfs`: one busybox root filesystem per session, built by
  `rootfs-tools/build-busybox-rootfs`, shared read-only by every bundle.
- `bundle(args, **changes)`: a bundle in the test's own directory (see bundle.py).
- `work_dir`: a directory of the test's own that any uid can traverse (unlike pytest's
  tmp_path), with short paths (unix socket paths are limited to 107 bytes).
- `console_socket`: a listening unix socket for `--console-socket`, receiving a pty master.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import socket
import stat
import subprocess
import tempfile
import time

import pytest

from . import IS_ROOT, IS_RUNC, REPO_ROOT, RUNTIME_BINARY
from .bundle import make_bundle

BUILD_ROOTFS = REPO_ROOT / "rootfs-tools" / "build-busybox-rootfs"
DEFAULT_TIMEOUT = 30


# --------------------------------------------------------------------------- the runtime
class Runtime:
    """The runtime CLI with a per-test `--root`."""

    def __init__(self, binary: str, root: str, tracker, id_stem: str) -> None:
        self.binary = binary
        self.root = root
        self.is_runc = IS_RUNC
        self._tracker = tracker
        self._id_stem = id_stem
        self._counter = itertools.count(1)
        self.ids: list[str] = []

    # ---- IDs
    def new_id(self, hint: str = "") -> str:
        """A container ID unique to this session and test, deleted when the test ends."""
        container_id = f"{self._id_stem}{('-' + hint) if hint else ''}-{next(self._counter)}"
        self.ids.append(container_id)
        self._tracker.add_container_id(container_id)
        return container_id

    # ---- running the CLI
    def command(self, *args) -> list[str]:
        return [self.binary, "--root", self.root, *(str(a) for a in args)]

    def run(self, *args, input: str | None = None, timeout: float = DEFAULT_TIMEOUT,
            check: bool = False, stdout_path: str | None = None, pass_fds=(),
            prefix: list[str] | None = None, cwd: str | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
        """Run `RUNTIME --root ROOT *args` and return its CompletedProcess (text).

        stdout and stderr go to files, not pipes: a container started by `create` or
        `run -d` inherits them and keeps them open after the runtime exits, which would
        make reading a pipe to its end wait for the container. `stdout_path` sends stdout
        to a file the caller reads later (the output of a container started by `create`).
        `prefix` is put before the command (a wrapper that sets up fds, for instance).
        """
        cmd = (prefix or []) + self.command(*args)
        with tempfile.TemporaryFile("w+") as err, \
                (open(stdout_path, "w") if stdout_path else tempfile.TemporaryFile("w+")) as out:
            try:
                proc = subprocess.run(
                    cmd, input=input, text=True, timeout=timeout, pass_fds=pass_fds,
                    stdin=None if input is not None else subprocess.DEVNULL,
                    stdout=out, stderr=err, cwd=cwd, env=env)
            except subprocess.TimeoutExpired:
                err.seek(0)
                pytest.fail(f"{' '.join(cmd)} did not finish in {timeout}s; "
                            f"stderr: {err.read()!r}")
            err.seek(0)
            proc.stderr = err.read()
            if stdout_path:
                proc.stdout = ""
            else:
                out.seek(0)
                proc.stdout = out.read()
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n"
                        f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def popen(self, *args, **kwargs) -> subprocess.Popen:
        """Start the CLI in the background; the suite will not reap it (wait() it)."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self.command(*args), **kwargs)
        self._tracker.waited_pids.add(proc.pid)
        return proc

    def reap(self) -> None:
        """Reap container processes that exited after being reparented to pytest (those
        of child PID namespaces are reaped all the time by a thread; this takes the rest,
        e.g. of a container sharing the host's PID namespace). Not from threads that run
        subprocesses."""
        self._tracker.reap()

    # ---- lifecycle shortcuts
    def create(self, bundle: str, container_id: str, *extra, check: bool = True,
               stdout_path: str | None = None) -> subprocess.CompletedProcess:
        return self.run("create", *extra, "--bundle", bundle, container_id, check=check,
                        stdout_path=stdout_path)

    def start(self, container_id: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("start", container_id, check=check)

    def run_detached(self, bundle: str, container_id: str, *extra) -> int:
        """`run -d`; returns the container's init pid (host view)."""
        self.run("run", "-d", *extra, "--bundle", bundle, container_id, check=True)
        return self.pid(container_id)

    def kill(self, container_id: str, *signal_and_flags, check: bool = True):
        return self.run("kill", container_id, *signal_and_flags, check=check)

    def delete(self, container_id: str, force: bool = False, check: bool = True):
        return self.run("delete", *(["--force"] if force else []), container_id, check=check)

    # ---- state
    def state(self, container_id: str) -> dict:
        proc = self.run("state", container_id, check=True)
        return json.loads(proc.stdout)

    def status(self, container_id: str) -> str | None:
        """The container's status, or None when the runtime does not know it."""
        proc = self.run("state", container_id)
        if proc.returncode != 0:
            return None
        return json.loads(proc.stdout)["status"]

    def pid(self, container_id: str) -> int:
        return int(self.state(container_id)["pid"])

    def list_ids(self) -> list[str]:
        proc = self.run("list", "-q", check=True)
        return proc.stdout.split()

    def wait_status(self, container_id: str, *wanted: str,
                    timeout: float = DEFAULT_TIMEOUT) -> str:
        """Poll `state` (reaping exited container processes, as a shim would) until the
        status is one of `wanted`."""
        deadline = time.monotonic() + timeout
        while True:
            self.reap()
            status = self.status(container_id)
            if status in wanted:
                return status
            if time.monotonic() > deadline:
                pytest.fail(f"container {container_id} is {status!r} after {timeout}s, "
                            f"expected {wanted}")
            time.sleep(0.05)

    # ---- cleanup
    def cleanup(self) -> None:
        """`delete --force` every container of the test, ignoring errors."""
        try:
            known = set(os.listdir(self.root))
        except OSError:
            known = set()
        for container_id in list(dict.fromkeys(self.ids + sorted(known))):
            try:
                subprocess.run(self.command("delete", "--force", container_id),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=DEFAULT_TIMEOUT)
            except (OSError, subprocess.SubprocessError):
                pass
        self.reap()


def _slug(name: str, limit: int = 20) -> str:
    name = re.sub(r"^test_", "", name)
    return re.sub(r"[^A-Za-z0-9]+", "_", name)[:limit].strip("_") or "t"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def session_dir():
    """/tmp/pyrt-<token>: everything the session makes on disk (traversable by any uid)."""
    if not IS_ROOT:
        pytest.skip("needs root")
    path = tempfile.mkdtemp(prefix="pyrt-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["rm", "-rf", "--one-file-system", path], capture_output=True)


@pytest.fixture(scope="session")
def busybox_rootfs(session_dir) -> str:
    """A busybox rootfs built once per session by rootfs-tools/build-busybox-rootfs."""
    if not os.access(BUILD_ROOTFS, os.X_OK):
        pytest.fail(f"{BUILD_ROOTFS} is missing or not executable")
    path = os.path.join(session_dir, "rootfs")
    proc = subprocess.run([str(BUILD_ROOTFS), path], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"build-busybox-rootfs failed ({proc.returncode}): {proc.stderr}")
    # Containers with a user namespace reach the rootfs as an unprivileged host uid.
    mode = os.stat(path).st_mode
    assert mode & stat.S_IROTH and mode & stat.S_IXOTH, f"{path} is not world-readable"
    d = os.path.dirname(path)
    while d != "/":
        assert os.stat(d).st_mode & stat.S_IXOTH, f"{d} is not world-traversable"
        d = os.path.dirname(d)
    return path


@pytest.fixture
def work_dir(request, session_dir) -> str:
    """A short, world-traversable directory of the test's own, removed afterwards."""
    path = tempfile.mkdtemp(prefix=_slug(request.node.name, 12) + "-", dir=session_dir)
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["rm", "-rf", "--one-file-system", path], capture_output=True)


@pytest.fixture
def runtime(request, leak_check, session_dir) -> Runtime:
    if not os.path.exists(RUNTIME_BINARY):
        pytest.fail(f"runtime under test {RUNTIME_BINARY} does not exist "
                    f"(set PYRUNTIME_TEST_RUNTIME)")
    root = tempfile.mkdtemp(prefix="root-", dir=session_dir)
    leak_check.add_root(RUNTIME_BINARY, root)
    stem = f"{leak_check.id_prefix}-{_slug(request.node.name)}"
    rt = Runtime(RUNTIME_BINARY, root, leak_check, stem)
    leak_check.start_reaping()
    request.addfinalizer(rt.cleanup)
    return rt


@pytest.fixture
def bundle(work_dir, busybox_rootfs):
    """`bundle(args, **changes) -> path`: a new bundle directory on the shared rootfs
    (`rootfs=` to use another one)."""
    counter = itertools.count(1)

    def make(args, rootfs: str | None = None, **changes) -> str:
        directory = os.path.join(work_dir, f"bundle{next(counter)}")
        return make_bundle(directory, rootfs or busybox_rootfs, args, **changes)

    return make


@pytest.fixture
def rootfs_copy(work_dir, busybox_rootfs):
    """`rootfs_copy() -> path`: a private, writable copy of the busybox rootfs."""
    counter = itertools.count(1)

    def copy() -> str:
        dest = os.path.join(work_dir, f"rootfs{next(counter)}")
        subprocess.run(["cp", "-a", busybox_rootfs, dest], check=True, timeout=120)
        return dest

    return copy


class ConsoleSocket:
    """A listening unix socket for `--console-socket`: `receive()` returns the pty master
    the runtime sends through SCM_RIGHTS."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.fds: list[int] = []

    def receive(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(timeout)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
        assert fds, "the runtime connected to the console socket but sent no fd"
        for extra in fds[1:]:
            os.close(extra)
        self.fds.append(fds[0])
        return fds[0]

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.sock.close()


@pytest.fixture
def console_socket(work_dir):
    """`console_socket() -> ConsoleSocket` (one per call), closed when the test ends."""
    made: list[ConsoleSocket] = []
    counter = itertools.count(1)

    def make() -> ConsoleSocket:
        cs = ConsoleSocket(os.path.join(work_dir, f"c{next(counter)}.sock"))
        made.append(cs)
        return cs

    yield make
    for cs in made:
        cs.close()


def pytest_report_header(config):
    return f"runtime under test: {RUNTIME_BINARY}{' (runc: pyruntime-only contracts skip)' if IS_RUNC else ''}"
