"""The `pyruntime` command: runc-compatible argument parsing and output formatting only;
all work is done through the Python API of the layers below."""
