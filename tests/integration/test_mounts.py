"""config.mounts: bind mounts of host directories and files (rw, ro, recursive or not),
tmpfs with options, flags visible in /proc/mounts, and a destination that is a symlink
pointing out of the rootfs, which must land inside it."""
from __future__ import annotations

import os
import subprocess

from . import ROOT_ONLY
from .bundle import bind_mount, tmpfs_mount

pytestmark = ROOT_ONLY


def run(runtime, b):
    return runtime.run("run", "--bundle", b, runtime.new_id())


def host_dir(work_dir, name, files: dict[str, str] | None = None) -> str:
    path = os.path.join(work_dir, name)
    os.makedirs(path)
    for fname, content in (files or {}).items():
        with open(os.path.join(path, fname), "w") as f:
            f.write(content)
    return path


def mount_options(mounts_text: str, mount_point: str) -> set[str]:
    entry = None
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == mount_point:
            entry = fields
    assert entry is not None, f"nothing mounted on {mount_point}:\n{mounts_text}"
    return set(entry[3].split(","))


def test_bind_host_dir_rw(runtime, bundle, work_dir):
    data = host_dir(work_dir, "data", {"from-host": "written on the host\n"})
    b = bundle(["sh", "-c", "cat /var/from-host; echo from-container > /var/out"],
               mounts=[bind_mount(data, "/var", "rbind", "rw")])
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "written on the host\n"
    with open(os.path.join(data, "out")) as f:
        assert f.read() == "from-container\n"


def test_bind_host_dir_ro(runtime, bundle, work_dir):
    data = host_dir(work_dir, "data", {"from-host": "x\n"})
    b = bundle(["sh", "-c", "cat /var/from-host; touch /var/new; grep ' /var ' /proc/mounts"],
               mounts=[bind_mount(data, "/var", "rbind", "ro")])
    proc = run(runtime, b)
    assert proc.stdout.startswith("x\n")
    assert "Read-only file system" in proc.stderr
    assert "ro" in mount_options(proc.stdout, "/var")
    assert os.listdir(data) == ["from-host"]


def test_bind_single_file(runtime, bundle, work_dir):
    # The destination's file and parent directory do not exist: the runtime makes them
    # inside the tmpfs on /run.
    source = os.path.join(work_dir, "hostfile")
    with open(source, "w") as f:
        f.write("single file\n")
    b = bundle(["sh", "-c", "cat /run/sub/hostfile; test -f /run/sub/hostfile && echo is-file"],
               mounts=[tmpfs_mount("/run"), bind_mount(source, "/run/sub/hostfile", "bind", "ro")])
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "single file\nis-file\n"


def test_bind_file_over_existing_file(runtime, bundle, work_dir):
    source = os.path.join(work_dir, "group")
    with open(source, "w") as f:
        f.write("mygroup:x:4242:\n")
    b = bundle(["sh", "-c", "cat /etc/group; id -Gn 0"],
               mounts=[bind_mount(source, "/etc/group", "bind", "ro")],
               additional_gids=[4242])
    proc = run(runtime, b)
    assert proc.stdout.splitlines()[0] == "mygroup:x:4242:"


def test_tmpfs_size_mode_and_flags(runtime, bundle):
    # A new destination: on an existing directory runc keeps that directory's mode.
    script = "stat -c %a /run/t; df -k /run/t | tail -n 1; grep ' /run/t ' /proc/mounts"
    b = bundle(["sh", "-c", script],
               mounts=[tmpfs_mount("/run"),
                       tmpfs_mount("/run/t", "nosuid", "nodev", "noexec", "size=2m", "mode=1770")])
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "1770"
    assert lines[1].split()[1] == "2048"
    options = mount_options(proc.stdout, "/run/t")
    assert {"nosuid", "nodev", "noexec", "size=2048k", "mode=1770"} <= options


def test_noexec_is_enforced(runtime, bundle):
    script = "cp /bin/busybox /tmp/bb && /tmp/bb true && echo executed"
    b = bundle(["sh", "-c", script], mounts=[tmpfs_mount("/tmp", "noexec")])
    proc = run(runtime, b)
    assert "executed" not in proc.stdout
    assert "Permission denied" in proc.stderr


def test_bind_mount_flags_visible(runtime, bundle, work_dir):
    data = host_dir(work_dir, "data")
    b = bundle(["cat", "/proc/mounts"],
               mounts=[bind_mount(data, "/var", "rbind", "nosuid", "nodev", "noexec")])
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    assert {"nosuid", "nodev", "noexec"} <= mount_options(proc.stdout, "/var")


def test_rbind_takes_submounts_and_bind_does_not(runtime, bundle, work_dir, request):
    data = host_dir(work_dir, "data", {"top": "t\n"})
    sub = os.path.join(data, "sub")
    os.makedirs(sub)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", sub], check=True)
    request.addfinalizer(lambda: subprocess.run(["umount", "-l", sub]))
    with open(os.path.join(sub, "inner"), "w") as f:
        f.write("in the submount\n")
    b = bundle(["sh", "-c", "ls /var /var/sub; echo --; ls /home /home/sub"],
               mounts=[bind_mount(data, "/var", "rbind"), bind_mount(data, "/home", "bind")])
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    recursive, plain = proc.stdout.split("--\n")
    assert "inner" in recursive.split()
    assert "top" in plain.split()
    assert "inner" not in plain.split()


def test_symlink_destination_stays_inside_rootfs(runtime, bundle, work_dir, rootfs_copy):
    # /evil in the rootfs points at an absolute host path. Resolved on the host, the
    # mount would cover that host directory; resolved inside the rootfs (as it must be),
    # it lands on <rootfs>/<that path>.
    hostdir = host_dir(work_dir, "hostdir", {"sentinel": "host\n"})
    source = host_dir(work_dir, "payload", {"payload": "p\n"})
    rootfs = rootfs_copy()
    os.symlink(hostdir, os.path.join(rootfs, "evil"))
    b = bundle(["sh", "-c", "ls /evil; touch /evil/written && echo wrote"], rootfs=rootfs,
               mounts=[bind_mount(source, "/evil", "rbind", "rw")])
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["payload", "wrote"]
    assert sorted(os.listdir(hostdir)) == ["sentinel"]
    assert os.path.isdir(os.path.join(rootfs, hostdir.lstrip("/")))
    assert sorted(os.listdir(source)) == ["payload", "written"]


def test_symlink_destination_tmpfs_stays_inside_rootfs(runtime, bundle, work_dir, rootfs_copy):
    hostdir = host_dir(work_dir, "hostdir", {"sentinel": "host\n"})
    rootfs = rootfs_copy()
    os.symlink(hostdir, os.path.join(rootfs, "evil"))
    b = bundle(["sh", "-c", "touch /evil/marker && ls -A /evil"], rootfs=rootfs,
               mounts=[tmpfs_mount("/evil")])
    proc = run(runtime, b)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["marker"]
    assert sorted(os.listdir(hostdir)) == ["sentinel"]


def test_dotdot_destination_stays_inside_rootfs(runtime, bundle, work_dir, rootfs_copy):
    # A destination climbing out with ".." is clamped to the rootfs too.
    rootfs = rootfs_copy()
    outside = os.path.join(work_dir, "outside")
    b = bundle(["sh", "-c", f"grep ' {outside} ' /proc/mounts"], rootfs=rootfs,
               mounts=[tmpfs_mount("/../../../../../../.." + outside)])
    proc = run(runtime, b)
    assert not os.path.exists(outside)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[1:3] == [outside, "tmpfs"]
    assert os.path.isdir(os.path.join(rootfs, outside.lstrip("/")))
