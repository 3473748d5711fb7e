"""Running OCI hooks: the state JSON on stdin, `timeout` honoured, failures reported.

Which namespace a hook runs in is decided by who calls `run_hooks`: the runtime process
(prestart, createRuntime, poststart, poststop) or the container's init (createContainer,
startContainer). A hook that fails or times out raises `HookError` and the hooks after
it do not run: a failing prestart, createRuntime, createContainer or startContainer hook
fails its step. For poststart and poststop the spec asks for a warning and the rest of
the hooks, as if the failed one had succeeded: `run_hooks` with `warn`.

A hook with a `timeout` runs in a process group of its own, so that the whole group
(a shell script's children too) is killed when time is up, not only the hook's pid:
otherwise a `sleep` started by the script would outlive the failed step.
"""
from __future__ import annotations

import os
import time

from pyruntime import jsonlite
from pyruntime.oci.errors import HookError

TYPE_CHECKING = False  # typing's own constant costs an import in init
if TYPE_CHECKING:
    from collections.abc import Callable

HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer",
              "poststart", "poststop")


def run_hooks(kind: str, hooks: list[dict], state: dict,
              warn: Callable[[str], None] | None = None) -> None:
    """Run the hooks in order. Without `warn` the first that fails raises `HookError`;
    with it (poststart, poststop) each failure goes to `warn` and the next hook runs."""
    payload = jsonlite.dumps(state).encode()
    for index, hook in enumerate(hooks):
        try:
            run_hook(f"hooks.{kind}[{index}]", hook, payload)
        except HookError as error:
            if warn is None:
                raise
            warn(str(error))


def run_hook(field: str, hook: dict, payload: bytes) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = hook.get("env") or []
    timeout = hook.get("timeout")
    stdin_read, stdin_write = os.pipe()
    environment = dict(item.split("=", 1) for item in env)
    # posix_spawn, not fork: no Python runs in the child, which keeps this safe in a
    # caller that has threads, and it is cheaper than forking the runtime.
    try:
        group = {"setpgroup": 0} if timeout else {}
        pid = os.posix_spawn(path, args, environment,
                             file_actions=[(os.POSIX_SPAWN_DUP2, stdin_read, 0)], **group)
    except OSError as error:
        os.close(stdin_read)
        os.close(stdin_write)
        raise HookError(f"{field}: cannot run {path}: {error.strerror}") from None
    os.close(stdin_read)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(stdin_write, view):]
    except BrokenPipeError:
        pass  # the hook exited without reading its stdin: allowed.
    finally:
        os.close(stdin_write)
    status = _wait(pid, timeout)
    if status is None:
        raise HookError(f"{field}: {path} timed out after {timeout}s and was killed")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        what = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        raise HookError(f"{field}: {path} {what}")


def _wait(pid: int, timeout: int | None) -> int | None:
    """The hook's wait status, or None when it outlived its timeout (it is then killed)."""
    if not timeout:
        return os.waitpid(pid, 0)[1]
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            os.killpg(pid, 9)  # its own group: see the module's docstring
            os.waitpid(pid, 0)
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
