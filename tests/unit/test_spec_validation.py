"""config.json validation: a valid config is normalized; each bad one names its field."""
from __future__ import annotations

import copy
import os

import pytest

from pyruntime.oci.errors import SpecError
from pyruntime.oci.spec import load_spec, validate_spec

MINIMAL = {
    "ociVersion": "1.2.0",
    "root": {"path": "rootfs"},
    "process": {"args": ["/bin/true"], "cwd": "/"},
    "linux": {"namespaces": [{"type": "mount"}]},
}


def full_config() -> dict:
    """A config that uses most sections, all of them valid."""
    return {
        "ociVersion": "1.0.2-dev",
        "root": {"path": "rootfs", "readonly": True},
        "process": {
            "terminal": True,
            "consoleSize": {"height": 24, "width": 80},
            "user": {"uid": 1000, "gid": 1000, "umask": 0o22, "additionalGids": [5, 10]},
            "args": ["sh", "-c", "echo hi"],
            "env": ["PATH=/usr/bin:/bin", "TERM=xterm", "EMPTY="],
            "cwd": "/home",
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL"],
            },
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                {"type": "RLIMIT_CORE", "hard": 2**64 - 1, "soft": 0},
            ],
            "noNewPrivileges": True,
            "oomScoreAdj": -500,
            "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
            "scheduler": {"policy": "SCHED_OTHER", "nice": 5},
            "execCPUAffinity": {"initial": "0"},
        },
        "hostname": "box",
        "domainname": "example.org",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data/", "source": "/srv/data", "options": ["rbind", "ro"]},
        ],
        "hooks": {
            "createRuntime": [{"path": "/usr/bin/hook", "args": ["hook", "create"], "timeout": 5}],
            "poststop": [{"path": "/usr/bin/cleanup"}],
        },
        "annotations": {"org.example.key": "value"},
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "network", "path": "/var/run/netns/test"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "user"},
                {"type": "time"},
            ],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "devices": [
                {"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229, "fileMode": 0o666},
                {"type": "p", "path": "/dev/fifo"},
            ],
            "cgroupsPath": "/pyruntime/test",
            "resources": {"devices": [{"allow": False, "access": "rwm"}], "pids": {"limit": 10}},
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
            "rootfsPropagation": "rprivate",
            "sysctl": {
                "net.ipv4.ip_forward": "1",
                "kernel.shmmax": "1024",
                "fs.mqueue.msg_max": "10",
                "kernel.domainname": "example.org",
            },
            "personality": {"domain": "LINUX32"},
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                "listenerPath": "/run/listener.sock",
                "syscalls": [
                    {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                    {
                        "names": ["personality"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}],
                    },
                    {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
                ],
            },
            "timeOffsets": {"monotonic": {"secs": 10, "nanosecs": 5}},
            "intelRdt": {"closID": "x"},
        },
        "vendor.unknown": {"kept": True},
    }


@pytest.fixture
def bundle(tmp_path) -> str:
    (tmp_path / "rootfs").mkdir()
    return str(tmp_path)


def spec_error(config: dict, bundle: str | None = None) -> SpecError:
    with pytest.raises(SpecError) as excinfo:
        validate_spec(config, bundle)
    return excinfo.value


# ---------------------------------------------------------------------------------------
# Valid configs


def test_minimal_config_gets_every_default(bundle):
    spec = validate_spec(copy.deepcopy(MINIMAL), bundle)
    assert spec["root"] == {"path": os.path.join(bundle, "rootfs"), "readonly": False}
    process = spec["process"]
    assert process["args"] == ["/bin/true"]
    assert process["env"] == []
    assert process["terminal"] is False
    assert process["consoleSize"] is None
    assert process["user"] == {"uid": 0, "gid": 0, "umask": None, "additionalGids": []}
    assert process["capabilities"] is None
    assert process["rlimits"] == []
    assert process["noNewPrivileges"] is False
    assert process["oomScoreAdj"] is None
    assert process["apparmorProfile"] is None
    assert process["selinuxLabel"] is None
    assert process["ioPriority"] is None
    assert process["scheduler"] is None
    assert spec["hostname"] is None and spec["domainname"] is None
    assert spec["mounts"] == []
    assert spec["hooks"] == {
        kind: []
        for kind in (
            "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop",
        )
    }
    assert spec["annotations"] == {}
    linux = spec["linux"]
    assert linux["namespaces"] == [{"type": "mount", "path": None}]
    for key in ("uidMappings", "gidMappings", "devices", "maskedPaths", "readonlyPaths"):
        assert linux[key] == []
    for key in (
        "cgroupsPath", "resources", "rootfsPropagation", "mountLabel", "personality",
        "seccomp", "timeOffsets",
    ):
        assert linux[key] is None
    assert linux["sysctl"] == {}


