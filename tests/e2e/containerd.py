"""containerd of the session's own, and ctr, with containerd's runc shim
(io.containerd.runc.v2) running the runtime under test.

`ContainerdDaemon` starts `containerd --config` with a config of its own in a temporary
directory: root, state, the gRPC and ttrpc sockets, the `opt` plugin's directory all
there; the CRI plugin disabled (no kubelet, no CNI, no network). `ctr --address SOCK
--namespace pyrt-e2e` talks to it; `ctr run` is given `--runc-binary` (the shim's
BinaryName: the runtime under test), `--runc-root` (its `--root`, a directory of the
session's, checked empty after each test by the suite's leak detector) and `--fifo-dir`.
The shim passes the runtime `--log <bundle>/log.json --log-format json` and quotes the
log's last error in what ctr prints when a runtime command fails.

Stopping it (always, at the end of the session): every task killed and deleted, every
container and image removed, containerd stopped (SIGTERM, then SIGKILL), shims of its
socket killed, its directories removed; what containerd 1.6 makes outside of them
(`/run/containerd/s` for the shims' sockets, a path compiled into it) is removed when it
did not exist before the session, as are the namespace's empty parent cgroups.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess

import pytest

from . import RUNTIME_BINARY
from .engines import (REAPER, Engine, Result, kill_and_wait, kill_cgroup_trees,
                      processes_matching, remove_tree, runtime_for_engines, wait_for)

IMAGE = "localhost/busybox:e2e"
NAMESPACE = "pyrt-e2e"
RUN_DIR = "/run/containerd"
CGROUP_ROOT = "/sys/fs/cgroup"
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]


class ContainerdDaemon(Engine):
    name = "ctr"

    def __init__(self, base: str) -> None:
        self.base = base
        self.socket = os.path.join(base, "containerd.sock")
        self.log_path = os.path.join(base, "containerd.log")
        self.runc_root = os.path.join(base, "runc-root")
        self.fifo_dir = os.path.join(base, "fifo")
        os.makedirs(self.fifo_dir, exist_ok=True)
        runtime_path, trace = runtime_for_engines(base, RUNTIME_BINARY)
        self.runtime_path = runtime_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINERD_")}
        super().__init__(env, trace)
        self.proc: subprocess.Popen | None = None
        self._run_dir_existed = os.path.isdir(RUN_DIR)
        self._run_dir_before = _listing(RUN_DIR)
        self._cgroups_before = set(_namespace_cgroups())
        self._write_config()

    def _write_config(self) -> None:
        q = json.dumps
        b = self.base
        with open(os.path.join(b, "config.toml"), "w") as f:
            f.write(f"""\
version = 2
root = {q(os.path.join(b, "root"))}
state = {q(os.path.join(b, "state"))}
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = {q(self.socket)}

