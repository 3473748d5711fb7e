"""Where the `pyruntime` command's processes get the package's modules from: the module
pack .ci/setup builds (pyruntime.module_pack), in the runtime and in the container's
init alike; the standard import only for the two modules that install it."""
from __future__ import annotations

import os
import re

from . import ROOT_ONLY, pyruntime_only

pytestmark = [*ROOT_ONLY, pyruntime_only]

# `python -v` names the loader of every module it imports.
_IMPORTED = re.compile(r"import '(pyruntime[\w.]*)' # <([\w.]+)")
_INSTALLERS = {"pyruntime", "pyruntime.module_pack"}


def test_the_runtime_and_init_of_a_run_import_from_the_pack(runtime, bundle):
    env = dict(os.environ, PYTHONVERBOSE="1")
    proc = runtime.run("run", "--bundle", bundle(["true"]), runtime.new_id(), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaders: dict[str, set[str]] = {}
    for name, loader in _IMPORTED.findall(proc.stderr):
        loaders.setdefault(name, set()).add(loader)
    # The runtime's, init's (the launcher's early init), and one of each imported twice.
    assert {"pyruntime.oci.runtime", "pyruntime.oci.init", "pyruntime.oci.spec"} <= set(loaders)
    standard = {name for name, kinds in loaders.items()
                if kinds != {"pyruntime.module_pack.PackFinder"}}
    # The extension module (cffi's) is loaded by its own loader, from where the pack says.
    assert standard - {"pyruntime._native"} == _INSTALLERS
