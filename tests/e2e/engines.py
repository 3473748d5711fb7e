"""Driving the engines: running their commands, reaping what they orphan, tracing the
runtime calls they make, and reading what the kernel says about a container's cgroup.

- `OrphanReaper`: while engines run, the daemons they double-fork (conmon, the containerd
  shim, podman's exit command `podman container cleanup`) are reparented to pytest, which
  the suite's conftest makes a child subreaper. podman waits for conmon to be gone with
  kill(pid, 0), which a zombie still passes, so without a reaper every `podman run` and
  `podman stop` waits 20 s for nothing. The reaper thread reaps zombie children of pytest
  that are not commands it started itself (their own `wait()` gets those).
- `RuntimeTrace`: the engines are given a one-line wrapper that appends its argv to a log
  and `exec`s the runtime under test, unchanged (same pid, fds, environment); a failing
  test then shows every runtime command line the engine ran during the failing command.
  `PYRUNTIME_E2E_TRACE=0` gives the engines the runtime's own path instead.
- `Engine.run`: an engine command with its output in files (a detached container keeps
  an inherited pipe open), a timeout, and `Result.describe()` for assertion messages.
"""
from __future__ import annotations

import errno
import json
import os
import pty
import select
import shlex
import signal
import subprocess
import tempfile
import threading
import time

import pytest

DEFAULT_TIMEOUT = 120


# --------------------------------------------------------------------------- results
class Result:
    """What an engine command did, with a description for assertion messages."""

    def __init__(self, argv: list[str], returncode: int | None, stdout: str, stderr: str,
                 notes: str = "") -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.notes = notes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        text = (f"$ {shlex.join(self.argv)}\nexit status {self.returncode}\n"
                f"--- stdout\n{self.stdout.rstrip()}\n--- stderr\n{self.stderr.rstrip()}")
        if self.notes:
            text += "\n" + self.notes.rstrip()
        return text

    def __repr__(self) -> str:
        return f"<Result {shlex.join(self.argv)!r} -> {self.returncode}>"


