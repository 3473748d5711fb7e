"""The project's own images (`rootfs-tools/build-image`): busybox, pause and testhelper,
built reproducibly into an image store, turned into bundles with `pyruntime image
bundle`, and run by the runtime: every mode of the static test program, pause as a PID 1
that reaps orphaned zombies and exits 0 on SIGTERM, and the HTTP app reached inside the
container's network namespace.

The images are built once per session into a store of the session's own; each test
makes its bundles (overlay snapshots) and removes them (`image unbundle`) after its
containers are deleted.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time

import pytest

from . import REPO_ROOT, ROOT_ONLY, is_alive, tcp_listening, wait_for

pytestmark = ROOT_ONLY

TOOLS = REPO_ROOT / "rootfs-tools"
BUILD_IMAGE = TOOLS / "build-image"
PYRUNTIME = str(REPO_ROOT / ".venv" / "bin" / "pyruntime")
IMAGES = ("busybox", "pause", "testhelper")
HELPER = "/usr/bin/testhelper"
BUILD_TIMEOUT = 600

CAP_CHOWN, CAP_KILL, CAP_NET_BIND_SERVICE = 0, 5, 10


def _ref(name: str) -> str:
    return f"localhost/pyruntime/{name}:latest"


def _build(name: str, *options: str) -> str:
    """Run build-image; returns the manifest digest it prints."""
    proc = subprocess.run([str(BUILD_IMAGE), name, *options], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(f"build-image {name} {' '.join(options)} failed ({proc.returncode}):\n"
                    f"{proc.stderr}")
    digest = proc.stdout.strip()
    assert digest.startswith("sha256:") and len(digest) == 71, proc.stdout
    return digest


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def image_store(session_dir) -> dict:
    """The three images, built once into a store of the session's own:
    {"store": DIR, "digests": {name: digest}, "tars": {name: OCI layout tar}}."""
    store = os.path.join(session_dir, "images")
    tars = os.path.join(session_dir, "image-tars")
    os.makedirs(tars, exist_ok=True)
    digests, tar_paths = {}, {}
    for name in IMAGES:
        tar_paths[name] = os.path.join(tars, f"{name}.tar")
        digests[name] = _build(name, "--store", store, "--oci-tar", tar_paths[name])
    return {"store": store, "digests": digests, "tars": tar_paths}


def _image_cli(store: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([PYRUNTIME, "image", "--store", store, *args], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        pytest.fail(f"pyruntime image {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture
def image_bundle(image_store, runtime, work_dir):
    """`image_bundle(name, args=None, hostname=None, edit=None) -> dir`: a bundle from the
    image via `pyruntime image bundle`, with process.args replaced when given and
    `edit(spec)` applied to config.json. Removed (`image unbundle`) when the test ends,
    after the test's containers are deleted."""
    made: list[str] = []
    counter = itertools.count(1)

    def make(name: str, args: list[str] | None = None, hostname: str | None = None,
             edit=None) -> str:
        directory = os.path.join(work_dir, f"{name}{next(counter)}")
        extra = ["--hostname", hostname] if hostname else []
        _image_cli(image_store["store"], "bundle", *extra, _ref(name), directory)
        made.append(directory)
        path = os.path.join(directory, "config.json")
        with open(path) as f:
            spec = json.load(f)
        spec["process"]["terminal"] = False
        if args is not None:
            spec["process"]["args"] = list(args)
        if edit is not None:
            edit(spec)
        with open(path, "w") as f:
            json.dump(spec, f, indent=2)
        return directory

    yield make
    runtime.cleanup()  # the containers first: then nothing holds the snapshots
    for directory in reversed(made):
        _image_cli(image_store["store"], "unbundle", directory, check=False)


def _resources(**values):
    def edit(spec):
        spec["linux"].setdefault("resources", {}).update(values)
    return edit


def _run(runtime, bundle_dir: str, hint: str, timeout: float = 60):
    """`run` in the foreground: the CompletedProcess (stdout is the container's)."""
    cid = runtime.new_id(hint)
    return runtime.run("run", "--bundle", bundle_dir, cid, timeout=timeout)


