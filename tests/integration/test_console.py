"""process.terminal with --console-socket: the runtime sends the pty master over the unix
socket (SCM_RIGHTS); the container's stdio is the pty, sized by process.consoleSize."""
from __future__ import annotations

import os

from . import ROOT_ONLY, read_pty

pytestmark = ROOT_ONLY


def test_create_with_console_socket(runtime, bundle, console_socket):
    sock = console_socket()
    b = bundle(["sh", "-c", "tty; stty size; echo ok"], terminal=True, console_size=(30, 100))
    cid = runtime.new_id()
    runtime.create(b, cid, "--console-socket", sock.path)
    master = sock.receive()
    runtime.start(cid)
    out = read_pty(master, until="ok\r\n")
    assert out.splitlines() == ["/dev/pts/0", "30 100", "ok"], repr(out)
    runtime.wait_status(cid, "stopped")


def test_pty_carries_input(runtime, bundle, console_socket):
    # What the test writes to the master is the container's stdin.
    sock = console_socket()
    b = bundle(["sh", "-c", "read line; echo got:$line"], terminal=True)
    cid = runtime.new_id()
    runtime.create(b, cid, "--console-socket", sock.path)
    master = sock.receive()
    runtime.start(cid)
    os.write(master, b"hello\n")
    out = read_pty(master, until="got:hello")
    assert "got:hello" in out, repr(out)
    runtime.wait_status(cid, "stopped")


def test_terminal_stdio_are_the_pty(runtime, bundle, console_socket):
    sock = console_socket()
    b = bundle(["sh", "-c", "for fd in 0 1 2; do readlink /proc/self/fd/$fd; done; "
                            "test -c /dev/console && echo console"], terminal=True)
    cid = runtime.new_id()
    runtime.run("run", "-d", "--console-socket", sock.path, "--bundle", b, cid, check=True)
    master = sock.receive()
    out = read_pty(master, until="console\r\n")
    assert out.splitlines() == ["/dev/pts/0"] * 3 + ["console"], repr(out)
    runtime.wait_status(cid, "stopped")
