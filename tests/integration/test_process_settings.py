"""The process section: noNewPrivileges, user (uid, gid, additionalGids, umask), rlimits,
cwd, env, and a seccomp profile."""
from __future__ import annotations

import pytest

from . import ROOT_ONLY, pyruntime_only
from .bundle import tmpfs_mount

pytestmark = ROOT_ONLY

WRITABLE_TMP = tmpfs_mount("/tmp", "mode=1777")


def run_ok(runtime, b) -> str:
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("flag, expected", [(True, "1"), (False, "0")])
def test_no_new_privileges(runtime, bundle, flag, expected):
    b = bundle(["sh", "-c", "grep NoNewPrivs /proc/self/status"], no_new_privileges=flag)
    assert run_ok(runtime, b).split() == ["NoNewPrivs:", expected]


def test_user_groups_and_umask(runtime, bundle):
    script = ("grep -E '^(Uid|Gid|Groups):' /proc/self/status; id -u; id -g; umask; "
              "touch /tmp/created; mkdir /tmp/dir; stat -c '%a %u %g' /tmp/created /tmp/dir")
    b = bundle(["sh", "-c", script], user="1001:1001", additional_gids=[5, 6], umask=0o077,
               mounts=[WRITABLE_TMP])
    lines = run_ok(runtime, b).splitlines()
    assert lines[0].split() == ["Uid:", "1001", "1001", "1001", "1001"]
    assert lines[1].split() == ["Gid:", "1001", "1001", "1001", "1001"]
    assert lines[2].split()[0] == "Groups:" and sorted(lines[2].split()[1:]) == ["5", "6"]
    assert lines[3:6] == ["1001", "1001", "0077"]
    assert lines[6:] == ["600 1001 1001", "700 1001 1001"]


def test_user_name_output_of_id(runtime, bundle):
    b = bundle(["id"], user="1001:1001", additional_gids=[5, 6])
    out = run_ok(runtime, b).strip()
    assert out.startswith("uid=1001(user) gid=1001(user) groups="), out
    groups = out.split("groups=")[1].split(",")
    assert {g.split("(")[0] for g in groups} >= {"5", "6"}


def test_default_umask_is_0022(runtime, bundle):
    b = bundle(["sh", "-c", "umask"])
    assert run_ok(runtime, b).strip() == "0022"


def test_rlimit_nofile(runtime, bundle):
    script = "ulimit -n; ulimit -Hn; grep 'Max open files' /proc/self/limits"
    b = bundle(["sh", "-c", script], rlimits={"RLIMIT_NOFILE": (1000, 2000)})
    lines = run_ok(runtime, b).splitlines()
    assert lines[0:2] == ["1000", "2000"]
    assert lines[2][26:].split()[:2] == ["1000", "2000"]


def test_several_rlimits(runtime, bundle):
    b = bundle(["sh", "-c", "grep -E 'Max (open files|processes|core file size)' /proc/self/limits"],
               rlimits={"RLIMIT_NOFILE": (512, 512), "RLIMIT_NPROC": (300, 400),
                        "RLIMIT_CORE": (0, 0)})
    # /proc/self/limits: the name in the first 26 columns, then soft and hard.
    limits = {l[:26].strip(): l[26:].split()[:2] for l in run_ok(runtime, b).splitlines()}
    assert limits == {"Max open files": ["512", "512"], "Max processes": ["300", "400"],
                      "Max core file size": ["0", "0"]}


def test_unlimited_rlimits(runtime, bundle):
    unlimited = 2**64 - 1  # RLIM_INFINITY, as runc spec writes it
    # Hard limits the runtime's own are (raising one needs CAP_SYS_RESOURCE, which the
    # test hosts' bounding set lacks).
    b = bundle(["sh", "-c", "grep -E 'Max (core file size|file size)' /proc/self/limits"],
               rlimits={"RLIMIT_CORE": (unlimited, unlimited),
                        "RLIMIT_FSIZE": (65536, unlimited)})
    limits = {l[:26].strip(): l[26:].split()[:2] for l in run_ok(runtime, b).splitlines()}
    assert limits == {"Max core file size": ["unlimited", "unlimited"],
                      "Max file size": ["65536", "unlimited"]}


@pyruntime_only
def test_an_rlimit_the_kernel_refuses_fails_the_create(runtime, bundle):
    with open("/proc/sys/fs/nr_open") as f:
        too_many = int(f.read()) + 1  # more open files than the kernel allows anyone
    b = bundle(["true"], rlimits={"RLIMIT_NOFILE": (too_many, too_many)})
    cid = runtime.new_id()
    proc = runtime.run("create", "--bundle", b, cid)
    assert proc.returncode == 255
    assert (f"process.rlimits: setting RLIMIT_NOFILE to {too_many}/{too_many}: "
            "Operation not permitted") in proc.stderr
    assert runtime.status(cid) is None


def test_env_and_cwd(runtime, bundle):
    b = bundle(["sh", "-c", "echo $GREETING; pwd; echo $PATH"],
               env={"GREETING": "hello world"}, cwd="/etc")
    assert run_ok(runtime, b).splitlines() == [
        "hello world", "/etc", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def test_relative_args0_is_found_on_path(runtime, bundle):
    # args[0] without a slash is looked up in the container's PATH (/bin/busybox applets).
    b = bundle(["echo", "found"])
    assert run_ok(runtime, b).strip() == "found"


SECCOMP_DENY_MKDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
}


def test_seccomp_errno(runtime, bundle):
    script = "touch /tmp/file && echo touched; mkdir /tmp/x && echo made; ls /tmp"
    b = bundle(["sh", "-c", script], seccomp=SECCOMP_DENY_MKDIR, mounts=[WRITABLE_TMP])
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert "Operation not permitted" in proc.stderr
    assert proc.stdout.split() == ["touched", "file"]


def test_seccomp_errno_ret(runtime, bundle):
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 28}],  # ENOSPC
    }
    b = bundle(["mkdir", "/tmp/x"], seccomp=profile, mounts=[WRITABLE_TMP])
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode != 0
    assert "No space left on device" in proc.stderr


def test_without_seccomp_mkdir_works(runtime, bundle):
    b = bundle(["sh", "-c", "mkdir /tmp/x && echo made"], mounts=[WRITABLE_TMP])
    assert run_ok(runtime, b).strip() == "made"
