"""`pyruntime image ...` through `image_main(argv)`: output, --store/PYRUNTIME_STORE and
exit codes (0, 1 for image errors with a message on stderr, 2 for usage errors)."""
from __future__ import annotations

import json
import os

from pyruntime.cli.image_cli import image_main

from .test_image_layout import make_tree


def run(capsys, *argv) -> tuple[int, str, str]:
    code = image_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_ls_inspect_rm_prune(tmp_path, capsys):
    store = str(tmp_path / "store")
    tree = make_tree(tmp_path / "rootfs")
    code, out, err = run(capsys, "--store", store, "import", tree, "app:1",
                         "--change", 'CMD ["/bin/tool"]', "--change", "ENV A=b")
    assert code == 0, err
    digest = out.strip()
    assert digest.startswith("sha256:")
    code, out, _ = run(capsys, "ls", "--store", store)
    assert code == 0 and "docker.io/library/app:1" in out and digest.split(":")[1][:12] in out
    code, out, _ = run(capsys, "ls", "--format", "json", "--store", store)
    [image] = json.loads(out)
    assert image["digest"] == digest and image["names"] == ["docker.io/library/app:1"]
    code, out, _ = run(capsys, "inspect", "app:1", "--store", store)
    info = json.loads(out)
    assert info["config"]["Cmd"] == ["/bin/tool"] and info["config"]["Env"] == ["A=b"]
    assert len(info["layers"]) == 1 and info["layers"][0]["diff_id"].startswith("sha256:")
    code, out, _ = run(capsys, "config", "app:1", "--store", store)
    assert json.loads(out)["Cmd"] == ["/bin/tool"]
    code, out, _ = run(capsys, "rm", "app:1", "--store", store)
    assert code == 0 and "removed docker.io/library/app:1" in out
    code, out, _ = run(capsys, "prune", "--store", store)
    assert code == 0 and "3 blobs" in out
    assert run(capsys, "ls", "-q", "--store", store)[1] == ""


def test_store_from_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYRUNTIME_STORE", str(tmp_path / "envstore"))
    tree = make_tree(tmp_path / "rootfs")
    assert run(capsys, "import", tree, "env:1")[0] == 0
    assert os.path.isdir(tmp_path / "envstore" / "blobs")
    assert "env:1" in run(capsys, "ls")[1]


def test_errors_and_exit_codes(tmp_path, capsys):
    store = str(tmp_path / "store")
    code, out, err = run(capsys, "--store", store, "inspect", "nothing:here")
    assert code == 1 and out == ""
    assert "docker.io/library/nothing:here" in err and "no such image" in err
    code, _, err = run(capsys, "--store", store, "import", str(tmp_path / "missing"))
    assert code == 1 and "no such file" in err
    code, _, err = run(capsys, "--store", store, "import", str(tmp_path), "Bad:Ref")
    assert code == 1 and "invalid image reference" in err
    code, _, err = run(capsys, "--store", store, "pull", "x:1", "--creds", "nocolon")
    assert code == 2 and "USER:PASSWORD" in err
    code, _, err = run(capsys, "--store", store, "frobnicate")
    assert code == 2
    code, _, err = run(capsys, "--store", store, "pull", "localhost:1/app:1", "--policy", "Never")
    assert code == 1 and "pull policy is Never" in err
    assert run(capsys, "--help")[0] == 0
