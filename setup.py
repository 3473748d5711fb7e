"""Build hook for the compiled cffi module.

Everything about the package lives in pyproject.toml; this file exists only for two
setup() keywords pyproject.toml cannot express: `cffi_modules` (cffi's API-mode build of
native/build_ffi.py) and `scripts`, which installs the `pyruntime` command as a plain
script (see pyruntime/cli/scripts/pyruntime for why it is not an entry point).
"""
from setuptools import setup

setup(
    cffi_modules=["native/build_ffi.py:ffibuilder"],
    scripts=["pyruntime/cli/scripts/pyruntime"],
)
