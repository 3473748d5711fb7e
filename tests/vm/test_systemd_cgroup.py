"""`pyruntime --systemd-cgroup` against a real systemd (PID 1 of the test VM booted by
`runner.py --systemd`) over real D-Bus: the container's cgroup is a transient scope
unit, its limits are unit properties and cgroup files, `update` changes both, OOM kills
are still reported once systemd has removed the cgroup, and neither `delete` nor a
failed create leaves a unit behind. runc's own systemd driver is the reference for the
properties. Skipped anywhere systemd is not PID 1 of the VM (tests/vm/conftest.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from runtime_cgroup_cases import run_runtime  # noqa: E402

# `vm` too, as every test of this directory: the host's `-m "... not vm"` tiers leave it
# out; `-m systemd` in the systemd VM selects it, `-m vm` in the plain VM skips it.
pytestmark = [pytest.mark.vm, pytest.mark.systemd]

REPO = Path(__file__).resolve().parents[2]
PYRUNTIME = str(REPO / ".venv" / "bin" / "pyruntime")
CGROUP_ROOT = Path("/sys/fs/cgroup")
MIB = 1024 * 1024
LIMITS = {"memory": {"limit": 64 * MIB}, "pids": {"limit": 30},
          "cpu": {"shares": 512, "quota": 25000, "period": 100000, "cpus": "0"}}
#: The properties both runtimes set from LIMITS, as `systemctl show` prints them.
LIMIT_PROPERTIES = {"MemoryMax": str(64 * MIB), "TasksMax": "30", "CPUWeight": "20",
                    "CPUQuotaPerSecUSec": "250ms", "AllowedCPUs": "0", "Delegate": "yes"}
HOG = ["/bin/sh", "-c", "x=a; while true; do x=$x$x$x$x; done"]


def show(unit: str, *names: str) -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", unit, "-p", ",".join(names)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def unit_gone(unit: str) -> bool:
    return show(unit, "LoadState")["LoadState"] == "not-found"


class Runtime:
    """One runtime binary with its own --root, containers named with the suite's ID
    prefix (so the leak check sees their cgroups) and deleted at teardown."""

    def __init__(self, binary: str, root: str, directory: Path, rootfs: str,
                 leak_check) -> None:
        self.binary = binary
        self.root = root
        self.directory = directory
        self.rootfs = rootfs
        self.leak_check = leak_check
        self.ids: list[str] = []

    def new_id(self, hint: str) -> str:
        container_id = f"{self.leak_check.id_prefix}-{hint}{len(self.ids)}"
        self.ids.append(container_id)
        self.leak_check.add_container_id(container_id)
        return container_id

    def bundle(self, args: list[str], resources: dict | None = None,
               cgroups_path: str | None = None) -> str:
        source = Path(os.environ["PYRUNTIME_VM_BUNDLE"])
        spec = json.loads((source / "config.json").read_text())
        spec["root"] = {"path": self.rootfs, "readonly": True}
        spec["process"]["args"] = args
        spec["process"]["terminal"] = False
        if resources is not None:
            spec["linux"]["resources"] = resources
        if cgroups_path is not None:
            spec["linux"]["cgroupsPath"] = cgroups_path
        path = self.directory / f"bundle{len(list(self.directory.glob('bundle*')))}"
        path.mkdir()
        (path / "config.json").write_text(json.dumps(spec))
        return str(path)

    def cli(self, *args: str, check: bool = True, timeout: float = 120
            ) -> subprocess.CompletedProcess:
        return run_runtime([self.binary, "--root", self.root, "--systemd-cgroup", *args],
                           str(self.directory), check=check, timeout=timeout)

    def state(self, container_id: str) -> dict:
        return json.loads(self.cli("state", container_id).stdout)

    def wait_stopped(self, container_id: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.state(container_id)["status"] != "stopped":
            assert time.monotonic() < deadline, f"{container_id} did not stop"
            time.sleep(0.2)

    def delete_all(self) -> None:
        for container_id in self.ids:
            self.cli("delete", "--force", container_id, check=False)


@pytest.fixture
def make_runtime(tmp_path, runtime_root, leak_check):
    made: list[Runtime] = []
    bundle = os.environ.get("PYRUNTIME_VM_BUNDLE")
    if not bundle:
        pytest.fail("$PYRUNTIME_VM_BUNDLE is unset (tests/vm/runner.py sets it)")

    def make(binary: str = PYRUNTIME) -> Runtime:
        directory = tmp_path / f"work-{os.path.basename(binary)}"
        directory.mkdir()
        runtime = Runtime(binary, runtime_root(binary), directory,
                          os.path.join(bundle, "rootfs"), leak_check)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.delete_all()


@pytest.fixture
def pyruntime(make_runtime) -> Runtime:
    return make_runtime()


def scope_of(container_id: str) -> str:
    return f"pyruntime-{container_id}.scope"


# --------------------------------------------------------------------------- the scope
def test_container_runs_in_an_active_scope_with_its_limits(pyruntime):
    container_id = pyruntime.new_id("scope")
    pyruntime.cli("run", "-d", "--bundle", pyruntime.bundle(["/bin/sleep", "300"], LIMITS),
                  container_id)
    unit = scope_of(container_id)
    props = show(unit, "ActiveState", "ControlGroup", "Slice", *LIMIT_PROPERTIES)
    assert props["ActiveState"] == "active", props
    assert props["Slice"] == "system.slice"
    assert props["ControlGroup"] == f"/system.slice/{unit}"
    assert {k: props[k] for k in LIMIT_PROPERTIES} == LIMIT_PROPERTIES

    pid = pyruntime.state(container_id)["pid"]
    assert Path(f"/proc/{pid}/cgroup").read_text() == f"0::{props['ControlGroup']}\n"
    directory = CGROUP_ROOT / props["ControlGroup"].lstrip("/")
    assert (directory / "memory.max").read_text().strip() == str(64 * MIB)
    assert (directory / "pids.max").read_text().strip() == "30"
    assert (directory / "cpu.max").read_text().strip() == "25000 100000"
    assert (directory / "cpu.weight").read_text().strip() == "20"
    assert (directory / "cpuset.cpus").read_text().strip() == "0"
    # The driver wrote what systemd has no property for.
    assert (directory / "memory.oom.group").read_text().strip() == "1"
    record = json.loads((Path(pyruntime.root) / container_id / "state.json").read_text())
    assert record["cgroup_unit"] == unit
    assert record["cgroup_paths"] == {"": str(directory)}
    assert json.loads(pyruntime.cli("ps", "--format", "json", container_id).stdout) == [pid]

    pyruntime.cli("delete", "--force", container_id)
    assert unit_gone(unit)
    assert not directory.exists()


def test_update_changes_the_unit_and_the_files(pyruntime):
    container_id = pyruntime.new_id("update")
    pyruntime.cli("run", "-d", "--bundle", pyruntime.bundle(["/bin/sleep", "300"], LIMITS),
                  container_id)
    unit = scope_of(container_id)
    directory = CGROUP_ROOT / "system.slice" / unit
    pyruntime.cli("update", "--memory", "48m", "--pids-limit", "40", "--cpu-quota", "50000",
                  container_id)
    assert show(unit, "MemoryMax", "TasksMax", "CPUQuotaPerSecUSec") == {
        "MemoryMax": str(48 * MIB), "TasksMax": "40", "CPUQuotaPerSecUSec": "500ms"}
    assert (directory / "memory.max").read_text().strip() == str(48 * MIB)
    assert (directory / "pids.max").read_text().strip() == "40"
    assert (directory / "cpu.max").read_text().strip() == "50000 100000"
    # A request the files refuse changes neither (checked before systemd is told).
    proc = pyruntime.cli("update", "--memory", "32m", "--cpu-rt-runtime", "1000",
                         container_id, check=False)
    assert proc.returncode != 0 and "realtime" in proc.stderr, proc.stderr
    assert show(unit, "MemoryMax")["MemoryMax"] == str(48 * MIB)
    assert json.loads(pyruntime.cli("events", "--stats", container_id).stdout)[
        "data"]["memory"]["usage"]["limit"] == 48 * MIB


def test_pause_resume_and_kill_work_on_the_scope(pyruntime):
    container_id = pyruntime.new_id("freeze")
    pyruntime.cli("run", "-d", "--bundle", pyruntime.bundle(["/bin/sleep", "300"]),
                  container_id)
    unit = scope_of(container_id)
    directory = CGROUP_ROOT / "system.slice" / unit
    pyruntime.cli("pause", container_id)
    assert pyruntime.state(container_id)["status"] == "paused"
    assert "frozen 1" in (directory / "cgroup.events").read_text()
    pyruntime.cli("resume", container_id)
    assert pyruntime.state(container_id)["status"] == "running"
    pyruntime.cli("kill", "--all", container_id, "KILL")
    pyruntime.wait_stopped(container_id)
    # Its last process gone, systemd takes the scope away by itself...
    deadline = time.monotonic() + 30
    while not unit_gone(unit):
        assert time.monotonic() < deadline, show(unit, "LoadState", "ActiveState")
        time.sleep(0.2)
    assert not directory.exists()
    # ...and delete still finishes cleanly (nothing to stop).
    pyruntime.cli("delete", container_id)
    assert not (Path(pyruntime.root) / container_id).exists()


# --------------------------------------------------------------------------- OOM
def test_oom_kill_exits_137_and_is_reported(pyruntime):
    limits = {"memory": {"limit": 16 * MIB}}
    foreground = pyruntime.new_id("oomfg")
    proc = pyruntime.cli("run", "--bundle", pyruntime.bundle(HOG, limits), foreground,
                         check=False)
    assert proc.returncode == 137, proc.stderr
    assert unit_gone(scope_of(foreground))  # run deleted it

    detached = pyruntime.new_id("oomd")
    pyruntime.cli("run", "-d", "--bundle", pyruntime.bundle(HOG, limits), detached)
    pyruntime.wait_stopped(detached)
    unit = scope_of(detached)
    # systemd removed the cgroup, memory.events and all, when the last process died:
    # the OOM kill is known from the unit's result or the kernel's log.
    deadline = time.monotonic() + 30
    while (CGROUP_ROOT / "system.slice" / unit).exists():
        assert time.monotonic() < deadline, "systemd did not remove the empty scope"
        time.sleep(0.2)
    state = pyruntime.state(detached)
    assert state["annotations"].get("io.github.pyruntime.oom-killed") == "true", state
    pyruntime.cli("delete", detached)
    assert unit_gone(unit)

    # The name of the OOM-killed container again, for one that exits cleanly: the
    # kernel's log still has the earlier kill, which predates this container.
    pyruntime.cli("run", "-d", "--bundle", pyruntime.bundle(["/bin/true"], limits),
                  foreground)
    pyruntime.wait_stopped(foreground)
    state = pyruntime.state(foreground)
    assert "io.github.pyruntime.oom-killed" not in state["annotations"], state
    pyruntime.cli("delete", foreground)


# --------------------------------------------------------------------------- clean-up
def test_delete_of_a_created_container_removes_unit_and_cgroup(pyruntime):
    container_id = pyruntime.new_id("created")
    pyruntime.cli("create", "--bundle", pyruntime.bundle(["/bin/true"]), container_id)
    unit = scope_of(container_id)
    props = show(unit, "ActiveState", "ControlGroup")
    assert props["ActiveState"] == "active"
    pid = pyruntime.state(container_id)["pid"]
    assert Path(f"/proc/{pid}/cgroup").read_text() == f"0::{props['ControlGroup']}\n"
    pyruntime.cli("delete", container_id)
    assert unit_gone(unit)
    assert not (CGROUP_ROOT / props["ControlGroup"].lstrip("/")).exists()
    assert not (Path(pyruntime.root) / container_id).exists()


def test_failed_create_leaves_no_unit(pyruntime):
    # Fails in init, after the unit was started around stage 1.
    missing = pyruntime.new_id("missing")
    proc = pyruntime.cli("run", "--bundle", pyruntime.bundle(["/no/such/binary"]), missing,
                         check=False)
    assert proc.returncode == 127, proc.stderr
    # Fails writing the cgroup files, right after systemd made the unit.
    refused = pyruntime.new_id("refused")
    proc = pyruntime.cli("run", "--bundle", pyruntime.bundle(
        ["/bin/true"], {"unified": {"memory.no_such_file": "1"}}), refused, check=False)
    assert proc.returncode == 255 and "memory.no_such_file" in proc.stderr, proc.stderr
    for container_id in (missing, refused):
        assert unit_gone(scope_of(container_id))
        assert not (CGROUP_ROOT / "system.slice" / scope_of(container_id)).exists()
        assert not (Path(pyruntime.root) / container_id).exists()


@pytest.mark.parametrize("cgroups_path, resources, field", [
    ("not-a-systemd-path", None, "linux.cgroupsPath"),
    ("system.slice:pyruntime:a+b", None, "linux.cgroupsPath"),
    (None, {"cpu": {"cpus": "3-1"}}, "linux.resources.cpu.cpus"),
    (None, {"memory": {"limit": 64 * MIB, "swap": MIB}}, "linux.resources.memory.swap"),
])
def test_bad_input_names_the_field_and_makes_nothing(pyruntime, cgroups_path, resources,
                                                     field):
    container_id = pyruntime.new_id("bad")
    proc = pyruntime.cli("create", "--bundle", pyruntime.bundle(
        ["/bin/true"], resources, cgroups_path), container_id, check=False)
    assert proc.returncode == 255 and field in proc.stderr, proc.stderr
    assert unit_gone(scope_of(container_id))
    assert not (Path(pyruntime.root) / container_id).exists()


# --------------------------------------------------------------------------- slices, D-Bus
def test_a_slice_name_makes_a_slice_unit(pyruntime):
    name = f"{pyruntime.leak_check.id_prefix}slice{len(pyruntime.ids)}.slice"
    container_id = pyruntime.new_id("slice")
    pyruntime.cli("run", "-d", "--bundle", pyruntime.bundle(
        ["/bin/sleep", "300"], {"pids": {"limit": 10}}, f"system.slice:pyruntime:{name}"),
        container_id)
    props = show(name, "ActiveState", "ControlGroup", "TasksMax")
    assert props == {"ActiveState": "active", "ControlGroup": f"/{name}", "TasksMax": "10"}
    pid = pyruntime.state(container_id)["pid"]
    assert Path(f"/proc/{pid}/cgroup").read_text() == f"0::/{name}\n"
    pyruntime.cli("delete", "--force", container_id)
    # systemd loads any *.slice on demand, even without a unit file: gone, a transient
    # slice shows as a fresh, inactive, non-transient one.
    assert show(name, "ActiveState", "Transient") == {"ActiveState": "inactive",
                                                      "Transient": "no"}
    assert not (CGROUP_ROOT / name).exists()


@contextlib.contextmanager
def process_for_unit(unit: str):
    """A `sleep 300` for a test to put in `unit`; killed, and the unit stopped, however
    the test ends."""
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        yield sleeper
    finally:
        sleeper.kill()
        sleeper.wait()
        subprocess.run(["systemctl", "stop", unit], capture_output=True)


def test_systemds_private_socket_works_without_the_bus(leak_check):
    """The fallback when no dbus-daemon runs: a direct connection to PID 1, where job
    signals come without Hello, AddMatch or Subscribe."""
    from pyruntime.cgroups.systemd_dbus import PRIVATE_SOCKET, SystemdManager
    from pyruntime.cgroups.systemd_unit import start_properties

    unit = f"{leak_check.id_prefix}-private.scope"
    with process_for_unit(unit) as sleeper, \
            SystemdManager.open(PRIVATE_SOCKET, on_bus=False) as manager:
        assert str(manager.manager_property("Version")).startswith("252")
        manager.start_transient_unit(
            unit, start_properties(unit, "system.slice", "test", sleeper.pid))
        control_group = manager.unit_property(unit, "org.freedesktop.systemd1.Scope",
                                              "ControlGroup")
        assert control_group == f"/system.slice/{unit}"
        assert Path(f"/proc/{sleeper.pid}/cgroup").read_text() == f"0::{control_group}\n"
        sleeper.kill()
        sleeper.wait()
        manager.stop_unit(unit)
        manager.reset_failed_unit(unit)
        assert manager.unit_property(unit, "org.freedesktop.systemd1.Unit",
                                     "ActiveState") is None
    assert unit_gone(unit)


def test_a_job_whose_signal_never_comes_still_ends(leak_check):
    """Without a match rule the bus delivers no JobRemoved: the wait must notice that
    systemd no longer has the job rather than wait out its timeout."""
    from jeepney.bus import find_system_bus

    from pyruntime.cgroups.systemd_dbus import JOB_POLL, SystemdManager
    from pyruntime.cgroups.systemd_unit import start_properties

    unit = f"{leak_check.id_prefix}-nosignal.scope"
    with process_for_unit(unit) as sleeper, \
            SystemdManager.open(find_system_bus(), on_bus=True, jobs=False) as manager:
        began = time.monotonic()
        manager.start_transient_unit(
            unit, start_properties(unit, "system.slice", "test", sleeper.pid))
        assert time.monotonic() - began >= JOB_POLL  # it did wait for the signal
        assert show(unit, "ActiveState")["ActiveState"] == "active"
        sleeper.kill()
        sleeper.wait()
        manager.stop_unit(unit)
    assert unit_gone(unit)


def test_the_normal_start_path_does_not_load_the_dbus_client(pyruntime):
    code = ("import sys; from pyruntime.cli.main import main; "
            "code = main(sys.argv[1:]); "
            "loaded = [m for m in sys.modules if m.startswith(('jeepney', "
            "'pyruntime.cgroups.systemd_'))]; "
            "print('loaded:', loaded); sys.exit(code)")
    container_id = pyruntime.new_id("lean")
    proc = subprocess.run([sys.executable, "-c", code, "--root", pyruntime.root, "run",
                           "--bundle", pyruntime.bundle(["/bin/true"]), container_id],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # systemd_path: the check whether systemd runs is all a plain run may load.
    assert "loaded: []" in proc.stdout, proc.stdout


# --------------------------------------------------------------------------- runc
def test_runc_sets_the_same_unit_properties(make_runtime, pyruntime):
    runc_binary = shutil.which("runc")
    if runc_binary is None:
        pytest.skip("runc is not installed in the VM's (the host's) root")
    runc = make_runtime(runc_binary)
    theirs = runc.new_id("runc")
    runc.cli("run", "-d", "--bundle", runc.bundle(["/bin/sleep", "300"], LIMITS,
                                                  f"system.slice:runc:{theirs}"), theirs)
    ours = pyruntime.new_id("ours")
    pyruntime.cli("run", "-d", "--bundle", pyruntime.bundle(
        ["/bin/sleep", "300"], LIMITS, f"system.slice:pyruntime:{ours}"), ours)
    names = ("ActiveState", "ControlGroup", *LIMIT_PROPERTIES)
    runc_props = show(f"runc-{theirs}.scope", *names)
    our_props = show(scope_of(ours), *names)
    assert runc_props["ControlGroup"] == f"/system.slice/runc-{theirs}.scope"
    runc_props.pop("ControlGroup"), our_props.pop("ControlGroup")
    assert our_props == runc_props
    runc.cli("delete", "--force", theirs)
    assert unit_gone(f"runc-{theirs}.scope")
