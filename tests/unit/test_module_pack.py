"""pyruntime.module_pack: modules served from the pack are the modules their sources
make, and anything the pack cannot vouch for is imported the standard way."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pyruntime import module_pack

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Run in a fresh interpreter: install the pack at argv[1], import argv[2:], report where
# each came from.
_IMPORTER = """
import json, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, %r)
from pyruntime import module_pack
finder = module_pack.install(sys.argv[2])
report = {"installed": finder is not None}
for name in sys.argv[3:]:
    module = __import__(name, fromlist=["_"])
    report[name] = {"packed": isinstance(module.__spec__.loader, module_pack.PackFinder),
                    "file": module.__file__, "path": getattr(module, "__path__", None),
                    "value": getattr(module, "VALUE", None)}
print(json.dumps(report))
""" % REPO


@pytest.fixture
def demo(tmp_path):
    """A package `demo` (with a subpackage) in tmp_path/src, and where its pack goes."""
    source = tmp_path / "src"
    (source / "demo" / "sub").mkdir(parents=True)
    (source / "demo" / "__init__.py").write_text("VALUE = 'demo'\n")
    (source / "demo" / "first.py").write_text(
        "from demo.sub.second import VALUE as SECOND\nVALUE = 'first+' + SECOND\n"
        "def fail():\n    raise RuntimeError('from first')\n")
    (source / "demo" / "sub" / "__init__.py").write_text("")
    (source / "demo" / "sub" / "second.py").write_text("VALUE = 'second'\n")
    return source, str(tmp_path / "demo.pack")


def _import(source, pack: str, *names: str) -> dict:
    proc = subprocess.run([sys.executable, "-S", "-c", _IMPORTER, str(source), pack, *names],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_packed_module_is_the_module_its_source_makes(demo):
    source, pack = demo
    module_pack.build(str(source / "demo"), pack, outside_modules=())
    report = _import(source, pack, "demo.first", "demo.sub")
    assert report["installed"]
    assert report["demo.first"] == {"packed": True, "file": str(source / "demo" / "first.py"),
                                    "path": None, "value": "first+second"}
    assert report["demo.sub"]["packed"]
    assert report["demo.sub"]["path"] == [str(source / "demo" / "sub")]
    assert report["demo.sub"]["file"] == str(source / "demo" / "sub" / "__init__.py")


def test_a_traceback_names_the_source_file_and_line(demo):
    source, pack = demo
    module_pack.build(str(source / "demo"), pack, outside_modules=())
    program = (f"import sys; sys.path.insert(0, {str(source)!r}); sys.path.insert(0, {REPO!r})\n"
               f"from pyruntime import module_pack; assert module_pack.install({pack!r})\n"
               "import demo.first; demo.first.fail()\n")
    proc = subprocess.run([sys.executable, "-S", "-c", program], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert f'File "{source / "demo" / "first.py"}", line 4, in fail' in proc.stderr
    assert "raise RuntimeError('from first')" in proc.stderr


def test_an_edited_source_is_imported_from_the_file(demo):
    source, pack = demo
    module_pack.build(str(source / "demo"), pack, outside_modules=())
    (source / "demo" / "sub" / "second.py").write_text("VALUE = 'edited since'\n")
    report = _import(source, pack, "demo.first", "demo.sub.second")
    assert report["demo.sub.second"]["packed"] is False
    assert report["demo.sub.second"]["value"] == "edited since"
    assert report["demo.first"] == {**report["demo.first"], "packed": True,
                                    "value": "first+edited since"}


def test_a_removed_source_is_not_imported_from_the_pack(demo):
    source, pack = demo
    module_pack.build(str(source / "demo"), pack, outside_modules=())
    os.unlink(source / "demo" / "sub" / "second.py")
    proc = subprocess.run([sys.executable, "-S", "-c", _IMPORTER, str(source), pack,
                           "demo.sub.second"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "ModuleNotFoundError: No module named 'demo.sub.second'" in proc.stderr


@pytest.mark.parametrize("damage", ["other interpreter", "truncated", "not a pack", "empty"])
def test_a_pack_it_cannot_use_is_not_installed(demo, damage):
    source, pack = demo
    module_pack.build(str(source / "demo"), pack, outside_modules=())
    with open(pack, "rb") as f:
        data = f.read()
    data = {"other interpreter": data[:8] + b"\0\0\r\n" + data[12:],
            "truncated": data[:-10],
            "not a pack": b"#!/bin/sh\n" + data[10:],
            "empty": b""}[damage]
    with open(pack, "wb") as f:
        f.write(data)
    report = _import(source, pack, "demo.first")
    assert report["installed"] is False
    assert report["demo.first"]["packed"] is False
    assert report["demo.first"]["value"] == "first+second"


def test_a_missing_pack_is_not_installed(demo):
    source, pack = demo
    report = _import(source, pack, "demo.first")
    assert report == {**report, "installed": False}
    assert report["demo.first"]["packed"] is False


def test_a_module_that_does_not_compile_fails_the_build_and_leaves_no_pack(demo):
    source, pack = demo
    (source / "demo" / "broken.py").write_text("def (:\n")
    with pytest.raises(module_pack.ModulePackError, match="broken.py"):
        module_pack.build(str(source / "demo"), pack, outside_modules=())
    assert os.listdir(os.path.dirname(pack)) == ["src"]


_RUN_PATH = """
import sys
sys.path[:0] = sys.argv[1:]
import pyruntime.cli.main, pyruntime.oci.runtime, pyruntime.oci.launcher
import pyruntime.oci.early_init, pyruntime.oci.foreground, pyruntime.oci.hooks
import pyruntime.oci.bootstrap, pyruntime.oci.init, pyruntime.oci.rootfs
import pyruntime.oci.enter, pyruntime.oci.namespaces, pyruntime.oci.process
import pyruntime.cgroups.api, pyruntime.cgroups.resources_v1
import pyruntime.cgroups.resources_v2, pyruntime.linux.capabilities
import pyruntime.linux.process_control, pyruntime.linux.seccomp
print(" ".join(sorted(name for name, module in sys.modules.items()
                      if getattr(module, "__spec__", None) and module.__spec__.has_location
                      and not name.startswith(("pyruntime", "encodings")))))
