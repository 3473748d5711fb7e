"""linux.maskedPaths and linux.readonlyPaths: masked files read empty, masked directories
are empty read-only tmpfs, read-only paths refuse writes with EROFS."""
from __future__ import annotations

import os

import pytest

from . import ROOT_ONLY

pytestmark = ROOT_ONLY


def run(runtime, b):
    return runtime.run("run", "--bundle", b, runtime.new_id())


def mount_line(mounts_text: str, mount_point: str) -> list[str] | None:
    """The last /proc/mounts entry on `mount_point`, split."""
    found = None
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == mount_point:
            found = fields
    return found


def test_masked_files_read_empty(runtime, bundle):
    # The default config masks /proc/kcore and /proc/keys (and more).
    b = bundle(["sh", "-c", "cat /proc/kcore | wc -c; cat /proc/keys | wc -c; "
                            "cat /proc/timer_list | wc -c"])
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0", "0"]


def test_unmasked_file_is_readable(runtime, bundle):
    # The same read without the mask gives content: the test above means something.
    b = bundle(["sh", "-c", "cat /proc/timer_list | wc -c"], masked_paths=[])
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 0


def test_masked_directory_is_empty_readonly_tmpfs(runtime, bundle):
    if not os.listdir("/sys/firmware"):
        pytest.skip("the host's /sys/firmware is empty: nothing to hide")
    b = bundle(["sh", "-c", "ls -A /sys/firmware | wc -l; cat /proc/mounts; "
                            "touch /sys/firmware/x 2>&1 || true"])
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "0"
    entry = mount_line(proc.stdout, "/sys/firmware")
    assert entry is not None, "no mount on /sys/firmware"
    assert entry[2] == "tmpfs"
    assert "ro" in entry[3].split(",")
    assert "Read-only file system" in lines[-1]


def test_masked_proc_directory(runtime, bundle):
    # /proc/acpi exists on this host (maybe empty): masked, it is an empty ro tmpfs too.
    if not os.path.isdir("/proc/acpi"):
        pytest.skip("no /proc/acpi on this host")
    b = bundle(["sh", "-c", "ls -A /proc/acpi | wc -l; grep ' /proc/acpi ' /proc/mounts"])
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "0"
    entry = lines[1].split()
    assert entry[2] == "tmpfs" and "ro" in entry[3].split(",")


def host_overcommit() -> str:
    with open("/proc/sys/vm/overcommit_memory") as f:
        return f.read().strip()


def test_readonly_paths_refuse_writes(runtime, bundle):
    # Writes the host's own value back: harmless should the path wrongly be writable. The
    # hostname is namespaced: writing it would only change the container's.
    value = host_overcommit()
    script = (f"echo {value} > /proc/sys/vm/overcommit_memory && echo wrote; "
              "echo other > /proc/sys/kernel/hostname && echo touched; "
              "grep ' /proc/sys ' /proc/mounts")
    b = bundle(["sh", "-c", script])
    proc = run(runtime, b)
    assert proc.stderr.count("Read-only file system") == 2, proc.stderr
    assert "wrote" not in proc.stdout and "touched" not in proc.stdout
    entry = proc.stdout.split()
    assert entry[1] == "/proc/sys" and "ro" in entry[3].split(",")
    assert host_overcommit() == value


def test_readonly_path_is_still_readable(runtime, bundle):
    b = bundle(["cat", "/proc/sys/kernel/ostype"])
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Linux"


def test_custom_masked_and_readonly_paths(runtime, bundle):
    # Paths of the rootfs itself: /etc/passwd masked, /home read-only (on a writable root).
    script = "cat /etc/passwd | wc -c; cat /etc/group | wc -c; touch /home/x 2>&1; touch /var/x && echo var-ok"
    b = bundle(["sh", "-c", script], masked_paths=["/etc/passwd"],
               readonly_paths=["/home"],
               mounts=[{"destination": "/var", "type": "tmpfs", "source": "tmpfs"},
                       {"destination": "/home", "type": "tmpfs", "source": "tmpfs"}])
    proc = run(runtime, b)
    lines = proc.stdout.splitlines()
    assert lines[0] == "0"
    assert int(lines[1]) > 0
    assert "Read-only file system" in lines[2]
    assert lines[3] == "var-ok"
