"""Signal names and numbers as `pyruntime kill` takes them."""
from __future__ import annotations

import pytest

from pyruntime.errors import PyruntimeError
from pyruntime.linux.signals import SIGRTMAX, SIGRTMIN, SignalError, parse_signal, signal_name


@pytest.mark.parametrize(
    "text, number",
    [
        ("TERM", 15), ("SIGTERM", 15), ("sigterm", 15), ("term", 15), ("SigTerm", 15),
        ("KILL", 9), ("SIGKILL", 9), ("HUP", 1), ("INT", 2), ("USR1", 10), ("SIGUSR2", 12),
        ("CHLD", 17), ("SIGCLD", 17), ("IOT", 6), ("ABRT", 6), ("POLL", 29), ("WINCH", 28),
        ("STOP", 19), ("CONT", 18), ("SYS", 31),
    ],
)
def test_names(text, number):
    assert parse_signal(text) == number


@pytest.mark.parametrize("text, number", [("15", 15), ("9", 9), ("1", 1), ("64", 64), ("32", 32)])
def test_numbers(text, number):
    assert parse_signal(text) == number


def test_zero_is_the_null_signal():
    """`kill ID 0` probes liveness, as with runc (kill(2) checks, sends nothing)."""
    assert parse_signal("0") == 0


def test_realtime_bounds_are_glibc_ones():
    assert (SIGRTMIN, SIGRTMAX) == (34, 64)


@pytest.mark.parametrize(
    "text, number",
    [
        ("SIGRTMIN", 34), ("RTMIN", 34), ("SIGRTMIN+3", 37), ("rtmin+3", 37), ("RTMIN+0", 34),
        ("SIGRTMAX", 64), ("RTMAX-1", 63), ("sigrtmax-30", 34), ("RTMIN+30", 64),
    ],
)
def test_realtime(text, number):
    assert parse_signal(text) == number


@pytest.mark.parametrize(
    "text", ["FOO", "SIGFOO", "", "SIG", "RTMIN+31", "RTMAX-31", "RTMIN-1", "RTMAX+1",
             "RTMIN+", "RTMIN+x", "TERM ", "1.5", "١٥"],
)
def test_unknown_names(text):
    with pytest.raises(SignalError) as excinfo:
        parse_signal(text)
    assert str(excinfo.value) == f'unknown signal "{text}"'


@pytest.mark.parametrize("text", ["65", "99", "-9"])
def test_numbers_out_of_range(text):
    with pytest.raises(SignalError) as excinfo:
        parse_signal(text)
    assert str(excinfo.value) == f"signal number {int(text)} out of range 0..64"


def test_error_is_a_pyruntime_error():
    assert issubclass(SignalError, PyruntimeError)


@pytest.mark.parametrize(
    "number, name",
    [
        (15, "SIGTERM"), (9, "SIGKILL"), (6, "SIGABRT"), (17, "SIGCHLD"), (29, "SIGIO"),
        (34, "SIGRTMIN"), (37, "SIGRTMIN+3"), (49, "SIGRTMIN+15"), (50, "SIGRTMAX-14"),
        (63, "SIGRTMAX-1"), (64, "SIGRTMAX"), (32, "SIG32"),
    ],
)
def test_signal_name(number, name):
    assert signal_name(number) == name


def test_every_name_round_trips():
    for number in range(1, SIGRTMAX + 1):
        if number in (32, 33):
            continue
        assert parse_signal(signal_name(number)) == number


@pytest.mark.parametrize("number", [0, 65, -1, True])
def test_signal_name_out_of_range(number):
    with pytest.raises(SignalError):
        signal_name(number)