def lines(text: str) -> list[str]:
    """Output lines without the carriage returns a pty adds."""
    return [line.rstrip("\r") for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


# --------------------------------------------------------------------------- reaping
class OrphanReaper:
    """Reaps zombie children of this process that no `spawn`ed command's wait() owns
    (see the module docstring). Started and stopped around each test (`running()`), so
    that no thread is left running while tests of other packages fork."""

    interval = 0.05

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owned: set[int] = set()
        self._users = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def spawn(self, argv: list[str], **kwargs) -> subprocess.Popen:
        """subprocess.Popen, registered before the reaper can see the child exit."""
        with self._lock:
            proc = subprocess.Popen(argv, **kwargs)
            self._owned.add(proc.pid)
        return proc

    def release(self, proc: subprocess.Popen) -> None:
        """After proc.wait() returned: its pid is no longer the reaper's business."""
        with self._lock:
            self._owned.discard(proc.pid)

    def start(self) -> None:
        with self._lock:
            self._users += 1
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="e2e-orphan-reaper",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._thread is None:
                return
            thread, self._thread = self._thread, None
            self._stop.set()
        thread.join(timeout=10)
        self.reap_now()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.reap_now()

    def reap_now(self) -> None:
        with self._lock:
            for pid in _zombie_children():
                if pid in self._owned:
                    continue
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass


def _zombie_children() -> list[int]:
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        if fields[0] in ("Z", "X") and int(fields[1]) == me:
            found.append(int(name))
    return found


REAPER = OrphanReaper()


# --------------------------------------------------------------------------- tracing
class RuntimeTrace:
    """A wrapper at `path` (same basename as the runtime) that logs argv, then execs it."""

    def __init__(self, directory: str, binary: str) -> None:
        self.binary = binary
        self.log = os.path.join(directory, "runtime-calls.log")
        wrapper_dir = os.path.join(directory, "trace")
        os.makedirs(wrapper_dir, exist_ok=True)
        self.path = os.path.join(wrapper_dir, os.path.basename(binary))
        with open(self.path, "w") as f:
            f.write("#!/bin/sh\n"
                    f"echo \"[$$] $0 $*\" >> {shlex.quote(self.log)}\n"
                    f"exec {shlex.quote(binary)} \"$@\"\n")
        os.chmod(self.path, 0o755)
        open(self.log, "a").close()

    def offset(self) -> int:
        return os.path.getsize(self.log)

    def since(self, offset: int) -> list[str]:
        with open(self.log) as f:
            f.seek(offset)
            return [line.rstrip("\n").replace(self.path, self.binary, 1)
                    for line in f if line.strip()]


def runtime_for_engines(directory: str, binary: str) -> tuple[str, RuntimeTrace | None]:
    """(path to give the engines, trace or None)."""
    if os.environ.get("PYRUNTIME_E2E_TRACE", "1") == "0":
        return binary, None
    trace = RuntimeTrace(directory, binary)
    return trace.path, trace


# --------------------------------------------------------------------------- engines
class Engine:
    """Runs one engine's commands. Subclasses say how a command line is made
    (`command`) and what to add to a failure's description (`notes_since`)."""

    name = "engine"

    def __init__(self, env: dict[str, str], trace: RuntimeTrace | None) -> None:
        self.env = env
        self.trace = trace

    def command(self, *args) -> list[str]:
        raise NotImplementedError

    def mark(self):
        return self.trace.offset() if self.trace else 0

    def notes_since(self, mark) -> str:
        if not self.trace:
            return ""
        calls = self.trace.since(mark)
        if not calls:
            return "--- runtime calls: none"
        return "--- runtime calls made meanwhile\n" + "\n".join(calls)

    def run(self, *args, input: str | None = None, timeout: float = DEFAULT_TIMEOUT,
            check: bool = True, expect: int | None = None) -> Result:
        """Run an engine command to its end. check: fail unless it exits 0 (or `expect`)."""
        argv = self.command(*args)
        mark = self.mark()
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = REAPER.spawn(argv, stdin=subprocess.PIPE if input is not None
                                else subprocess.DEVNULL,
                                stdout=out, stderr=err, env=self.env, text=True,
                                start_new_session=True)
            timed_out = False
            try:
                proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                proc.wait()
            REAPER.release(proc)
            out.seek(0)
            err.seek(0)
            result = Result(argv, proc.returncode, out.read(), err.read())
        if timed_out:
            # check=False: the caller (a teardown) decides; it gets returncode None.
            result.returncode = None
            result.notes = f"--- killed: timed out after {timeout}s\n" + self.notes_since(mark)
            if check or expect is not None:
                pytest.fail(f"{self.name} command timed out after {timeout}s:\n"
                            f"{result.describe()}", pytrace=False)
            return result
        wanted = 0 if expect is None else expect
        if (check or expect is not None) and result.returncode != wanted:
            result.notes = self.notes_since(mark)
            pytest.fail(f"{self.name} command exited {result.returncode}, expected {wanted}:\n"
                        f"{result.describe()}", pytrace=False)
        if result.returncode != 0:
            result.notes = self.notes_since(mark)
        return result

    def launch(self, *args, stdout_path: str, stderr_path: str) -> subprocess.Popen:
        """Start an engine command in the background (the caller waits for it with
        `finish`)."""
        with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
            return REAPER.spawn(self.command(*args), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, env=self.env, start_new_session=True)

    def finish(self, proc: subprocess.Popen, stdout_path: str, stderr_path: str,
               timeout: float = DEFAULT_TIMEOUT) -> Result:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
        REAPER.release(proc)
        with open(stdout_path) as out, open(stderr_path) as err:
            return Result(list(proc.args), proc.returncode, out.read(), err.read())

    def run_on_pty(self, *args, timeout: float = DEFAULT_TIMEOUT, until: str | None = None,
                   check_exit: int | None = None) -> Result:
        """Run an engine command with a pty as its stdin, stdout and stderr (what `ctr -t`
        needs); the pty's output is Result.stdout."""
        argv = self.command(*args)
        mark = self.mark()
        master, slave = pty.openpty()
        try:
            proc = REAPER.spawn(argv, stdin=slave, stdout=slave, stderr=slave, env=self.env,
                                start_new_session=True)
        finally:
            os.close(slave)
        data = b""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError as e:
                        if e.errno == errno.EIO:
                            break
                        raise
                    if not chunk:
                        break
                    data += chunk
                elif proc.poll() is not None:
                    break
            else:
                _kill_group(proc)
        finally:
            os.close(master)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
        REAPER.release(proc)
        result = Result(argv, proc.returncode, data.decode(errors="replace"), "")
        if check_exit is not None and result.returncode != check_exit:
            result.notes = self.notes_since(mark)
            pytest.fail(f"{self.name} command (on a pty) exited {result.returncode}, expected "
                        f"{check_exit}:\n{result.describe()}", pytrace=False)
        return result


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass


# --------------------------------------------------------------------------- host state
def wait_for(predicate, timeout: float = 60, interval: float = 0.1, message: str = ""):
    """Poll until `predicate()` is true; fail after `timeout` (a guard against hangs, not
    a measured duration)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message or predicate}",
                        pytrace=False)
        time.sleep(interval)


def processes_matching(*needles: str) -> dict[int, str]:
    """Live (non-zombie) processes whose command line contains every needle."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{name}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        if raw[raw.rindex(")") + 2] in "ZX" or not cmdline:
            continue
        if all(n in cmdline for n in needles):
            found[int(name)] = cmdline
    return found


