"""The message channel between the runtime and a container's bootstrap/init processes,
and how a child process on its far side runs (`run_child_body`).

Two pipes carry one JSON object per line. Pipes rather than a socketpair because the
`socket` module is slow to import and nothing here needs more than bytes in order.
Both ends are close-on-exec, so nothing of the channel reaches the container's process.
"""
from __future__ import annotations

import os

from pyruntime import jsonlite
from pyruntime.oci.errors import ContainerStartError, OCIError

# Fds that only the process which opened them may hold: every child that
# `run_child_body` runs closes them first. The lock `create` holds on the container's
# directory is one: an flock belongs to the open file, so an init that inherited the
# fd would keep the container locked until its exec, and `start` would wait for it
# forever.
_parent_only_fds: set[int] = set()


def keep_from_children(fd: int) -> None:
    _parent_only_fds.add(fd)


def let_children_have(fd: int) -> None:
    """Before `fd` is closed: its number may be reused for one a child needs."""
    _parent_only_fds.discard(fd)


class Channel:
    """One side of the channel: `send` a dict, `receive` the next dict (None at EOF)."""

    __slots__ = ("read_fd", "write_fd", "_buffer")

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = b""

    def send(self, message: dict) -> None:
        data = jsonlite.dumps(message).encode() + b"\n"
        while data:
            written = os.write(self.write_fd, data)
            data = data[written:]

    def receive(self) -> dict | None:
        while b"\n" not in self._buffer:
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return jsonlite.loads(line)

    def expect(self, kind: str) -> dict:
        """The next message, which must be of `kind`; an `error` message is raised."""
        message = self.receive()
        if message is None:
            raise ContainerStartError(f"runtime closed the channel while init waited for {kind}")
        if message.get("type") == "error":
            raise ContainerStartError(message.get("message", "runtime failed"))
        if message.get("type") != kind:
            raise ContainerStartError(f"expected {kind!r} from the runtime, got {message!r}")
        return message

    def send_error(self, error: BaseException) -> None:
        """Report a failure of the child side; the kind lets the runtime re-raise the
        same exception class (ProcessNotFound -> exit 127...)."""
        kind = type(error).__name__ if isinstance(error, OCIError) else "start"
        try:
            self.send({"type": "error", "kind": kind, "message": describe(error)})
        except OSError:
            os.write(2, f"pyruntime: {describe(error)}\n".encode())

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def run_child_body(channel_parent: Channel | None, channel_child: Channel, body,
                   plan: dict) -> None:
    """In the child: run the body, report any exception over the channel, always exit
    (never return into the caller's code)."""
    code = 1
    try:
        for fd in _parent_only_fds:
            os.close(fd)
        _parent_only_fds.clear()  # a child this one forks must not close them again
        if channel_parent is not None:
            channel_parent.close()
        body(plan, channel_child)
        code = 0
    except BaseException as error:  # noqa: BLE001 - report and exit, whatever it is
        channel_child.send_error(error)
    finally:
        os._exit(code)


def describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror and not isinstance(error, OCIError):
        where = f" {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    return str(error) or type(error).__name__


def channel_pair() -> tuple[Channel, Channel]:
    """(parent side, child side) of a fresh channel."""
    parent_read, child_write = os.pipe()
    child_read, parent_write = os.pipe()
    return Channel(parent_read, parent_write), Channel(child_read, child_write)