def test_full_config_is_normalized(bundle):
    config = full_config()
    original = copy.deepcopy(config)
    spec = validate_spec(config, bundle)
    assert config == original, "the input must not be changed"
    process = spec["process"]
    assert process["capabilities"] == {
        "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_KILL"],
        "inheritable": [],
        "permitted": ["CAP_KILL"],
        "ambient": [],
    }
    assert process["user"] == {"uid": 1000, "gid": 1000, "umask": 0o22, "additionalGids": [5, 10]}
    assert process["execCPUAffinity"] == {"initial": "0"}
    assert process["ioPriority"] == {"class": "IOPRIO_CLASS_BE", "priority": 4}
    assert process["scheduler"] == {
        "policy": "SCHED_OTHER", "nice": 5, "priority": 0, "flags": [], "runtime": 0,
        "deadline": 0, "period": 0,
    }
    assert spec["mounts"][1] == {
        "destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "ro"],
    }
    assert spec["mounts"][0]["options"] == []
    assert spec["hooks"]["createRuntime"] == [
        {"path": "/usr/bin/hook", "args": ["hook", "create"], "env": [], "timeout": 5}
    ]
    assert spec["hooks"]["poststop"] == [
        {"path": "/usr/bin/cleanup", "args": [], "env": [], "timeout": None}
    ]
    linux = spec["linux"]
    assert linux["namespaces"][1] == {"type": "network", "path": "/var/run/netns/test"}
    assert linux["devices"][1] == {
        "type": "p", "path": "/dev/fifo", "major": 0, "minor": 0, "fileMode": None, "uid": None, "gid": None,
    }
    assert linux["personality"] == {"domain": "LINUX32", "flags": []}
    assert linux["seccomp"]["syscalls"][1]["args"] == [
        {"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}
    ]
    assert linux["seccomp"]["syscalls"][0]["errnoRet"] is None
    assert linux["seccomp"]["listenerMetadata"] is None
    assert linux["timeOffsets"] == {"monotonic": {"secs": 10, "nanosecs": 5}}
    assert linux["intelRdt"] == {"closID": "x"}
    assert spec["vendor.unknown"] == {"kept": True}


def test_without_bundle_root_is_not_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = validate_spec(copy.deepcopy(MINIMAL))
    assert spec["root"]["path"] == os.path.join(str(tmp_path), "rootfs")


def test_absolute_root_path_is_kept(bundle):
    config = copy.deepcopy(MINIMAL)
    config["root"]["path"] = os.path.join(bundle, "rootfs") + "/"
    assert validate_spec(config, bundle)["root"]["path"] == os.path.join(bundle, "rootfs")


def test_process_may_be_absent(bundle):
    config = copy.deepcopy(MINIMAL)
    del config["process"]
    assert validate_spec(config, bundle)["process"] is None


def test_null_is_absent(bundle):
    config = copy.deepcopy(MINIMAL)
    config["hostname"] = None
    config["mounts"] = None
    config["process"]["env"] = None
    assert validate_spec(config, bundle)["process"]["env"] == []


def test_joined_user_namespace_needs_no_mappings(bundle):
    config = copy.deepcopy(MINIMAL)
    config["linux"]["namespaces"].append({"type": "user", "path": "/proc/1/ns/user"})
    validate_spec(config, bundle)


def test_hostname_with_joined_uts_namespace(bundle):
    config = copy.deepcopy(MINIMAL)
    config["hostname"] = "x"
    config["linux"]["namespaces"].append({"type": "uts", "path": "/proc/1/ns/uts"})
    assert validate_spec(config, bundle)["hostname"] == "x"


def test_load_spec_reads_the_bundle(bundle):
    with open(os.path.join(bundle, "config.json"), "w") as f:
        f.write('{"ociVersion": "1.2.0", "root": {"path": "rootfs"}, '
                '"linux": {"namespaces": [{"type": "mount"}]}}')
    spec = load_spec(bundle)
    assert spec["root"]["path"] == os.path.join(bundle, "rootfs")
    assert spec["process"] is None


# ---------------------------------------------------------------------------------------
# Invalid configs: (change to MINIMAL, expected field)


def _set(path: str, value):
    """A change that sets the dotted `path` (list indexes as numbers) to `value`."""

    def change(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


def _add_ns(*types: str):
    def change(config: dict) -> None:
        config["linux"]["namespaces"].extend({"type": t} for t in types)

    return change


def _both(*changes):
    def change(config: dict) -> None:
        for c in changes:
            c(config)

    return change


def _seccomp(**fields):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", **fields}
    return _set("linux.seccomp", profile)


_MAPPING = [{"containerID": 0, "hostID": 1000, "size": 1}]

BAD = {
    "ociVersion missing": (lambda c: c.pop("ociVersion"), "ociVersion"),
    "ociVersion a number": (_set("ociVersion", 1), "ociVersion"),
    "root missing": (lambda c: c.pop("root"), "root"),
    "root.path a list": (_set("root.path", ["rootfs"]), "root.path"),
    "root.readonly a string": (_set("root.readonly", "yes"), "root.readonly"),
    "process a list": (_set("process", []), "process"),
    "args a str": (_set("process.args", "/bin/true"), "process.args"),
    "args empty": (_set("process.args", []), "process.args"),
    "args missing": (lambda c: c["process"].pop("args"), "process.args"),
    "args item an int": (_set("process.args", ["a", 1]), "process.args[1]"),
    "args NUL byte": (_set("process.args", ["a\0b"]), "process.args[0]"),
    "env entry without =": (_set("process.env", ["A=1", "B"]), "process.env[1]"),
    "env a dict": (_set("process.env", {"A": "1"}), "process.env"),
    "cwd relative": (_set("process.cwd", "home"), "process.cwd"),
    "cwd missing": (lambda c: c["process"].pop("cwd"), "process.cwd"),
    "terminal yes": (_set("process.terminal", "yes"), "process.terminal"),
    "terminal 1": (_set("process.terminal", 1), "process.terminal"),
    "consoleSize negative": (_set("process.consoleSize", {"height": -1, "width": 80}), "process.consoleSize.height"),
    "consoleSize no width": (_set("process.consoleSize", {"height": 1}), "process.consoleSize.width"),
    "user a string": (_set("process.user", "root"), "process.user"),
    "uid -1": (_set("process.user", {"uid": -1}), "process.user.uid"),
    "uid True": (_set("process.user", {"uid": True}), "process.user.uid"),
    "uid a float": (_set("process.user", {"uid": 1.0}), "process.user.uid"),
    "uid too big": (_set("process.user", {"uid": 2**32}), "process.user.uid"),
    "gid a string": (_set("process.user", {"gid": "0"}), "process.user.gid"),
    "umask a string": (_set("process.user", {"umask": "022"}), "process.user.umask"),
    "additionalGids bad item": (_set("process.user", {"additionalGids": [1, -2]}), "process.user.additionalGids[1]"),
    "username an int": (_set("process.user", {"username": 0}), "process.user.username"),
    "bad capability": (
        _set("process.capabilities", {"bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_FOO"]}),
        "process.capabilities.bounding[2]",
    ),
    "lowercase capability": (_set("process.capabilities", {"ambient": ["cap_kill"]}), "process.capabilities.ambient[0]"),
    "capability set a str": (_set("process.capabilities", {"effective": "CAP_KILL"}), "process.capabilities.effective"),
    "capabilities a list": (_set("process.capabilities", ["CAP_KILL"]), "process.capabilities"),
    "bad rlimit type": (_set("process.rlimits", [{"type": "RLIMIT_FOO", "hard": 1, "soft": 1}]), "process.rlimits[0].type"),
    "rlimit soft > hard": (
        _set("process.rlimits", [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 2048}]),
        "process.rlimits[0].soft",
    ),
    "rlimit hard missing": (_set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 1}]), "process.rlimits[0].hard"),
    "rlimit duplicate": (
        _set("process.rlimits", [
            {"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1},
            {"type": "RLIMIT_NOFILE", "hard": 2, "soft": 2},
        ]),
        "process.rlimits[1].type",
    ),
    "rlimits a dict": (_set("process.rlimits", {}), "process.rlimits"),
    "noNewPrivileges a string": (_set("process.noNewPrivileges", "true"), "process.noNewPrivileges"),
    "oomScoreAdj 5000": (_set("process.oomScoreAdj", 5000), "process.oomScoreAdj"),
    "oomScoreAdj a string": (_set("process.oomScoreAdj", "0"), "process.oomScoreAdj"),
    "apparmorProfile an int": (_set("process.apparmorProfile", 1), "process.apparmorProfile"),
    "selinuxLabel a bool": (_set("process.selinuxLabel", False), "process.selinuxLabel"),
    "ioPriority bad class": (_set("process.ioPriority", {"class": "RT", "priority": 1}), "process.ioPriority.class"),
    "ioPriority priority 8": (
        _set("process.ioPriority", {"class": "IOPRIO_CLASS_RT", "priority": 8}),
        "process.ioPriority.priority",
    ),
    "scheduler bad policy": (_set("process.scheduler", {"policy": "SCHED_FAST"}), "process.scheduler.policy"),
    "scheduler nice a string": (_set("process.scheduler", {"policy": "SCHED_OTHER", "nice": "1"}), "process.scheduler.nice"),
    # runc's rules: a priority only for the RT policies, the three times only for DEADLINE.
    "scheduler priority for SCHED_OTHER": (
        _set("process.scheduler", {"policy": "SCHED_OTHER", "priority": 1}), "process.scheduler.priority",
    ),
    "scheduler runtime for SCHED_FIFO": (
        _set("process.scheduler", {"policy": "SCHED_FIFO", "priority": 1, "runtime": 1}),
        "process.scheduler.runtime",
    ),
    "scheduler period for SCHED_BATCH": (
        _set("process.scheduler", {"policy": "SCHED_BATCH", "period": 1}), "process.scheduler.period",
    ),
    "scheduler priority beyond int32": (
        _set("process.scheduler", {"policy": "SCHED_RR", "priority": 2**31}), "process.scheduler.priority",
    ),
    "hostname an int": (_set("hostname", 1), "hostname"),
    "domainname a list": (_set("domainname", []), "domainname"),
    "mounts a dict": (_set("mounts", {}), "mounts"),
    "mount relative destination": (_set("mounts", [{"destination": "tmp", "type": "tmpfs"}]), "mounts[0].destination"),
    "mount without destination": (_set("mounts", [{"type": "tmpfs"}]), "mounts[0].destination"),
    "mount options a string": (
        _set("mounts", [{"destination": "/tmp", "type": "tmpfs", "options": "ro"}]),
        "mounts[0].options",
    ),
    "mount type an int": (_set("mounts", [{"destination": "/tmp", "type": 1}]), "mounts[0].type"),
    "bind mount without source": (_set("mounts", [{"destination": "/x", "options": ["rbind"]}]), "mounts[0].source"),
    "mount bad idmap": (
        _set("mounts", [{"destination": "/x", "source": "/y", "type": "bind",
                         "uidMappings": [{"containerID": 0, "hostID": 0, "size": 0}]}]),
        "mounts[0].uidMappings[0].size",
    ),
    "hooks a list": (_set("hooks", []), "hooks"),
    "hook path relative": (_set("hooks", {"prestart": [{"path": "bin/hook"}]}), "hooks.prestart[0].path"),
    "hook without path": (_set("hooks", {"poststart": [{"args": []}]}), "hooks.poststart[0].path"),
    "unknown hook kind": (_set("hooks", {"prestop": []}), "hooks.prestop"),
    "hook timeout 0": (_set("hooks", {"poststop": [{"path": "/h", "timeout": 0}]}), "hooks.poststop[0].timeout"),
    "hook args a string": (_set("hooks", {"createRuntime": [{"path": "/h", "args": "x"}]}), "hooks.createRuntime[0].args"),
    "hook env without =": (_set("hooks", {"prestart": [{"path": "/h", "env": ["A=1", "NOEQUALS"]}]}), "hooks.prestart[0].env[1]"),
    "hook env with NUL": (_set("hooks", {"poststop": [{"path": "/h", "env": ["A=\0"]}]}), "hooks.poststop[0].env[0]"),
    "annotation value an int": (_set("annotations", {"a.b": 1}), 'annotations["a.b"]'),
    "linux a list": (_set("linux", []), "linux"),
    "unknown namespace type": (_add_ns("pidd"), "linux.namespaces[1].type"),
    "duplicate namespace": (_add_ns("pid", "pid"), "linux.namespaces[2].type"),
    "namespace path relative": (
        _set("linux.namespaces", [{"type": "mount"}, {"type": "pid", "path": "proc/1/ns/pid"}]),
        "linux.namespaces[1].path",
    ),
    "no mount namespace": (_set("linux.namespaces", [{"type": "pid"}]), "linux.namespaces"),
    "no namespaces at all": (lambda c: c.pop("linux"), "linux.namespaces"),
    "mapping size 0": (
        _both(_add_ns("user"), _set("linux.uidMappings", [{"containerID": 0, "hostID": 0, "size": 0}])),
        "linux.uidMappings[0].size",
    ),
    "mapping hostID a string": (
        _both(_add_ns("user"), _set("linux.gidMappings", [{"containerID": 0, "hostID": "0", "size": 1}])),
        "linux.gidMappings[0].hostID",
    ),
    "mappings without user ns": (
        _both(_set("linux.uidMappings", _MAPPING), _set("linux.gidMappings", _MAPPING)),
        "linux.uidMappings",
    ),
    "gid mappings without user ns": (_set("linux.gidMappings", _MAPPING), "linux.gidMappings"),
    "user ns without mappings": (_add_ns("user"), "linux.uidMappings"),
    "user ns without gid mappings": (_both(_add_ns("user"), _set("linux.uidMappings", _MAPPING)), "linux.gidMappings"),
    "hostname without uts": (_set("hostname", "box"), "hostname"),
    "domainname without uts": (_set("domainname", "example.org"), "domainname"),
    "device bad type": (_set("linux.devices", [{"type": "x", "path": "/dev/x", "major": 1, "minor": 1}]), "linux.devices[0].type"),
    "device relative path": (_set("linux.devices", [{"type": "c", "path": "dev/x", "major": 1, "minor": 1}]), "linux.devices[0].path"),
    "device without minor": (_set("linux.devices", [{"type": "c", "path": "/dev/x", "major": 1}]), "linux.devices[0].minor"),
    "device fileMode a string": (
        _set("linux.devices", [{"type": "b", "path": "/dev/x", "major": 1, "minor": 1, "fileMode": "0666"}]),
        "linux.devices[0].fileMode",
    ),
    "cgroupsPath an int": (_set("linux.cgroupsPath", 1), "linux.cgroupsPath"),
    "resources a list": (_set("linux.resources", []), "linux.resources"),
    "resources device allow a string": (
        _set("linux.resources", {"devices": [{"allow": "no", "access": "rwm"}]}),
        "linux.resources.devices[0].allow",
    ),
    "maskedPaths relative": (_set("linux.maskedPaths", ["/proc/kcore", "proc/keys"]), "linux.maskedPaths[1]"),
    "readonlyPaths a string": (_set("linux.readonlyPaths", "/proc"), "linux.readonlyPaths"),
    "bad rootfsPropagation": (_set("linux.rootfsPropagation", "recursive"), "linux.rootfsPropagation"),
    "mountLabel an int": (_set("linux.mountLabel", 1), "linux.mountLabel"),
    "sysctl value an int": (_both(_add_ns("network"), _set("linux.sysctl", {"net.core.somaxconn": 1})), 'linux.sysctl["net.core.somaxconn"]'),
    "sysctl not namespaced": (_set("linux.sysctl", {"vm.swappiness": "0"}), 'linux.sysctl["vm.swappiness"]'),
    "net sysctl without network ns": (_set("linux.sysctl", {"net.ipv4.ip_forward": "1"}), 'linux.sysctl["net.ipv4.ip_forward"]'),
    "ipc sysctl without ipc ns": (_set("linux.sysctl", {"kernel.shmmax": "1"}), 'linux.sysctl["kernel.shmmax"]'),
    "mqueue sysctl without ipc ns": (_set("linux.sysctl", {"fs.mqueue.msg_max": "1"}), 'linux.sysctl["fs.mqueue.msg_max"]'),
    "kernel.hostname without uts": (_set("linux.sysctl", {"kernel.hostname": "x"}), 'linux.sysctl["kernel.hostname"]'),
    "kernel.hostname and hostname": (
        _both(_add_ns("uts"), _set("hostname", "a"), _set("linux.sysctl", {"kernel.hostname": "b"})),
        'linux.sysctl["kernel.hostname"]',
    ),
    "personality bad domain": (_set("linux.personality", {"domain": "BSD"}), "linux.personality.domain"),
    "personality flags a string": (_set("linux.personality", {"domain": "LINUX", "flags": "x"}), "linux.personality.flags"),
    "timeOffsets without time ns": (_set("linux.timeOffsets", {"boottime": {"secs": 1}}), "linux.timeOffsets"),
    "timeOffsets joined time ns": (
        _both(
            _set("linux.namespaces", [{"type": "mount"}, {"type": "time", "path": "/proc/1/ns/time"}]),
            _set("linux.timeOffsets", {"boottime": {"secs": 1}}),
        ),
        "linux.timeOffsets",
    ),
    "timeOffsets bad clock": (_both(_add_ns("time"), _set("linux.timeOffsets", {"realtime": {"secs": 1}})), "linux.timeOffsets.realtime"),
    "timeOffsets negative nanosecs": (
        _both(_add_ns("time"), _set("linux.timeOffsets", {"monotonic": {"nanosecs": -1}})),
        "linux.timeOffsets.monotonic.nanosecs",
    ),
    "seccomp without defaultAction": (_set("linux.seccomp", {}), "linux.seccomp.defaultAction"),
    "seccomp bad default action": (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_DENY"}), "linux.seccomp.defaultAction"),
    "seccomp notify as default": (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/l"}), "linux.seccomp.defaultAction"),
    "seccomp defaultErrnoRet a string": (_seccomp(defaultErrnoRet="EPERM"), "linux.seccomp.defaultErrnoRet"),
    "seccomp bad arch": (_seccomp(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]), "linux.seccomp.architectures[1]"),
    "seccomp bad flag": (_seccomp(flags=["SECCOMP_FILTER_FLAG_FAST"]), "linux.seccomp.flags[0]"),
    "seccomp bad rule action": (_seccomp(syscalls=[{"names": ["read"], "action": "ALLOW"}]), "linux.seccomp.syscalls[0].action"),
    "seccomp rule without names": (_seccomp(syscalls=[{"names": [], "action": "SCMP_ACT_ALLOW"}]), "linux.seccomp.syscalls[0].names"),
    "seccomp bad op": (
        _seccomp(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                            "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XOR"}]}]),
        "linux.seccomp.syscalls[0].args[0].op",
    ),
    "seccomp arg index 6": (
        _seccomp(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                            "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]),
        "linux.seccomp.syscalls[0].args[0].index",
    ),
    "seccomp arg value negative": (
        _seccomp(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                            "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]),
        "linux.seccomp.syscalls[0].args[0].value",
    ),
    "seccomp notify without listener": (
        _seccomp(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]),
        "linux.seccomp.listenerPath",
    ),
}


