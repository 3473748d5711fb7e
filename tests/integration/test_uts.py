"""The UTS namespace: the config's hostname and domainname are what the container sees,
and the host's stay as they were."""
from __future__ import annotations

import socket

import pytest

from . import IS_RUNC, ROOT_ONLY

pytestmark = ROOT_ONLY


def read_host_domainname() -> str:
    with open("/proc/sys/kernel/domainname") as f:
        return f.read().strip()


def test_hostname_seen_inside(runtime, bundle):
    host_hostname = socket.gethostname()
    b = bundle(["hostname"], hostname="box-one")
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "box-one"
    assert socket.gethostname() == host_hostname


def test_hostname_is_the_configs_default(runtime, bundle):
    # runc spec writes hostname "runc"; the container must not see the host's name.
    b = bundle(["hostname"])
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "runc"


@pytest.mark.xfail(IS_RUNC, strict=True,
                   reason="runc 1.1 ignores the domainname field (runc 1.2 sets it)")
def test_domainname_seen_inside(runtime, bundle):
    host_domainname = read_host_domainname()
    b = bundle(["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"],
               hostname="box-two", domainname="example.test")
    proc = runtime.run("run", "--bundle", b, runtime.new_id())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["box-two", "example.test"]
    assert read_host_domainname() == host_domainname
