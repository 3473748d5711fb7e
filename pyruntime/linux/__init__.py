"""Thin, typed wrappers over Linux interfaces: syscalls from the compiled cffi module
(`pyruntime._native`) and python-prctl. No policy lives here and nothing of ours is
imported, so every other layer can build on it."""
