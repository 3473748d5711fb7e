"""Build hook for the compiled cffi module.

Everything about the package lives in pyproject.toml; this file exists only because
`cffi_modules` (cffi's API-mode build of native/build_ffi.py) is a setup() keyword that
pyproject.toml cannot express.
"""
from setuptools import setup

setup(cffi_modules=["native/build_ffi.py:ffibuilder"])