[ttrpc]
  address = {q(self.socket + ".ttrpc")}

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = {q(os.path.join(b, "opt"))}
""")

    def command(self, *args) -> list[str]:
        return ["ctr", "--address", self.socket, "--namespace", NAMESPACE, *map(str, args)]

    def log_offset(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def mark(self):
        return (super().mark(), self.log_offset())

    def notes_since(self, mark) -> str:
        trace_mark, log_mark = mark
        notes = super().notes_since(trace_mark)
        try:
            with open(self.log_path) as f:
                f.seek(log_mark)
                logged = [line.rstrip() for line in f
                          if "level=error" in line or "level=warn" in line]
        except OSError:
            logged = []
        if logged:
            notes += "\n--- containerd's errors and warnings meanwhile\n" + "\n".join(logged)
        return notes

    # ---- life cycle
    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = REAPER.spawn(["containerd", "--config",
                                      os.path.join(self.base, "config.toml")],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     env=self.env, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                pytest.fail(f"containerd exited {self.proc.returncode}:\n{self._log_tail()}",
                            pytrace=False)
            if not os.path.exists(self.socket):
                return False
            return subprocess.run(["ctr", "--address", self.socket, "version"],
                                  capture_output=True, timeout=30).returncode == 0
        wait_for(ready, timeout=60, message="containerd to serve on its socket")

    def _log_tail(self, count: int = 30) -> str:
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-count:])
        except OSError:
            return ""

    def import_image(self, archive: str) -> None:
        result = self.run("images", "import", "--all-platforms", archive, check=False,
                          timeout=300)
        if not result.ok:
            pytest.fail(f"ctr could not import the busybox image:\n{result.describe()}",
                        pytrace=False)
        names = self.run("images", "list", "--quiet").stdout.split()
        assert IMAGE in names, f"{IMAGE} is not among the imported images: {names}"

    def tasks(self) -> dict[str, str]:
        """task ID -> status (RUNNING, STOPPED, PAUSED, ...)."""
        found = {}
        for line in self.run("tasks", "list", check=False).stdout.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3:
                found[fields[0]] = fields[2]
        return found

    def remove_container(self, ident: str) -> list[str]:
        """Kill, delete the task and the container; descriptions of what failed. Never
        raises: a teardown goes on whatever happens."""
        problems = []

        def attempt(*args, timeout: float = 30) -> Result:
            result = self.run(*args, check=False, timeout=timeout)
            if not result.ok and "not found" not in result.output:
                problems.append(result.describe())
            return result

        status = self.tasks().get(ident)
        if status is not None:
            if status == "PAUSED":
                attempt("tasks", "resume", ident)  # a frozen process cannot die
            killed = None
            if self.tasks().get(ident) not in (None, "STOPPED"):
                # Its error, if the task stopped meanwhile, is the business of the tests
                # of `kill` (test_kill_all_of_a_stopped_task).
                killed = self.run("tasks", "kill", "--all", "--signal", "SIGKILL", ident,
                                  check=False, timeout=30)
            try:
                wait_for(lambda: self.tasks().get(ident) in (None, "STOPPED"), timeout=30,
                         message=f"task {ident} to stop")
            except pytest.fail.Exception as e:
                problems.append(str(e) + ("\n" + killed.describe() if killed else ""))
            # A plain delete of the stopped task: `--force` would kill again first, which
            # test_force_delete_of_a_stopped_task checks on its own.
            if not attempt("tasks", "delete", ident).ok and ident in self.tasks():
                self.run("tasks", "delete", "--force", ident, check=False, timeout=30)
        if ident in self.run("containers", "list", "--quiet", check=False).stdout.split():
            attempt("containers", "delete", ident)
        return problems

    def shims(self) -> dict[int, str]:
        return processes_matching("containerd-shim", self.socket)

    def stop(self) -> None:
        """Stop containerd and remove everything it made; never raises."""
        REAPER.start()
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    listed = self.run("containers", "list", "--quiet", check=False,
                                      timeout=30).stdout.split()
                    for ident in listed:
                        self.remove_container(ident)
                    for image in self.run("images", "list", "--quiet", check=False,
                                          timeout=30).stdout.split():
                        self.run("images", "remove", image, check=False, timeout=30)
                except Exception:  # noqa: BLE001 - stopping containerd comes first
                    pass
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                REAPER.release(self.proc)
            kill_and_wait(list(self.shims()))
            # What the shims would have killed: containers left (e.g. frozen) in the
            # namespace's cgroups.
            kill_cgroup_trees(_namespace_cgroups())
        finally:
            REAPER.stop()
        remove_tree(self.base)
        # /run/containerd/s/<hash>: the shims' sockets (removed by a shim that exits
        # normally); the directories themselves when containerd made them. A socket some
        # process still listens on (another containerd's shim) stays.
        in_use = _bound_unix_sockets()
        for rel in sorted(set(_listing(RUN_DIR)) - set(self._run_dir_before),
                          key=lambda p: -p.count("/")):
            path = os.path.join(RUN_DIR, rel)
            if path in in_use:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        if not self._run_dir_existed and os.path.isdir(RUN_DIR):
            try:
                os.rmdir(RUN_DIR)
            except OSError:
                pass
        for path in sorted(set(_namespace_cgroups()) - self._cgroups_before,
                           key=lambda p: -p.count("/")):
            try:
                os.rmdir(path)
            except OSError:
                pass


def _listing(top: str) -> list[str]:
    """Paths below `top`, relative to it ([] when it does not exist)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        for name in dirnames + filenames:
            found.append(os.path.normpath(os.path.join(rel, name)))
    return found


