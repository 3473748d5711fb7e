"""process.capabilities: the five sets the container's process ends up with, read from
/proc/self/status inside, as root and as an unprivileged user with ambient capabilities.
(The host's bounding set lacks CAP_SYS_RESOURCE, so no case asks for it.)"""
from __future__ import annotations

from . import ROOT_ONLY

pytestmark = ROOT_ONLY

CAP_CHOWN, CAP_KILL, CAP_NET_BIND_SERVICE = 0, 5, 10
SHOW_CAPS = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status"

CAPS = {
    "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
    "permitted": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
    "effective": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
    "inheritable": ["CAP_NET_BIND_SERVICE"],
    "ambient": ["CAP_NET_BIND_SERVICE"],
}


def mask(*bits: int) -> int:
    return sum(1 << b for b in bits)


def parse_caps(output: str) -> dict[str, int]:
    sets = {}
    for line in output.splitlines():
        key, _, value = line.partition(":")
        sets[key.strip()] = int(value.strip(), 16)
    return sets


def caps_of(runtime, b) -> dict[str, int]:
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    return parse_caps(proc.stdout)


def test_capability_sets_as_root(runtime, bundle):
    b = bundle(["sh", "-c", SHOW_CAPS], capabilities=CAPS)
    three = mask(CAP_KILL, CAP_CHOWN, CAP_NET_BIND_SERVICE)
    assert caps_of(runtime, b) == {
        "CapInh": mask(CAP_NET_BIND_SERVICE),
        "CapPrm": three,
        "CapEff": three,
        "CapBnd": three,
        "CapAmb": mask(CAP_NET_BIND_SERVICE),
    }


def test_capability_sets_as_user_with_ambient(runtime, bundle):
    # A non-root user keeps across exec only what is ambient: permitted and effective
    # become the ambient set.
    b = bundle(["sh", "-c", SHOW_CAPS], capabilities=CAPS, user="1001:1001")
    assert caps_of(runtime, b) == {
        "CapInh": mask(CAP_NET_BIND_SERVICE),
        "CapPrm": mask(CAP_NET_BIND_SERVICE),
        "CapEff": mask(CAP_NET_BIND_SERVICE),
        "CapBnd": mask(CAP_KILL, CAP_CHOWN, CAP_NET_BIND_SERVICE),
        "CapAmb": mask(CAP_NET_BIND_SERVICE),
    }


def test_no_capabilities_at_all(runtime, bundle):
    b = bundle(["sh", "-c", SHOW_CAPS], capabilities={s: [] for s in CAPS})
    assert caps_of(runtime, b) == {k: 0 for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


def test_dropped_capability_is_enforced(runtime, bundle):
    # Without CAP_CHOWN, root inside cannot chown a file it does not own to another user.
    cases = {}
    for name, caps in (("with", CAPS), ("without", {s: [c for c in v if c != "CAP_CHOWN"]
                                                   for s, v in CAPS.items()})):
        b = bundle(["sh", "-c", "touch /tmp/f && chown 1001 /tmp/f && echo chowned"],
                   capabilities=caps, mounts=[{"destination": "/tmp", "type": "tmpfs",
                                               "source": "tmpfs", "options": ["mode=1777"]}])
        cases[name] = runtime.run("run", "--bundle", b, runtime.new_id())
    assert cases["with"].returncode == 0, cases["with"].stderr
    assert cases["with"].stdout.strip() == "chowned"
    assert cases["without"].returncode != 0
    assert "Operation not permitted" in cases["without"].stderr
