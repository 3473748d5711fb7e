"""Terminals: a pty made inside the container, its master handed to the caller.

As runc does, the container's init opens /dev/ptmx of the container's own devpts, makes
the slave its stdio and controlling terminal, and sends the master over the caller's
`--console-socket` with SCM_RIGHTS. Without a console socket (`run` in the foreground),
the runtime receives the master itself and copies bytes between it and its own stdio.
"""
from __future__ import annotations

import os

from pyruntime.linux import syscalls as sc


def make_container_pty(console_socket_fd: int, size: dict | None, uid: int, gid: int) -> None:
    """In the container (after the root switch): create the pty, send the master over the
    socket, and make the slave this process's stdio and controlling terminal."""
    import socket

    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        sc.pty_unlock(master)
        slave = sc.pty_peer(master, os.O_RDWR | os.O_NOCTTY)
        if size:
            sc.set_window_size(master, size.get("height", 0), size.get("width", 0))
        try:
            os.fchown(slave, uid, -1)
        except OSError:
            pass  # an unmapped uid in a user namespace: the pty stays root's.
        sock = socket.socket(fileno=console_socket_fd)
        try:
            socket.send_fds(sock, [b"/dev/ptmx"], [master])
        finally:
            sock.close()
    finally:
        os.close(master)
    _bind_console(slave)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)
    sc.set_controlling_tty(0)


def _bind_console(slave: int) -> None:
    """/dev/console is the container's terminal too (runc binds the pty slave there)."""
    try:
        fd = os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        os.close(fd)
    except OSError:
        return  # a read-only /dev: the container simply has no /dev/console
    sc.mount(os.ttyname(slave), "/dev/console", None, sc.MS_BIND)


def receive_pty_master(sock) -> int:
    import socket

    _, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    if not fds:
        raise OSError("console socket closed without a pty master")
    return fds[0]


class TerminalProxy:
    """Copies our stdin to the pty master and the master to our stdout until the
    container's process exits; puts our terminal in raw mode meanwhile."""

    def __init__(self, master_fd: int) -> None:
        self.master_fd = master_fd
        self._saved_mode = None
        self._saved_winch = None

    def __enter__(self) -> "TerminalProxy":
        if os.isatty(0):
            import termios
            import tty

            import _signal

            self._saved_mode = termios.tcgetattr(0)
            tty.setraw(0)
            self._copy_window_size()
            self._saved_winch = _signal.signal(_signal.SIGWINCH,
                                               lambda *_: self._copy_window_size())
        return self

    def _copy_window_size(self) -> None:
        columns, lines = os.get_terminal_size(0)
        if lines and columns:  # a 0x0 terminal (some pty wrappers) tells nothing
            sc.set_window_size(self.master_fd, lines, columns)

    def __exit__(self, *exc: object) -> None:
        if self._saved_mode is not None:
            import _signal
            import termios

            _signal.signal(_signal.SIGWINCH, self._saved_winch)
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved_mode)

    def pump(self, finished) -> None:
        """Copy until `finished()` is true and the master has no more output."""
        import gc
        import select

        gc.enable()  # may run for hours; the `pyruntime` script starts with it off

        inputs = [self.master_fd, 0]
        while True:
            try:
                readable, _, _ = select.select(inputs, [], [], 0.05)
            except InterruptedError:
                continue
            if self.master_fd in readable:
                try:
                    data = os.read(self.master_fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    return
                _write_all(1, data)
            if 0 in readable:
                data = os.read(0, 65536)
                if data:
                    _write_all(self.master_fd, data)
                else:
                    inputs.remove(0)
            if not readable and finished():
                return


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
