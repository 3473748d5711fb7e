"""systemd socket activation of `create` and `run`, as runc does it.

When `$LISTEN_FDS` is N > 0 and `$LISTEN_PID` is this process's pid (the command was
started by systemd, or by a wrapper that set them for it), fds 3..3+N-1 are the sockets
to hand on: they go to the container's process at the same numbers, which gets
`LISTEN_FDS=N` and `LISTEN_PID=1` added to its environment, and `--preserve-fds M` then
counts from 3+N (N+M fds in all). Anything else in those variables is not activation and
changes nothing, as with go-systemd's `activation.Files`, which runc uses. `exec` takes
no part in it.

This module finds N; Runtime.create and run take it as `listen_fds` and add the two
variables.
"""
from __future__ import annotations

import os


def listen_fds(environ: dict[str, str] | None = None, pid: int | None = None) -> int:
    """N when this process was socket-activated with N fds, else 0."""
    environ = os.environ if environ is None else environ
    pid = os.getpid() if pid is None else pid
    try:
        if int(environ.get("LISTEN_PID", "")) != pid:
            return 0
        count = int(environ.get("LISTEN_FDS", ""))
    except ValueError:
        return 0
    return max(count, 0)