def kill_and_wait(pids, timeout: float = 30) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        REAPER.reap_now()
        if not any(_alive(pid) for pid in pids):
            return
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return False
    return raw[raw.rindex(")") + 2] not in "ZX"


def mounts_under(path: str) -> list[str]:
    """Mount points at or below `path` in this mount namespace, deepest first."""
    path = os.path.realpath(path).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: -p.count("/"))


def unmount_all_under(path: str) -> None:
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)


def remove_tree(path: str) -> None:
    """rm -rf without crossing into anything still mounted below it."""
    if not os.path.lexists(path):
        return
    unmount_all_under(path)
    subprocess.run(["rm", "-rf", "--one-file-system", path], capture_output=True, timeout=300)


def is_mount_point(path: str) -> bool:
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


# --------------------------------------------------------------------------- cgroups
CGROUP_ROOT = "/sys/fs/cgroup"


def _cgroup_mounts() -> dict[str, str]:
    """v1 controller (or "" for the v2 hierarchy) -> mount point."""
    found: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3].split(",")
            if fstype == "cgroup2":
                found.setdefault("", fields[4])
            elif fstype == "cgroup":
                for option in options:
                    found.setdefault(option, fields[4])
    return found


def cgroup_dir(pid: int, controller: str) -> tuple[str, bool]:
    """(directory of `pid`'s cgroup that holds `controller`'s files, is_v2)."""
    mounts = _cgroup_mounts()
    with open(f"/proc/{pid}/cgroup") as f:
        entries = [line.rstrip("\n").split(":", 2) for line in f if line.strip()]
    for _, controllers, path in entries:
        if controller in controllers.split(",") and controller in mounts:
            return os.path.join(mounts[controller], path.lstrip("/")), False
    for _, controllers, path in entries:
        if controllers == "" and "" in mounts:
            return os.path.join(mounts[""], path.lstrip("/")), True
    raise AssertionError(f"process {pid} has no cgroup with the {controller} controller: "
                         f"{entries}")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def cgroup_limit(pid: int, kind: str) -> int | None:
    """The memory (bytes) or pids limit of `pid`'s cgroup as the kernel has it; None for
    no limit."""
    directory, v2 = cgroup_dir(pid, kind)
    if kind == "memory":
        raw = _read(os.path.join(directory, "memory.max" if v2 else "memory.limit_in_bytes"))
        if raw == "max" or int(raw) >= 2 ** 62:
            return None
        return int(raw)
    if kind == "pids":
        raw = _read(os.path.join(directory, "pids.max"))
        return None if raw == "max" else int(raw)
    raise ValueError(kind)


def cgroup_frozen(pid: int) -> bool:
    """Whether `pid`'s cgroup is frozen (v1 freezer.state, v2 cgroup.events)."""
    directory, v2 = cgroup_dir(pid, "freezer")
    if v2:
        events = dict(line.split() for line in _read(os.path.join(directory,
                                                                   "cgroup.events")).splitlines())
        return events.get("frozen") == "1"
    return _read(os.path.join(directory, "freezer.state")) == "FROZEN"


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    return raw[raw.rindex(")") + 2]


def read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def read_json_lines(path: str, offset: int = 0) -> list[dict]:
    found = []
    try:
        with open(path) as f:
            f.seek(offset)
            for line in f:
                line = line.strip()
                if line:
                    try:
                        found.append(json.loads(line))
                    except ValueError:
                        pass
    except FileNotFoundError:
        pass
    return found


def kill_cgroup_trees(tops: list[str], timeout: float = 30) -> list[int]:
    """Thaw (a frozen process cannot die) and SIGKILL every process in the cgroup
    directories `tops` and below, in every hierarchy they are given for, then remove the
    directories below `tops`. Returns the pids it killed."""
    killed: list[int] = []
    dirs = []
    for top in tops:
        for dirpath, _, _ in os.walk(top):
            dirs.append(dirpath)
    for d in dirs:
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            try:
                with open(os.path.join(d, name), "w") as f:
                    f.write(value)
            except OSError:
                pass
    for d in dirs:
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                killed += [int(p) for p in f.read().split()]
        except OSError:
            pass
    kill_and_wait(sorted(set(killed)), timeout)
    for d in sorted(dirs, key=lambda p: -p.count("/")):
        if d in tops:
            continue
        for _ in range(20):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)
    return sorted(set(killed))
