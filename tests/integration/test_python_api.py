"""The Python API (`pyruntime.Runtime`) used in-process, as the pod layer and embedding
programs use it: lifecycle, exit statuses, errors, and a caller that has threads (where
the runtime must not fork Python and starts fresh interpreters instead)."""
from __future__ import annotations

import os
import threading

import pytest

from pyruntime import Runtime
from pyruntime.oci.errors import (ContainerExists, ContainerNotFound, InvalidState,
                                  ProcessNotFound, SpecError)

from . import IS_RUNC, ROOT_ONLY

pytestmark = [*ROOT_ONLY, pytest.mark.skipif(IS_RUNC, reason="pyruntime's own Python API")]


@pytest.fixture
def api(work_dir, leak_check):
    root = os.path.join(work_dir, "root")
    runtime = Runtime(root)
    yield runtime
    for state in runtime.list():
        runtime.delete(state["id"], force=True)


@pytest.fixture
def busy_thread():
    """A second thread in the test process for the length of the test."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join()


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_run_returns_exit_status(api, bundle):
    status = api.run("api-run", bundle(["/bin/sh", "-c", "exit 3"]))
    assert (status.code, status.signal) == (3, None)
    assert api.list() == []


def test_run_reports_an_oom_kill(api, bundle):
    hog = bundle(["/bin/sh", "-c", "x=a; while true; do x=$x$x$x$x; done"],
                 mutate=lambda config: config["linux"].__setitem__(
                     "resources", {"memory": {"limit": 16 * 1024 * 1024}}))
    status = api.run("api-oom", hog)
    assert (status.code, status.signal, status.oom_killed) == (137, 9, True)


def test_lifecycle_and_exec(api, bundle):
    path = bundle(["/bin/sleep", "30"])
    pid = api.create("api-life", path)
    assert api.state("api-life")["status"] == "created"
    assert api.state("api-life")["pid"] == pid
    api.start("api-life")
    assert api.state("api-life")["status"] == "running"
    result = api.exec("api-life", {"args": ["/bin/sh", "-c", "exit 5"], "cwd": "/",
                                   "env": ["PATH=/bin"]})
    assert result.code == 5
    assert pid in api.ps("api-life")
    with pytest.raises(InvalidState):
        api.delete("api-life")
    api.delete("api-life", force=True)
    with pytest.raises(ContainerNotFound):
        api.state("api-life")


def test_errors_are_typed(api, bundle, work_dir):
    path = bundle(["/bin/sleep", "30"])
    api.create("api-err", path)
    with pytest.raises(ContainerExists):
        api.create("api-err", path)
    with pytest.raises(ProcessNotFound) as missing:
        api.run("api-missing", bundle(["/no/such/binary"]))
    assert missing.value.exit_code == 127
    broken = bundle(["/bin/true"])
    with open(os.path.join(broken, "config.json"), "w") as f:
        f.write('{"ociVersion": "1.0.2", "root": {"path": "/"}, "process": 5}')
    with pytest.raises(SpecError) as bad:
        api.create("api-bad", broken)
    assert bad.value.field == "process"
    assert [s["id"] for s in api.list()] == ["api-err"]


def test_a_caller_with_threads_gets_fresh_interpreters(api, bundle, busy_thread,
                                                        monkeypatch):
    """With another thread alive, forking Python could deadlock on a lock that thread
    holds: the runtime must not call os.fork at all, and starts each container's first
    process (and an exec's) as a fresh interpreter instead."""
    import pyruntime.oci.launcher as launcher

    def no_fork():
        raise AssertionError("os.fork called in a process with threads")

    spawned = []
    original = launcher._spawn_child

    def counting_spawn(*args, **kwargs):
        spawned.append(args[2])
        return original(*args, **kwargs)

    monkeypatch.setattr(os, "fork", no_fork)
    monkeypatch.setattr(launcher, "_spawn_child", counting_spawn)
    path = bundle(["/bin/sleep", "30"])
    hooked = bundle(["/bin/sh", "-c", "exit 4"],
                    hooks={"prestart": [{"path": "/bin/true"}],
                           "poststop": [{"path": "/bin/true"}]})
    status = api.run("api-threads", hooked)
    api.run("api-threads-exec", path, detach=True)
    result = api.exec("api-threads-exec", {"args": ["/bin/sh", "-c", "exit 6"],
                                           "cwd": "/", "env": ["PATH=/bin"]})
    assert status.code == 4
    assert result.code == 6
    assert spawned == ["bootstrap", "bootstrap", "exec"]
