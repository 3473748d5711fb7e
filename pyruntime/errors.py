"""The root of pyruntime's exception tree.

Every package raises its own subclasses; the CLI catches `PyruntimeError` and turns it
into a message and an exit code (`exit_code`, 255 unless a subclass says otherwise).
"""
from __future__ import annotations


class PyruntimeError(Exception):
    """A failure the user can act on; the message says what, where and what to do."""

    exit_code = 255
