"""The pull progress line: layers done and bytes downloaded, redrawn in place on a
terminal (at most ten times a second), silent otherwise. Thread-safe: parallel layer
downloads report into one display."""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class PullProgress:
    def __init__(self, title: str, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.title = title
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}
        self._got: dict[str, int] = {}
        self._done: set[str] = set()
        self._last = 0.0

    def layers(self, sizes: dict[str, int], present: set[str]) -> None:
        """The layers to show: digest -> size; those in `present` are already stored."""
        with self._lock:
            self._sizes = dict(sizes)
            self._got = {d: (sizes[d] if d in present else 0) for d in sizes}
            self._done = set(present)
        self._draw(force=True)

    def advance(self, digest: str, n: int) -> None:
        with self._lock:
            self._got[digest] = self._got.get(digest, 0) + n
        self._draw()

    def reset(self, digest: str, offset: int) -> None:
        """A download (re)starts at `offset` (resumed, or restarted from 0)."""
        with self._lock:
            self._got[digest] = offset
        self._draw()

    def done(self, digest: str) -> None:
        with self._lock:
            self._done.add(digest)
            self._got[digest] = self._sizes.get(digest, self._got.get(digest, 0))
        self._draw(force=True)

    def finish(self, message: str = "") -> None:
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n" if not message else f"\r\033[K{message}\n")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < 0.1:
                return
            self._last = now
            got = sum(self._got.values())
            total = sum(self._sizes.values())
            line = (f"{self.title}: layers {len(self._done)}/{len(self._sizes)}, "
                    f"{human(got)} / {human(total)}")
            self.stream.write(f"\r\033[K{line}")
            self.stream.flush()
