"""The package's compiled modules packed into one file, which a `sys.meta_path` finder
serves to the import system: how the `pyruntime` command loads its own code.

Why: a `run` imports some forty of the package's modules in the runtime and as many
again in the container's init, each a few kilobytes of bytecode. Through the standard
path finder every one costs a directory stat, a stat of the source, an open, fstat,
read and close of its .pyc and the importlib code around them: 80-140 us a module on
the machine the benchmark ran on, on each of the two paths that meet when init is
placed (timestamps from both processes). From a pack a module costs a dictionary
look-up, one stat (the same freshness check a .pyc gets: the source's mtime and size)
and one pread of its code object. Same-run A/B of `run` of /bin/true, 60 alternating
runs, twice: 0.92 of the time without it.

What it changes is only where the code objects come from. Each is compiled from the
same source with the same interpreter, and carries the source's path, so tracebacks,
`__file__` and a package's `__path__` are what a normal import gives. A module whose
source changed (or vanished) since the pack was built, a module not in it, a pack
built by another Python (the bytecode magic number) or a missing or damaged pack: the
finder steps aside and the standard import happens, as with a stale .pyc.

The pack holds every module of this package, the pure-Python modules from outside it
that the start paths import and the interpreter has not frozen (`__future__`), and where
the extension modules on those paths are (found once, at build time, instead of by a
search of sys.path in every process). It lives in the package's `__pycache__`, written
by `python -m pyruntime.module_pack` (the setup script runs it after byte-compiling; it
writes nothing when the pack is up to date); `install` is called by the `pyruntime`
script before it imports anything else of the package. Modules stay lazy: each is read
when first imported, never before.

File layout: MAGIC (8 bytes) + the interpreter's bytecode magic number (4) + index
length (4, little-endian) + marshalled index {name: (offset, length, source path,
source mtime_ns, source size, is_package)} + the marshalled code objects.
"""
import marshal
import os
import sys

MAGIC = b"PYRTPACK"
# Modules outside the package that it imports and the interpreter has neither built in
# nor frozen: pure-Python ones are packed; for extension modules (as for the package's
# own) the pack records where they are, which spares the search of every sys.path
# entry (a directory listing each, the first time). Checked by the pack's tests.
OUTSIDE_MODULES = ("__future__", "_json", "_prctl", "_cffi_backend")
_EXTENSION = -1  # an index entry's offset for an extension module: no code in the pack
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


class ModulePackError(Exception):
    """A pack that cannot be built (a module that does not compile, a write failing)."""


def pack_path(package_dir: str = _PACKAGE) -> str:
    """Where the pack of the package at `package_dir` lives, for this interpreter."""
    return os.path.join(package_dir, "__pycache__",
                        f"module-pack.{sys.implementation.cache_tag}.bin")


def _bytecode_magic() -> bytes:
    # The frozen bootstrap module is always loaded: no import of importlib.util here.
    return sys.modules["_frozen_importlib_external"].MAGIC_NUMBER


class PackFinder:
    """The meta path finder (and loader) of one pack file."""

    def __init__(self, fd: int, index: dict, base: int) -> None:
        self.fd = fd
        self.index = index
        self.base = base

    def find_spec(self, name: str, path=None, target=None):
        entry = self.index.get(name)
        if entry is None:
            return None
        offset, _, source, mtime_ns, size, is_package = entry
        try:
            info = os.stat(source)
        except OSError:
            return None
        if info.st_mtime_ns != mtime_ns or info.st_size != size:
            return None  # edited since the pack was built: the standard import
        module_spec = sys.modules["_frozen_importlib"].ModuleSpec
        loader = self
        if offset == _EXTENSION:
            loader = sys.modules["_frozen_importlib_external"].ExtensionFileLoader(name,
                                                                                  source)
        spec = module_spec(name, loader, origin=source, is_package=is_package)
        spec.has_location = True  # so that the module gets __file__
        if is_package:
            spec.submodule_search_locations = [os.path.dirname(source)]
        return spec

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module) -> None:
        offset, length = self.index[module.__spec__.name][:2]
        data = os.pread(self.fd, length, self.base + offset)
        if len(data) != length:
            raise ImportError(f"module pack truncated at {module.__spec__.name}",
                              name=module.__spec__.name)
        exec(marshal.loads(data), module.__dict__)


