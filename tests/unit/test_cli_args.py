"""pyruntime.cli.args reads a command line as runc's parser (urfave/cli) does; and the
values the CLI reads from flags and the environment on top of it (`exec --cgroup`,
`-g`, `$LISTEN_FDS`)."""
from __future__ import annotations

import os

import pytest

from pyruntime.cli.args import (Command, Flag, Parsed, UnknownHelpTopic, UsageError,
                                command_help, help_text, parse_command, parse_flags)
from pyruntime.cli.exec_process import process_from_flags, sub_cgroups_from_flags
from pyruntime.cli.main import COMMANDS, GLOBAL_FLAGS
from pyruntime.cli.socket_activation import listen_fds

FLAGS = [
    Flag("bundle", str, ".", aliases=("b",)),
    Flag("detach", aliases=("d",)),
    Flag("preserve-fds", int, 0),
    Flag("env", "list", aliases=("e",)),
]


def parse(*argv: str):
    return parse_flags(list(argv), FLAGS, "test")


@pytest.mark.parametrize("argv", [
    ("--bundle", "/b", "ID"), ("-bundle", "/b", "ID"), ("--bundle=/b", "ID"),
    ("-bundle=/b", "ID"), ("-b", "/b", "ID"), ("--b", "/b", "ID"), ("-b=/b", "ID"),
])
def test_the_forms_of_a_value_flag(argv):
    parsed, rest = parse(*argv)
    assert (parsed.bundle, rest) == ("/b", ["ID"])


def test_defaults_and_attribute_names():
    parsed, rest = parse("ID")
    assert (parsed.bundle, parsed.detach, parsed.preserve_fds, parsed.env) == (".", False, 0, [])
    assert rest == ["ID"]


@pytest.mark.parametrize("argv, value", [
    (("-d",), True), (("--detach",), True), (("-detach",), True), (("--detach=true",), True),
    (("--detach=false",), False), (("-d=1",), True), (("-d=0",), False),
])
def test_a_bool_flag(argv, value):
    parsed, rest = parse(*argv, "ID")
    assert (parsed.detach, rest) == (value, ["ID"])


def test_a_bool_flag_takes_no_value_from_the_next_argument():
    parsed, rest = parse("-d", "true", "x")
    assert parsed.detach is True
    assert rest == ["true", "x"]


@pytest.mark.parametrize("value", ["yes", "", "2"])
def test_a_bool_flag_refuses_other_values(value):
    with pytest.raises(UsageError, match=f"invalid boolean value '{value}' for --detach="):
        parse(f"--detach={value}", "ID")


def test_parsing_stops_at_the_first_positional_argument():
    parsed, rest = parse("-d", "ID", "ls", "-la", "--bundle", "x")
    assert parsed.detach and parsed.bundle == "."
    assert rest == ["ID", "ls", "-la", "--bundle", "x"]


def test_double_dash_ends_the_flags():
    parsed, rest = parse("-d", "--", "--bundle", "x")
    assert parsed.bundle == "."
    assert rest == ["--bundle", "x"]


def test_a_lone_dash_is_an_argument():
    assert parse("-", "x")[1] == ["-", "x"]


def test_a_list_flag_collects_every_value():
    parsed, _ = parse("-e", "A=1", "--env", "B=2", "--env=C=3", "ID")
    assert parsed.env == ["A=1", "B=2", "C=3"]


def test_the_last_value_of_a_flag_wins():
    assert parse("-b", "one", "--bundle", "two", "ID")[0].bundle == "two"


@pytest.mark.parametrize("token", ["--nope", "-nope", "--nope=1", "-x"])
def test_an_unknown_flag_is_a_clear_usage_error(token):
    with pytest.raises(UsageError) as info:
        parse(token, "ID")
    assert str(info.value) == f"flag provided but not defined: {token} (test)"
    assert info.value.exit_code == 1


def test_a_value_flag_at_the_end_needs_its_value():
    with pytest.raises(UsageError, match="flag needs an argument: --bundle"):
        parse("--bundle")


@pytest.mark.parametrize("value, message", [("x", "not a number"),
                                            ("-1", "must not be negative")])
def test_an_int_flag(value, message):
    assert parse("--preserve-fds", "3", "ID")[0].preserve_fds == 3
    with pytest.raises(UsageError, match=message):
        parse("--preserve-fds", value, "ID")


def test_the_values_before_a_bad_flag_are_kept_in_the_given_object():
    """The CLI logs a bad global flag where the --log and --log-format before it say."""
    options = Parsed(GLOBAL_FLAGS)
    with pytest.raises(UsageError):
        parse_flags(["--log", "/x.log", "--log-format=json", "--bad", "--root", "/r", "list"],
                    GLOBAL_FLAGS, "global options", options)
    assert (options.log, options.log_format, options.root) == ("/x.log", "json",
                                                               "/run/pyruntime")


