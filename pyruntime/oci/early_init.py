"""A new container's init started by the `pyruntime` command's launcher
(native/launcher/early_init.c) before the runtime's own interpreter, so that the two
interpreters start side by side on two CPUs instead of one after the other.

The launcher does it for `create` and `run` when the config would have the runtime fork
init itself (no user or time namespace, no PID namespace joined by path, no terminal;
pyruntime.oci.bootstrap): it reads config.json once into a sealed memfd, clones a child
into a new PID namespace when the config asks for one, and runs this module's
`run_early_init` there with a fresh interpreter, as runc runs `runc init`. The runtime
finds it in PYRUNTIME_EARLY_INIT.

Init validates the config itself, from the same bytes as the runtime, before it acts on
any of it; then it is the forked init's `run_direct_init`: it imports what it needs,
makes its namespaces and begins the rootfs while the runtime validates, records and
makes the cgroup, and waits for `placed`, which brings it the rest of its plan. The
runtime adopts it (`EarlyInit.fits` says when), or kills and reaps it and goes the usual
way; a runtime that exits without doing either leaves it EOF on the channel, and it
exits.
"""
from __future__ import annotations

import os

from pyruntime.oci.channel import Channel

ENVIRONMENT = "PYRUNTIME_EARLY_INIT"


class EarlyInit:
    """The runtime's side: init's pid, the channel to it and the config's memfd."""

    def __init__(self, pid: int, channel: Channel, config_fd: int) -> None:
        self.pid = pid
        self.channel: Channel | None = channel
        self.config_fd = config_fd

    @classmethod
    def from_environment(cls) -> EarlyInit | None:
        """The early init the launcher announced (PID,READ_FD,WRITE_FD,CONFIG_FD), taken
        out of the environment so that nothing this process starts sees it."""
        value = os.environ.pop(ENVIRONMENT, "")
        try:
            pid, read_fd, write_fd, config_fd = (int(part) for part in value.split(","))
        except ValueError:
            return None
        for fd in (read_fd, write_fd, config_fd):
            os.set_inheritable(fd, False)
        return cls(pid, Channel(read_fd, write_fd), config_fd)

    def config_bytes(self) -> bytes:
        """config.json as the launcher read it, and as init reads it."""
        return read_sealed_file(self.config_fd)

    def fits(self, config: dict, console_fd: int | None, preserve_fds: int,
             systemd_cgroup: bool) -> bool:
        """Whether this init can be the container's: one the runtime would have forked
        itself (the launcher checked the namespaces too, this is the runtime's word),
        with no console or preserved fds to hand it (its fds are the launcher's) and no
        systemd unit to start it in."""
        if console_fd is not None or preserve_fds or systemd_cgroup:
            return False
        if config["process"].get("terminal"):
            return False
        for namespace in config.get("linux", {}).get("namespaces", []):
            if namespace["type"] in ("user", "time"):
                return False
            if namespace["type"] == "pid" and namespace.get("path"):
                return False
        return True

    def adopt(self) -> Channel:
        """Hand init over to the caller (the InitLauncher): its channel."""
        channel, self.channel = self.channel, None
        self.pid = 0
        self._close_config()
        return channel

    def discard(self) -> None:
        """Unless adopted: kill and reap init, close our ends."""
        self._close_config()
        if self.channel is None:
            return
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.channel.close()
        self.channel = None
        self.pid = 0

    def _close_config(self) -> None:
        if self.config_fd >= 0:
            os.close(self.config_fd)
            self.config_fd = -1


def read_sealed_file(fd: int) -> bytes:
    """The whole of the launcher's memfd (sealed: its size and bytes cannot change)."""
    return os.pread(fd, os.fstat(fd).st_size, 0)


def run_early_init(bundle: str) -> None:
    """Init's side, from the `pyruntime` script (`pyruntime init BUNDLE` with
    PYRUNTIME_EARLY_INIT=READ_FD,WRITE_FD,CONFIG_FD); never returns."""
    from pyruntime.linux import process_control

    process_control.set_dumpable(False)
    try:
        read_fd, write_fd, config_fd = (int(part) for part in
                                        os.environ.pop(ENVIRONMENT).split(","))
        for fd in (read_fd, write_fd):
            os.set_inheritable(fd, False)
        from pyruntime.oci.spec import load_container_spec

        bundle = os.path.abspath(bundle)
        config = load_container_spec(bundle, read_sealed_file(config_fd))
        os.close(config_fd)
    except BaseException:  # noqa: BLE001 - the runtime validates the same bytes, says why
        os._exit(1)
    from pyruntime.oci.bootstrap import run_direct_init
    from pyruntime.oci.channel import run_child_body

    run_child_body(None, Channel(read_fd, write_fd), run_direct_init,
                   {"config": config, "bundle": bundle})
