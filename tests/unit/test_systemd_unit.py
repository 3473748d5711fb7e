"""The systemd driver's pure parts: unit names from cgroupsPath, the unit properties
from linux.resources (runc's conversions), and that they serialise as the D-Bus
signature StartTransientUnit takes. No systemd needed (the VM tests use the real one)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pyruntime.cgroups.errors import CgroupError, InvalidResource
from pyruntime.cgroups.systemd_scope import SystemdScope
from pyruntime.cgroups.systemd_unit import (
    INFINITY,
    cpu_quota_per_sec,
    cpuset_bits,
    resource_properties,
    start_properties,
)

MIB = 1024 * 1024


def props(resources: dict, **kw) -> dict:
    return {name: value for name, (_sig, value) in resource_properties(resources, **kw)}


# --------------------------------------------------------------------------- cpu
@pytest.mark.parametrize("shares, weight", [
    (2, 1), (1024, 39), (512, 20), (262144, 10000), (1, 1), (10**6, 10000),
])
def test_shares_become_cpu_weight_by_runcs_formula(shares, weight):
    assert props({"cpu": {"shares": shares}}) == {"CPUWeight": weight}


def test_zero_shares_set_no_weight():
    assert props({"cpu": {"shares": 0}}) == {}


@pytest.mark.parametrize("quota, period, per_sec", [
    (25000, 100000, 250000),       # a quarter of a CPU: 250 ms per second
    (50000, 50000, 1000000),       # one CPU
    (12345, 100000, 130000),       # 12.345%: rounded up to the next whole percent
    (20000, None, 200000),         # no period: the kernel's default 100 ms
    (-1, 100000, INFINITY),        # no quota
    (None, 50000, INFINITY),       # only a period: quota unlimited
    (None, None, None),            # neither: no property at all
])
def test_quota_becomes_cpu_quota_per_sec(quota, period, per_sec):
    assert cpu_quota_per_sec(quota, period) == per_sec


def test_quota_and_period_properties():
    assert props({"cpu": {"quota": 25000, "period": 50000}}) == {
        "CPUQuotaPeriodUSec": 50000, "CPUQuotaPerSecUSec": 500000}


def test_update_of_the_quota_alone_keeps_the_current_period():
    # cpu.max says "... 50000": 10 ms of every 50 ms is 20%, not 10%.
    assert props({"cpu": {"quota": 10000}}, current_period=50000) == {
        "CPUQuotaPerSecUSec": 200000}


# --------------------------------------------------------------------------- cpuset
@pytest.mark.parametrize("text, mask", [
    ("0", b"\x01"),
    ("1,3-5", b"\x3a"),
    ("0-7", b"\xff"),
    ("8", b"\x00\x01"),              # little-endian, as systemd reads it
    ("0-8", b"\xff\x01"),
    (" 2 , 4-4 ,", b"\x14"),         # spaces and empty items tolerated, as by runc
    ("63", b"\x00" * 7 + b"\x80"),
])
def test_cpuset_bitmask_bytes(text, mask):
    assert cpuset_bits(text, "f") == mask


@pytest.mark.parametrize("bad", ["x", "3-1", "1-", "-2", ",", "0-a"])
def test_bad_cpuset_is_refused_naming_the_field(bad):
    with pytest.raises(InvalidResource, match=r"linux\.resources\.cpu\.cpus"):
        resource_properties({"cpu": {"cpus": bad}})


def test_cpus_and_mems_properties():
    assert props({"cpu": {"cpus": "0-1", "mems": "0"}}) == {
        "AllowedCPUs": b"\x03", "AllowedMemoryNodes": b"\x01"}
    assert props({"cpu": {"cpus": ""}}) == {}  # empty is unset, as for the files


# --------------------------------------------------------------------------- memory
def test_memory_limit_and_reservation():
    assert props({"memory": {"limit": 64 * MIB, "reservation": 32 * MIB}}) == {
        "MemoryMax": 64 * MIB, "MemoryLow": 32 * MIB}


def test_swap_is_memory_plus_swap_in_the_spec_and_swap_alone_for_systemd():
    assert props({"memory": {"limit": 64 * MIB, "swap": 96 * MIB}}) == {
        "MemoryMax": 64 * MIB, "MemorySwapMax": 32 * MIB}


def test_swap_equal_to_the_limit_means_no_swap():
    assert props({"memory": {"limit": 64 * MIB, "swap": 64 * MIB}}) == {
        "MemoryMax": 64 * MIB, "MemorySwapMax": 0}


def test_unlimited_swap_and_unlimited_memory():
    assert props({"memory": {"limit": 64 * MIB, "swap": -1}}) == {
        "MemoryMax": 64 * MIB, "MemorySwapMax": INFINITY}
    # Unlimited memory with no swap value: unlimited both (v1 compatibility, as runc).
    assert props({"memory": {"limit": -1}}) == {
        "MemoryMax": INFINITY, "MemorySwapMax": INFINITY}


def test_swap_below_the_limit_is_refused():
    with pytest.raises(InvalidResource, match=r"linux\.resources\.memory\.swap"):
        resource_properties({"memory": {"limit": 64 * MIB, "swap": 32 * MIB}})


def test_swap_without_a_limit_is_refused():
    with pytest.raises(InvalidResource, match=r"memory\.swap: a swap limit needs"):
        resource_properties({"memory": {"swap": 32 * MIB}})


def test_wrong_types_name_the_field():
    with pytest.raises(InvalidResource, match=r"linux\.resources\.memory\.limit"):
        resource_properties({"memory": {"limit": "64m"}})
    with pytest.raises(InvalidResource, match=r"linux\.resources\.pids: expected an object"):
        resource_properties({"pids": 5})


# --------------------------------------------------------------------------- pids, io, unified
@pytest.mark.parametrize("limit, tasks_max", [(20, 20), (0, INFINITY), (-1, INFINITY)])
def test_pids_limit_becomes_tasks_max(limit, tasks_max):
    assert props({"pids": {"limit": limit}}) == {"TasksMax": tasks_max}


def test_blkio_weight_becomes_io_weight_on_v2_scale():
    assert props({"blockIO": {"weight": 10}}) == {"IOWeight": 1}
    assert props({"blockIO": {"weight": 1000}}) == {"IOWeight": 10000}
    with pytest.raises(InvalidResource, match=r"blockIO\.weight"):
        resource_properties({"blockIO": {"weight": 5}})


def test_unified_files_systemd_knows():
    assert props({"unified": {"memory.max": "max", "memory.high": "1048576",
                              "pids.max": "7", "cpu.weight": "300", "cpuset.cpus": "1",
                              "cpu.max": "50000 100000", "io.max": "8:0 rbps=1"}}) == {
        "MemoryMax": INFINITY, "MemoryHigh": 1048576, "TasksMax": 7, "CPUWeight": 300,
        "AllowedCPUs": b"\x02", "CPUQuotaPeriodUSec": 100000,
        "CPUQuotaPerSecUSec": 500000}


def test_bad_unified_value_names_the_file():
    with pytest.raises(InvalidResource, match=r"linux\.resources\.unified\.memory\.max"):
        resource_properties({"unified": {"memory.max": "lots"}})


# --------------------------------------------------------------------------- the unit
def test_scope_properties():
    got = dict(start_properties("pyruntime-c.scope", "system.slice", "d", 42))
    assert got["PIDs"] == ("au", [42])
    assert got["Slice"] == ("s", "system.slice")
    assert got["Delegate"] == ("b", True)
    assert got["DefaultDependencies"] == ("b", False)
    for name in ("MemoryAccounting", "CPUAccounting", "IOAccounting", "TasksAccounting"):
        assert got[name] == ("b", True)


def test_slice_unit_wants_its_parent_and_takes_no_pid():
    got = dict(start_properties("web.slice", "machine.slice", "d", 42))
    assert got["Wants"] == ("as", ["machine.slice"])
    assert "PIDs" not in got and "Slice" not in got and "Delegate" not in got


@pytest.mark.parametrize("path, unit, slice_name", [
    (None, "pyruntime-c1.scope", "system.slice"),
    ("machine-web.slice:docker:abc", "docker-abc.scope", "machine-web.slice"),
    (":crio:x", "crio-x.scope", "system.slice"),
    ("system.slice:p:web.slice", "web.slice", "system.slice"),
])
def test_unit_names(path, unit, slice_name):
    scope = SystemdScope.for_container(path, "c1", None)
    assert (scope.unit, scope.slice) == (unit, slice_name)
    assert scope.paths == {}  # nothing exists until the unit is started


@pytest.mark.parametrize("path, container_id", [
    ("/abs/path", "c1"), ("nota-slice:p:n", "c1"), ("a--b.slice:p:n", "c1"),
    (None, "c+1"),                 # a valid container ID, not a valid unit name
])
def test_bad_names_are_refused_naming_cgroups_path(path, container_id):
    with pytest.raises(CgroupError, match=r"linux\.cgroupsPath"):
        SystemdScope.for_container(path, container_id, None)


def test_bad_resources_are_refused_before_any_unit():
    with pytest.raises(InvalidResource, match=r"linux\.resources\.cpu\.mems"):
        SystemdScope.for_container(None, "c1", {"cpu": {"mems": "x"}})


def test_properties_serialise_as_start_transient_unit_takes_them():
    from jeepney import DBusAddress, Parser, new_method_call

    properties = (start_properties("p-c.scope", "system.slice", "d", 7)
                  + resource_properties({"memory": {"limit": 64 * MIB, "swap": -1},
                                         "cpu": {"shares": 1024, "quota": 1000,
                                                 "cpus": "0-9"},
                                         "pids": {"limit": -1}}))
    message = new_method_call(DBusAddress("/org/freedesktop/systemd1",
                                          "org.freedesktop.systemd1",
                                          "org.freedesktop.systemd1.Manager"),
                              "StartTransientUnit", "ssa(sv)a(sa(sv))",
                              ("p-c.scope", "replace", properties, []))
    parser = Parser()
    parser.add_data(message.serialise(serial=1))
    assert parser.get_next_message().body == ("p-c.scope", "replace", properties, [])


def test_the_start_path_does_not_import_the_dbus_client():
    code = ("import sys, pyruntime.oci.runtime, pyruntime.oci.launcher, "
            "pyruntime.cgroups.api, pyruntime.cli.main; "
            "bad = [m for m in sys.modules if m.startswith(('jeepney', "
            "'pyruntime.cgroups.systemd_dbus', 'pyruntime.cgroups.systemd_scope'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
