"""The cgroup mapping without a kernel: the v1 -> v2 conversions (runc's formulas), the
device rule emulator, the eBPF device filter against runc's devicefilter_test.go
expectations, and the files the v2/v1 mappings write, into fake cgroup directories."""
from __future__ import annotations

import os
import struct

import pytest

from pyruntime.cgroups import cgroupfs, devices_bpf, resources_v1, resources_v2
from pyruntime.cgroups.device_rules import (
    DEFAULT_ALLOWED_DEVICES,
    WILDCARD,
    DeviceEmulator,
    DeviceRule,
    effective_rules,
    rules_from_spec,
)
from pyruntime.cgroups.errors import CgroupError, InvalidResource, ResourceUnsupported
from pyruntime.cgroups.resources_v2 import (
    blkio_weight_to_io_weight,
    cpu_max,
    cpu_shares_to_weight,
    memory_swap_to_v2,
)
from pyruntime.cgroups.stats import hugepage_sizes, parse_cpu_list


# --------------------------------------------------------------------------- conversions
@pytest.mark.parametrize("shares, weight", [
    (0, 0),          # unset
    (2, 1),          # the minimum maps to the minimum
    (1024, 39),      # the default share: 1 + (1022 * 9999) // 262142
    (512, 20),
    (262144, 10000),  # the maximum maps to the maximum
    (1, 1),          # below the kernel's minimum: clamped to 2 first
    (10**7, 10000),  # above the maximum: clamped
])
def test_cpu_shares_to_weight(shares, weight):
    assert cpu_shares_to_weight(shares) == weight


@pytest.mark.parametrize("swap, memory, expected", [
    (0, 0, 0),                      # nothing set
    (0, -1, -1),                    # unlimited memory, no swap value: unlimited both
    (-1, 100, -1),                  # unlimited swap
    (0, 100, 0),                    # swap unset
    (300, 100, 200),                # memory+swap 300, memory 100 -> swap 200
    (100, 100, 0),                  # equal: no swap at all
    (500, -1, 500),                 # unlimited memory: swap as is
])
def test_memory_swap_to_v2(swap, memory, expected):
    assert memory_swap_to_v2(swap, memory) == expected


@pytest.mark.parametrize("swap, memory, message", [
    (50, 100, "below memory.limit"),
    (200, 0, "needs a memory limit"),
])
def test_memory_swap_to_v2_refuses(swap, memory, message):
    with pytest.raises(InvalidResource, match=message) as info:
        memory_swap_to_v2(swap, memory)
    assert "linux.resources.memory" in str(info.value)


@pytest.mark.parametrize("weight, io_weight", [(0, 0), (10, 1), (500, 4950), (1000, 10000),
                                               (100, 910)])
def test_blkio_weight_to_io_weight(weight, io_weight):
    assert blkio_weight_to_io_weight(weight) == io_weight


@pytest.mark.parametrize("quota, period, line", [
    (20000, 100000, "20000 100000"),
    (50000, None, "50000 100000"),   # the kernel's default period
    (-1, 100000, "max 100000"),      # no quota, a period
    (0, 50000, "max 50000"),
    (None, None, None),              # nothing to write
    (0, 0, None),
])
def test_cpu_max(quota, period, line):
    assert cpu_max(quota, period) == line


def test_cpu_list_and_hugepage_names():
    assert parse_cpu_list("0-2,5\n") == [0, 1, 2, 5]
    assert parse_cpu_list("") == []
    for size in hugepage_sizes():
        assert size[-2:] in ("KB", "MB", "GB") and size[:-2].isdigit()


# --------------------------------------------------------------------------- device rules
def test_rules_from_spec_defaults_and_errors():
    rules = rules_from_spec([{"allow": False}, {"allow": True, "type": "c", "major": 1,
                                                 "minor": 3, "access": "wr"}])
    assert rules == [DeviceRule("a", WILDCARD, WILDCARD, "rwm", False),
                     DeviceRule("c", 1, 3, "rw", True)]
    with pytest.raises(InvalidResource, match=r"devices\[0\]\.access"):
        rules_from_spec([{"allow": True, "access": "rwx"}])
    with pytest.raises(InvalidResource, match=r"devices\[0\]\.allow"):
        rules_from_spec([{"access": "rwm"}])
    with pytest.raises(InvalidResource, match=r"devices\[0\]\.type"):
        rules_from_spec([{"allow": True, "type": "u"}])


