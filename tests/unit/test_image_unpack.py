"""Layer unpacking against hostile tarballs: every escape trick is refused or
neutralised and nothing is ever written outside the root (a sentinel directory beside
it stays untouched); whiteouts, opaque directories, metadata and compressions."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile

import pytest

from pyruntime.image.errors import DigestMismatch, ImageError, UnsafeLayer
from pyruntime.image.unpack import read_file_in_root, unpack_layer

IS_ROOT = os.geteuid() == 0


def make_tar(entries: list[tuple], compression: str | None = None) -> bytes:
    """entries: ("file", name, data[, mode]), ("dir", name[, mode]), ("symlink", name,
    target), ("hardlink", name, target), ("chr", name, major, minor), ("fifo", name)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, *rest in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_000_000
            data = None
            if kind == "file":
                data = rest[0]
                info.size = len(data)
                info.mode = rest[1] if len(rest) > 1 else 0o644
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = rest[0] if rest else 0o755
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = rest[0]
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = rest[0]
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = rest
                info.mode = 0o666
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                info.mode = 0o644
            else:
                raise ValueError(kind)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    if compression == "gzip":
        return gzip.compress(raw, mtime=0)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(raw)
    return raw


@pytest.fixture
def area(tmp_path):
    """(root, sentinel): an empty root to unpack into and, beside it, a sentinel
    directory holding one file; escapes would show up there."""
    root = tmp_path / "root"
    root.mkdir()
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "secret").write_text("original")
    return root, sentinel


def unpack(data: bytes, root, **kwargs):
    return unpack_layer(io.BytesIO(data), str(root), overlay=kwargs.pop("overlay", False),
                        **kwargs)


def assert_sentinel_untouched(sentinel) -> None:
    assert sorted(os.listdir(sentinel)) == ["secret"]
    assert (sentinel / "secret").read_text() == "original"
    assert os.stat(sentinel / "secret").st_nlink == 1


def tree(root) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


# --------------------------------------------------------------------------- escapes
def test_dotdot_escape_is_refused(area):
    root, sentinel = area
    with pytest.raises(UnsafeLayer, match=r"\.\./sentinel/pwned"):
        unpack(make_tar([("file", "../sentinel/pwned", b"x")]), root)
    assert_sentinel_untouched(sentinel)


def test_dotdot_inside_a_path_that_climbs_out_is_refused(area):
    root, sentinel = area
    with pytest.raises(UnsafeLayer, match="outside the layer's root"):
        unpack(make_tar([("dir", "a"), ("file", "a/../../sentinel/pwned", b"x")]), root)
    assert_sentinel_untouched(sentinel)


def test_dotdot_that_stays_inside_is_fine(area):
    root, sentinel = area
    unpack(make_tar([("dir", "a"), ("file", "a/../b", b"x")]), root)
    assert (root / "b").read_bytes() == b"x"
    assert_sentinel_untouched(sentinel)


def test_absolute_path_lands_inside_the_root(area):
    root, sentinel = area
    unpack(make_tar([("file", f"{sentinel}/pwned", b"x"), ("file", "/etc/evil", b"y")]), root)
    assert_sentinel_untouched(sentinel)
    assert (root / str(sentinel).lstrip("/") / "pwned").read_bytes() == b"x"
    assert (root / "etc" / "evil").read_bytes() == b"y"


def test_symlink_to_outside_then_write_through_it(area):
    root, sentinel = area
    unpack(make_tar([("symlink", "evil", str(sentinel)), ("file", "evil/pwned", b"x"),
                     ("file", "evil/secret", b"overwritten")]), root)
    assert_sentinel_untouched(sentinel)
    assert os.readlink(root / "evil") == str(sentinel)  # the link itself is kept
    inside = root / str(sentinel).lstrip("/")
    assert (inside / "pwned").read_bytes() == b"x"
    assert (inside / "secret").read_bytes() == b"overwritten"


def test_etc_symlink_then_passwd(area):
    """The classic: `evil -> /etc` then `evil/passwd`."""
    root, sentinel = area
    unpack(make_tar([("symlink", "evil", "/etc"), ("file", "evil/passwd", b"root::0:0::/:/bin/sh\n")]),
           root)
    assert (root / "etc" / "passwd").read_bytes().startswith(b"root::0:0")
    assert_sentinel_untouched(sentinel)


def test_relative_symlink_climbing_out_is_clamped_at_the_root(area):
    root, sentinel = area
    up = "../" * 20
    unpack(make_tar([("symlink", "up", up.rstrip("/")),
                     ("file", f"up/{str(sentinel).lstrip('/')}/pwned", b"x")]), root)
    assert_sentinel_untouched(sentinel)
    assert (root / str(sentinel).lstrip("/") / "pwned").read_bytes() == b"x"


def test_symlink_chain_and_loops(area):
    root, sentinel = area
    unpack(make_tar([("dir", "d"), ("symlink", "d/a", "../b"), ("symlink", "b", str(sentinel)),
                     ("file", "d/a/pwned", b"x")]), root)
    assert_sentinel_untouched(sentinel)
    with pytest.raises(UnsafeLayer, match="too many levels"):
        unpack(make_tar([("symlink", "l1", "l2"), ("symlink", "l2", "l1"),
                         ("file", "l1/x", b"x")]), root)


