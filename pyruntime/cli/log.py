"""The runtime's log: `--log FILE` (default stderr) in `--log-format text|json`.

JSON is one object per line, `{"level":"error","msg":"...","time":"..."}`, the shape
containerd and podman read back from runc's log file to build their own error messages.
"""
from __future__ import annotations

import os

from pyruntime import jsonlite
from pyruntime.oci.state import now_rfc3339

_LEVELS = ("debug", "info", "warning", "error")


class RuntimeLog:
    def __init__(self, path: str | None = None, log_format: str = "text",
                 debug: bool = False) -> None:
        self.path = path
        self.format = log_format
        self.debug_enabled = debug
        self._fd: int | None = None

    def _target(self) -> int:
        if self.path is None:
            return 2
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o644)
        return self._fd

    def write(self, level: str, message: str) -> None:
        if level == "debug" and not self.debug_enabled:
            return
        stamp = now_rfc3339()
        if self.format == "json":
            line = jsonlite.dumps({"level": level, "msg": message, "time": stamp})
        else:
            escaped = message.replace("\\", "\\\\").replace('"', '\\"')
            line = f'time="{stamp}" level={level} msg="{escaped}"'
        try:
            os.write(self._target(), (line + "\n").encode())
        except OSError:
            pass  # a log that cannot be written must not hide the real error

    def error(self, message: str) -> None:
        self.write("error", message)
        if self.path is not None:
            # runc prints fatal errors on stderr too, whatever the log target.
            os.write(2, f"pyruntime: {message}\n".encode())

    def warning(self, message: str) -> None:
        self.write("warning", message)

    def debug(self, message: str) -> None:
        self.write("debug", message)
