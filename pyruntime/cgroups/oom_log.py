"""OOM kills as the kernel's log (/dev/kmsg) reports them: the evidence of an OOM kill
that outlives the cgroup, read the way kubelet's cadvisor (oomparser) reads it.

Needed for a cgroup that systemd owns: systemd removes a scope's cgroup, and its
memory.events with it, as soon as the last process has exited, and its own OOM watch
(memory.events, whose change notifications the kernel delays by up to 10 ms) loses the
race with that removal, so the unit often ends with result "success" after an OOM kill.
Every OOM kill logs one summary line (Linux 4.19+):

    oom-kill:constraint=CONSTRAINT_MEMCG,...,oom_memcg=/a.slice/b.scope,task_memcg=/a.slice/b.scope,task=sh,pid=161,uid=0

where `task_memcg` is the cgroup of the process that was killed.
"""
from __future__ import annotations

import os

KMSG = "/dev/kmsg"
#: printk's clock and CLOCK_MONOTONIC drift apart by NTP's slewing: a margin.
CLOCK_SLACK = 1.0


def oom_killed_in(cgroup: str, since: float) -> bool:
    """Whether the kernel's log has an OOM kill of a process in `cgroup` (its path in
    the cgroup2 hierarchy, e.g. /system.slice/x.scope) or below it, logged at or after
    `since` (CLOCK_MONOTONIC seconds, time.monotonic()). False when the log cannot be
    read (not root, or kernel.dmesg_restrict for an unprivileged caller)."""
    try:
        fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    cgroup = cgroup.rstrip("/")
    exact, below = f",task_memcg={cgroup},".encode(), f",task_memcg={cgroup}/".encode()
    earliest = int((since - CLOCK_SLACK) * 1_000_000)
    try:
        while True:
            try:
                record = os.read(fd, 8192)  # one record per read
            except BlockingIOError:
                return False  # the end of the log
            except BrokenPipeError:
                continue  # the record was overwritten while we read: go on with the next
            except OSError:
                return False
            # "priority,sequence,microseconds,flags;message\n"
            header, _, message = record.partition(b";")
            if not message.startswith(b"oom-kill:"):
                continue
            fields = header.split(b",")
            if len(fields) < 3 or not fields[2].isdigit() or int(fields[2]) < earliest:
                continue
            line = message.split(b"\n", 1)[0]
            if exact in line or below in line:
                return True
    finally:
        os.close(fd)
