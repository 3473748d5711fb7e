"""Reading and writing cgroup control files, with errors that name the file and the
`linux.resources` field a write came from.

cgroup files are small, pseudo files: each value is written with one write(2) on a fresh
fd (the kernel parses one write as one command, e.g. one line of `io.max`), and reads
parse the kernel's formats: a single value ("max" or a number), flat keyed files
("key value" lines: memory.stat, cpu.stat) and nested keyed files ("key a=1 b=2": io.stat).
"""
from __future__ import annotations

import errno
import os

from pyruntime.cgroups.errors import CgroupError, InvalidResource, ResourceBusy

#: What "max" (no limit) reads as, like runc's math.MaxUint64 in stats.
UNLIMITED = 2**64 - 1


def write(directory: str, name: str, value: str, resource: str = "") -> None:
    """Write `value` to `directory/name` in one write(2); `resource` (the spec field,
    e.g. "linux.resources.memory.limit") is named in the error."""
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as error:
        raise CgroupError(f"{_prefix(resource)}opening {path}: {error.strerror}") from None
    try:
        os.write(fd, value.encode())
    except OSError as error:
        what = f"{_prefix(resource)}writing {value!r} to {path}: {error.strerror}"
        if error.errno == errno.EBUSY:
            raise ResourceBusy(what) from None
        if error.errno in (errno.EINVAL, errno.ERANGE):
            raise InvalidResource(what + " (the kernel rejected the value)") from None
        raise CgroupError(what) from None
    finally:
        os.close(fd)


def _prefix(resource: str) -> str:
    return f"{resource}: " if resource else ""


def read(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    try:
        with open(path) as f:
            return f.read()
    except OSError as error:
        raise CgroupError(f"reading {path}: {error.strerror}") from None


def read_optional(directory: str, name: str) -> str | None:
    """The file's text, or None when the file does not exist (optional accounting)."""
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CgroupError(f"reading {os.path.join(directory, name)}: {error.strerror}") from None


def parse_value(text: str) -> int:
    """One number, or "max" (v2) which reads as UNLIMITED."""
    text = text.strip()
    if text == "max":
        return UNLIMITED
    return int(text)


def read_value(directory: str, name: str) -> int:
    return parse_value(read(directory, name))


def read_value_optional(directory: str, name: str, default: int = 0) -> int:
    text = read_optional(directory, name)
    return default if text is None or not text.strip() else parse_value(text)


def parse_flat_keyed(text: str) -> dict[str, int]:
    """"key value" lines (memory.stat, cpu.stat, memory.events) -> {key: value}."""
    result: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                result[parts[0]] = parse_value(parts[1])
            except ValueError:
                continue
    return result


def read_flat_keyed(directory: str, name: str) -> dict[str, int]:
    text = read_optional(directory, name)
    return parse_flat_keyed(text) if text is not None else {}


def parse_nested_keyed(text: str) -> dict[str, dict[str, int]]:
    """"key a=1 b=2" lines (io.stat) -> {key: {a: 1, b: 2}}."""
    result: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        entry: dict[str, int] = {}
        for item in parts[1:]:
            key, sep, value = item.partition("=")
            if sep:
                try:
                    entry[key] = parse_value(value)
                except ValueError:
                    continue
        result[parts[0]] = entry
    return result


def controllers(directory: str) -> set[str]:
    """The v2 controllers available in a cgroup (its cgroup.controllers)."""
    text = read_optional(directory, "cgroup.controllers")
    return set(text.split()) if text else set()


def deferred(function, *args):
    """`function(*args)` as a step to run later (a plan is checked whole before any
    write). functools.partial would do, but importing functools costs start-up time."""
    return lambda: function(*args)
