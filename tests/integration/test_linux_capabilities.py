"""Capabilities applied for real: each case runs in a forked child, which reports the
capability sets it ends up with (from /proc/self/status) through a pipe."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pyruntime.linux.capabilities import (
    CAPABILITIES,
    apply_process_capabilities,
    cap_names,
    cap_numbers,
    current_capabilities,
    drop_bounding_set,
    last_cap,
    set_capabilities,
)
from pyruntime.linux.errors import CapabilityError

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

CHOWN = CAPABILITIES["CAP_CHOWN"]
KILL = CAPABILITIES["CAP_KILL"]
NET_BIND = CAPABILITIES["CAP_NET_BIND_SERVICE"]
SETPCAP = CAPABILITIES["CAP_SETPCAP"]


def in_child(fn, *args):
    """Run `fn(*args)` in a forked child and return its (JSON-able) result.

    An exception in the child comes back as {"error": class name, "message": ...}. The
    child always leaves with os._exit, so it never runs pytest's code.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                outcome = {"ok": fn(*args)}
            except BaseException as e:  # noqa: BLE001 - everything is reported to the parent
                outcome = {"error": type(e).__name__, "message": str(e)}
            data = json.dumps(outcome).encode()
            while data:
                data = data[os.write(w, data):]
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status:#x}"
    return json.loads(data)


def ok(outcome):
    assert "ok" in outcome, f"child failed: {outcome}"
    return outcome["ok"]


def mask(*numbers: int) -> int:
    return sum(1 << n for n in set(numbers))


def test_cap_numbers_and_names():
    assert cap_numbers(["CAP_CHOWN", "CAP_KILL", "CAP_KILL"]) == {CHOWN, KILL}
    assert cap_numbers([]) == set()
    assert cap_names(mask(CHOWN, KILL)) == ["CAP_CHOWN", "CAP_KILL"]
    with pytest.raises(CapabilityError, match="CAP_NOPE"):
        cap_numbers(["CAP_CHOWN", "CAP_NOPE"])


def test_current_capabilities_reads_five_sets():
    sets = current_capabilities()
    assert set(sets) == {"bounding", "effective", "inheritable", "permitted", "ambient"}
    assert sets == current_capabilities(os.getpid())
    # Root: the bounding set contains CAP_CHOWN (the host's lacks CAP_SYS_RESOURCE).
    assert sets["bounding"] & mask(CHOWN)


def test_bounding_set_reduced_to_kill_and_chown():
    def child():
        drop_bounding_set({KILL, CHOWN})
        return current_capabilities()

    sets = ok(in_child(child))
    assert sets["bounding"] == mask(KILL, CHOWN)


def test_bounding_set_ignores_caps_above_last_cap():
    def child():
        drop_bounding_set({CHOWN, last_cap() + 1, 63})
        return current_capabilities()["bounding"]

    assert ok(in_child(child)) == mask(CHOWN)


def test_bounding_drop_without_setpcap_is_a_capability_error():
    def child():
        # Lose CAP_SETPCAP from the effective set: dropping from the bounding set then fails.
        everything = set(range(last_cap() + 1)) & _caps_of(current_capabilities()["permitted"])
        set_capabilities(everything - {SETPCAP}, everything, set(), set())
        drop_bounding_set({CHOWN})

    outcome = in_child(child)
    assert outcome["error"] == "CapabilityError"
    assert "CAP_SETPCAP" in outcome["message"]


def _caps_of(m: int) -> set[int]:
    return {n for n in range(64) if m >> n & 1}


def test_effective_permitted_inheritable_exact_masks():
    def child():
        skipped = set_capabilities(
            effective={CHOWN, KILL},
            permitted={CHOWN, KILL, NET_BIND},
            inheritable={KILL, NET_BIND},
            ambient=set(),
        )
        return skipped, current_capabilities()

    skipped, sets = ok(in_child(child))
    assert skipped == []
    assert sets["effective"] == mask(CHOWN, KILL)
    assert sets["permitted"] == mask(CHOWN, KILL, NET_BIND)
    assert sets["inheritable"] == mask(KILL, NET_BIND)
    assert sets["ambient"] == 0


