"""Commands and global options that do not run containers: `spec`, `features`, `--log`
with `--log-format json`, `--version`, and unknown commands."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from . import IS_RUNC, REPO_ROOT, ROOT_ONLY

pytestmark = ROOT_ONLY


def test_spec_writes_config_json(runtime, work_dir):
    proc = runtime.run("spec", "--bundle", work_dir)
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(work_dir, "config.json")) as f:
        config = json.load(f)
    assert config["ociVersion"].startswith("1.")
    assert config["process"]["args"] == ["sh"]
    assert config["root"]["path"] == "rootfs"
    assert {n["type"] for n in config["linux"]["namespaces"]} >= {"pid", "mount", "network"}
    assert any(m["destination"] == "/proc" for m in config["mounts"])


def test_spec_in_current_directory(runtime, work_dir):
    proc = runtime.run("spec", cwd=work_dir)
    assert proc.returncode == 0, proc.stderr
    assert os.path.isfile(os.path.join(work_dir, "config.json"))


def test_spec_refuses_to_overwrite(runtime, work_dir):
    path = os.path.join(work_dir, "config.json")
    with open(path, "w") as f:
        f.write("{}")
    proc = runtime.run("spec", "--bundle", work_dir)
    assert proc.returncode != 0
    with open(path) as f:
        assert f.read() == "{}"


def test_spec_rootless(runtime, work_dir):
    proc = runtime.run("spec", "--rootless", "--bundle", work_dir)
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(work_dir, "config.json")) as f:
        config = json.load(f)
    assert any(n["type"] == "user" for n in config["linux"]["namespaces"])
    assert config["linux"]["uidMappings"]


def test_spec_output_runs(runtime, work_dir, busybox_rootfs):
    # The config `spec` writes runs as is (once terminal is off and root points at a rootfs).
    runtime.run("spec", "--bundle", work_dir, check=True)
    path = os.path.join(work_dir, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["echo", "from-spec"]
    config["root"]["path"] = busybox_rootfs
    with open(path, "w") as f:
        json.dump(config, f)
    proc = runtime.run("run", "--bundle", work_dir, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "from-spec\n"


def test_features(runtime):
    proc = runtime.run("features")
    assert proc.returncode == 0, proc.stderr
    features = json.loads(proc.stdout)
    assert features["ociVersionMax"].startswith("1.")
    assert "ociVersionMin" in features
    assert set(features["hooks"]) >= {"prestart", "createRuntime", "createContainer",
                                      "startContainer", "poststart", "poststop"}
    assert "bind" in features["mountOptions"] and "rbind" in features["mountOptions"]
    linux = features["linux"]
    assert set(linux["namespaces"]) >= {"pid", "network", "ipc", "uts", "mount", "user"}
    assert "CAP_KILL" in linux["capabilities"]


def test_log_json_on_failure(runtime, work_dir):
    log = os.path.join(work_dir, "runtime.log")
    proc = runtime.run("--log", log, "--log-format", "json", "state", runtime.new_id("nope"))
    assert proc.returncode != 0
    with open(log) as f:
        lines = f.read().splitlines()
    # Exactly runc's line: these keys in this order (logrus' JSON sorts them), an RFC 3339
    # time; engines parse it back.
    assert len(lines) == 1, lines
    record = json.loads(lines[0], object_pairs_hook=list)
    assert [key for key, _ in record] == ["level", "msg", "time"]
    level, msg, stamp = (value for _, value in record)
    assert level == "error"
    assert "does not exist" in msg
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)", stamp)


def test_log_text_format(runtime, work_dir):
    log = os.path.join(work_dir, "runtime.log")
    proc = runtime.run("--log", log, "delete", runtime.new_id("nope"))
    assert proc.returncode != 0
    with open(log) as f:
        text = f.read()
    assert "level=error" in text


def test_version(runtime):
    proc = runtime.run("--version")
    assert proc.returncode == 0, proc.stderr
    assert "spec" in proc.stdout.lower()


def test_unknown_command_fails(runtime):
    proc = runtime.run("no-such-command")
    assert proc.returncode != 0


@pytest.mark.skipif(IS_RUNC, reason="about pyruntime's own command script")
@pytest.mark.parametrize("site_flag", [[], ["-S"]], ids=["with-site", "without-site"])
def test_the_command_script_finds_its_package_with_and_without_site(tmp_path, site_flag):
    """`.ci/setup` starts the command with `python -S`: the script itself must then put
    the environment's site-packages and the .pth paths (the editable checkout) on
    sys.path. Run from an empty directory, so the checkout is not found by accident."""
    script = os.path.join(REPO_ROOT, "pyruntime", "cli", "scripts", "pyruntime")
    proc = subprocess.run([sys.executable, *site_flag, script, "--version"], cwd=tmp_path,
                          capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("pyruntime version")
