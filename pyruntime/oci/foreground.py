"""A container (or exec'd process) in the foreground: wait for it, forward the signals
we receive to it, and, when it has a terminal and the caller gave no console socket,
receive the pty master ourselves and connect it to our own stdio.
"""
from __future__ import annotations

import os

from pyruntime.oci.errors import OCIError
from pyruntime.oci.exit_status import ExitStatus

# Signals a foreground runtime passes on rather than dying of (runc's signal handler).
_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGCONT")


class Foreground:
    def __init__(self, terminal: bool) -> None:
        self.terminal = terminal
        self._our_end = None
        self._their_end = None
        self._saved: dict[int, object] = {}
        self._status: int | None = None

    def __enter__(self) -> "Foreground":
        if self.terminal:
            import socket

            self._our_end, self._their_end = socket.socketpair(socket.AF_UNIX,
                                                               socket.SOCK_STREAM)
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore_signals()
        for sock in (self._our_end, self._their_end):
            if sock is not None:
                sock.close()

    @property
    def console_fd(self) -> int | None:
        return None if self._their_end is None else self._their_end.fileno()

    def wait(self, pid: int) -> ExitStatus:
        self._forward_signals(pid)
        if self._our_end is not None:
            from pyruntime.oci.console import TerminalProxy, receive_pty_master

            self._their_end.close()
            self._their_end = None
            master = receive_pty_master(self._our_end)
            try:
                with TerminalProxy(master) as proxy:
                    proxy.pump(lambda: self._exited(pid))
            finally:
                os.close(master)
        if self._status is None:
            try:
                self._status = os.waitpid(pid, 0)[1]
            except ChildProcessError:
                raise OCIError(f"process {pid} was reaped by another part of this program "
                               "(a SIGCHLD handler or reaper thread?): its exit status is "
                               "lost; the runtime must wait for the processes it starts"
                               ) from None
        _reap_orphans()
        return ExitStatus.from_wait_status(self._status)

    def _exited(self, pid: int) -> bool:
        """Whether `pid` has exited (reaping it and keeping its status)."""
        if self._status is None:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return True  # gone; wait() reports it
            if done:
                self._status = status
        return self._status is not None

    def _forward_signals(self, pid: int) -> None:
        import _signal

        def forward(number: int, _frame: object) -> None:
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                pass

        for name in _FORWARDED:
            number = getattr(_signal, name)
            self._saved[number] = _signal.signal(number, forward)

    def _restore_signals(self) -> None:
        import _signal

        for number, handler in self._saved.items():
            _signal.signal(number, handler)
        self._saved.clear()


def _reap_orphans() -> None:
    """Processes of the container reparented to us (we are a subreaper) when it ended."""
    while True:
        try:
            done, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not done:
            return
