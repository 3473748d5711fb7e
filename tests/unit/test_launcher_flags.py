"""native/launcher/main.c finds the command name by skipping runc's global flags, and must
know which of them take a value: its list is kept equal to the CLI's own."""
from __future__ import annotations

import re
from pathlib import Path

from pyruntime.cli.main import GLOBAL_FLAGS

LAUNCHER = Path(__file__).resolve().parents[2] / "native" / "launcher" / "main.c"


def test_the_launchers_value_flags_are_the_clis():
    text = LAUNCHER.read_text()
    block = re.search(r"VALUE_FLAGS\[\] = \{(.*?)\};", text, re.S).group(1)
    in_launcher = set(re.findall(r'"--([a-z-]+)"', block))
    in_cli = {flag.name for flag in GLOBAL_FLAGS if flag.kind is not bool}
    assert in_launcher == in_cli