def test_effective_rules_append_runc_defaults():
    rules = effective_rules([{"allow": False, "access": "rwm"}])
    assert rules[0] == DeviceRule("a", WILDCARD, WILDCARD, "rwm", False)
    assert rules[1:] == list(DEFAULT_ALLOWED_DEVICES)
    strings = {r.cgroup_string() for r in DEFAULT_ALLOWED_DEVICES}
    assert {"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
            "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm", "c *:* m", "b *:* m"} == strings


def test_emulator_last_rule_wins_and_permits():
    emulator = DeviceEmulator.from_rules(effective_rules([{"allow": False, "access": "rwm"}]))
    assert not emulator.default_allow
    assert emulator.permits("c", 1, 3, "rw")       # /dev/null
    assert emulator.permits("b", 8, 0, "m")        # mknod of anything...
    assert not emulator.permits("b", 8, 0, "r")    # ...but not opening a disk
    assert emulator.permits("c", 1, 3, "rwm")      # /dev/null has rwm
    assert emulator.permits("c", 136, 7, "rw")     # any pts


def test_emulator_refuses_punching_a_wildcard():
    with pytest.raises(InvalidResource, match="punch a hole"):
        DeviceEmulator.from_rules([DeviceRule("a", WILDCARD, WILDCARD, "rwm", False),
                                   DeviceRule("c", WILDCARD, WILDCARD, "rwm", True),
                                   DeviceRule("c", 1, 3, "r", False)])


def test_emulator_transition_is_minimal():
    old = DeviceEmulator.from_rules([DeviceRule("a", -1, -1, "rwm", False),
                                     DeviceRule("c", 1, 3, "rwm", True),
                                     DeviceRule("c", 1, 5, "rwm", True)])
    new = DeviceEmulator.from_rules([DeviceRule("a", -1, -1, "rwm", False),
                                     DeviceRule("c", 1, 3, "rwm", True),
                                     DeviceRule("c", 10, 229, "rw", True)])
    assert [str(r) for r in old.transition(new)] == ["deny c 1:5 rwm", "allow c 10:229 rw"]
    # From a black-list (what a new v1 cgroup inherits) the reset is unavoidable.
    fresh = DeviceEmulator.from_list("a *:* rwm\n")
    assert fresh.default_allow
    assert [str(r) for r in fresh.transition(new)] == [
        "deny a *:* rwm", "allow c 1:3 rwm", "allow c 10:229 rw"]


def test_emulator_from_list_round_trip():
    target = DeviceEmulator.from_rules(effective_rules([{"allow": False, "access": "rwm"}]))
    listing = "\n".join(r.cgroup_string() for r in target.rules())
    assert DeviceEmulator.from_list(listing) == target


# --------------------------------------------------------------------------- eBPF filter
def _hash(text: str) -> str:
    """runc's devicefilter_test.go normalization: trimmed lines, no comments/blanks."""
    lines = [line.strip() for line in text.split("\n")]
    return "\n".join(line for line in lines if line and not line.startswith("//"))


_PROLOGUE = """
0: LdXMemW dst: r2 src: r1 off: 0 imm: 0
1: AndImm32 dst: r2 imm: 65535
2: LdXMemW dst: r3 src: r1 off: 0 imm: 0
3: RShImm32 dst: r3 imm: 16
4: LdXMemW dst: r4 src: r1 off: 4 imm: 0
5: LdXMemW dst: r5 src: r1 off: 8 imm: 0
"""


def test_filter_nil_matches_runc():
    expected = _PROLOGUE + """
block-0:
6: MovImm32 dst: r0 imm: 0
7: Exit
"""
    assert _hash(devices_bpf.generate([]).listing()) == _hash(expected)


