"""Resource limits through the runtime on this host's cgroup v1 hierarchies (the cases
are shared with the cgroup-v2 VM: see tests/runtime_cgroup_cases.py)."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from runtime_cgroup_cases import RuntimeCgroupCases  # noqa: E402

from . import IS_RUNC, ROOT_ONLY  # noqa: E402

pytestmark = [*ROOT_ONLY, pytest.mark.skipif(IS_RUNC, reason="drives pyruntime itself")]


class TestRuntimeCgroupsV1(RuntimeCgroupCases):
    @pytest.fixture
    def rootfs(self, busybox_rootfs, leak_check):
        return busybox_rootfs
