"""Dockerfile-style config changes (`docker import --change`)."""
from __future__ import annotations

import pytest

from pyruntime.image.changes import apply_changes
from pyruntime.image.errors import ImageError


def test_changes():
    base = {"config": {"Cmd": ["old"], "Env": ["A=1", "PATH=/bin"], "WorkingDir": "/srv"}}
    out = apply_changes(base, [
        'CMD ["/bin/sh", "-c", "echo hi"]',
        "ENV A=2 B='two words'",
        "ENV LEGACY value with spaces",
        "WORKDIR app",
        "USER 1000:1000",
        "EXPOSE 8080 53/udp",
        'LABEL org.example.x="y z"',
        'VOLUME ["/data"]',
        "STOPSIGNAL SIGINT",
    ])
    c = out["config"]
    assert c["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert c["Env"] == ["PATH=/bin", "A=2", "B=two words", "LEGACY=value with spaces"]
    assert c["WorkingDir"] == "/srv/app"
    assert c["User"] == "1000:1000"
    assert c["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert c["Labels"] == {"org.example.x": "y z"}
    assert c["Volumes"] == {"/data": {}}
    assert c["StopSignal"] == "SIGINT"
    assert base["config"]["Cmd"] == ["old"]  # the input is not changed


def test_shell_form_and_entrypoint_resets_cmd():
    out = apply_changes({"config": {"Cmd": ["inherited"]}}, ["ENTRYPOINT /app --flag"])
    assert out["config"]["Entrypoint"] == ["/bin/sh", "-c", "/app --flag"]
    assert out["config"]["Cmd"] is None
    out = apply_changes({}, ['ENTRYPOINT ["/bin/echo"]', 'CMD ["a"]'])
    assert out["config"]["Entrypoint"] == ["/bin/echo"] and out["config"]["Cmd"] == ["a"]


@pytest.mark.parametrize("bad", ["RUN apt-get update", "CMD [1, 2]", "EXPOSE http", "ENV =x",
                                 "USER", "WORKDIR"])
def test_invalid_changes(bad):
    with pytest.raises(ImageError, match="change"):
        apply_changes({}, [bad])
