"""Writing the kernel's control files (/proc, /proc/sys, cgroupfs).

Each takes its value in one write(2), and the kernel's answer to that write is the
error that matters (EINVAL for a bad mapping, EBUSY for a busy cgroup): so one open,
one write, no buffering layer that could split the value or hide the errno.
"""
from __future__ import annotations

import os


def write_kernel_file(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
