"""/dev in the container: the default devices with their numbers, the standard symlinks,
/dev/pts and /dev/shm, and extra devices from linux.devices."""
from __future__ import annotations

from . import ROOT_ONLY

pytestmark = ROOT_ONLY

DEFAULT_DEVICES = {  # name: (major, minor)
    "null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
    "tty": (5, 0),
}
SYMLINKS = {"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
            "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2",
            "/dev/ptmx": "pts/ptmx"}


def run_ok(runtime, b) -> str:
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def stat_devices(paths) -> str:
    # %t/%T: major/minor in hex.
    return "stat -c '%n %F %t %T %a' " + " ".join(paths)


def parse_stat(output: str) -> dict[str, tuple[str, int, int, str]]:
    found = {}
    for line in output.splitlines():
        name, rest = line.split(" ", 1)
        kind, major, minor, mode = rest.rsplit(" ", 3)
        found[name] = (kind, int(major, 16), int(minor, 16), mode)
    return found


def test_default_devices(runtime, bundle):
    paths = [f"/dev/{n}" for n in DEFAULT_DEVICES]
    out = parse_stat(run_ok(runtime, bundle(["sh", "-c", stat_devices(paths)])))
    for name, (major, minor) in DEFAULT_DEVICES.items():
        kind, got_major, got_minor, mode = out[f"/dev/{name}"]
        assert kind == "character special file", name
        assert (got_major, got_minor) == (major, minor), name
        assert mode == "666", name


def test_default_devices_work(runtime, bundle):
    script = ("echo discarded > /dev/null && echo null-ok; head -c 4 /dev/zero | od -An -tx1; "
              "head -c 16 /dev/urandom | wc -c; echo x > /dev/full || echo full-ok")
    lines = run_ok(runtime, bundle(["sh", "-c", script])).splitlines()
    assert lines[0] == "null-ok"
    assert lines[1].split() == ["00"] * 4
    assert lines[2].strip() == "16"
    assert lines[3] == "full-ok"


def test_dev_symlinks(runtime, bundle):
    script = "; ".join(f"echo {p} $(readlink {p})" for p in SYMLINKS)
    out = dict(l.split(" ", 1) for l in run_ok(runtime, bundle(["sh", "-c", script])).splitlines())
    assert out == SYMLINKS


def test_dev_pts_shm_mqueue(runtime, bundle):
    script = ("grep -E ' /dev/(pts|shm|mqueue) ' /proc/mounts | cut -d' ' -f2,3; "
              "test -c /dev/pts/ptmx && echo ptmx-ok; touch /dev/shm/x && echo shm-ok")
    lines = run_ok(runtime, bundle(["sh", "-c", script])).splitlines()
    assert set(lines[:3]) == {"/dev/pts devpts", "/dev/shm tmpfs", "/dev/mqueue mqueue"}
    assert lines[3:] == ["ptmx-ok", "shm-ok"]


def test_no_host_devices(runtime, bundle):
    # /dev is a fresh tmpfs: no disks, no host ttys, no kmsg.
    out = run_ok(runtime, bundle(["ls", "/dev"])).split()
    assert "kmsg" not in out and "mem" not in out
    assert not [d for d in out if d.startswith(("sd", "vd", "nvme", "ttyS"))]
    assert set(DEFAULT_DEVICES) <= set(out)


def test_extra_devices(runtime, bundle):
    devices = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666,
         "uid": 0, "gid": 0},
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640,
         "uid": 1001, "gid": 1001},
        {"path": "/dev/sub/dir/myzero", "type": "c", "major": 1, "minor": 5},
    ]
    script = stat_devices(d["path"] for d in devices) + "; stat -c '%n %u %g' /dev/mynull"
    lines = run_ok(runtime, bundle(["sh", "-c", script], devices=devices)).splitlines()
    out = parse_stat("\n".join(lines[:-1]))
    assert out["/dev/fuse"] == ("character special file", 10, 229, "666")
    assert out["/dev/mynull"] == ("character special file", 1, 3, "640")
    assert out["/dev/sub/dir/myzero"][:3] == ("character special file", 1, 5)
    assert lines[-1] == "/dev/mynull 1001 1001"


def test_extra_device_usable_when_allowed(runtime, bundle):
    # A copy of /dev/null under another name, allowed by the device rules.
    devices = [{"path": "/dev/othernull", "type": "c", "major": 1, "minor": 3,
                "fileMode": 0o666}]

    def allow(config):
        config["linux"]["resources"]["devices"].append(
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"})

    b = bundle(["sh", "-c", "echo x > /dev/othernull && echo written"], devices=devices,
               mutate=allow)
    assert run_ok(runtime, b) == "written\n"