def install(path: str | None = None) -> PackFinder | None:
    """Put the pack's finder first on sys.meta_path; None (and nothing changed) when
    there is no usable pack. The pack stays open, close-on-exec, for the process's
    life: modules are read from it as they are first imported."""
    try:
        fd = os.open(path or pack_path(), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    found = _read_index(fd)
    if found is None:
        os.close(fd)
        return None
    index, base = found
    finder = PackFinder(fd, index, base)
    sys.meta_path.insert(0, finder)
    return finder


def _read_index(fd: int) -> tuple[dict, int] | None:
    """The index of the pack open at `fd` and where its code starts, or None when it is
    not a whole pack made by this interpreter."""
    try:
        header = os.pread(fd, 16, 0)
        if (len(header) != 16 or header[:8] != MAGIC
                or header[8:12] != _bytecode_magic()):
            return None  # not a pack, or one for another interpreter's bytecode
        length = int.from_bytes(header[12:16], "little")
        index = marshal.loads(os.pread(fd, length, 16))
        if not isinstance(index, dict):
            return None
        # A pack cut short (a full disk, a copy interrupted) is refused whole here,
        # rather than failing an import later.
        if os.fstat(fd).st_size != 16 + length + sum(entry[1] for entry in index.values()):
            return None
    except (OSError, ValueError, EOFError, TypeError, IndexError):
        return None
    return index, 16 + length


def _package_modules(package_dir: str) -> dict[str, str]:
    """{module name: path} for every .py file and extension module of the package."""
    suffixes = sys.modules["_frozen_importlib_external"].EXTENSION_SUFFIXES
    parent = os.path.dirname(package_dir)
    modules = {}
    for directory, subdirectories, files in os.walk(package_dir):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for name in sorted(files):
            stem = name[:-3] if name.endswith(".py") else next(
                (name[:-len(suffix)] for suffix in suffixes if name.endswith(suffix)), None)
            if stem is None:
                continue
            source = os.path.join(directory, name)
            parts = [*os.path.relpath(directory, parent).split(os.sep), stem]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = source
    return modules


def _outside_modules(names) -> dict[str, str]:
    """{module name: path} of those of `names` that are files (not built in or frozen)
    where this interpreter would import them from."""
    import importlib.util

    modules = {}
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.has_location and spec.origin:
            modules[name] = spec.origin
    return modules


def build(package_dir: str = _PACKAGE, destination: str | None = None,
          outside_modules=OUTSIDE_MODULES) -> str:
    """Compile the package at `package_dir` (and `outside_modules`) into a pack at
    `destination` (default: pack_path(package_dir)), written atomically unless the pack
    there is up to date; returns its path."""
    destination = destination or pack_path(package_dir)
    sources = {**_outside_modules(outside_modules), **_package_modules(package_dir)}
    if _up_to_date(destination, sources):
        return destination
    index, blobs, offset = {}, [], 0
    for name, source in sources.items():
        if not source.endswith(".py"):
            info = os.stat(source)
            index[name] = (_EXTENSION, 0, source, info.st_mtime_ns, info.st_size, False)
            continue
        with open(source, "rb") as f:
            text = f.read()
            info = os.fstat(f.fileno())
        try:
            code = compile(text, source, "exec", dont_inherit=True)
        except SyntaxError as error:
            raise ModulePackError(f"{source}: {error}") from error
        blob = marshal.dumps(code)
        is_package = os.path.basename(source) == "__init__.py"
        index[name] = (offset, len(blob), source, info.st_mtime_ns, info.st_size,
                       is_package)
        blobs.append(blob)
        offset += len(blob)
    encoded_index = marshal.dumps(index)
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    temporary = f"{destination}.{os.getpid()}.tmp"
    try:
        with open(temporary, "wb") as f:
            f.write(MAGIC + _bytecode_magic() + len(encoded_index).to_bytes(4, "little"))
            f.write(encoded_index)
            for blob in blobs:
                f.write(blob)
        os.rename(temporary, destination)
    except OSError as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise ModulePackError(f"writing {destination}: {error}") from error
    return destination


def _up_to_date(destination: str, sources: dict[str, str]) -> bool:
    """Whether the pack at `destination` holds exactly `sources`, as they are now (the
    setup script rebuilds only then, like the byte-compiling before it)."""
    try:
        fd = os.open(destination, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        found = _read_index(fd)
    finally:
        os.close(fd)
    if found is None or set(found[0]) != set(sources):
        return False
    for name, source in sources.items():
        _, _, packed_source, mtime_ns, size, _ = found[0][name]
        try:
            info = os.stat(source)
        except OSError:
            return False
        if (packed_source, mtime_ns, size) != (source, info.st_mtime_ns, info.st_size):
            return False
    return True


if __name__ == "__main__":
    print(build())
