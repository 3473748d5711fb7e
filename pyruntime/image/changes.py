"""Dockerfile-style changes to an image config, like `docker import --change`:
`CMD`, `ENTRYPOINT` (JSON or shell form), `ENV`, `WORKDIR`, `USER`, `EXPOSE`, `LABEL`,
`VOLUME` and `STOPSIGNAL`.

The shell form of CMD/ENTRYPOINT (`CMD echo hi`) becomes `["/bin/sh", "-c", "echo hi"]`,
as in a Dockerfile; setting ENTRYPOINT without a CMD in the same changes clears an
inherited Cmd (Docker's rule, so an old Cmd is not passed to a new entrypoint).
"""
from __future__ import annotations

import copy
import json
import posixpath
import shlex
from typing import Any, Iterable

from pyruntime.image.errors import ImageError

INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "WORKDIR", "USER", "EXPOSE", "LABEL", "VOLUME",
                "STOPSIGNAL")


def apply_changes(config: dict[str, Any], changes: Iterable[str]) -> dict[str, Any]:
    """A copy of the image config `config` (the whole document, with its `config`
    section) with `changes` applied in order."""
    out = copy.deepcopy(config)
    section = out.setdefault("config", {}) or {}
    out["config"] = section
    changes = list(changes)
    keywords = [c.strip().split(None, 1)[0].upper() for c in changes if c.strip()]
    for change in changes:
        _apply_one(section, change, cmd_given="CMD" in keywords)
    return out


def _apply_one(section: dict[str, Any], change: str, cmd_given: bool) -> None:
    text = change.strip()
    if not text:
        return
    keyword, _, rest = text.partition(" ")
    keyword = keyword.upper()
    rest = rest.strip()
    if keyword not in INSTRUCTIONS:
        raise ImageError(f"change {change!r}: unknown instruction {keyword!r} (supported: "
                         f"{', '.join(INSTRUCTIONS)})")
    if keyword in ("CMD", "ENTRYPOINT"):
        value = _command(rest, change)
        section["Cmd" if keyword == "CMD" else "Entrypoint"] = value
        if keyword == "ENTRYPOINT" and not cmd_given:
            section["Cmd"] = None
    elif keyword == "ENV":
        env = list(section.get("Env") or [])
        for key, value in _pairs(rest, change, legacy=True):
            env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
        section["Env"] = env
    elif keyword == "LABEL":
        labels = dict(section.get("Labels") or {})
        for key, value in _pairs(rest, change, legacy=False):
            labels[key] = value
        section["Labels"] = labels
    elif keyword == "WORKDIR":
        if not rest:
            raise ImageError(f"change {change!r}: WORKDIR needs a path")
        base = section.get("WorkingDir") or "/"
        section["WorkingDir"] = posixpath.normpath(posixpath.join(base, rest))
    elif keyword == "USER":
        if not rest or " " in rest:
            raise ImageError(f"change {change!r}: USER needs one user[:group]")
        section["User"] = rest
    elif keyword == "EXPOSE":
        ports = dict(section.get("ExposedPorts") or {})
        for port in rest.split():
            number, _, proto = port.partition("/")
            if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("", "tcp", "udp", "sctp"):
                raise ImageError(f"change {change!r}: {port!r} is not PORT[/tcp|udp|sctp]")
            ports[f"{int(number)}/{proto or 'tcp'}"] = {}
        section["ExposedPorts"] = ports
    elif keyword == "VOLUME":
        volumes = dict(section.get("Volumes") or {})
        paths = _json_list(rest, change) if rest.startswith("[") else rest.split()
        for path in paths:
            volumes[path] = {}
        section["Volumes"] = volumes
    elif keyword == "STOPSIGNAL":
        if not rest:
            raise ImageError(f"change {change!r}: STOPSIGNAL needs a signal")
        section["StopSignal"] = rest


def _command(rest: str, change: str) -> list[str]:
    if rest.startswith("["):
        return _json_list(rest, change)
    if not rest:
        raise ImageError(f"change {change!r}: needs a command")
    return ["/bin/sh", "-c", rest]


def _json_list(rest: str, change: str) -> list[str]:
    try:
        value = json.loads(rest)
    except ValueError:
        raise ImageError(f"change {change!r}: not a JSON list of strings") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"change {change!r}: not a JSON list of strings")
    return value


def _pairs(rest: str, change: str, legacy: bool) -> list[tuple[str, str]]:
    try:
        words = shlex.split(rest)
    except ValueError as e:
        raise ImageError(f"change {change!r}: {e}") from None
    if not words:
        raise ImageError(f"change {change!r}: needs KEY=VALUE")
    if legacy and "=" not in words[0]:
        # `ENV KEY value with spaces`: the old one-variable form.
        key, _, value = rest.partition(" ")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ImageError(f"change {change!r}: {word!r} is not KEY=VALUE")
        pairs.append((key, value))
    return pairs