def test_filter_builtin_allow_list_matches_runc():
    # runc's TestDeviceFilter_BuiltInAllowList: the rules are specconv.AllowedDevices.
    expected = _PROLOGUE + """
block-0:
6: JNEImm dst: r2 off: -1 imm: 1 <block-1>
7: MovReg32 dst: r1 src: r3
8: AndImm32 dst: r1 imm: 1
9: JNEReg dst: r1 off: -1 src: r3 <block-1>
10: MovImm32 dst: r0 imm: 1
11: Exit
block-1:
12: JNEImm dst: r2 off: -1 imm: 2 <block-2>
13: MovReg32 dst: r1 src: r3
14: AndImm32 dst: r1 imm: 1
15: JNEReg dst: r1 off: -1 src: r3 <block-2>
16: MovImm32 dst: r0 imm: 1
17: Exit
block-2:
18: JNEImm dst: r2 off: -1 imm: 2 <block-3>
19: JNEImm dst: r4 off: -1 imm: 1 <block-3>
20: JNEImm dst: r5 off: -1 imm: 3 <block-3>
21: MovImm32 dst: r0 imm: 1
22: Exit
block-3:
23: JNEImm dst: r2 off: -1 imm: 2 <block-4>
24: JNEImm dst: r4 off: -1 imm: 1 <block-4>
25: JNEImm dst: r5 off: -1 imm: 5 <block-4>
26: MovImm32 dst: r0 imm: 1
27: Exit
block-4:
28: JNEImm dst: r2 off: -1 imm: 2 <block-5>
29: JNEImm dst: r4 off: -1 imm: 1 <block-5>
30: JNEImm dst: r5 off: -1 imm: 7 <block-5>
31: MovImm32 dst: r0 imm: 1
32: Exit
block-5:
33: JNEImm dst: r2 off: -1 imm: 2 <block-6>
34: JNEImm dst: r4 off: -1 imm: 1 <block-6>
35: JNEImm dst: r5 off: -1 imm: 8 <block-6>
36: MovImm32 dst: r0 imm: 1
37: Exit
block-6:
38: JNEImm dst: r2 off: -1 imm: 2 <block-7>
39: JNEImm dst: r4 off: -1 imm: 1 <block-7>
40: JNEImm dst: r5 off: -1 imm: 9 <block-7>
41: MovImm32 dst: r0 imm: 1
42: Exit
block-7:
43: JNEImm dst: r2 off: -1 imm: 2 <block-8>
44: JNEImm dst: r4 off: -1 imm: 5 <block-8>
45: JNEImm dst: r5 off: -1 imm: 0 <block-8>
46: MovImm32 dst: r0 imm: 1
47: Exit
block-8:
48: JNEImm dst: r2 off: -1 imm: 2 <block-9>
49: JNEImm dst: r4 off: -1 imm: 5 <block-9>
50: JNEImm dst: r5 off: -1 imm: 2 <block-9>
51: MovImm32 dst: r0 imm: 1
52: Exit
block-9:
53: JNEImm dst: r2 off: -1 imm: 2 <block-10>
54: JNEImm dst: r4 off: -1 imm: 10 <block-10>
55: JNEImm dst: r5 off: -1 imm: 200 <block-10>
56: MovImm32 dst: r0 imm: 1
57: Exit
block-10:
58: JNEImm dst: r2 off: -1 imm: 2 <block-11>
59: JNEImm dst: r4 off: -1 imm: 136 <block-11>
60: MovImm32 dst: r0 imm: 1
61: Exit
block-11:
62: MovImm32 dst: r0 imm: 0
63: Exit
"""
    program = devices_bpf.generate(list(DEFAULT_ALLOWED_DEVICES))
    assert _hash(program.listing()) == _hash(expected)


def test_filter_privileged_matches_runc():
    expected = _PROLOGUE + """
block-0:
6: MovImm32 dst: r0 imm: 1
7: Exit
"""
    rules = [DeviceRule("a", WILDCARD, WILDCARD, "rwm", True)]
    assert _hash(devices_bpf.generate(rules).listing()) == _hash(expected)


@pytest.mark.parametrize("rules, minor", [
    # TestDeviceFilter_PrivilegedExceptSingleDevice
    ([DeviceRule("a", -1, -1, "rwm", True), DeviceRule("b", 8, 0, "rwm", False)], 0),
    # TestDeviceFilter_Weird: 8/1 denied before the allow-all is forgotten; 8/2 denied.
    ([DeviceRule("b", 8, 1, "rwm", False), DeviceRule("a", -1, -1, "rwm", True),
      DeviceRule("b", 8, 2, "rwm", False)], 2),
])
def test_filter_deny_one_device_matches_runc(rules, minor):
    expected = _PROLOGUE + f"""
block-0:
6: JNEImm dst: r2 off: -1 imm: 1 <block-1>
7: JNEImm dst: r4 off: -1 imm: 8 <block-1>
8: JNEImm dst: r5 off: -1 imm: {minor} <block-1>
9: MovImm32 dst: r0 imm: 0
10: Exit
block-1:
11: MovImm32 dst: r0 imm: 1
12: Exit
"""
    assert _hash(devices_bpf.generate(rules).listing()) == _hash(expected)