def test_parse_command_counts_the_arguments():
    command = Command("kill", "send a signal", "<container-id> [signal]",
                      [Flag("all", aliases=("a",))], 1, 2)
    parsed = parse_command(command, ["-a", "ID", "0"])
    assert (parsed.all, parsed.args) == (True, ["ID", "0"])
    with pytest.raises(UsageError, match="kill: expects at least 1 argument"):
        parse_command(command, ["-a"])
    with pytest.raises(UsageError, match="kill: too many arguments"):
        parse_command(command, ["ID", "0", "x"])


def test_the_short_forms_runc_has():
    short = {(name, alias) for name, command in COMMANDS.items() for flag in command.flags
             for alias in flag.aliases}
    assert {("create", "b"), ("run", "b"), ("spec", "b"), ("run", "d"), ("kill", "a"),
            ("delete", "f"), ("list", "f"), ("list", "q"), ("ps", "f"), ("exec", "t"),
            ("exec", "p"), ("exec", "d"), ("exec", "e"), ("exec", "u"), ("exec", "g"),
            ("exec", "c"), ("update", "r")} <= short
    assert {alias for flag in GLOBAL_FLAGS for alias in flag.aliases} == {"v", "h"}


def test_help_lists_help_and_shows_a_commands_flags():
    assert "   help, h " in help_text(COMMANDS, GLOBAL_FLAGS)
    assert "--all, -a" in command_help(COMMANDS["kill"])
    assert UnknownHelpTopic.exit_code == 3 and issubclass(UnknownHelpTopic, UsageError)


# --------------------------------------------------------------------------- exec's flags
@pytest.mark.parametrize("values, paths", [
    ([], None),
    (["sub"], {"": "sub"}),
    (["/a/b"], {"": "/a/b"}),
    (["memory:sub"], {"memory": "sub"}),
    (["cpu,cpuacct:x", "pids:y"], {"cpu": "x", "cpuacct": "x", "pids": "y"}),
    (["name=systemd:s"], {"name=systemd": "s"}),
])
def test_exec_cgroup_values(values, paths):
    assert sub_cgroups_from_flags(values) == paths


@pytest.mark.parametrize("values, message", [
    (["a:b:c"], "invalid --cgroup argument: a:b:c"),
    (["sub", "memory:sub"], "invalid --cgroup argument: sub (missing <controller>: prefix)"),
    ([":sub"], "empty controller name"),
    (["cpu,:sub"], "empty controller name"),
])
def test_exec_cgroup_values_refused(values, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sub_cgroups_from_flags(values)


def _exec_flags(**values):
    parsed = Parsed(COMMANDS["exec"].flags)
    parsed.args = ["ID", "id"]
    for key, value in values.items():
        setattr(parsed, key, value)
    return parsed


def test_exec_additional_gids_add_to_the_containers():
    config = {"process": {"args": ["sh"], "cwd": "/", "env": [],
                          "user": {"uid": 0, "gid": 0, "additionalGids": [5]}}}
    process = process_from_flags(_exec_flags(additional_gids=["6", "7"]), config)
    assert process["user"]["additionalGids"] == [5, 6, 7]
    assert config["process"]["user"]["additionalGids"] == [5]  # the record's, unchanged
    process = process_from_flags(_exec_flags(additional_gids=["6"]),
                                 {"process": {"args": ["sh"], "cwd": "/", "user": {}}})
    assert process["user"]["additionalGids"] == [6]
    for bad in ("x", "-1"):
        with pytest.raises(UsageError, match="--additional-gids"):
            process_from_flags(_exec_flags(additional_gids=[bad]), config)


# --------------------------------------------------------------------------- $LISTEN_FDS
@pytest.mark.parametrize("environ, count", [
    ({"LISTEN_PID": "42", "LISTEN_FDS": "2"}, 2),
    ({"LISTEN_PID": "41", "LISTEN_FDS": "2"}, 0),   # another process's
    ({"LISTEN_FDS": "2"}, 0),
    ({"LISTEN_PID": "42"}, 0),
    ({"LISTEN_PID": "42", "LISTEN_FDS": "0"}, 0),
    ({"LISTEN_PID": "42", "LISTEN_FDS": "x"}, 0),
    ({"LISTEN_PID": "x", "LISTEN_FDS": "2"}, 0),
    ({"LISTEN_PID": "42", "LISTEN_FDS": "-3"}, 0),
])
def test_listen_fds(environ, count):
    assert listen_fds(environ, pid=42) == count


def test_listen_fds_of_this_process(monkeypatch):
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "3")
    assert listen_fds() == 3


def test_socket_activation_adds_the_environment():
    from pyruntime.oci.runtime import _add_socket_activation

    config = {"process": {"env": ["PATH=/bin"]}}
    _add_socket_activation(config, 0)
    assert config["process"]["env"] == ["PATH=/bin"]
    _add_socket_activation(config, 2)
    assert config["process"]["env"] == ["PATH=/bin", "LISTEN_FDS=2", "LISTEN_PID=1"]
