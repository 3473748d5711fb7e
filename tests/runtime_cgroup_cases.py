"""Resource limits through the runtime's command line, the same cases on cgroup v1 (the
host: tests/integration/test_runtime_cgroups.py) and v2 (the VM:
tests/vm/test_runtime_cgroups_v2.py). A subclass provides the `rootfs` fixture.

Everything goes through `pyruntime` as a user would: `run` with limits in config.json,
`update`, `pause`/`resume`, `events --stats`, `delete`. CPU use is read from the
runtime's own stats over a sampling window; no wall-clock time is asserted.
"""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYRUNTIME = os.path.join(REPO, ".venv", "bin", "pyruntime")
MIB = 1024 * 1024


def run_runtime(argv: list[str], directory: str, *, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a runtime command with its output in files under `directory`, not pipes: a
    detached container keeps its stdio, and a pipe would not reach EOF before it ends."""
    with open(os.path.join(directory, "out"), "w+") as out, \
            open(os.path.join(directory, "err"), "w+") as err:
        proc = subprocess.run(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                              timeout=timeout)
        out.seek(0)
        err.seek(0)
        proc.stdout, proc.stderr = out.read(), err.read()
    if check and proc.returncode != 0:
        raise AssertionError(f"{os.path.basename(argv[0])} {' '.join(argv[1:])} -> "
                             f"{proc.returncode}: {proc.stderr}")
    return proc


def cgroup_v2() -> bool:
    return not os.path.isdir("/sys/fs/cgroup/memory")


class Env:
    """The runtime with a root of its own, and bundles on a shared read-only rootfs."""

    def __init__(self, directory: str, rootfs: str) -> None:
        self.directory = directory
        self.rootfs = rootfs
        self.root = os.path.join(directory, "root")
        self.ids: list[str] = []

    def cli(self, *args: str, check: bool = True, timeout: float = 60):
        return run_runtime([PYRUNTIME, "--root", self.root, *args], self.directory,
                           check=check, timeout=timeout)

    def bundle(self, name: str, args: list[str], resources: dict | None = None,
               mounts: list[dict] = (), capabilities: list[str] | None = None) -> str:
        from pyruntime.oci.spec_defaults import default_spec

        spec = default_spec()
        spec["root"] = {"path": self.rootfs, "readonly": True}
        spec["process"]["args"] = args
        spec["process"]["terminal"] = False
        spec["mounts"] += list(mounts)
        if resources is not None:
            spec["linux"]["resources"] = resources
        if capabilities is not None:
            for kind in ("bounding", "effective", "permitted"):
                spec["process"]["capabilities"][kind] = capabilities
        path = os.path.join(self.directory, name)
        os.makedirs(path)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(spec, f)
        return path

    def new_id(self, hint: str) -> str:
        container_id = f"cg-{hint}-{os.getpid()}-{len(self.ids)}"
        self.ids.append(container_id)
        return container_id

    def stats(self, container_id: str) -> dict:
        return json.loads(self.cli("events", "--stats", container_id).stdout)["data"]

    def status(self, container_id: str) -> str:
        return json.loads(self.cli("state", container_id).stdout)["status"]

    def wait_stopped(self, container_id: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.status(container_id) != "stopped":
            assert time.monotonic() < deadline, f"{container_id} did not stop"
            time.sleep(0.1)

    def cleanup(self) -> None:
        for container_id in self.ids:
            self.cli("delete", "--force", container_id, check=False)


def cgroup_dirs(container_id: str) -> list[str]:
    found = []
    for directory, _, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(directory) == container_id:
            found.append(directory)
    return found


def cpu_seconds(env: Env, container_id: str) -> float:
    return env.stats(container_id)["cpu"]["usage"]["total"] / 1e9


_TMPFS = {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
          "options": ["nosuid", "nodev", "mode=1777"]}
_HOG = ["/bin/sh", "-c", "x=a; while true; do x=$x$x$x$x; done"]
_SPIN = ["/bin/sh", "-c", "while true; do :; done"]


class RuntimeCgroupCases:
    @pytest.fixture
    def env(self, tmp_path, rootfs):
        directory = str(tmp_path)
        os.chmod(directory, 0o755)
        environment = Env(directory, rootfs)
        yield environment
        environment.cleanup()

    def test_memory_hog_is_oom_killed_and_reported(self, env):
        limits = {"memory": {"limit": 16 * MIB}}
        proc = env.cli("run", "--bundle", env.bundle("fg", _HOG, limits), env.new_id("oom"),
                       check=False)
        assert proc.returncode == 137, proc.stderr
        detached = env.new_id("oom-d")
        env.cli("run", "-d", "--bundle", env.bundle("bg", _HOG, limits), detached)
        env.wait_stopped(detached)
        state = json.loads(env.cli("state", detached).stdout)
        assert state["annotations"].get("io.github.pyruntime.oom-killed") == "true"

    def test_update_memory_changes_the_limit(self, env):
        container_id = env.new_id("update")
        env.cli("run", "-d", "--bundle", env.bundle("b", ["/bin/sleep", "300"],
                                                      {"memory": {"limit": 64 * MIB}}),
                container_id)
        assert env.stats(container_id)["memory"]["usage"]["limit"] == 64 * MIB
        env.cli("update", "--memory", "48m", container_id)
        assert env.stats(container_id)["memory"]["usage"]["limit"] == 48 * MIB

    def test_cpu_quota_holds_a_spinner_under_a_fifth(self, env):
        limited = env.new_id("cpu-limited")
        free = env.new_id("cpu-free")
        env.cli("run", "-d", "--bundle", env.bundle(
            "limited", _SPIN, {"cpu": {"quota": 20000, "period": 100000}}), limited)
        env.cli("run", "-d", "--bundle", env.bundle("free", _SPIN), free)
        time.sleep(0.5)
        start = {cid: cpu_seconds(env, cid) for cid in (limited, free)}
        began = time.monotonic()
        time.sleep(3)
        elapsed = time.monotonic() - began
        share = {cid: (cpu_seconds(env, cid) - start[cid]) / elapsed
                 for cid in (limited, free)}
        # Relative to the unlimited spinner, because an emulated VM's clock drifts from
        # its CPU accounting; the throttling counters show the quota at work.
        assert share[limited] < 0.4 * share[free], share
        assert share[free] > 0.5, share
        assert env.stats(limited)["cpu"]["throttling"]["throttledPeriods"] > 0
        assert env.stats(free)["cpu"]["throttling"]["throttledPeriods"] == 0

    def test_fork_bomb_stops_at_pids_max(self, env):
        container_id = env.new_id("pids")
        env.cli("run", "-d", "--bundle", env.bundle("b", ["/bin/sleep", "300"],
                                                      {"pids": {"limit": 20}}), container_id)
        bomb = "n=0; while [ $n -lt 200 ]; do sleep 300 & n=$((n+1)); done"
        proc = env.cli("exec", container_id, "/bin/sh", "-c", bomb, check=False)
        assert proc.returncode != 0  # the shell could not fork its 200 children
        pids = json.loads(env.cli("ps", "--format", "json", container_id).stdout)
        assert 10 < len(pids) <= 20, pids
        assert env.stats(container_id)["pids"]["limit"] == 20

    def test_creation_hooks_find_the_limits_set(self, env):
        """The limits are set after init enters the cgroup (as runc does), but before
        the prestart and createRuntime hooks run, which may rely on them."""
        container_id = env.new_id("hooks")
        path = env.bundle("b", ["/bin/true"], {"pids": {"limit": 37}})
        with open(os.path.join(path, "config.json")) as f:
            spec = json.load(f)
        seen = os.path.join(env.directory, "seen")
        script = (f"for d in $(find /sys/fs/cgroup -type d -name {container_id}); do "
                  f"if [ -f $d/pids.max ]; then cat $d/pids.max; fi; done >> {seen}")
        hook = {"path": "/bin/sh", "args": ["sh", "-c", script]}
        spec["hooks"] = {"prestart": [hook], "createRuntime": [hook]}
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(spec, f)
        env.cli("run", "--bundle", path, container_id)
        with open(seen) as f:
            assert f.read().split() == ["37", "37"]

    def test_pause_freezes_and_resume_thaws(self, env):
        counter_dir = os.path.join(env.directory, "counter")
        os.mkdir(counter_dir)
        counter = os.path.join(counter_dir, "n")
        container_id = env.new_id("freeze")
        # Appending, so that a freeze between two writes never leaves a torn file: the
        # size grows while the process runs and stands still while it is frozen.
        loop = ["/bin/sh", "-c", "while true; do echo x >> /c/n; done"]
        bind = {"destination": "/c", "type": "bind", "source": counter_dir,
                "options": ["rbind", "rw"]}
        env.cli("run", "-d", "--bundle", env.bundle("b", loop, mounts=[bind]), container_id)

        def value() -> int:
            return os.path.getsize(counter) if os.path.exists(counter) else 0

        time.sleep(0.5)
        env.cli("pause", container_id)
        assert env.status(container_id) == "paused"
        frozen = value()
        time.sleep(1)
        assert value() == frozen
        env.cli("resume", container_id)
        assert env.status(container_id) == "running"
        time.sleep(1)
        assert value() > frozen

    def test_a_denied_device_cannot_be_opened_even_with_mknod(self, env):
        script = ("mknod /tmp/disk b 8 0 2>&1; head -c 1 /tmp/disk >/dev/null 2>&1 "
                  "&& echo OPENED || echo DENIED; echo x > /dev/null && echo NULL-OK")
        caps = ["CAP_MKNOD", "CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE", "CAP_CHOWN"]
        resources = {"devices": [{"allow": False, "access": "rwm"}]}
        proc = env.cli("run", "--bundle", env.bundle("b", ["/bin/sh", "-c", script], resources,
                                                     mounts=[_TMPFS], capabilities=caps),
                       env.new_id("dev"), check=False)
        assert "DENIED" in proc.stdout and "OPENED" not in proc.stdout, proc.stdout
        assert "NULL-OK" in proc.stdout

    def test_events_stats_report_memory_and_pids(self, env):
        container_id = env.new_id("stats")
        env.cli("run", "-d", "--bundle", env.bundle("b", ["/bin/sleep", "300"],
                                                      {"pids": {"limit": 64}}), container_id)
        event = json.loads(env.cli("events", "--stats", container_id).stdout)
        assert event["type"] == "stats" and event["id"] == container_id
        assert event["data"]["memory"]["usage"]["usage"] > 0
        assert event["data"]["pids"]["current"] >= 1

    def test_delete_leaves_no_cgroup(self, env):
        container_id = env.new_id("gone")
        env.cli("run", "-d", "--bundle", env.bundle("b", ["/bin/sleep", "300"]), container_id)
        assert cgroup_dirs(container_id)
        env.cli("delete", "--force", container_id)
        assert cgroup_dirs(container_id) == []

    def test_without_cgroups_path_the_container_goes_below_the_runtimes_cgroup(self, env):
        """runc's placement (pyruntime.cgroups.placement): the container's ID below the
        cgroup the runtime runs in, in every hierarchy; on cgroup v2 below that cgroup's
        parent. The runtime is started from a cgroup of the test's own to see it."""
        from pyruntime.cgroups.placement import mounted_hierarchies

        caller = env.new_id("caller")
        container_id = env.new_id("placed")
        made = []
        try:
            for key, mount in mounted_hierarchies().items():
                made.append(os.path.join(mount, caller))
                os.mkdir(made[-1])
                if "cpuset" in key.split(","):
                    for name in ("cpuset.cpus", "cpuset.mems"):
                        with open(os.path.join(mount, name)) as f:
                            value = f.read().strip()
                        with open(os.path.join(made[-1], name), "w") as f:
                            f.write(value)
            move = 'for d in $DIRS; do echo $$ > "$d/cgroup.procs"; done; exec "$@"'
            subprocess.run(["sh", "-c", move, "sh", PYRUNTIME, "--root", env.root, "run", "-d",
                            "--bundle", env.bundle("b", ["/bin/sleep", "300"]), container_id],
                           env=dict(os.environ, DIRS=" ".join(made)), check=True, timeout=60,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            pid = json.loads(env.cli("state", container_id).stdout)["pid"]
            with open(f"/proc/{pid}/cgroup") as f:
                paths = {line.split(":", 2)[2].strip() for line in f}
            expected = f"/{container_id}" if cgroup_v2() else f"/{caller}/{container_id}"
            assert paths == {expected}
        finally:
            env.cli("delete", "--force", container_id, check=False)
            for directory in made:
                os.rmdir(directory)

    def test_a_limit_the_host_cannot_enforce_is_refused(self, env):
        if cgroup_v2():
            resources, field = {"cpu": {"realtimeRuntime": 1000}}, "cpu.realtimeRuntime"
        else:
            # No hugetlb hierarchy is mounted on the v1 development hosts.
            if os.path.isdir("/sys/fs/cgroup/hugetlb"):
                pytest.skip("this v1 host has the hugetlb controller")
            resources = {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MIB}]}
            field = "hugepageLimits"
        container_id = env.new_id("refused")
        proc = env.cli("run", "--bundle", env.bundle("b", ["/bin/true"], resources),
                       container_id, check=False)
        assert proc.returncode == 255
        assert f"linux.resources.{field}" in proc.stderr, proc.stderr
        assert json.loads(env.cli("list", "--format", "json").stdout) == []
        assert cgroup_dirs(container_id) == []