def _run(program: devices_bpf.DeviceFilterProgram, kind: int, access: int, major: int,
         minor: int) -> int:
    """A tiny interpreter of the instructions the generator emits, on the encoded bytes,
    to check the jump offsets (not only the listing)."""
    code = program.encode()
    regs = [0] * 11
    ctx = struct.pack("<III", (access << 16) | kind, major, minor)
    pc = 0
    for _ in range(10000):
        op, regs_byte, off, imm = struct.unpack_from("<BBhi", code, pc * 8)
        dst, src = regs_byte & 0xF, regs_byte >> 4
        pc += 1
        if op == devices_bpf.LDX_MEM_W:
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif op == devices_bpf.AND32_IMM:
            regs[dst] = (regs[dst] & imm) & 0xFFFFFFFF
        elif op == devices_bpf.RSH32_IMM:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif op == devices_bpf.MOV32_IMM:
            regs[dst] = imm & 0xFFFFFFFF
        elif op == devices_bpf.MOV32_REG:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif op == devices_bpf.JNE_IMM:
            if regs[dst] != imm & 0xFFFFFFFFFFFFFFFF:
                pc += off
        elif op == devices_bpf.JNE_REG:
            if regs[dst] != regs[src]:
                pc += off
        elif op == devices_bpf.EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
    raise AssertionError("the program did not exit")


def test_filter_encoding_behaves_like_the_emulator():
    rules = effective_rules([{"allow": False, "access": "rwm"},
                             {"allow": True, "type": "c", "major": 10, "minor": 229,
                              "access": "rw"}])
    program = devices_bpf.generate(rules)
    assert len(program.encode()) == 8 * len(program.instructions)
    assert program.instructions[-1].code == devices_bpf.EXIT
    emulator = DeviceEmulator.from_rules(rules)
    kinds = {"b": devices_bpf.BPF_DEVCG_DEV_BLOCK, "c": devices_bpf.BPF_DEVCG_DEV_CHAR}
    bits = {"r": devices_bpf.BPF_DEVCG_ACC_READ, "w": devices_bpf.BPF_DEVCG_ACC_WRITE,
            "m": devices_bpf.BPF_DEVCG_ACC_MKNOD}
    for kind in "bc":
        for major, minor in ((1, 3), (1, 5), (8, 0), (10, 229), (10, 200), (136, 3), (5, 1)):
            for access in ("r", "w", "m", "rw", "rwm"):
                mask = sum(bits[a] for a in access)
                verdict = _run(program, kinds[kind], mask, major, minor)
                assert verdict == int(emulator.permits(kind, major, minor, access)), \
                    (kind, major, minor, access)
    # The cases the integration tests rely on:
    assert _run(program, 1, devices_bpf.BPF_DEVCG_ACC_READ, 8, 0) == 0
    assert _run(program, 1, devices_bpf.BPF_DEVCG_ACC_MKNOD, 8, 0) == 1
    assert _run(program, 2, devices_bpf.BPF_DEVCG_ACC_WRITE, 1, 3) == 1
    # One request must be covered by one rule: "wm" is in neither "rw" (10:229) nor "m".
    assert _run(program, 2, devices_bpf.BPF_DEVCG_ACC_WRITE | devices_bpf.BPF_DEVCG_ACC_MKNOD,
                10, 229) == 0
    assert _run(program, 2, devices_bpf.BPF_DEVCG_ACC_READ, 10, 229) == 1


# --------------------------------------------------------------------------- v2 mapping
V2_FILES = ["cgroup.controllers", "cgroup.subtree_control", "cgroup.procs", "cpu.weight",
            "cpu.max", "cpu.max.burst", "cpu.idle", "cpuset.cpus", "cpuset.mems",
            "memory.max", "memory.low", "memory.swap.max", "memory.oom.group",
            "memory.current", "pids.max", "io.weight", "io.max", "hugetlb.2MB.max"]


def _fake_write(directory, name, value, resource=""):
    """What the kernel does with a write, for plain files: replace the value, or for
    subtree_control, enable the "+controller"s."""
    path = os.path.join(directory, name)
    if name == "cgroup.subtree_control":
        with open(path) as f:
            enabled = set(f.read().split())
        enabled |= {word[1:] for word in value.split() if word.startswith("+")}
        value = " ".join(sorted(enabled))
    with open(path, "w") as f:
        f.write(value)


