"""Linux security modules: AppArmor profiles and SELinux labels for the container process.

A spec that asks for one on a host where that module is not enabled is refused with a
clear error, never silently run unconfined. When enabled, the label is set for the next
execve through /proc/self/attr, as runc does.
"""
from __future__ import annotations

import os

from pyruntime.linux.kernel_files import write_kernel_file
from pyruntime.oci.errors import SpecError


def apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")


def check_available(process: dict) -> None:
    if process.get("apparmorProfile") and not apparmor_enabled():
        raise SpecError("process.apparmorProfile",
                        f"{process['apparmorProfile']!r} asked for, but AppArmor is not "
                        "enabled on this host")
    if process.get("selinuxLabel") and not selinux_enabled():
        raise SpecError("process.selinuxLabel",
                        f"{process['selinuxLabel']!r} asked for, but SELinux is not enabled "
                        "on this host")


def set_exec_labels(process: dict) -> None:
    """Just before execve: the labels the kernel applies at exec time."""
    profile = process.get("apparmorProfile")
    if profile:
        path = "/proc/self/attr/apparmor/exec"
        if not os.path.exists(path):
            path = "/proc/self/attr/exec"
        write_kernel_file(path, f"exec {profile}")
    label = process.get("selinuxLabel")
    if label:
        write_kernel_file("/proc/self/attr/exec", label)
