"""Suite-wide fixtures: the leak detector.

Every test, unit or integration, is checked after its own finalizers have run for what it
left behind on the host, compared with the moment it started:

(a) processes that did not exist before and run inside a container: their root is not the
    host's `/` or their PID namespace is not pytest's; only pytest's descendants count
    (pytest is a subreaper, see below, so every container it started stays below it),
    not other sessions' containers on the same host;
(b) mounts added to pytest's mount namespace (`/proc/self/mountinfo`);
(c) state: a per-test `--root` directory (registered by the `runtime` fixture) that is
    not empty;
(d) network namespaces (`/run/netns`, what `ip netns list` shows), veth and bridge links;
(e) cgroup directories (depth 1-3 under every hierarchy of `/sys/fs/cgroup`) whose path
    names one of the test's container IDs or the session's ID prefix (every ID the suite
    makes starts with it). Not any "pyruntime" path: other sessions on this host run
    pyruntime at the same time, and the runtime's parent cgroup may stay.

A leak fails the test that made it (as an error in its teardown) with a message naming
what leaked; the leak is then cleaned up (processes killed, mounts lazily unmounted, netns
and links deleted, cgroups removed, state deleted through the runtime) so that it does not
make every later test fail too. At session end the host is compared once more with the
session's start.

As root, pytest moves into a mount namespace of its own when it starts (cut from the
host's mount propagation, then made shared again inside, as / is on a systemd host; with
its own tmpfs on /run/netns): mounts and netns of other sessions running on the same host
then neither show up here nor get cleaned up by this suite, while a container mount that
a runtime lets propagate out still shows up here. Veth and bridge links live in the
host's network namespace: a new one fails the test, but only links named after this
session's containers are deleted. `PYRUNTIME_TEST_HOST_MOUNT_NS=1` keeps pytest in the
host's mount namespace.

As root, pytest also makes itself a child subreaper, the way a containerd shim or conmon
is for the containers it starts: a container init whose runtime exited (`create`,
`run -d`) becomes pytest's child, so the suite can reap it when it exits and find it if
it leaks. (This host's PID 1 does not reap orphans: without this they would pile up as
zombies.)
"""
from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time

import pytest

IS_ROOT = os.geteuid() == 0

#: Container IDs made by the suite start with this, so that cgroups, processes and state of
#: this session are told apart from anything else on the host.
SESSION_TOKEN = secrets.token_hex(3)
ID_PREFIX = f"t{SESSION_TOKEN}"

CGROUP_ROOT = "/sys/fs/cgroup"
NETNS_DIR = "/run/netns"
PR_SET_CHILD_SUBREAPER = 36
MNT_DETACH = 2
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)


# --------------------------------------------------------------------------- host snapshot
def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of a process, or None when it is gone."""
    raw = _read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _process_table() -> dict[int, int]:
    """pid -> start time, for every process (a pid reused later is a different process)."""
    table = {}
    for pid in _pids():
        st = _proc_stat(pid)
        if st is not None:
            table[pid] = st[2]
    return table


def _descendants(ancestor: int) -> set[int]:
    """Processes below `ancestor` in the process tree. pytest is a child subreaper, so
    every process a test started, containers included, stays below it; processes of
    other people's sessions on the same host are not."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        st = _proc_stat(pid)
        if st is not None:
            children.setdefault(st[1], []).append(pid)
    found, todo = set(), [ancestor]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    raw = _read(f"/proc/{pid}/cmdline")
    if raw:
        return raw.replace("\0", " ").strip()
    comm = _read(f"/proc/{pid}/comm")
    return f"[{comm.strip()}]" if comm else "?"


_HOST_ROOT = os.stat("/")
_OWN_PIDNS = os.readlink("/proc/self/ns/pid")


