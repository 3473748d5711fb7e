"""JSON load and dump on CPython's C accelerator (`_json`) alone.

The standard `json` package imports `re` (and through it `enum`), which costs several
milliseconds of a start-up budget measured in tens. The C scanner and encoder do not need
them, so the `run` path parses config.json and writes state.json through this module.
The results are the same as `json.loads`/`json.dumps`; errors are `json.JSONDecodeError`
(imported only when an error happens).
"""
from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"


class _ScannerContext:
    """The attributes `_json.make_scanner` reads from a `json.JSONDecoder`."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scan_once = _json.make_scanner(_ScannerContext())


def _decode_error(msg: str, text: str, pos: int) -> Exception:
    from json import JSONDecodeError

    return JSONDecodeError(msg, text, pos)


def loads(text: str | bytes) -> Any:
    """Parse one JSON document, as `json.loads` does."""
    if isinstance(text, (bytes, bytearray)):
        # As "utf-8-sig" would, without importing that codec's module (0.3 ms).
        text = text[3:].decode() if text[:3] == b"\xef\xbb\xbf" else text.decode()
    elif text.startswith("\ufeff"):
        raise _decode_error("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    pos = 0
    end = len(text)
    while pos < end and text[pos] in _WHITESPACE:
        pos += 1
    try:
        value, pos = _scan_once(text, pos)
    except StopIteration as stop:
        raise _decode_error("Expecting value", text, stop.value) from None
    finally:
        _ScannerContext.memo.clear()
    while pos < end and text[pos] in _WHITESPACE:
        pos += 1
    if pos != end:
        raise _decode_error("Extra data", text, pos)
    return value


def _refuse(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# Arguments as json.JSONEncoder passes them: markers (no cycle check), default, string
# encoder, indent, key and item separators, sort_keys, skipkeys, allow_nan.
_compact_encoder = _json.make_encoder(
    None, _refuse, _json.encode_basestring_ascii, None, ":", ",", False, False, False
)


def dumps(value: Any) -> str:
    """Compact JSON (no spaces), as `json.dumps(value, separators=(",", ":"))`."""
    return "".join(_compact_encoder(value, 0))


def dumps_pretty(value: Any) -> str:
    """Indented JSON, as `json.dumps(value, indent=2)`: what `state`, `list`, `spec` and
    `features` print. Engines run `state` often, so dicts and lists with string keys are
    laid out here over the C encoder; anything else goes to `json`."""
    pieces: list[str] = []
    try:
        _pretty(value, "\n", pieces.append)
    except _NotPlain:
        import json

        return json.dumps(value, indent=2)
    return "".join(pieces)


def _pretty_items(items: list, brackets: str, newline: str, out) -> None:
    """An object's members ("key": prefixes) or an array's items, one per line."""
    if not items:
        out(brackets)
        return
    inner = newline + "  "
    separator = brackets[0] + inner
    for prefix, item in items:
        out(separator)
        out(prefix)
        _pretty(item, inner, out)
        separator = "," + inner
    out(newline + brackets[1])


class _NotPlain(Exception):
    """A value `_pretty` leaves to `json` (a non-string key, a tuple)."""


def _pretty(value: Any, newline: str, out) -> None:
    if type(value) is dict:
        for key in value:
            if type(key) is not str:
                raise _NotPlain
        _pretty_items([("".join(_compact_encoder(key, 0)) + ": ", item)
                       for key, item in value.items()], "{}", newline, out)
    elif type(value) is list:
        _pretty_items([("", item) for item in value], "[]", newline, out)
    elif isinstance(value, (dict, list, tuple)):
        raise _NotPlain  # subclasses and tuples: json's rules, not ours
    else:
        try:
            out("".join(_compact_encoder(value, 0)))
        except (TypeError, ValueError):
            raise _NotPlain from None  # e.g. NaN, which json writes and dumps refuses
