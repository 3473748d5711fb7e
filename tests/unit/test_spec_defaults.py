"""`pyruntime spec` writes what `runc spec` writes, except the hostname."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from pyruntime.oci.errors import OCIError
from pyruntime.oci.spec import validate_spec
from pyruntime.oci.spec_defaults import default_spec, write_default_spec

RUNC = "/usr/sbin/runc"


def runc_spec(directory, rootless: bool) -> bytes:
    if not os.access(RUNC, os.X_OK):
        pytest.skip(f"{RUNC} is not installed")
    args = [RUNC, "spec"] + (["--rootless"] if rootless else [])
    subprocess.run(args, cwd=directory, check=True, capture_output=True, timeout=30)
    return (directory / "config.json").read_bytes()


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_default_spec_is_runcs(tmp_path, rootless):
    theirs = json.loads(runc_spec(tmp_path, rootless))
    ours = default_spec(rootless)
    assert ours.pop("hostname") == "pyruntime"
    assert theirs.pop("hostname") == "runc"
    assert list(ours) == list(theirs), "same keys in the same order"
    for key in theirs:
        assert ours[key] == theirs[key], key


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_written_file_is_runcs_byte_for_byte(tmp_path, rootless):
    (tmp_path / "runc").mkdir()
    (tmp_path / "ours").mkdir()
    theirs = runc_spec(tmp_path / "runc", rootless)
    path = write_default_spec(str(tmp_path / "ours"), rootless)
    assert path == str(tmp_path / "ours" / "config.json")
    with open(path, "rb") as f:
        ours = f.read()
    assert ours == theirs.replace(b'"hostname": "runc"', b'"hostname": "pyruntime"')


def test_rootless_maps_the_caller():
    linux = default_spec(rootless=True)["linux"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert {"type": "user"} in linux["namespaces"]
    assert {"type": "network"} not in linux["namespaces"]
    assert "resources" not in linux


def test_default_specs_are_valid():
    for rootless in (False, True):
        spec = validate_spec(default_spec(rootless))
        assert spec["process"]["args"] == ["sh"]


def test_each_call_is_a_fresh_copy():
    first = default_spec()
    first["process"]["capabilities"]["bounding"].clear()
    first["mounts"].clear()
    second = default_spec()
    assert second["process"]["capabilities"]["bounding"]
    assert second["mounts"]


def test_write_refuses_an_existing_file(tmp_path):
    (tmp_path / "config.json").write_text("mine")
    with pytest.raises(OCIError) as excinfo:
        write_default_spec(str(tmp_path), rootless=False)
    assert str(excinfo.value) == "File config.json exists. Remove it first"
    assert (tmp_path / "config.json").read_text() == "mine"


def test_write_into_missing_bundle(tmp_path):
    with pytest.raises(OCIError):
        write_default_spec(str(tmp_path / "nope"), rootless=False)
