"""Image references: Docker's normalisation and grammar, and Kubernetes' default pull
policy."""
from __future__ import annotations

import pytest

from pyruntime.image.errors import InvalidReference
from pyruntime.image.reference import (ALWAYS, IF_NOT_PRESENT, default_pull_policy, normalize,
                                       parse_reference)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("given,expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
    ("user/app", "docker.io/user/app:latest"),
    ("quay.io/org/app:v1.2_3-x", "quay.io/org/app:v1.2_3-x"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/app:1", "localhost:5000/app:1"),
    ("127.0.0.1:5000/a/b/c:dev", "127.0.0.1:5000/a/b/c:dev"),
    ("[::1]:5000/app:1", "[::1]:5000/app:1"),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
    (f"busybox:1.36@{DIGEST}", f"docker.io/library/busybox:1.36@{DIGEST}"),
    (f"host:5000/app@{DIGEST}", f"host:5000/app@{DIGEST}"),
    ("my-registry.example.com:443/team/app_x.y:tag", "my-registry.example.com:443/team/app_x.y:tag"),
])
def test_normalize(given, expected):
    assert normalize(given) == expected


def test_parts():
    ref = parse_reference(f"localhost:5000/team/app:1@{DIGEST}")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("localhost:5000", "team/app", "1", DIGEST)
    assert ref.repository == "localhost:5000/team/app"
    assert ref.name == "localhost:5000/team/app:1"
    only_digest = parse_reference(f"app@{DIGEST}")
    assert only_digest.tag is None and only_digest.name == f"docker.io/library/app@{DIGEST}"


@pytest.mark.parametrize("bad,why", [
    ("", "empty"),
    ("Busybox", "lowercase"),
    ("busybox:", "bad tag"),
    ("busybox:-x", "bad tag"),
    ("busybox@sha256:abc", "not a digest"),
    ("busybox@md5:" + "0" * 32, "not a digest"),
    ("a//b", "bad path component"),
    ("a/../b", "bad path component"),
    ("host:5000/", "no repository"),
    (" busybox", "spaces"),
    ("bad_host_.com:x/app", "bad"),
])
def test_invalid(bad, why):
    with pytest.raises(InvalidReference, match=why):
        parse_reference(bad)


@pytest.mark.parametrize("image,policy", [
    ("busybox", ALWAYS),
    ("busybox:latest", ALWAYS),
    ("host:5000/app", ALWAYS),
    ("busybox:1.36", IF_NOT_PRESENT),
    (f"busybox@{DIGEST}", IF_NOT_PRESENT),
    (f"busybox:1.36@{DIGEST}", IF_NOT_PRESENT),
    (f"busybox:latest@{DIGEST}", ALWAYS),  # Kubernetes looks at the tag only
])
def test_default_pull_policy(image, policy):
    assert default_pull_policy(image) == policy
