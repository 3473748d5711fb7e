"""Parsing runc's command line the way runc (urfave/cli) does.

Flags may be written `--name`, `-name`, `--name=value` or `--name value`; one-letter
aliases (`-b`, `-d`); repeatable flags collect lists; flag parsing stops at the first
positional argument or `--`, so `exec ID ls -la` keeps `-la` for `ls`. argparse does not
accept the single-dash long form engines use, and costs milliseconds to import.
"""
from __future__ import annotations

from pyruntime.errors import PyruntimeError


class UsageError(PyruntimeError):
    """A command line that runc would refuse too."""

    exit_code = 1


class UnknownHelpTopic(UsageError):
    """`help NAME` of a command that does not exist (runc's exit code 3)."""

    exit_code = 3


class Flag:
    __slots__ = ("name", "aliases", "kind", "default", "help")

    def __init__(self, name: str, kind: type | str = bool, default=None, aliases=(),
                 help: str = "") -> None:
        self.name = name
        self.kind = kind  # bool, str, int, or "list"
        self.aliases = tuple(aliases)
        self.help = help
        self.default = ([] if kind == "list" else False if kind is bool else None
                        ) if default is None else default


class Command:
    __slots__ = ("name", "flags", "usage", "summary", "min_args", "max_args")

    def __init__(self, name: str, summary: str, usage: str, flags: list[Flag] = (),
                 min_args: int = 0, max_args: int | None = None) -> None:
        self.name = name
        self.summary = summary
        self.usage = usage
        self.flags = list(flags)
        self.min_args = min_args
        self.max_args = max_args


class Parsed:
    """Flag values by attribute (dashes become underscores) plus `args`."""

    def __init__(self, flags: list[Flag]) -> None:
        for flag in flags:
            setattr(self, flag.name.replace("-", "_"),
                    list(flag.default) if flag.kind == "list" else flag.default)
        self.args: list[str] = []


def parse_flags(argv: list[str], flags: list[Flag], where: str,
                parsed: Parsed | None = None) -> tuple[Parsed, list[str]]:
    """Parse leading flags of argv; return (values, the rest, starting at the first
    positional argument). Values go into `parsed` when given, which then holds the
    flags before a bad one too (the global --log and --log-format its error obeys)."""
    by_name = {}
    for flag in flags:
        by_name[flag.name] = flag
        for alias in flag.aliases:
            by_name[alias] = flag
    if parsed is None:
        parsed = Parsed(flags)
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            index += 1
            break
        if not token.startswith("-") or token == "-":
            break
        name, has_value, value = token.lstrip("-").partition("=")
        flag = by_name.get(name)
        if flag is None:
            raise UsageError(f"flag provided but not defined: {token} ({where})")
        attribute = flag.name.replace("-", "_")
        if flag.kind is bool:
            if has_value:
                if value not in ("true", "false", "1", "0"):
                    raise UsageError(f"invalid boolean value {value!r} for {token}")
                setattr(parsed, attribute, value in ("true", "1"))
            else:
                setattr(parsed, attribute, True)
            index += 1
            continue
        if not has_value:
            index += 1
            if index >= len(argv):
                raise UsageError(f"flag needs an argument: {token}")
            value = argv[index]
        index += 1
        if flag.kind is int:
            try:
                value = int(value)
            except ValueError:
                raise UsageError(f"invalid value {value!r} for {token}: not a number") from None
            if value < 0:
                raise UsageError(f"invalid value {value} for {token}: must not be negative")
        if flag.kind == "list":
            getattr(parsed, attribute).append(value)
        else:
            setattr(parsed, attribute, value)
    return parsed, argv[index:]


def parse_command(command: Command, argv: list[str]) -> Parsed:
    parsed, rest = parse_flags(argv, command.flags, command.name)
    if len(rest) < command.min_args:
        raise UsageError(
            f"{command.name}: expects {'at least ' if command.max_args != command.min_args else ''}"
            f"{command.min_args} argument(s)\nusage: pyruntime {command.name} {command.usage}"
        )
    if command.max_args is not None and len(rest) > command.max_args:
        raise UsageError(f"{command.name}: too many arguments\n"
                         f"usage: pyruntime {command.name} {command.usage}")
    parsed.args = rest
    return parsed


def help_text(commands: dict[str, Command], global_flags: list[Flag]) -> str:
    lines = ["usage: pyruntime [global options] command [command options] [arguments...]", "",
             "commands:"]
    for command in commands.values():
        lines.append(f"   {command.name:<10} {command.summary}")
    lines.append(f"   {'image':<10} manage images: pull, import, ls, inspect, rm, prune, bundle")
    lines.append(f"   {'help, h':<10} show the commands, or the help of one command")
    lines += ["", "global options:"]
    for flag in global_flags:
        lines.append(f"   --{flag.name:<18} {flag.help}")
    return "\n".join(lines) + "\n"


def command_help(command: Command) -> str:
    lines = [f"usage: pyruntime {command.name} [command options] {command.usage}", "",
             command.summary, ""]
    if command.flags:
        lines.append("options:")
        for flag in command.flags:
            names = ", ".join([f"--{flag.name}"] + [f"-{a}" for a in flag.aliases])
            lines.append(f"   {names:<28} {flag.help}")
    return "\n".join(lines) + "\n"
