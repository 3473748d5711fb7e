"""Resource limits through the runtime on cgroup v2, inside the test VM (the same cases
as on the host's v1: see tests/runtime_cgroup_cases.py)."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from runtime_cgroup_cases import RuntimeCgroupCases  # noqa: E402

pytestmark = pytest.mark.vm


class TestRuntimeCgroupsV2(RuntimeCgroupCases):
    @pytest.fixture
    def rootfs(self):
        bundle = os.environ.get("PYRUNTIME_VM_BUNDLE")
        if not bundle:
            pytest.fail("$PYRUNTIME_VM_BUNDLE is unset (tests/vm/runner.py sets it)")
        return os.path.join(bundle, "rootfs")
