"""Entry point of a stage-1 process started as a fresh interpreter, used when the
runtime's own process has threads and so must not fork Python (see launcher.start_child).

    python -m pyruntime.oci.spawned ENTRY READ_FD WRITE_FD

The plan arrives as the first message on the channel; the rest is what a forked child
would have done.
"""
from __future__ import annotations

import sys

from pyruntime.oci.channel import Channel
from pyruntime.oci.channel import run_child_body
from pyruntime.oci.launcher import CHILD_ENTRIES


def main(argv: list[str]) -> None:
    entry, read_fd, write_fd = argv[1], int(argv[2]), int(argv[3])
    channel = Channel(read_fd, write_fd)
    plan = channel.expect("plan")["plan"]
    module_name, function_name = CHILD_ENTRIES[entry]
    body = getattr(__import__(module_name, fromlist=[function_name]), function_name)
    run_child_body(None, channel, body, plan)


if __name__ == "__main__":
    main(sys.argv)