def _in_container(pid: int) -> str | None:
    """Why this process looks like a container's (root or PID namespace not ours), or
    None. A zombie has neither a root nor namespaces any more: it is not reported."""
    try:
        st = os.stat(f"/proc/{pid}/root")
        pidns = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None
    if pidns != _OWN_PIDNS:
        return f"PID namespace {pidns}"
    if (st.st_dev, st.st_ino) != (_HOST_ROOT.st_dev, _HOST_ROOT.st_ino):
        return "root is not the host's /"
    return None


def _mounts() -> dict[str, str]:
    """mount ID -> mount point, from /proc/self/mountinfo."""
    found = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            found[fields[0]] = _unescape(fields[4])
    return found


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and len(path[i + 1:i + 4]) == 3 and path[i + 1:i + 4].isdigit():
            out.append(chr(int(path[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def _netns() -> set[str]:
    try:
        return set(os.listdir(NETNS_DIR))
    except OSError:
        return set()


def _links() -> set[tuple[str, str]]:
    found = set()
    for kind in ("veth", "bridge"):
        try:
            out = subprocess.run(["ip", "-o", "link", "show", "type", kind],
                                 capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for line in out.splitlines():
            parts = line.split(":", 2)
            if len(parts) >= 2:
                found.add((kind, parts[1].strip().split("@")[0]))
    return found


def _cgroups() -> set[str]:
    """Directories at depth 1-3 under every cgroup hierarchy."""
    found: set[str] = set()
    try:
        hierarchies = [os.path.join(CGROUP_ROOT, h) for h in os.listdir(CGROUP_ROOT)]
    except OSError:
        return found
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.procs")):  # a pure v2 host
        hierarchies = [CGROUP_ROOT]
    for top in hierarchies:
        if not os.path.isdir(top) or os.path.islink(top):
            continue
        level = [top]
        for _depth in range(3):
            nxt = []
            for d in level:
                try:
                    with os.scandir(d) as it:
                        for entry in it:
                            if entry.is_dir(follow_symlinks=False):
                                nxt.append(entry.path)
                except OSError:
                    pass
            found.update(nxt)
            level = nxt
    return found


class Snapshot:
    def __init__(self) -> None:
        self.processes = _process_table()
        self.mounts = _mounts()
        self.netns = _netns()
        self.links = _links()
        self.cgroups = _cgroups()


# --------------------------------------------------------------------------- reaping
def _from_child_pid_namespace(pid: int) -> bool:
    """Whether the process lives (or, a zombie, lived) in a PID namespace below ours."""
    status = _read(f"/proc/{pid}/status") or ""
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return len(line.split()) > 2
    return False


def reap_orphans(keep: set[int] = frozenset(), namespaced_only: bool = False) -> list[int]:
    """Reap exited children of pytest that are not in `keep` (pids of subprocesses some
    code will still wait for itself). Those are container processes that were reparented
    to pytest, the subreaper. With `namespaced_only`, only those that were in a child PID
    namespace: safe while other threads run subprocesses (which live in ours).
    Returns the reaped pids."""
    me = os.getpid()
    reaped = []
    for pid in _pids():
        if pid in keep:
            continue
        st = _proc_stat(pid)
        if st is None or st[1] != me or st[0] not in ("Z", "X"):
            continue
        if namespaced_only and not _from_child_pid_namespace(pid):
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
            reaped.append(pid)
        except ChildProcessError:
            pass
    return reaped


# --------------------------------------------------------------------------- the tracker
class LeakTracker:
    """What one test registered for the leak check: the runtime state roots it used
    (binary, root) and the container IDs it made; pids of children it still waits for."""

    id_prefix = ID_PREFIX

    def __init__(self) -> None:
        self.roots: list[tuple[str, str]] = []
        self.container_ids: set[str] = set()
        self.waited_pids: set[int] = set()
        self._reaper: threading.Thread | None = None
        self._stop = threading.Event()

    def add_root(self, binary: str, root: str) -> None:
        self.roots.append((binary, root))

    def add_container_id(self, container_id: str) -> None:
        self.container_ids.add(container_id)

    def reap(self) -> list[int]:
        """Reap every exited orphan (not while other threads run subprocesses)."""
        return reap_orphans(self.waited_pids)

    def start_reaping(self) -> None:
        """Reap exited container processes continuously, as a shim does. This matters:
        the init of a PID namespace does not finish dying until every process of its
        namespace has been reaped, and processes that `exec -d` starts are reparented
        to pytest. Only processes of child PID namespaces are reaped here, so a thread
        never takes the exit status of a subprocess someone waits for."""
        if self._reaper is not None:
            return
        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.wait(0.05):
                reap_orphans(self.waited_pids, namespaced_only=True)

        self._reaper = threading.Thread(target=loop, name="container-reaper", daemon=True)
        self._reaper.start()

    def stop_reaping(self) -> None:
        if self._reaper is not None:
            self._stop.set()
            self._reaper.join()
            self._reaper = None


def _names_ours(path: str, ids: set[str]) -> bool:
    # Only names that are this session's: other sessions on the same host run pyruntime
    # too, so a bare "pyruntime" in a cgroup path says nothing about who made it.
    name = path[len(CGROUP_ROOT):]
    return ID_PREFIX in name or any(i in name for i in ids)


def find_leaks(before: Snapshot, tracker: LeakTracker | None) -> dict:
    """Everything added since `before` that counts as a leak (see the module docstring)."""
    tracker = tracker or LeakTracker()
    tracker.reap()
    leaks: dict = {"state": {}, "processes": {}, "mounts": {}, "netns": set(), "links": set(),
                   "cgroups": []}
    for binary, root in tracker.roots:
        try:
            entries = sorted(os.listdir(root))
        except FileNotFoundError:
            continue
        if entries:
            leaks["state"][(binary, root)] = entries
    table = _process_table()
    ours = _descendants(os.getpid())
    for pid, start in table.items():
        if before.processes.get(pid) == start or pid not in ours:
            continue
        why = _in_container(pid)
        if why:
            leaks["processes"][pid] = f"{_cmdline(pid)} ({why})"
    after_mounts = _mounts()
    leaks["mounts"] = {mid: mp for mid, mp in after_mounts.items() if mid not in before.mounts}
    leaks["netns"] = _netns() - before.netns
    leaks["links"] = _links() - before.links
    new_cgroups = _cgroups() - before.cgroups
    for path in sorted(new_cgroups):
        if not _names_ours(path, tracker.container_ids):
            continue
        leaks["cgroups"].append(path)
    return leaks


def describe(leaks: dict) -> str:
    lines = []
    for (binary, root), entries in leaks["state"].items():
        lines.append(f"state left in --root {root} ({os.path.basename(binary)}): {entries}")
    for pid, what in sorted(leaks["processes"].items()):
        lines.append(f"process {pid}: {what}")
    for mid, mp in sorted(leaks["mounts"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"mount {mid} on {mp}")
    for name in sorted(leaks["netns"]):
        lines.append(f"network namespace {name}")
    for kind, name in sorted(leaks["links"]):
        lines.append(f"{kind} link {name}")
    for path in leaks["cgroups"]:
        lines.append(f"cgroup {path}")
    return "\n  ".join(lines)


def any_leak(leaks: dict) -> bool:
    return any(leaks[k] for k in ("state", "processes", "mounts", "netns", "links", "cgroups"))


def clean_up(leaks: dict, tracker: LeakTracker | None) -> None:
    """Remove what leaked, so that one leak is reported once, not by every later test."""
    for (binary, root), entries in leaks["state"].items():
        for entry in entries:
            try:
                subprocess.run([binary, "--root", root, "delete", "--force", entry],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30)
            except (OSError, subprocess.SubprocessError):
                pass
        shutil.rmtree(root, ignore_errors=True)
    pids = set(leaks["processes"])
    for path in leaks["cgroups"]:
        procs = _read(os.path.join(path, "cgroup.procs")) or ""
        pids.update(int(p) for p in procs.split())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reap_orphans(tracker.waited_pids if tracker else set())
        alive = [p for p in pids if (_proc_stat(p) or ("Z",))[0] not in ("Z", "X")]
        if not alive:
            break
        time.sleep(0.05)
    for mid, mp in sorted(leaks["mounts"].items(), key=lambda kv: -int(kv[0])):
        _libc.umount2(mp.encode(), MNT_DETACH)
    for name in leaks["netns"]:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
    for _kind, name in leaks["links"]:
        # Links live in the host's network namespace, shared with other sessions: only
        # those named after this session's containers are surely ours to delete.
        if ID_PREFIX in name or any(i in name for i in (tracker.container_ids if tracker else ())):
            subprocess.run(["ip", "link", "delete", name], capture_output=True, timeout=30)
    for path in sorted(leaks["cgroups"], key=lambda p: -p.count("/")):
        for _ in range(100):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


# --------------------------------------------------------------------------- fixtures
def _isolate_mounts() -> str | None:
    """Move pytest into a mount namespace of its own (private propagation) with its own
    /run/netns, or say why not. Other sessions on this host mount things too (podman
    storage, netns files); without this the leak check would take their mounts and
    namespaces for ours, and clean them up under their feet."""
    if os.environ.get("PYRUNTIME_TEST_HOST_MOUNT_NS"):
        return "PYRUNTIME_TEST_HOST_MOUNT_NS is set"
    if _libc.unshare(CLONE_NEWNS) != 0:
        return f"unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}"
    # Private first, cut from the host's peer groups; then shared again within this
    # namespace, as on a systemd host: a runtime that leaves its container's mounts
    # shared propagates them here, where the check sees them.
    if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return f"making / private: {os.strerror(ctypes.get_errno())}"
    if _libc.mount(b"none", b"/", None, MS_REC | MS_SHARED, None) != 0:
        return f"making / shared: {os.strerror(ctypes.get_errno())}"
    os.makedirs(NETNS_DIR, exist_ok=True)
    if _libc.mount(b"tmpfs", NETNS_DIR.encode(), b"tmpfs", 0, b"mode=0755") != 0:
        return f"a tmpfs on {NETNS_DIR}: {os.strerror(ctypes.get_errno())}"
    return None


def pytest_configure(config):
    if not IS_ROOT:
        return
    # A subreaper, as a shim is: see the module docstring.
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    config._pyruntime_mounts_shared = _isolate_mounts()


def pytest_report_header(config):
    if not IS_ROOT:
        return None
    why = getattr(config, "_pyruntime_mounts_shared", None)
    if why:
        return f"leak check: in the host's mount namespace ({why})"
    return ("leak check: pytest runs in a mount namespace of its own (shared inside, "
            "cut from the host) with its own /run/netns")


@pytest.fixture(scope="session", autouse=True)
def _session_leak_check():
    """Baseline at session start, checked once more at session end."""
    if not IS_ROOT:
        yield None
        return
    before = Snapshot()
    yield before
    leaks = find_leaks(before, None)
    if any_leak(leaks):
        clean_up(leaks, None)
        pytest.fail("the test session leaked:\n  " + describe(leaks), pytrace=False)


@pytest.fixture(autouse=True)
def leak_check(_session_leak_check):
    """Per-test leak check (see the module docstring). Fixtures that make runtime state
    register it here: `leak_check.add_root(binary, root)`, `leak_check.add_container_id(id)`.
    Being autouse and requested first, its teardown runs after every other finalizer of
    the test."""
    tracker = LeakTracker()
    if not IS_ROOT:
        yield tracker
        return
    before = Snapshot()
    yield tracker
    tracker.stop_reaping()
    leaks = find_leaks(before, tracker)
    if any_leak(leaks):
        clean_up(leaks, tracker)
        pytest.fail("the test leaked:\n  " + describe(leaks), pytrace=False)
