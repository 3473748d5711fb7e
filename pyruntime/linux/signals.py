"""Signal names and numbers, as `kill` takes them: "TERM", "SIGTERM", "15", "SIGRTMIN+3".

The table comes from CPython's C module `_signal`, which the interpreter has already
loaded at start-up; the `signal` module would import `enum`, too slow for the CLI path.
"""
from __future__ import annotations

import _signal

from pyruntime.errors import PyruntimeError

SIGRTMIN: int = _signal.SIGRTMIN
SIGRTMAX: int = _signal.SIGRTMAX

# In the order of signal(7), so that a number's first name is its usual one
# (SIGABRT, not SIGIOT; SIGCHLD, not SIGCLD; SIGIO, not SIGPOLL).
_ORDER = (
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGIOT", "SIGBUS",
    "SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM",
    "SIGSTKFLT", "SIGCHLD", "SIGCLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU",
    "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPOLL",
    "SIGPWR", "SIGSYS",
)

SIGNALS: dict[str, int] = {name: getattr(_signal, name) for name in _ORDER if hasattr(_signal, name)}
SIGNALS["SIGRTMIN"] = SIGRTMIN
SIGNALS["SIGRTMAX"] = SIGRTMAX

_NAMES: dict[int, str] = {}
for _name, _number in SIGNALS.items():
    _NAMES.setdefault(_number, _name)
del _name, _number


class SignalError(PyruntimeError):
    """A signal name or number that Linux does not have."""


def parse_signal(text: str) -> int:
    """The number of the signal `text` names: a name with or without SIG, any case, or a
    number; real-time signals as SIGRTMIN+N or SIGRTMAX-N. 0 is kill(2)'s null signal,
    which only checks that the process exists: runc takes it, and scripts probe a
    container's liveness with `kill ID 0`."""
    digits = text[1:] if text.startswith("-") else text
    if digits.isascii() and digits.isdigit():
        number = int(text)
        if not 0 <= number <= SIGRTMAX:
            raise SignalError(f"signal number {number} out of range 0..{SIGRTMAX}")
        return number
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    number = SIGNALS.get(name)
    if number is None:
        number = _realtime(name)
    if number is None:
        raise SignalError(f'unknown signal "{text}"')
    return number


def _realtime(name: str) -> int | None:
    for base, sign, start in (("SIGRTMIN+", 1, SIGRTMIN), ("SIGRTMAX-", -1, SIGRTMAX)):
        if name.startswith(base):
            offset = name[len(base):]
            if offset.isascii() and offset.isdigit():
                number = start + sign * int(offset)
                if SIGRTMIN <= number <= SIGRTMAX:
                    return number
    return None


def signal_name(number: int) -> str:
    """The usual name of signal `number`: "SIGTERM"; real-time ones as `kill -l` writes
    them, SIGRTMIN+N up to the middle of the range and SIGRTMAX-N after it."""
    if type(number) is not int or not 1 <= number <= SIGRTMAX:
        raise SignalError(f"signal number {number} out of range 1..{SIGRTMAX}")
    name = _NAMES.get(number)
    if name is not None:
        return name
    if number < SIGRTMIN:  # 32 and 33: the C library keeps them for its threads
        return f"SIG{number}"
    offset = number - SIGRTMIN
    if offset <= (SIGRTMAX - SIGRTMIN) // 2:
        return f"SIGRTMIN+{offset}"
    return f"SIGRTMAX-{SIGRTMAX - number}"
