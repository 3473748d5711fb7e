"""A small client of systemd's D-Bus manager API (org.freedesktop.systemd1.Manager): just
what the systemd cgroup driver asks of it: start a transient unit, stop it, reset its
failed state, set its properties, read a property, and wait for the job each change
queues (the `JobRemoved` signal).

Built on jeepney because it is pure Python (no C extension, no libdbus or libsystemd to
compile against, unlike dbus-python or pystemd), sans-I/O at its core (it builds and
parses messages and runs the authentication exchange; the few lines of blocking socket
I/O below are ours, with our own timeouts), and maintained. Nothing on the normal start
path imports this module: only a container created with `--systemd-cgroup` while systemd
runs does, so a plain `pyruntime run` never loads jeepney.

Where systemd is reached: the system bus (`$DBUS_SYSTEM_BUS_ADDRESS`, by default
/run/dbus/system_bus_socket), as runc does first; as root, when the bus is not there
(dbus-daemon not running), systemd's private socket /run/systemd/private, a direct
connection to PID 1 that needs no bus daemon, as runc falls back to.
"""
from __future__ import annotations

import os
import socket
import time

from jeepney import DBusAddress, HeaderFields, MessageType, Parser, new_method_call
from jeepney.auth import BEGIN, Authenticator
from jeepney.bus import find_system_bus

from pyruntime.cgroups.placement import CgroupError

PRIVATE_SOCKET = "/run/systemd/private"
SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
PROPERTIES = "org.freedesktop.DBus.Properties"
NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
NO_SUCH_JOB = "org.freedesktop.systemd1.NoSuchJob"
UNIT_EXISTS = "org.freedesktop.systemd1.UnitExists"
#: How long one request or job may take: runc waits 30 s for a unit to start too.
TIMEOUT = 30.0
#: How long to wait for a job's signal before asking whether the job is still there.
JOB_POLL = 2.0

_JOB_REMOVED_MATCH = (f"type='signal',sender='{SYSTEMD}',path='{MANAGER_PATH}',"
                      f"interface='{MANAGER}',member='JobRemoved'")


class SystemdError(CgroupError):
    """systemd could not be reached, or refused or failed a request. The message says
    what was asked (and of which unit) and systemd's answer: the D-Bus error name and
    message, or the job's result; `dbus_error` is the error name, when there was one."""

    def __init__(self, message: str, dbus_error: str | None = None) -> None:
        super().__init__(message)
        self.dbus_error = dbus_error