def test_existing_symlink_is_replaced_not_written_through(area):
    root, sentinel = area
    unpack(make_tar([("symlink", "link", str(sentinel / "secret")),
                     ("file", "link", b"replaced")]), root)
    assert_sentinel_untouched(sentinel)
    assert not os.path.islink(root / "link")
    assert (root / "link").read_bytes() == b"replaced"


def test_symlink_in_place_of_a_directory_then_entries_below(area):
    """A later dir entry replaces a symlink (never follows it)."""
    root, sentinel = area
    unpack(make_tar([("symlink", "d", str(sentinel)), ("dir", "d"), ("file", "d/pwned", b"x")]),
           root)
    assert_sentinel_untouched(sentinel)
    assert (root / "d").is_dir() and not (root / "d").is_symlink()
    assert (root / "d" / "pwned").read_bytes() == b"x"


def test_hardlink_to_outside_path_is_refused(area):
    root, sentinel = area
    with pytest.raises(UnsafeLayer):
        unpack(make_tar([("hardlink", "stolen", "../sentinel/secret")]), root)
    with pytest.raises(ImageError, match="not in the layer"):
        unpack(make_tar([("hardlink", "stolen", str(sentinel / "secret"))]), root)
    assert_sentinel_untouched(sentinel)
    assert not os.path.lexists(root / "stolen")


def test_hardlink_through_a_symlink_to_outside_is_refused(area):
    root, sentinel = area
    with pytest.raises(ImageError):
        unpack(make_tar([("symlink", "evil", str(sentinel)),
                         ("hardlink", "stolen", "evil/secret")]), root)
    assert_sentinel_untouched(sentinel)


def test_hardlink_inside_then_rewrite_does_not_change_the_other_name(area):
    root, _ = area
    unpack(make_tar([("file", "f", b"one"), ("hardlink", "h", "f")]), root)
    assert os.stat(root / "f").st_ino == os.stat(root / "h").st_ino
    unpack(make_tar([("file", "h", b"two")]), root)
    assert (root / "f").read_bytes() == b"one"
    assert (root / "h").read_bytes() == b"two"


def test_device_node_is_skipped_when_not_allowed(area):
    root, sentinel = area
    result = unpack(make_tar([("dir", "dev"), ("chr", "dev/mem", 1, 1), ("fifo", "dev/fifo")]),
                    root, allow_devices=False)
    assert not os.path.lexists(root / "dev" / "mem")
    assert "dev/mem" in result.skipped
    assert stat.S_ISFIFO(os.lstat(root / "dev" / "fifo").st_mode)  # fifos are harmless
    assert_sentinel_untouched(sentinel)