def test_effective_outside_permitted_is_refused():
    def child():
        set_capabilities(effective={CHOWN, KILL}, permitted={CHOWN}, inheritable=set(),
                         ambient=set())

    outcome = in_child(child)
    assert outcome["error"] == "CapabilityError"
    assert "capset" in outcome["message"]


def test_ambient_raised_and_one_not_inheritable_skipped():
    def child():
        skipped = set_capabilities(
            effective={KILL, NET_BIND},
            permitted={KILL, NET_BIND},
            inheritable={NET_BIND},
            ambient={NET_BIND, KILL},
        )
        return skipped, current_capabilities()

    skipped, sets = ok(in_child(child))
    assert skipped == [KILL]  # not inheritable: the kernel would refuse it
    assert sets["ambient"] == mask(NET_BIND)


def test_ambient_set_replaces_the_previous_one():
    def child():
        set_capabilities({KILL, CHOWN}, {KILL, CHOWN}, {KILL, CHOWN}, {KILL, CHOWN})
        set_capabilities({KILL, CHOWN}, {KILL, CHOWN}, {KILL, CHOWN}, {CHOWN})
        return current_capabilities()["ambient"]

    assert ok(in_child(child)) == mask(CHOWN)


def test_ambient_caps_survive_exec_as_non_root():
    """The point of the ambient set: a non-root process keeps the caps across execve."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            import prctl

            drop_bounding_set({NET_BIND, SETPCAP})
            prctl.set_keepcaps(True)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            set_capabilities({NET_BIND}, {NET_BIND}, {NET_BIND}, {NET_BIND})
            os.dup2(w, 1)
            os.execv("/bin/grep", ["grep", "^Cap", "/proc/self/status"])
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    lines = dict(line.split(":\t") for line in out.splitlines())
    assert int(lines["CapAmb"], 16) == mask(NET_BIND)
    assert int(lines["CapEff"], 16) == mask(NET_BIND)
    assert int(lines["CapPrm"], 16) == mask(NET_BIND)
    assert int(lines["CapBnd"], 16) == mask(NET_BIND, SETPCAP)


def test_apply_process_capabilities_oci_object():
    spec = {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"],
        "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
    }

    def child():
        skipped = apply_process_capabilities(spec)
        return skipped, current_capabilities()

    skipped, sets = ok(in_child(child))
    assert skipped == [KILL]
    assert sets == {
        "bounding": mask(CHOWN, KILL, NET_BIND, CAPABILITIES["CAP_AUDIT_WRITE"]),
        "effective": mask(CHOWN, KILL, NET_BIND),
        "permitted": mask(CHOWN, KILL, NET_BIND),
        "inheritable": mask(NET_BIND),
        "ambient": mask(NET_BIND),
    }


def test_apply_process_capabilities_missing_lists_are_empty():
    def child():
        apply_process_capabilities({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                                    "permitted": ["CAP_KILL"]})
        return current_capabilities()

    sets = ok(in_child(child))
    assert sets == {"bounding": mask(KILL), "effective": mask(KILL), "permitted": mask(KILL),
                    "inheritable": 0, "ambient": 0}


def test_apply_process_capabilities_none_leaves_process_alone():
    def child():
        before = current_capabilities()
        assert apply_process_capabilities(None) == []
        return before, current_capabilities()

    before, after = ok(in_child(child))
    assert before == after


def test_apply_process_capabilities_unknown_name_changes_nothing():
    def child():
        before = current_capabilities()
        try:
            apply_process_capabilities({"bounding": ["CAP_KILL", "CAP_BOGUS"]})
        except CapabilityError as e:
            return str(e), before == current_capabilities()
        return None

    message, unchanged = ok(in_child(child))
    assert "CAP_BOGUS" in message
    assert unchanged  # names are checked before anything is dropped


def test_module_imports_stay_light():
    # The container init imports this just before exec: no heavy stdlib modules.
    code = (
        "import sys; import pyruntime.linux.capabilities; "
        "print(sorted({'json', 're', 'enum', 'dataclasses', 'typing'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