@pytest.fixture
def fake_v2(tmp_path, monkeypatch):
    """A fake cgroup2 tree: mount root -> parent -> container, plain files."""
    monkeypatch.setattr(cgroupfs, "write", _fake_write)
    root = tmp_path / "cg"
    container = root / "pyruntime" / "c1"
    container.mkdir(parents=True)
    controllers = "cpuset cpu io memory hugetlb pids"
    for directory in (root, root / "pyruntime"):
        (directory / "cgroup.controllers").write_text(controllers + "\n")
        (directory / "cgroup.subtree_control").write_text("")
    for name in V2_FILES:
        (container / name).write_text("")
    (container / "cgroup.controllers").write_text(controllers + "\n")
    (container / "memory.current").write_text("1000\n")
    return str(root), str(container)


def _read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name)) as f:
        return f.read()


def test_v2_mapping_writes_runc_values(fake_v2):
    root, container = fake_v2
    resources_v2.apply(container, root, {
        "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20,
                   "kernel": 1 << 20},
        "cpu": {"shares": 1024, "quota": 20000, "period": 100000, "cpus": "0",
                "mems": "0", "idle": 1, "burst": 1000},
        "pids": {"limit": 0},
        "blockIO": {"weight": 500,
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "unified": {"memory.low": "12345"},
    }, device_rules=None)
    assert _read(container, "memory.max") == str(64 << 20)
    assert _read(container, "memory.swap.max") == str(32 << 20)
    assert _read(container, "memory.oom.group") == "1"
    assert _read(container, "cpu.weight") == "39"
    assert _read(container, "cpu.max") == "20000 100000"
    assert _read(container, "cpu.max.burst") == "1000"
    assert _read(container, "cpu.idle") == "1"
    assert _read(container, "cpuset.cpus") == "0"
    assert _read(container, "pids.max") == "max"
    assert _read(container, "io.weight") == "4950"
    assert _read(container, "io.max") == "8:0 rbps=1048576"
    assert _read(container, "hugetlb.2MB.max") == "4194304"
    # unified is written last, over the mapped value.
    assert _read(container, "memory.low") == "12345"
    # Controllers enabled in every ancestor, never in the container itself.
    for directory in (root, os.path.join(root, "pyruntime")):
        enabled = _read(directory, "cgroup.subtree_control").split()
        assert {"memory", "cpu", "pids", "io", "cpuset", "hugetlb"} <= set(enabled)
    assert _read(container, "cgroup.subtree_control") == ""


def test_v2_update_of_the_quota_alone_keeps_the_period(fake_v2):
    root, container = fake_v2
    resources_v2.apply(container, root, {"cpu": {"quota": 10000, "period": 50000}},
                       device_rules=None)
    assert _read(container, "cpu.max") == "10000 50000"
    resources_v2.apply(container, root, {"cpu": {"quota": 20000}}, device_rules=None,
                       update=True)
    assert _read(container, "cpu.max") == "20000"  # the kernel keeps the period


def test_v2_swap_equal_to_limit_disables_swap_and_minus_one_is_max(fake_v2):
    root, container = fake_v2
    resources_v2.apply(container, root, {"memory": {"limit": 1 << 20, "swap": 1 << 20}},
                       device_rules=None)
    assert _read(container, "memory.swap.max") == "0"
    resources_v2.apply(container, root, {"memory": {"limit": -1}}, device_rules=None)
    assert _read(container, "memory.max") == "max"
    assert _read(container, "memory.swap.max") == "max"


def test_v2_refuses_what_it_cannot_enforce(fake_v2):
    root, container = fake_v2
    # Nothing is written when any field is refused.
    cases = [
        ({"memory": {"swappiness": 10}}, ResourceUnsupported, "memory.swappiness"),
        ({"memory": {"disableOOMKiller": True}}, ResourceUnsupported, "disableOOMKiller"),
        ({"cpu": {"realtimeRuntime": 1000}}, ResourceUnsupported, "realtime"),
        ({"network": {"classID": 1}}, ResourceUnsupported, "linux.resources.network"),
        ({"unified": {"nosuch.file": "1"}}, ResourceUnsupported, "unified.nosuch.file"),
        ({"unified": {"cgroup.procs": "1"}}, InvalidResource, "unified.cgroup.procs"),
        ({"memory": {"limit": "lots"}}, InvalidResource, "memory.limit"),
        ({"memory": {"limit": 1 << 20, "swap": 1 << 19}}, InvalidResource, "memory.swap"),
        ({"bogus": {}}, ResourceUnsupported, "linux.resources.bogus"),
        ({"cpu": {"shares": 1024, "bogus": 1}}, ResourceUnsupported, "cpu.bogus"),
        ({"pids": {"limit": 5}, "rdma": {"mlx": {"hcaHandles": 1}}}, ResourceUnsupported,
         "linux.resources.rdma.mlx: the rdma controller is not available"),
    ]
    for resources, kind, message in cases:
        with pytest.raises(kind, match=message.replace(".", r"\.")):
            resources_v2.apply(container, root, resources, device_rules=None)
    assert _read(container, "pids.max") == ""


