"""config.json from an image config: args, env, cwd, user lookups in the image's own
/etc/passwd and /etc/group (never the host's), and runc spec's defaults."""
from __future__ import annotations

import os

import pytest

from pyruntime.image.bundle import bundle_spec, resolve_user
from pyruntime.image.errors import ImageError


@pytest.fixture
def rootfs(tmp_path) -> str:
    root = tmp_path / "rootfs"
    os.makedirs(root / "etc")
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33::/var/www:/bin/false\n"
        "app:x:1000:1000::/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nweb:x:33:\napp:x:1000:\nstaff:x:50:app,web\n"
                                        "video:x:44:app\n")
    return str(root)


@pytest.mark.parametrize("user,expected", [
    ("", {"uid": 0, "gid": 0}),
    ("0", {"uid": 0, "gid": 0}),
    ("1000", {"uid": 1000, "gid": 1000, "additionalGids": [50, 44]}),
    ("4242", {"uid": 4242, "gid": 0}),
    ("4242:4343", {"uid": 4242, "gid": 4343}),
    ("app", {"uid": 1000, "gid": 1000, "additionalGids": [50, 44]}),
    ("web:staff", {"uid": 33, "gid": 50}),
    ("app:33", {"uid": 1000, "gid": 33}),
])
def test_resolve_user(rootfs, user, expected):
    assert resolve_user(user, rootfs) == expected


def test_unknown_names(rootfs):
    with pytest.raises(ImageError, match="no user 'nobody'"):
        resolve_user("nobody", rootfs)
    with pytest.raises(ImageError, match="no group 'wheel'"):
        resolve_user("app:wheel", rootfs)


def test_passwd_symlink_cannot_reach_the_host(tmp_path):
    root = tmp_path / "rootfs"
    os.makedirs(root / "etc")
    os.symlink("/etc/passwd", root / "etc" / "passwd")  # the host's, if followed
    with pytest.raises(ImageError, match="no user 'root'"):
        resolve_user("root", str(root))


def test_bundle_spec(rootfs):
    doc = {"os": "linux", "architecture": "amd64", "created": "1970-01-01T00:00:00Z",
           "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["A=1"],
                      "WorkingDir": "/srv", "User": "app", "Labels": {"team": "x"},
                      "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT"}}
    spec = bundle_spec(doc, rootfs, hostname="h1")
    p = spec["process"]
    assert p["args"] == ["/bin/app", "--serve"]
    assert p["env"][0].startswith("PATH=") and p["env"][1] == "A=1"
    assert p["cwd"] == "/srv" and p["user"]["uid"] == 1000 and p["terminal"] is False
    assert spec["hostname"] == "h1" and spec["root"] == {"path": "rootfs", "readonly": False}
    assert {m["destination"] for m in spec["mounts"]} >= {"/proc", "/dev", "/sys", "/dev/pts"}
    assert [n["type"] for n in spec["linux"]["namespaces"]] == ["pid", "network", "ipc", "uts", "mount"]
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert spec["annotations"]["team"] == "x"
    assert spec["annotations"]["org.opencontainers.image.stopSignal"] == "SIGQUIT"
    with pytest.raises(ImageError, match="neither Entrypoint nor Cmd"):
        bundle_spec({"config": {}}, rootfs)


def test_the_image_bundles_base_is_what_pyruntime_spec_writes():
    """pyruntime.image may import nothing of ours (architecture.md), so it keeps its own
    copy of runc's default spec: it must not drift from pyruntime.oci's, which is checked
    against `runc spec` itself. The only differences are the two bundle_spec sets on
    purpose: no terminal, a writable root."""
    from pyruntime.image.bundle import RUNC_SPEC
    from pyruntime.oci.spec_defaults import default_spec

    expected = default_spec()
    expected["process"]["terminal"] = False
    expected["root"]["readonly"] = False
    assert RUNC_SPEC == expected