def _bound_unix_sockets() -> set[str]:
    """Paths of the unix sockets bound on this host (/proc/net/unix)."""
    found = set()
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) >= 8 and fields[7].startswith("/"):
                    found.add(fields[7])
    except OSError:
        pass
    return found


def _namespace_cgroups() -> list[str]:
    """/sys/fs/cgroup/*/pyrt-e2e (the shim's cgroupsPath is /NAMESPACE/ID)."""
    found = []
    try:
        tops = [os.path.join(CGROUP_ROOT, h) for h in os.listdir(CGROUP_ROOT)]
    except OSError:
        return found
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.procs")):
        tops = [CGROUP_ROOT]
    for top in tops:
        path = os.path.join(top, NAMESPACE)
        if os.path.isdir(path) and not os.path.islink(top):
            found.append(path)
    return found


def _slug(name: str, limit: int = 24) -> str:
    name = re.sub(r"^test_", "", name)
    return re.sub(r"[^A-Za-z0-9]+", "_", name)[:limit].strip("_") or "t"


class Ctr(Engine):
    """One test's ctr: IDs unique to the test (registered with the leak detector), the
    flags that make the shim use the runtime under test, and a teardown (`close`)."""

    name = "ctr"

    def __init__(self, daemon: ContainerdDaemon, tracker, test_name: str) -> None:
        super().__init__(daemon.env, daemon.trace)
        self.daemon = daemon
        self.tracker = tracker
        self.runtime_path = daemon.runtime_path
        self.ids: list[str] = []
        self._stem = f"{tracker.id_prefix}-{_slug(test_name)}"
        self._counter = itertools.count(1)
        tracker.add_root(RUNTIME_BINARY, os.path.join(daemon.runc_root, NAMESPACE))

    def command(self, *args) -> list[str]:
        return self.daemon.command(*args)

    def mark(self):
        return self.daemon.mark()

    def notes_since(self, mark) -> str:
        return self.daemon.notes_since(mark)

    def new_id(self, hint: str = "c") -> str:
        ident = f"{self._stem}-{hint}-{next(self._counter)}"
        self.ids.append(ident)
        self.tracker.add_container_id(ident)
        return ident

    @property
    def runtime_flags(self) -> list[str]:
        """`ctr run` flags: the shim runs the runtime under test with a --root of ours."""
        return ["--runc-binary", self.runtime_path, "--runc-root", self.daemon.runc_root,
                "--fifo-dir", self.daemon.fifo_dir]

    def run_container(self, *args, **kwargs) -> Result:
        """`ctr run` with the runtime flags (args: ctr run's own flags, image, ID, command)."""
        return self.run("run", *self.runtime_flags, *args, **kwargs)

    def tasks(self) -> dict[str, str]:
        return self.daemon.tasks()

    def wait_status(self, ident: str, *wanted: str, timeout: float = 60) -> str:
        return wait_for(lambda: (s := self.tasks().get(ident)) in wanted and s, timeout,
                        message=f"task {ident} to be {' or '.join(wanted)}")

    def task_pid(self, ident: str) -> int:
        for line in self.run("tasks", "list").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == ident:
                return int(fields[1])
        raise AssertionError(f"no task {ident}")

    def close(self) -> None:
        problems = []
        for ident in self.ids:
            problems += self.daemon.remove_container(ident)
        left = kill_cgroup_trees([p for top in _namespace_cgroups() for p in
                                  (os.path.join(top, i) for i in self.ids) if os.path.isdir(p)])
        if left:
            problems.append(f"processes left in the containers' cgroups (killed): {left}")
        for ident in self.ids:
            try:
                wait_for(lambda: not processes_matching("containerd-shim", "-id " + ident + " "),
                         timeout=30, message=f"the shim of {ident} to exit")
            except pytest.fail.Exception:
                left = processes_matching("containerd-shim", "-id " + ident + " ")
                kill_and_wait(list(left))
                problems.append(f"the shim of {ident} did not exit (killed): {left}")
        if problems:
            pytest.fail("containerd teardown:\n" + "\n\n".join(problems), pytrace=False)
