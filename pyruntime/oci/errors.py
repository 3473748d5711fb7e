"""Errors of the OCI runtime layer, each with the exit code the CLI reports."""
from __future__ import annotations

from pyruntime.errors import PyruntimeError


class OCIError(PyruntimeError):
    """A lifecycle operation failed."""


class SpecError(OCIError):
    """config.json is invalid: `field` is its JSON path (e.g. `process.args[0]`)."""

    def __init__(self, field: str, problem: str) -> None:
        where = field if field == "config.json" else f"config.json: {field}"
        super().__init__(f"{where}: {problem}")
        self.field = field
        self.problem = problem


class InvalidContainerID(OCIError):
    """A container ID that is empty, too long, or has characters runc refuses."""


class ContainerNotFound(OCIError):
    """No container with that ID under the runtime's root."""


class ContainerExists(OCIError):
    """`create` of an ID that is already taken."""


class InvalidState(OCIError):
    """The operation does not fit the container's status (e.g. start of a running one)."""


class HookError(OCIError):
    """An OCI hook failed or timed out."""


class ProcessNotFound(OCIError):
    """The container's process executable does not exist (exit code 127, as runc/shells)."""

    exit_code = 127


class ProcessNotExecutable(OCIError):
    """The container's process exists but cannot be executed (exit code 126)."""

    exit_code = 126


class ContainerStartError(OCIError):
    """The container's init failed while setting up; the message is init's own."""
