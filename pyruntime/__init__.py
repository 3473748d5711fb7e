"""pyruntime: a readable, runc-compatible OCI container runtime in Python.

Layer 1 (`pyruntime.oci`) runs OCI bundles; the pod layer builds on its Python API.
Importing this package is cheap on purpose: the `run` path must start fast, so the
public names below are resolved lazily.
"""
__version__ = "0.1.0"
OCI_VERSION = "1.2.0"

__all__ = ["Runtime", "ExitStatus", "PyruntimeError", "__version__", "OCI_VERSION"]


def __getattr__(name: str):
    if name in ("Runtime", "ExitStatus"):
        from pyruntime.oci import runtime

        return getattr(runtime, name)
    if name == "PyruntimeError":
        from pyruntime.errors import PyruntimeError

        return PyruntimeError
    raise AttributeError(name)