@pytest.mark.skipif(not IS_ROOT, reason="making device nodes needs root")
def test_device_node_is_made_when_allowed_as_root(area):
    root, _ = area
    unpack(make_tar([("chr", "null", 1, 3)]), root, allow_devices=True)
    st = os.lstat(root / "null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


def test_bad_whiteout_names_are_refused(area):
    root, sentinel = area
    with pytest.raises(UnsafeLayer):
        unpack(make_tar([("file", "a/.wh..", b"")]), root)
    unpack(make_tar([("file", "x/.wh..wh.plnk", b"")]), root)  # AUFS metadata: ignored
    assert_sentinel_untouched(sentinel)


def test_whiteout_through_symlink_stays_inside(area):
    root, sentinel = area
    unpack(make_tar([("symlink", "evil", str(sentinel)), ("file", "evil/.wh.secret", b"")]), root)
    assert_sentinel_untouched(sentinel)


def test_not_a_tar(area):
    root, _ = area
    with pytest.raises(ImageError, match="not a valid"):
        unpack(gzip.compress(b"hello, this is not a tar" * 100), root)


# --------------------------------------------------------------------------- whiteouts
def layer1() -> bytes:
    return make_tar([("dir", "a"), ("file", "a/x", b"x"), ("file", "a/y", b"y"),
                     ("dir", "b"), ("file", "b/old", b"old"), ("dir", "b/sub"),
                     ("file", "b/sub/deep", b"deep"), ("file", "keep", b"k")])


def test_whiteouts_and_opaque_dirs_flattened(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    unpack(layer1(), root)
    unpack(make_tar([("file", "a/.wh.x", b""), ("dir", "b"), ("file", "b/.wh..wh..opq", b""),
                     ("file", "b/new", b"new"), ("file", ".wh.keep", b"")]), root)
    assert tree(root) == {"a", "a/y", "b", "b/new"}


def test_opaque_marker_after_the_layers_own_entries(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    unpack(layer1(), root)
    # The layer's own entries in b (listed before the marker) survive; a whiteout of a
    # name the layer also writes does not delete it.
    unpack(make_tar([("dir", "b"), ("dir", "b/sub"), ("file", "b/sub/mine", b"m"),
                     ("file", "b/.wh..wh..opq", b""), ("file", "a/z", b"z"),
                     ("file", "a/.wh.z", b"")]), root)
    assert tree(root) == {"a", "a/x", "a/y", "a/z", "b", "b/sub", "b/sub/mine", "keep"}


def test_whiteout_of_a_directory_removes_it_whole(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    unpack(layer1(), root)
    unpack(make_tar([("file", ".wh.b", b"")]), root)
    assert "b" not in tree(root)


@pytest.mark.skipif(not IS_ROOT, reason="overlay whiteouts need CAP_MKNOD and trusted.* xattrs")
def test_whiteouts_become_overlay_whiteouts(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    unpack(make_tar([("file", "a/.wh.x", b""), ("dir", "b"), ("file", "b/.wh..wh..opq", b""),
                     ("file", "b/new", b"n")]), root, overlay=True)
    st = os.lstat(root / "a" / "x")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(root / "b", "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(root / "b" / ".wh..wh..opq")


def test_overlay_xattrs_in_a_tarball_are_dropped(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("d")
        info.type = tarfile.DIRTYPE
        info.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y",
                            "SCHILY.xattr.trusted.overlay.redirect": "/etc"}
        tf.addfile(info)
    unpack(buf.getvalue(), root, overlay=True)
    assert not [n for n in os.listxattr(root / "d") if "overlay" in n]


# --------------------------------------------------------------------------- metadata
def test_modes_mtimes_and_xattrs_are_kept(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        d = tarfile.TarInfo("ro")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o555, 2_000_000
        tf.addfile(d)
        f = tarfile.TarInfo("ro/suid")
        f.mode, f.mtime, f.size, f.uid, f.gid = 0o4755, 3_000_000, 2, 1234, 5678
        f.pax_headers = {"SCHILY.xattr.user.note": "hello"}
        tf.addfile(f, io.BytesIO(b"#!"))
        s = tarfile.TarInfo("link")
        s.type, s.linkname, s.mtime = tarfile.SYMTYPE, "ro/suid", 4_000_000
        tf.addfile(s)
    unpack(buf.getvalue(), root)
    st = os.stat(root / "ro" / "suid")
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert st.st_mtime == 3_000_000
    assert stat.S_IMODE(os.stat(root / "ro").st_mode) == 0o555
    assert os.stat(root / "ro").st_mtime == 2_000_000  # set after its content was written
    assert os.lstat(root / "link").st_mtime == 4_000_000
    try:
        assert os.getxattr(root / "ro" / "suid", "user.note") == b"hello"
    except OSError:
        pytest.skip("this filesystem has no user xattrs")
    if IS_ROOT:
        assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.chmod(root / "ro", 0o755)  # let tmp_path be cleaned


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_compressions_and_diff_id(tmp_path, compression):
    if compression == "zstd":
        pytest.importorskip("zstandard")
    raw = make_tar([("file", "hello", b"world")])
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    root = tmp_path / "root"
    root.mkdir()
    result = unpack(make_tar([("file", "hello", b"world")], compression), root, diff_id=diff_id)
    assert (root / "hello").read_bytes() == b"world"
    assert result.diff_id == diff_id and result.size == len(raw)


def test_diff_id_mismatch(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DigestMismatch, match="diff_id"):
        unpack(make_tar([("file", "a", b"a")], "gzip"), root, diff_id="sha256:" + "0" * 64)


def test_zstd_without_the_package_says_so(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "zstandard":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    root = tmp_path / "root"
    root.mkdir()
    data = b"\x28\xb5\x2f\xfd" + b"\0" * 100
    with pytest.raises(ImageError, match="zstd layers need the zstandard package"):
        unpack(data, root)


# --------------------------------------------------------------------------- reading
def test_read_file_in_root_resolves_symlinks_inside(area):
    root, sentinel = area
    unpack(make_tar([("dir", "etc"), ("symlink", "etc/passwd", str(sentinel / "secret")),
                     ("symlink", "etc/group", "../../../sentinel/secret"),
                     ("file", "etc/hosts", b"127.0.0.1 localhost\n")]), root)
    assert read_file_in_root(str(root), "/etc/passwd") is None
    assert read_file_in_root(str(root), "/etc/group") is None
    assert read_file_in_root(str(root), "/etc/hosts") == b"127.0.0.1 localhost\n"
    assert read_file_in_root(str(root), "/etc/..") is None
    os.makedirs(root / str(sentinel).lstrip("/"))
    (root / str(sentinel).lstrip("/") / "secret").write_text("inside")
    assert read_file_in_root(str(root), "/etc/passwd") == b"inside"


def test_path_resolution_follows_changes_made_by_earlier_entries(area):
    """`a -> .` then a directory `a` replacing the link: later `a/z` goes into the
    directory, as a fresh lookup would find it."""
    root, sentinel = area
    unpack(make_tar([("symlink", "a", "."), ("file", "a/x", b"x"), ("dir", "a/a"),
                     ("dir", "a"), ("file", "a/z", b"z")]), root)
    assert (root / "x").read_bytes() == b"x"
    assert (root / "a").is_dir() and not (root / "a").is_symlink()
    assert (root / "a" / "z").read_bytes() == b"z"
    assert_sentinel_untouched(sentinel)