"""


def test_the_outside_modules_are_those_the_start_paths_import():
    """Every module from a file that the runtime's and init's paths import outside the
    package is one the pack holds or locates: another would cost a search of sys.path
    on every start. (Encodings are the interpreter's, loaded before the pack.)"""
    import sysconfig

    proc = subprocess.run([sys.executable, "-S", "-c", _RUN_PATH, REPO,
                           sysconfig.get_paths()["purelib"]],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == set(module_pack.OUTSIDE_MODULES)


def test_an_up_to_date_pack_is_not_written_again(demo):
    source, pack = demo
    module_pack.build(str(source / "demo"), pack, outside_modules=())
    written = os.stat(pack)
    module_pack.build(str(source / "demo"), pack, outside_modules=())
    assert os.stat(pack).st_ino == written.st_ino  # the same file: not replaced
    (source / "demo" / "third.py").write_text("VALUE = 'third'\n")
    module_pack.build(str(source / "demo"), pack, outside_modules=())
    assert os.stat(pack).st_ino != written.st_ino
    assert _import(source, pack, "demo.third")["demo.third"]["packed"]
    rebuilt = os.stat(pack)
    (source / "demo" / "sub" / "second.py").write_text("VALUE = 'changed'\n")
    module_pack.build(str(source / "demo"), pack, outside_modules=())
    assert os.stat(pack).st_ino != rebuilt.st_ino
    assert _import(source, pack, "demo.first")["demo.first"] == {
        "packed": True, "file": str(source / "demo" / "first.py"), "path": None,
        "value": "first+changed"}
