"""What the runtime process of a `run` loads when the launcher started init for it
(pyruntime.oci.early_init): not the cffi module and not the mount, bootstrap or init
code, which are init's. Each would sit on the path to the container's start (the rootfs
module and the cffi module it pulls in cost the runtime 1.2 ms between placing init and
telling it so, found with timestamps). And what init imports for hooks: on its path too."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

INIT_SIDE = ("pyruntime._native", "_cffi_backend", "pyruntime.linux.syscalls",
             "pyruntime.oci.rootfs", "pyruntime.oci.bootstrap", "pyruntime.oci.init",
             "pyruntime.oci.namespaces", "pyruntime.linux.capabilities")

# The runtime's modules on that path, and the calls with imports of their own that it
# makes there (validation, the fit of the early init, the limits' timing).
_PROGRAM = """
import sys
import pyruntime.cli.main, pyruntime.oci.runtime, pyruntime.oci.foreground
import pyruntime.cgroups.placement, pyruntime.cgroups.api
from pyruntime.oci.early_init import EarlyInit
from pyruntime.oci.launcher import InitLauncher
from pyruntime.oci.spec import validate_spec
from pyruntime.oci.spec_defaults import default_spec

spec = default_spec()
spec["process"]["terminal"] = False
config = validate_spec(spec, sys.argv[1])
assert EarlyInit(0, None, -1).fits(config, None, 0, False)
assert InitLauncher({"config": config}, None)._limits_at_placement()
print(" ".join(sorted(set(sys.argv[2:]) & set(sys.modules))))
"""


def test_the_runtime_of_an_early_init_run_loads_none_of_init_s_modules(tmp_path):
    (tmp_path / "rootfs").mkdir()
    proc = subprocess.run([sys.executable, "-c", _PROGRAM, str(tmp_path), *INIT_SIDE],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == []


_INIT_PROGRAM = """
import json, sys
from pyruntime.oci.init import import_what_init_needs
from pyruntime.oci.spec import validate_spec
from pyruntime.oci.spec_defaults import default_spec

spec = default_spec()
spec["hooks"] = json.loads(sys.argv[2])
import_what_init_needs(validate_spec(spec, sys.argv[1]))
print("pyruntime.oci.hooks" in sys.modules)
"""


@pytest.mark.parametrize("hooks, loaded", [
    ({}, False),
    ({"prestart": [{"path": "/bin/true"}], "poststop": [{"path": "/bin/true"}]}, False),
    ({"createContainer": [{"path": "/bin/true"}]}, True),
    ({"startContainer": [{"path": "/bin/true"}]}, True),
])
def test_init_imports_the_hook_code_only_for_the_hooks_it_runs(tmp_path, hooks, loaded):
    """Init runs createContainer and startContainer hooks; the others are the runtime's.
    (Validation gives every kind a list, so a test of the `hooks` object itself was
    always true.)"""
    (tmp_path / "rootfs").mkdir()
    proc = subprocess.run([sys.executable, "-c", _INIT_PROGRAM, str(tmp_path),
                           json.dumps(hooks)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(loaded)]