@pytest.mark.parametrize("change, field", BAD.values(), ids=BAD.keys())
def test_bad_config_names_the_field(bundle, change, field):
    config = copy.deepcopy(MINIMAL)
    change(config)
    error = spec_error(config, bundle)
    assert error.field == field, error.problem
    assert str(error).startswith(f"config.json: {field}: ")


def test_top_level_must_be_an_object():
    assert spec_error([]).field == "config.json"


def test_a_deadline_scheduler_keeps_its_times_and_flags(bundle):
    config = copy.deepcopy(MINIMAL)
    config["process"]["scheduler"] = {
        "policy": "SCHED_DEADLINE", "runtime": 10**6, "deadline": 2 * 10**6, "period": 10**7,
        "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN"],
    }
    assert validate_spec(config, bundle)["process"]["scheduler"] == {
        "policy": "SCHED_DEADLINE", "nice": 0, "priority": 0,
        "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN"],
        "runtime": 10**6, "deadline": 2 * 10**6, "period": 10**7,
    }


def test_scheduler_messages(bundle):
    config = copy.deepcopy(MINIMAL)
    config["process"]["scheduler"] = {"policy": "SCHED_FAST"}
    assert str(spec_error(config, bundle)).startswith(
        'config.json: process.scheduler.policy: unknown policy "SCHED_FAST" (known: ')
    config["process"]["scheduler"] = {"policy": "SCHED_IDLE", "flags": ["SCHED_FLAG_X"]}
    assert spec_error(config, bundle).problem.startswith('unknown flag "SCHED_FLAG_X"')
    config["process"]["scheduler"] = {"policy": "SCHED_BATCH", "priority": 3}
    assert spec_error(config, bundle).problem == (
        "is for SCHED_FIFO and SCHED_RR only, not SCHED_BATCH")
    config["process"]["scheduler"] = {"policy": "SCHED_RR", "priority": 3, "deadline": 5}
    assert spec_error(config, bundle).problem == "is for SCHED_DEADLINE only, not SCHED_RR"


