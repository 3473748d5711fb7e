"""ExitStatus: how a wait status becomes the code a shell (and runc) reports."""
from __future__ import annotations

import os

from pyruntime.oci.exit_status import ExitStatus


def test_normal_exit_keeps_its_code():
    status = ExitStatus.from_wait_status(3 << 8)
    assert (status.code, status.signal, status.oom_killed) == (3, None, False)


def test_death_by_signal_is_128_plus_the_signal():
    assert (ExitStatus.from_wait_status(9).code, ExitStatus.from_wait_status(9).signal) == (137, 9)
    assert ExitStatus.from_wait_status(15).code == 143


def test_a_real_child():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    assert ExitStatus.from_wait_status(os.waitpid(pid, 0)[1]) == ExitStatus(7)
