"""End-to-end tests: Debian's podman and containerd drive the runtime under test in place
of runc (see README.md in this directory).

This module holds what the test modules import: which runtime is under test, the marks
every test carries, and the expected-failure mark of features that need cgroup resource
support in pyruntime.
"""
from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The runc-compatible runtime the engines are made to use.
RUNTIME_BINARY = os.environ.get("PYRUNTIME_E2E_RUNTIME") or str(REPO_ROOT / ".venv/bin/pyruntime")
RUNTIME_NAME = os.path.basename(RUNTIME_BINARY)
IS_RUNC = RUNTIME_NAME == "runc"
IS_ROOT = os.geteuid() == 0

#: `pytestmark = ENGINE_TEST` in every test module of this package.
ENGINE_TEST = [
    pytest.mark.engines,
    pytest.mark.root,
    pytest.mark.skipif(not IS_ROOT, reason="needs root: the engines run containers as root"),
]

#: What pyruntime says while it lacks cgroup resource support (pause, resume, update,
#: events): the only failure the `needs_cgroup_resources` mark excuses.
NOT_YET_MESSAGE = "needs cgroup resource support"


class NeedsCgroupResources(AssertionError):
    """A check failed for the one reason `needs_cgroup_resources` excuses: a resource
    limit that was not applied, or an engine error quoting NOT_YET_MESSAGE."""


@functools.lru_cache(maxsize=None)
def runtime_has_cgroup_resources() -> bool:
    """False while the runtime under test refuses `pause` with NOT_YET_MESSAGE (pause,
    resume, update and linux.resources come together)."""
    if IS_RUNC or not os.access(RUNTIME_BINARY, os.X_OK):
        return True
    with tempfile.TemporaryDirectory(prefix="pyrt-e2e-probe-") as root:
        try:
            proc = subprocess.run([RUNTIME_BINARY, "--root", root, "pause", "e2e-probe"],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=60)
        except (OSError, subprocess.SubprocessError):
            return True
    return NOT_YET_MESSAGE not in proc.stdout + proc.stderr


#: Tests of pause/resume, update, metrics and limits: an expected failure while the runtime
#: lacks cgroup resource support, and then only when the failure is NeedsCgroupResources
#: (any other failure is reported as a failure).
needs_cgroup_resources = pytest.mark.xfail(
    not runtime_has_cgroup_resources(), reason="needs cgroup resource support",
    raises=NeedsCgroupResources, strict=False)


def unsupported_if_quoted(result) -> None:
    """Raise NeedsCgroupResources when a failed engine command quotes the runtime's
    not-yet message."""
    if result.returncode != 0 and NOT_YET_MESSAGE in result.stdout + result.stderr:
        raise NeedsCgroupResources(f"the runtime lacks cgroup resource support:\n"
                                   f"{result.describe()}")