def test_messages_say_what_was_found(bundle):
    config = copy.deepcopy(MINIMAL)
    config["process"]["args"] = "sh"
    assert spec_error(config, bundle).problem == "expected a list of strings, got str"
    config = copy.deepcopy(MINIMAL)
    config["linux"]["namespaces"].append({"type": "pidd"})
    assert spec_error(config, bundle).problem == (
        'unknown namespace type "pidd" (known: cgroup, ipc, mount, network, pid, time, user, uts)'
    )
    config = copy.deepcopy(MINIMAL)
    config["process"]["capabilities"] = {"bounding": ["CAP_FOO"]}
    assert spec_error(config, bundle).problem == 'unknown capability "CAP_FOO"'
    config = copy.deepcopy(MINIMAL)
    config["process"]["cwd"] = "tmp"
    assert spec_error(config, bundle).problem == 'must be an absolute path, got "tmp"'
    config = copy.deepcopy(MINIMAL)
    config["process"]["user"] = {"uid": True}
    assert spec_error(config, bundle).problem == "expected an integer, got bool"
    config = copy.deepcopy(MINIMAL)
    config["process"]["oomScoreAdj"] = 5000
    assert spec_error(config, bundle).problem == "must be between -1000 and 1000, got 5000"
    config = copy.deepcopy(MINIMAL)
    config["hostname"] = "box"
    assert "requires a uts namespace" in spec_error(config, bundle).problem
    config = copy.deepcopy(MINIMAL)
    config["linux"]["sysctl"] = {"vm.swappiness": "0"}
    assert "is not namespaced" in spec_error(config, bundle).problem