# --------------------------------------------------------------------------- the images
def test_image_configs(image_store):
    store = image_store["store"]
    busybox = json.loads(_image_cli(store, "config", _ref("busybox")).stdout)
    assert busybox["Cmd"] == ["/bin/sh"]
    assert any(e.startswith("PATH=") for e in busybox["Env"])
    pause = json.loads(_image_cli(store, "config", _ref("pause")).stdout)
    assert pause["Entrypoint"] == ["/pause"]
    assert pause["User"] == "65535:65535"
    helper = json.loads(_image_cli(store, "config", _ref("testhelper")).stdout)
    assert helper["Entrypoint"] == [HELPER]
    assert helper["Cmd"] == ["http", "8080"]
    assert "8080/tcp" in helper["ExposedPorts"]
    for name in IMAGES:
        info = json.loads(_image_cli(store, "inspect", _ref(name)).stdout)
        assert info["digest"] == image_store["digests"][name]
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or 0)
        assert info["created"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def test_images_are_reproducible(image_store, work_dir):
    """A second build of each image gives a byte-identical OCI layout tar, hence the same
    manifest digest as the one in the store; the C programs build byte-identically."""
    proc = subprocess.run([str(TOOLS / "build-static-programs"), "--check",
                           "--out", os.path.join(work_dir, "bin")],
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    for name in IMAGES:
        tar = os.path.join(work_dir, f"{name}.tar")
        digest = _build(name, "--oci-tar", tar)
        assert digest == image_store["digests"][name], name
        with open(tar, "rb") as a, open(image_store["tars"][name], "rb") as b:
            assert a.read() == b.read(), f"{name}: the two OCI layout tars differ"


def test_busybox_image_runs_its_default_command_and_a_script(runtime, image_bundle):
    default = _run(runtime, image_bundle("busybox"), "sh")  # /bin/sh with stdin /dev/null
    assert default.returncode == 0, default.stderr
    proc = _run(runtime, image_bundle("busybox", ["sh", "-c", "echo hello; id -u"]), "script")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["hello", "0"]


# --------------------------------------------------------------------------- helper modes
def test_helper_true_and_version(runtime, image_bundle):
    proc = _run(runtime, image_bundle("testhelper", [HELPER, "true"]), "true")
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
    proc = _run(runtime, image_bundle("testhelper", [HELPER, "version"]), "version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("pyruntime-testhelper ")
    proc = _run(runtime, image_bundle("testhelper", [HELPER, "no-such-mode"]), "bad")
    assert proc.returncode == 2
    assert "unknown mode" in proc.stderr


def test_helper_sleep(runtime, image_bundle):
    started = time.monotonic()
    proc = _run(runtime, image_bundle("testhelper", [HELPER, "sleep", "1"]), "sleep")
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started >= 1.0


def test_helper_cpuhog(runtime, image_bundle):
    proc = _run(runtime, image_bundle("testhelper", [HELPER, "cpuhog", "0.5"]), "cpuhog")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "cpuhog: spinning\n"


def test_helper_id(runtime, image_bundle):
    def user(spec):
        spec["process"]["user"] = {"uid": 1001, "gid": 1001, "additionalGids": [5, 100]}

    proc = _run(runtime, image_bundle("testhelper", [HELPER, "id"], edit=user), "id")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "uid=1001 euid=1001 gid=1001 egid=1001 groups=5,100\n"


def test_helper_caps_shows_the_configs_sets(runtime, image_bundle):
    def caps(spec):
        spec["process"]["capabilities"] = {
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL"],
            "inheritable": [],
            "ambient": [],
        }

    proc = _run(runtime, image_bundle("testhelper", [HELPER, "caps"], edit=caps), "caps")
    assert proc.returncode == 0, proc.stderr
    sets = {k: int(v, 16) for k, v in (line.split(":\t") for line in proc.stdout.splitlines())}
    assert set(sets) == {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}
    assert sets["CapBnd"] == (1 << CAP_CHOWN) | (1 << CAP_KILL) | (1 << CAP_NET_BIND_SERVICE)
    assert sets["CapPrm"] == sets["CapEff"] == 1 << CAP_KILL
    assert sets["CapInh"] == sets["CapAmb"] == 0


def test_helper_fds_only_stdio(runtime, image_bundle):
    proc = _run(runtime, image_bundle("testhelper", [HELPER, "fds"]), "fds")
    assert proc.returncode == 0, proc.stderr
    fds = [int(line.split(" ", 1)[0]) for line in proc.stdout.splitlines()]
    assert fds == [0, 1, 2], proc.stdout


def test_helper_memhog_is_oom_killed_under_a_memory_limit(runtime, image_bundle):
    b = image_bundle("testhelper", [HELPER, "memhog", "64"],
                     edit=_resources(memory={"limit": 32 * 1024 * 1024}))
    proc = _run(runtime, b, "memhog")
    assert proc.returncode == 137, (proc.stdout, proc.stderr)
    lines = proc.stdout.splitlines()
    assert lines[0] == "memhog: allocating 64 MiB"
    assert "memhog: holding 64 MiB" not in lines
    reached = max(int(line.split()[1]) for line in lines[1:]) if lines[1:] else 0
    assert reached < 32, proc.stdout


def test_helper_memhog_within_its_limit(runtime, image_bundle):
    # The same hog under a roomy limit: it gets its memory and holds it.
    b = image_bundle("testhelper", [HELPER, "memhog", "16"],
                     edit=_resources(memory={"limit": 128 * 1024 * 1024}))
    cid = runtime.new_id("memok")
    out = os.path.join(os.path.dirname(b), "memok.out")
    runtime.run("run", "-d", "--bundle", b, cid, check=True, stdout_path=out)
    wait_for(lambda: "memhog: holding 16 MiB" in open(out).read(), timeout=30,
             message="memhog to hold 16 MiB")
    assert runtime.status(cid) == "running"
    runtime.delete(cid, force=True)


def test_helper_forkbomb_is_bounded_by_pids_limit(runtime, image_bundle):
    # --max 200: should the limit not be applied, the bomb stops by itself there.
    b = image_bundle("testhelper", [HELPER, "forkbomb", "--max", "200", "--hold", "1"],
                     edit=_resources(pids={"limit": 20}))
    cid = runtime.new_id("forkbomb")
    try:
        proc = runtime.run("run", "--bundle", b, cid, timeout=60)
    finally:
        runtime.run("delete", "--force", cid)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    words = proc.stdout.split()
    assert words[:1] == ["forkbomb:"] and "fork failed:" in proc.stdout, proc.stdout
    assert int(words[1]) < 20, proc.stdout


# --------------------------------------------------------------------------- pause as PID 1
def _proc_stat(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def _zombie_children(parent: int) -> set[int]:
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _proc_stat(int(name))
            if st is not None and st == ("Z", parent):
                found.add(int(name))
    return found


@pytest.mark.parametrize("init", ["pause", "sleep"])
def test_orphaned_zombies_are_reaped_by_pause_as_pid_1(runtime, image_bundle, init):
    """`testhelper zombies 3 3` (exec'd) makes three zombies and exits 3 s later
    without reaping them: they become orphans of the PID namespace's init. pause reaps
    them; `testhelper sleep` as init (the control) does not, so they stay zombies."""
    args = ["/pause"] if init == "pause" else [HELPER, "sleep", "inf"]
    b = image_bundle("testhelper", args)
    cid = runtime.new_id(f"reap-{init}")
    init_pid = runtime.run_detached(b, cid)
    pid_file = os.path.join(os.path.dirname(b), f"zombies-{init}.pid")
    out = os.path.join(os.path.dirname(b), f"zombies-{init}.out")
    runtime.run("exec", "-d", "--pid-file", pid_file, cid, HELPER, "zombies", "3", "3",
                check=True, stdout_path=out)
    maker = int(open(pid_file).read())
    # First the zombies are the maker's (it does not reap them).
    zombies = wait_for(lambda: (z := _zombie_children(maker)) and len(z) == 3 and z,
                       timeout=30, message="three zombie children of the maker")
    inside = open(out).read().split()
    assert inside[0] == "zombies:" and len(inside) == 4, inside
    # The maker exits: its zombies go to PID 1 of the container's PID namespace.
    wait_for(lambda: not is_alive(maker), timeout=30, message="the zombie maker to exit")
    if init == "pause":
        wait_for(lambda: not any(_proc_stat(z) for z in zombies), timeout=30,
                 message="pause to reap the orphaned zombies")
        assert _zombie_children(init_pid) == set()
        ps = runtime.run("ps", "--format", "json", cid, check=True)
        assert json.loads(ps.stdout) == [init_pid]
    else:
        wait_for(lambda: _zombie_children(init_pid) == zombies, timeout=30,
                 message="the orphaned zombies to be reparented to init")
        time.sleep(0.5)
        assert _zombie_children(init_pid) == zombies  # nobody reaps them
    assert is_alive(init_pid)
    runtime.delete(cid, force=True)


def test_pause_image_exits_0_on_sigterm(runtime, image_bundle, work_dir):
    version = _run(runtime, image_bundle("pause", ["/pause", "-v"]), "pause-v")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("pyruntime-pause ")

    b = image_bundle("pause")  # the image's own Entrypoint and User 65535:65535
    cid = runtime.new_id("pause")
    with open(os.path.join(work_dir, "pause.err"), "w+") as err:
        proc = runtime.popen("run", "--bundle", b, cid, stdout=subprocess.DEVNULL,
                             stderr=err)
        try:
            runtime.wait_status(cid, "running")
            pid = runtime.pid(cid)
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
            assert "\nUid:\t65535\t65535\t65535\t65535\n" in status
            runtime.kill(cid, "TERM")
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                runtime.run("delete", "--force", cid)
                proc.wait(timeout=30)
        err.seek(0)
        assert code == 0, err.read()


# --------------------------------------------------------------------------- the HTTP app
_CLIENT = """
import json, sys, urllib.error, urllib.request
method, url, body = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, data=body.encode() if body else None, method=method)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(json.dumps([r.status, r.read().decode()]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, e.read().decode()]))
"""


def _http(pid: int, method: str, path: str, body: str = "") -> tuple[int, str]:
    """An HTTP request to 127.0.0.1:8080 inside the network namespace of `pid`."""
    proc = subprocess.run(["nsenter", "-t", str(pid), "-n", sys.executable, "-c", _CLIENT,
                           method, f"http://127.0.0.1:8080{path}", body],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    status, text = json.loads(proc.stdout)
    return status, text


def test_helper_http_app(runtime, image_bundle, work_dir):
    b = image_bundle("testhelper", hostname="helper-host",
                     edit=lambda spec: spec["process"]["args"].extend(["--ready-after", "5"]))
    with open(os.path.join(b, "config.json")) as f:
        assert json.load(f)["process"]["args"] == [HELPER, "http", "8080", "--ready-after", "5"]
    cid = runtime.new_id("http")
    log = os.path.join(work_dir, "http.log")
    runtime.run("run", "-d", "--bundle", b, cid, check=True, stdout_path=log)
    pid = runtime.pid(cid)
    wait_for(lambda: tcp_listening(pid, 8080), timeout=30, message="the app to listen on 8080")

    assert _http(pid, "GET", "/readyz") == (500, "fail\n")  # --ready-after 5
    assert _http(pid, "GET", "/") == (200, "hello from testhelper\n")
    assert _http(pid, "GET", "/hostname") == (200, "helper-host\n")
    assert _http(pid, "GET", "/livez") == (200, "ok\n")
    assert _http(pid, "POST", "/livez", "livez=FAIL") == (200, "livez=FAIL\n")
    assert _http(pid, "GET", "/livez") == (500, "fail\n")
    assert _http(pid, "POST", "/livez", "livez=OK") == (200, "livez=OK\n")
    assert _http(pid, "GET", "/livez") == (200, "ok\n")
    assert _http(pid, "POST", "/livez", "livez=maybe")[0] == 400
    assert _http(pid, "GET", "/nowhere")[0] == 404
    wait_for(lambda: _http(pid, "GET", "/readyz") == (200, "ok\n"), timeout=30, interval=0.5,
             message="/readyz to pass after --ready-after 5")
    assert _http(pid, "POST", "/readyz", "readyz=FAIL") == (200, "readyz=FAIL\n")
    assert _http(pid, "GET", "/readyz") == (500, "fail\n")

    lines = open(log).read().splitlines()
    assert lines[0] == "http: listening on 0.0.0.0:8080"
    requests = [line.split()[2:] for line in lines[1:]]
    assert requests[:3] == [["GET", "/readyz", "500"], ["GET", "/", "200"],
                            ["GET", "/hostname", "200"]]
    assert requests[-1] == ["GET", "/readyz", "500"]

    runtime.kill(cid, "TERM")  # the app exits on SIGTERM (as PID 1 it must handle it)
    assert runtime.wait_status(cid, "stopped") == "stopped"
    runtime.delete(cid)