def test_v2_missing_controller_names_the_field(fake_v2):
    root, container = fake_v2
    with open(os.path.join(container, "cgroup.controllers"), "w") as f:
        f.write("cpu pids\n")
    with pytest.raises(ResourceUnsupported) as info:
        resources_v2.apply(container, root, {"memory": {"limit": 1 << 20}}, device_rules=None)
    message = str(info.value)
    assert message.startswith("linux.resources.memory.limit: the memory controller is not "
                              "available in this cgroup hierarchy")


# --------------------------------------------------------------------------- v1 mapping
@pytest.fixture
def fake_v1(tmp_path, monkeypatch):
    """Fake v1 directories ("cpu,cpuacct" combined, memory, pids) and a log of writes."""
    paths = {}
    for key, files in {
        "cpu,cpuacct": {"cpu.shares": "1024", "cpu.cfs_quota_us": "-1",
                        "cpu.cfs_period_us": "100000"},
        "memory": {"memory.limit_in_bytes": "9223372036854771712",
                   "memory.memsw.limit_in_bytes": "9223372036854771712",
                   "memory.soft_limit_in_bytes": "", "memory.swappiness": "60",
                   "memory.oom_control": ""},
        "pids": {"pids.max": "max"},
    }.items():
        directory = tmp_path / key / "c1"
        directory.mkdir(parents=True)
        for name, value in files.items():
            (directory / name).write_text(value)
        paths[key] = str(directory)
    log: list[tuple[str, str]] = []
    real_write = cgroupfs.write

    def write(directory, name, value, resource=""):
        log.append((name, value))
        with open(os.path.join(directory, name), "w") as f:
            f.write(value)

    monkeypatch.setattr(cgroupfs, "write", write)
    assert real_write is not write
    return paths, log


def test_v1_memory_order_follows_runc(fake_v1):
    paths, log = fake_v1
    # Growing from the (huge) default: memsw is above the new swap -> limit first.
    resources_v1.apply(paths, {"memory": {"limit": 100, "swap": 200}}, None)
    assert log == [("memory.limit_in_bytes", "100"), ("memory.memsw.limit_in_bytes", "200")]
    log.clear()
    # Raising above the current limit: memsw first, so memsw >= memory holds throughout.
    resources_v1.apply(paths, {"memory": {"limit": 300, "swap": 400}}, None, update=True)
    assert log == [("memory.memsw.limit_in_bytes", "400"), ("memory.limit_in_bytes", "300")]
    log.clear()
    resources_v1.apply(paths, {"memory": {"swappiness": 0, "disableOOMKiller": True,
                                          "reservation": 50}}, None)
    assert ("memory.swappiness", "0") in log and ("memory.oom_control", "1") in log
    assert ("memory.soft_limit_in_bytes", "50") in log


def test_v1_cpu_in_a_combined_hierarchy(fake_v1):
    paths, log = fake_v1
    resources_v1.apply(paths, {"cpu": {"shares": 512, "quota": 20000, "period": 50000},
                               "pids": {"limit": 10}}, None)
    assert log == [("cpu.shares", "512"), ("cpu.cfs_period_us", "50000"),
                   ("cpu.cfs_quota_us", "20000"), ("pids.max", "10")]


def test_v1_missing_hierarchy_names_the_field(fake_v1):
    paths, log = fake_v1
    with pytest.raises(ResourceUnsupported) as info:
        resources_v1.apply(paths, {"pids": {"limit": 5},
                                   "blockIO": {"weight": 100}}, None)
    assert str(info.value).startswith(
        "linux.resources.blockIO: the blkio controller is not available in this cgroup "
        "hierarchy")
    assert log == []  # validated before any write
    with pytest.raises(ResourceUnsupported, match="unified"):
        resources_v1.apply(paths, {"unified": {"memory.max": "1"}}, None)
    with pytest.raises(CgroupError, match="devices controller"):
        resources_v1.apply(paths, {}, effective_rules([]))