# ---------------------------------------------------------------------------------------
# The bundle on disk


def test_missing_rootfs(tmp_path):
    error = spec_error(copy.deepcopy(MINIMAL), str(tmp_path))
    assert error.field == "root.path"
    assert error.problem == f"{tmp_path}/rootfs does not exist"


def test_rootfs_is_a_file(tmp_path):
    (tmp_path / "rootfs").write_text("")
    error = spec_error(copy.deepcopy(MINIMAL), str(tmp_path))
    assert error.field == "root.path"
    assert error.problem == f"{tmp_path}/rootfs is not a directory"


def test_invalid_json(bundle):
    with open(os.path.join(bundle, "config.json"), "w") as f:
        f.write('{\n  "ociVersion": "1.2.0",\n  "root": {"path": "rootfs",}\n}\n')
    with pytest.raises(SpecError) as excinfo:
        load_spec(bundle)
    assert excinfo.value.field == "config.json"
    assert excinfo.value.problem == (
        "invalid JSON: Expecting property name enclosed in double quotes at line 3 column 29"
    )


def test_config_not_utf8(bundle):
    with open(os.path.join(bundle, "config.json"), "wb") as f:
        f.write(b'{"ociVersion": "\xff"}')
    with pytest.raises(SpecError) as excinfo:
        load_spec(bundle)
    assert excinfo.value.field == "config.json"


def test_missing_config_json(bundle):
    with pytest.raises(SpecError) as excinfo:
        load_spec(bundle)
    assert excinfo.value.field == "config.json"
    assert excinfo.value.problem == f"not found in bundle {bundle}"


def test_relative_bundle_is_resolved(bundle, monkeypatch):
    monkeypatch.chdir(os.path.dirname(bundle))
    with open(os.path.join(bundle, "config.json"), "w") as f:
        f.write('{"ociVersion": "1.2.0", "root": {"path": "rootfs"}, '
                '"linux": {"namespaces": [{"type": "mount"}]}}')
    spec = load_spec(os.path.basename(bundle))
    assert spec["root"]["path"] == os.path.join(bundle, "rootfs")
