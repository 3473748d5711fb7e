"""podman, isolated from the host's own storage and configured to use the runtime under
test.

`PodmanStore` (one per session) writes containers.conf, storage.conf and registries.conf
in a temporary directory and points podman at them through CONTAINERS_CONF,
CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF, with TMPDIR there too:

- `[engine] runtime` is the runtime under test, under its own name, with
  `runtime_supports_json` naming it so that podman (through conmon) passes
  `--log-format=json --log FILE` as it does to runc;
- `cgroup_manager = "cgroupfs"` (no systemd here), `events_logger = "file"` (the per-test
  fixture reads the events to learn which containers and pods a test made);
- `conmon_env_vars` names these configuration files: conmon runs podman's exit command
  (`podman container cleanup`) with that environment only, and without them the cleanup
  would not find this storage (a foreground `podman run` then waits 20 s for nothing);
- `default_ulimits` within what the host allows (podman's defaults need CAP_SYS_RESOURCE);
- `netns = "none"`: every container and pod has a network namespace of its own with only
  loopback, so nothing a test does reaches any network;
- graphroot, runroot, tmp_dir, volume_path, network_config_dir: all in the temporary
  directory, removed at the end of the session (static_dir, the database, stays at its
  default, graphroot/libpod: the exit command's `--root` puts it there). overlay storage, vfs when
  overlay does not work on the host.

podman (4.3) still makes a few things outside of it: `/run/netns` becomes a shared bind
mount of itself when the first pod's network namespace is made (as `ip netns add` does),
`/run/containers/networks`, `/var/lib/containers/cache` (the blob info cache of
`podman import`), the runtime's default state root (`/run/pyruntime`, `/run/runc`: podman
passes no `--root` as root), `libpod_parent` cgroups. The store notes which of those did
not exist before the session and removes them at its end; it makes the `/run/netns` mount
before any test runs, so that no test is blamed for it.

`Podman` is one test's view: commands, names, and a teardown that removes every pod and
container, waits for their conmon processes, and checks that the runtime kept no state of
them.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess

import pytest

from . import RUNTIME_BINARY, RUNTIME_NAME
from .engines import (REAPER, Engine, is_mount_point, kill_and_wait, kill_cgroup_trees,
                      processes_matching, read_json_lines, remove_tree, runtime_for_engines,
                      wait_for)

IMAGE = "localhost/busybox:e2e"
#: A container command that ends at once on SIGTERM (`podman stop` does not wait 10 s).
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]

CGROUP_ROOT = "/sys/fs/cgroup"
#: What podman 4.3 makes outside of its configured directories (see the module docstring).
HOST_PATHS = ["/run/containers/networks", "/run/containers", "/var/lib/containers/cache",
              "/var/lib/containers", "/etc/cni/net.d/cni.lock"]
NETNS_DIR = "/run/netns"


def runtime_default_root() -> str:
    """Where the runtime keeps state when not given --root (podman gives none as root)."""
    if RUNTIME_NAME in ("runc", "crun"):
        return f"/run/{RUNTIME_NAME}"
    return "/run/pyruntime"


class PodmanStore(Engine):
    """The session's podman configuration, storage and image."""

    name = "podman"

    def __init__(self, base: str) -> None:
        self.base = base
        self.events_log = os.path.join(base, "events.log")
        runtime_path, trace = runtime_for_engines(base, RUNTIME_BINARY)
        self.runtime_path = runtime_path
        for sub in ("tmp", "volumes", "networks", "storage", "run"):
            os.makedirs(os.path.join(base, sub), exist_ok=True)
        self.config_env = {
            "CONTAINERS_CONF": os.path.join(base, "containers.conf"),
            "CONTAINERS_STORAGE_CONF": os.path.join(base, "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": os.path.join(base, "registries.conf"),
            "TMPDIR": os.path.join(base, "tmp"),
        }
        self._write_configs("overlay")
        env = dict(os.environ)
        for key in list(env):
            if key.startswith(("CONTAINERS_", "CONTAINER_", "XDG_RUNTIME_DIR", "REGISTRY_AUTH")):
                del env[key]
        env.update(self.config_env)
        super().__init__(env, trace)
        self.driver = "overlay"
        # Host state before the session, to remove only what podman added.
        self._host_before = {p: os.path.lexists(p) for p in
                             HOST_PATHS + [runtime_default_root()]}
        self._cgroups_before = set(_libpod_cgroups())
        self._made_netns_mount = False

    def command(self, *args) -> list[str]:
        return ["podman", *map(str, args)]

    # ---- setup
    def _write_configs(self, driver: str) -> None:
        b = self.base
        q = json.dumps  # TOML basic strings are JSON strings
        with open(os.path.join(b, "containers.conf"), "w") as f:
            f.write(f"""\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
# conmon runs podman's exit command (`podman container cleanup`, which marks the container
# exited; a foreground `podman run` waits for it) with this environment only.
conmon_env_vars = {q(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
                     + [f"{k}={v}" for k, v in self.config_env.items()])}
events_logger = "file"
events_logfile_path = {q(self.events_log)}
runtime = {q(RUNTIME_NAME)}
runtime_supports_json = {q(sorted({RUNTIME_NAME, "runc", "crun"}))}
tmp_dir = {q(os.path.join(b, "tmp"))}
volume_path = {q(os.path.join(b, "volumes"))}

[engine.runtimes]
{RUNTIME_NAME} = [{q(self.runtime_path)}]

[network]
network_backend = "netavark"
network_config_dir = {q(os.path.join(b, "networks"))}
""")
        with open(os.path.join(b, "storage.conf"), "w") as f:
            f.write(f"""\
[storage]
driver = {q(driver)}
graphroot = {q(os.path.join(b, "storage"))}
runroot = {q(os.path.join(b, "run"))}
""")
        with open(os.path.join(b, "registries.conf"), "w") as f:
            f.write('unqualified-search-registries = []\nshort-name-mode = "enforcing"\n')

    def prepare_netns_dir(self) -> None:
        """Make /run/netns a shared bind mount of itself now, as podman does when it makes
        the first pod's network namespace, so that no test is blamed for that mount."""
        os.makedirs(NETNS_DIR, exist_ok=True)
        if is_mount_point(NETNS_DIR):
            return
        subprocess.run(["mount", "--bind", NETNS_DIR, NETNS_DIR], check=True, timeout=60)
        self._made_netns_mount = True
        subprocess.run(["mount", "--make-shared", NETNS_DIR], check=True, timeout=60)

    def import_image(self, rootfs_tar: str) -> None:
        args = ["import", "--change", 'CMD ["/bin/sh"]', "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                rootfs_tar, IMAGE]
        result = self.run(*args, check=False, timeout=300)
        if not result.ok and "overlay" in result.output:
            # overlay does not work here (e.g. the storage is itself on overlayfs): vfs.
            remove_tree(os.path.join(self.base, "storage"))
            remove_tree(os.path.join(self.base, "run"))
            self._write_configs("vfs")
            self.driver = "vfs"
            result = self.run(*args, check=False, timeout=300)
        if not result.ok:
            pytest.fail(f"podman could not import the busybox image:\n{result.describe()}",
                        pytrace=False)

    # ---- teardown
    def remove_everything(self) -> list[str]:
        """podman pod rm / rm of everything; the descriptions of the commands that failed."""
        problems = []
        for args in (["pod", "rm", "--all", "--force", "--time", "0"],
                     ["rm", "--all", "--force", "--time", "0"]):
            result = self.run(*args, check=False)
            if not result.ok:
                problems.append(result.describe())
        return problems

    def wait_engine_processes(self, timeout: float = 30) -> dict[int, str]:
        """Wait for conmon and podman's exit commands (`podman ... container cleanup`, their
        command lines name the store's directories) to end; kill and return those that
        did not."""
        def leftovers():
            found = processes_matching("conmon", self.base)
            found.update(processes_matching("podman", self.base))
            return found
        try:
            wait_for(lambda: not leftovers(), timeout, message="conmon and podman to exit")
            return {}
        except pytest.fail.Exception:
            left = leftovers()
            kill_and_wait(list(left))
            return left

    def close(self) -> None:
        """Remove what the session's podman made (see the module docstring)."""
        REAPER.start()
        try:
            self.remove_everything()
            self.run("rmi", "--all", "--force", check=False)
            self.wait_engine_processes()
        finally:
            REAPER.stop()
        remove_tree(self.base)
        if self._made_netns_mount and not os.listdir(NETNS_DIR):
            subprocess.run(["umount", "-l", NETNS_DIR], capture_output=True, timeout=60)
        for path, existed in self._host_before.items():
            if existed or not os.path.lexists(path):
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                if path.endswith("/cache"):
                    shutil.rmtree(path, ignore_errors=True)  # podman import's blob info cache
                else:
                    _rmdir(path)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        for path in sorted(set(_libpod_cgroups()) - self._cgroups_before,
                           key=lambda p: -p.count("/")):
            _rmdir(path)


def _rmdir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


def _libpod_cgroups() -> list[str]:
    """libpod_parent and the directories below it, in every cgroup hierarchy."""
    found = []
    try:
        tops = [os.path.join(CGROUP_ROOT, h) for h in os.listdir(CGROUP_ROOT)]
    except OSError:
        return found
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.procs")):
        tops = [CGROUP_ROOT]
    for top in tops:
        parent = os.path.join(top, "libpod_parent")
        if os.path.isdir(parent) and not os.path.islink(top):
            found.append(parent)
            for dirpath, dirnames, _ in os.walk(parent):
                found.extend(os.path.join(dirpath, d) for d in dirnames)
    return found


def _slug(name: str, limit: int = 24) -> str:
    name = re.sub(r"^test_", "", name)
    return re.sub(r"[^A-Za-z0-9]+", "_", name)[:limit].strip("_") or "t"


class Podman(Engine):
    """One test's podman: the session's store, names unique to the test, and a teardown
    (`close`) that removes what the test made and checks what was left."""

    name = "podman"

    def __init__(self, store: PodmanStore, tracker, test_name: str) -> None:
        super().__init__(store.env, store.trace)
        self.store = store
        self.tracker = tracker
        self.base = store.base
        self.runtime_path = store.runtime_path
        self._stem = f"{tracker.id_prefix}-{_slug(test_name)}"
        self._counter = itertools.count(1)
        self._events_offset = os.path.getsize(store.events_log) \
            if os.path.exists(store.events_log) else 0
        self._state_before = _listdir(runtime_default_root())

    def command(self, *args) -> list[str]:
        return ["podman", *map(str, args)]

    def new_name(self, hint: str = "c") -> str:
        return f"{self._stem}-{hint}-{next(self._counter)}"

    # ---- looking at containers
    def inspect(self, name: str, template: str, kind: str = "container") -> str:
        return self.run(kind, "inspect", "--format", template, name).stdout.strip()

    def pid(self, name: str) -> int:
        pid = int(self.inspect(name, "{{.State.Pid}}"))
        assert pid > 0, f"container {name} has no pid (not running?)"
        return pid

    def status(self, name: str) -> str:
        return self.inspect(name, "{{.State.Status}}")

    def wait_status(self, name: str, *wanted: str, timeout: float = 60) -> str:
        return wait_for(lambda: (s := self.status(name)) in wanted and s, timeout,
                        message=f"container {name} to be {' or '.join(wanted)}")

    def made(self) -> tuple[list[str], list[str]]:
        """(container IDs, pod IDs) this test made, from podman's event log."""
        containers, pods = [], []
        for event in read_json_lines(self.store.events_log, self._events_offset):
            ident, kind = event.get("ID", ""), event.get("Type", "")
            if not re.fullmatch(r"[0-9a-f]{64}", ident):
                continue
            target = containers if kind == "container" else pods if kind == "pod" else None
            if target is not None and ident not in target:
                target.append(ident)
        return containers, pods

    # ---- teardown
    def close(self) -> None:
        problems = self.store.remove_everything()
        containers, pods = self.made()
        for ident in containers + pods:
            self.tracker.add_container_id(ident)
        # conmon and podman's exit command (`podman container cleanup ID`) end on their
        # own once the containers are gone.
        left = self.store.wait_engine_processes()
        if left:
            problems.append("conmon or podman processes did not exit (killed): "
                            + "; ".join(f"{pid}: {cmd}" for pid, cmd in left.items()))
        # The overlay driver bind-mounts its directory on itself while layers are mounted
        # and unmounts it in the last podman command that leaves none mounted; an exit
        # command racing `podman rm` can leave it. Nothing is mounted now: remove it.
        # Processes left in the containers' cgroups (say, frozen ones, which nothing could
        # kill): killed, and reported.
        mine = {f"libpod-{ident}" for ident in containers}
        left = kill_cgroup_trees([p for p in _libpod_cgroups() if os.path.basename(p) in mine])
        if left:
            problems.append(f"processes left in the containers' cgroups (killed): {left}")
        overlay_home = os.path.join(self.base, "storage", "overlay")
        if is_mount_point(overlay_home) and \
                not self.run("ps", "--all", "--quiet", check=False).stdout.strip():
            subprocess.run(["umount", "-l", overlay_home], capture_output=True, timeout=60)
        # podman 4.3 on a cgroup v1 host removes a pod's cgroup from the controllers'
        # hierarchies but not from name=systemd and the unified one (with runc too):
        # empty directories that only podman made; the runtime made none of them.
        for pod in pods:
            for path in _libpod_cgroups():
                if os.path.basename(path) == pod:
                    _rmdir(path)
        # The runtime must keep no state of containers that podman removed.
        root = runtime_default_root()
        left = sorted((set(_listdir(root)) - set(self._state_before)) & set(containers))
        if left:
            problems.append(f"the runtime kept state of removed containers in {root}: {left}")
            for ident in left:
                subprocess.run([RUNTIME_BINARY, "delete", "--force", ident],
                               capture_output=True, timeout=60)
                shutil.rmtree(os.path.join(root, ident), ignore_errors=True)
        if problems:
            pytest.fail("podman teardown:\n" + "\n\n".join(problems), pytrace=False)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def write_file(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path

