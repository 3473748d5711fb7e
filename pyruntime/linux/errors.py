"""Errors raised by the Linux wrappers."""
from __future__ import annotations

import os

from pyruntime.errors import PyruntimeError


class LinuxError(PyruntimeError, OSError):
    """A syscall failed; `errno` is the kernel's answer and the message names the call."""

    def __init__(self, errno: int, what: str) -> None:
        OSError.__init__(self, errno, f"{what}: {os.strerror(errno)}")
        self.what = what

    def __str__(self) -> str:
        return f"{self.what}: {os.strerror(self.errno)}"


class SeccompError(PyruntimeError):
    """A seccomp profile could not be built or loaded (unknown syscall, arch, action...)."""


class CapabilityError(PyruntimeError):
    """An unknown capability name, or a capability set the kernel refused."""
