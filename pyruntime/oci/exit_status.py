"""How a container's process ended, as the API reports it."""
from __future__ import annotations

import os


class ExitStatus:
    """`code` as a shell reports it (128+N when killed by signal N), `signal` (or None),
    and `oom_killed` (set by the cgroup layer when the kernel's OOM killer ended it)."""

    __slots__ = ("code", "signal", "oom_killed")

    def __init__(self, code: int, signal: int | None = None, oom_killed: bool = False) -> None:
        self.code = code
        self.signal = signal
        self.oom_killed = oom_killed

    @classmethod
    def from_wait_status(cls, status: int) -> "ExitStatus":
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            return cls(128 - code, -code)
        return cls(code)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExitStatus) and (self.code, self.signal, self.oom_killed) == (
            other.code, other.signal, other.oom_killed)

    def __repr__(self) -> str:
        return f"ExitStatus(code={self.code}, signal={self.signal}, oom_killed={self.oom_killed})"