class SystemdManager:
    """One connection to systemd's manager. `connect()` picks the bus or the private
    socket; use it as a context manager (it closes the socket). `jobs=False` is for
    connections that start or stop nothing: no job signals are asked for."""

    def __init__(self, sock: socket.socket, address: str, on_bus: bool,
                 jobs: bool = True) -> None:
        self.address = address
        self._sock = sock
        self._parser = Parser()
        self._serial = 0
        # Jobs that ended, job path -> result: JobRemoved can arrive before the reply
        # that names the job has been read.
        self._removed_jobs: dict[str, str] = {}
        if on_bus:
            self._call("saying Hello to the system bus", "Hello", "", (),
                       destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                       interface="org.freedesktop.DBus")
        if on_bus and jobs:
            self._call("subscribing to systemd's JobRemoved signal", "AddMatch", "s",
                       (_JOB_REMOVED_MATCH,), destination="org.freedesktop.DBus",
                       path="/org/freedesktop/DBus", interface="org.freedesktop.DBus")
            # systemd sends job signals to the bus only while a client is subscribed
            # (to a private connection always); it drops us when we disconnect.
            self._call("subscribing to systemd's signals", "Subscribe", "", ())

    # -- connecting ----------------------------------------------------------------------

    @classmethod
    def connect(cls, jobs: bool = True) -> "SystemdManager":
        """The system bus if it answers, else (as root) the private socket."""
        failures = []
        try:
            return cls.open(find_system_bus(), on_bus=True, jobs=jobs)
        except (OSError, RuntimeError, ValueError) as error:
            failures.append(f"system bus: {_reason(error)}")
        if os.geteuid() == 0:
            try:
                return cls.open(PRIVATE_SOCKET, on_bus=False, jobs=jobs)
            except (OSError, ValueError) as error:
                failures.append(f"{PRIVATE_SOCKET}: {_reason(error)}")
        raise SystemdError("cannot reach systemd over D-Bus (" + "; ".join(failures) + ")")

    @classmethod
    def open(cls, path: str, on_bus: bool, jobs: bool = True) -> "SystemdManager":
        """Connect to the unix socket `path` and authenticate (EXTERNAL: our uid);
        `on_bus` says it is a bus daemon (Hello, match rules), not systemd itself."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(TIMEOUT)
            sock.connect(path)
            authenticator = Authenticator()  # the protocol's leading NUL byte included
            for request in authenticator:
                sock.sendall(request)
                data = sock.recv(1024)
                if not data:
                    raise ConnectionResetError(f"{path} closed the connection")
                authenticator.feed(data)
            sock.sendall(BEGIN)
            if not on_bus:
                _wait_until_read(sock, path)
            return cls(sock, path, on_bus, jobs)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "SystemdManager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the manager's methods ---------------------------------------------------------

    def start_transient_unit(self, unit: str, properties: list) -> None:
        """StartTransientUnit(unit, "replace", properties, []) and wait for its job."""
        what = f"starting unit {unit}"
        (job,) = self._call(what, "StartTransientUnit", "ssa(sv)a(sa(sv))",
                            (unit, "replace", properties, []))
        self._wait_job(job, what)

    def stop_unit(self, unit: str) -> bool:
        """StopUnit(unit, "replace") and wait for its job; False when no such unit is
        loaded (already gone)."""
        what = f"stopping unit {unit}"
        try:
            (job,) = self._call(what, "StopUnit", "ss", (unit, "replace"))
        except SystemdError as error:
            if error.dbus_error == NO_SUCH_UNIT:
                return False
            raise
        self._wait_job(job, what)
        return True

    def reset_failed_unit(self, unit: str) -> None:
        """ResetFailedUnit(unit): a failed unit stays loaded (and its name taken) until
        this. Nothing to do when it is not loaded."""
        try:
            self._call(f"resetting the failed state of unit {unit}", "ResetFailedUnit",
                       "s", (unit,))
        except SystemdError as error:
            if error.dbus_error != NO_SUCH_UNIT:
                raise

    def set_unit_properties(self, unit: str, properties: list) -> None:
        """SetUnitProperties(unit, runtime=true, properties): applied at once, kept
        until the unit goes away (nothing written under /etc)."""
        if properties:
            self._call(f"setting properties of unit {unit}", "SetUnitProperties",
                       "sba(sv)", (unit, True, properties))

    def unit_property(self, unit: str, interface: str, name: str) -> object | None:
        """A property of a loaded unit (e.g. interface org.freedesktop.systemd1.Scope,
        name ControlGroup); None when no such unit is loaded."""
        what = f"reading {name} of unit {unit}"
        try:
            (path,) = self._call(what, "GetUnit", "s", (unit,))
        except SystemdError as error:
            if error.dbus_error == NO_SUCH_UNIT:
                return None
            raise
        (value,) = self._call(what, "Get", "ss", (interface, name), path=path,
                              interface=PROPERTIES)
        return value[1]  # a variant: (signature, value)

    def manager_property(self, name: str) -> object:
        (value,) = self._call(f"reading systemd's {name}", "Get", "ss", (MANAGER, name),
                              interface=PROPERTIES)
        return value[1]

    # -- messages ------------------------------------------------------------------------

    def _call(self, what: str, method: str, signature: str, body: tuple, *,
              destination: str = SYSTEMD, path: str = MANAGER_PATH,
              interface: str = MANAGER) -> tuple:
        message = new_method_call(DBusAddress(path, destination, interface), method,
                                  signature or None, body)
        self._serial += 1
        serial = self._serial
        deadline = time.monotonic() + TIMEOUT
        try:
            self._sock.sendall(message.serialise(serial=serial))
        except OSError as error:
            raise SystemdError(f"{what}: sending to {self.address}: {_reason(error)}") from None
        while True:
            reply = self._receive(what, deadline)
            if reply is None:
                raise SystemdError(f"{what}: no answer from systemd within {TIMEOUT:.0f}s")
            if reply.header.fields.get(HeaderFields.reply_serial) == serial:
                break
            self._note(reply)
        if reply.header.message_type == MessageType.error:
            name = reply.header.fields.get(HeaderFields.error_name, "an unnamed error")
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise SystemdError(f"{what}: {name}: {text}" if text else f"{what}: {name}", name)
        return reply.body

    def _receive(self, what: str, deadline: float):
        """The next message, or None once `deadline` (time.monotonic()) has passed."""
        while True:
            message = self._parser.get_next_message()
            if message is not None:
                return message
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as error:
                raise SystemdError(f"{what}: reading from {self.address}: "
                                   f"{_reason(error)}") from None
            if not data:
                raise SystemdError(f"{what}: {self.address} closed the connection")
            self._parser.add_data(data)

    def _note(self, message) -> None:
        """Keep what a message that is not the awaited reply says about jobs."""
        fields = message.header.fields
        if message.header.message_type == MessageType.signal \
                and fields.get(HeaderFields.interface) == MANAGER \
                and fields.get(HeaderFields.member) == "JobRemoved":
            _id, job, _unit, result = message.body
            self._removed_jobs[job] = result

    def _wait_job(self, job: str, what: str) -> None:
        """Until the job's JobRemoved; a result other than "done" is an error. Should
        the signal not come (a broadcast the bus dropped), a job systemd no longer has
        has ended all the same: taken as done, the caller checks the unit anyway."""
        deadline = time.monotonic() + TIMEOUT
        while job not in self._removed_jobs:
            message = self._receive(what, min(deadline, time.monotonic() + JOB_POLL))
            if message is not None:
                self._note(message)
            elif not self._job_exists(job, what):
                return
            elif time.monotonic() >= deadline:
                raise SystemdError(f"{what}: job {job} did not finish within "
                                   f"{TIMEOUT:.0f}s")
        result = self._removed_jobs.pop(job)
        if result != "done":
            raise SystemdError(f"{what}: the job ended with result {result!r}, not 'done' "
                               f"(see `systemctl status` and the journal for why)")


    def _job_exists(self, job: str, what: str) -> bool:
        try:
            self._call(what, "GetJob", "u", (int(job.rsplit("/", 1)[1]),))
        except SystemdError as error:
            if error.dbus_error == NO_SUCH_JOB:
                return job in self._removed_jobs  # its signal may have come meanwhile
            raise
        return True


def _wait_until_read(sock: socket.socket, path: str) -> None:
    """Wait until the other end has read all we sent (the socket's SIOCOUTQ is 0).

    systemd's own D-Bus server (sd-bus, behind the private socket; seen with systemd
    252) ignores whatever arrived in the same read as the BEGIN that ends
    authentication: a request sent right behind BEGIN is never answered, and the
    connection stays silent (about every other run in the test VM)."""
    import fcntl
    import struct
    import termios

    deadline = time.monotonic() + TIMEOUT
    while struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]:
        if time.monotonic() > deadline:
            raise SystemdError(f"{path} did not read the end of the authentication "
                               f"within {TIMEOUT:.0f}s")
        time.sleep(0.0002)


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
