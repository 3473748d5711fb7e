"""The end of the D-Bus authentication on systemd's private socket: systemd's own server
(sd-bus, systemd 252) never answers a request that reached it in the same read as the
closing BEGIN, so the client must not send one until BEGIN has been read. A server on a
unix socket here reads slowly, and must find BEGIN alone in its first read."""
from __future__ import annotations

import socket
import threading
import time

from pyruntime.cgroups.systemd_dbus import SystemdManager


def _slow_server(listener: socket.socket, reads: list) -> None:
    connection, _ = listener.accept()
    with connection:
        line = b""
        while not line.endswith(b"\r\n"):
            line += connection.recv(1)
        reads.append(line)
        connection.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
        time.sleep(0.1)  # what the client sends meanwhile piles up unread
        reads.append(connection.recv(4096))
        connection.settimeout(5)
        reads.append(connection.recv(4096))


def test_the_first_request_waits_until_systemd_has_read_begin(tmp_path):
    path = str(tmp_path / "private")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    reads: list[bytes] = []
    server = threading.Thread(target=_slow_server, args=(listener, reads))
    server.start()
    try:
        manager = SystemdManager.open(path, on_bus=False)
        manager._sock.sendall(b"the first request")
        server.join(10)
        manager.close()
    finally:
        listener.close()
    assert reads[0].startswith(b"\0AUTH EXTERNAL ")
    assert reads[1] == b"BEGIN\r\n"
    assert reads[2] == b"the first request"
