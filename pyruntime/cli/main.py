"""The `pyruntime` command: runc's commands and flags over `pyruntime.oci.runtime.Runtime`.

Exit codes: the container's own for `run` and `exec` in the foreground (128+N when killed
by signal N), 127/126 when its executable is missing/not executable, 255 when the runtime
itself failed, 1 for a usage error.
"""
from __future__ import annotations

import os
import sys

from pyruntime.cli.args import Command, Flag, UnknownHelpTopic, UsageError, command_help
from pyruntime.cli.args import Parsed, help_text, parse_command
from pyruntime.cli.args import parse_flags
from pyruntime.cli.update_flags import UPDATE_FLAGS
from pyruntime.errors import PyruntimeError

GLOBAL_FLAGS = [
    Flag("root", str, "/run/pyruntime", help="root directory for storage of container state"),
    Flag("log", str, help="set the log file to write runtime logs to (default: stderr)"),
    Flag("log-format", str, "text", help="set the log format ('text' or 'json')"),
    Flag("debug", help="enable debug logging"),
    Flag("systemd-cgroup", help="use systemd for cgroups: cgroupsPath is slice:prefix:name, "
         "the container a transient unit made over D-Bus"),
    Flag("rootless", str, "auto", help="ignore cgroup permission errors (true, false, auto)"),
    Flag("criu", str, help="path to criu (accepted for compatibility; unused)"),
    Flag("version", aliases=("v",), help="print the version"),
    Flag("help", aliases=("h",), help="show help"),
]

_CONSOLE = Flag("console-socket", str, help="path to an AF_UNIX socket which will receive "
                "the pty master")
_PID_FILE = Flag("pid-file", str, help="file to write the process id to")
_PRESERVE = Flag("preserve-fds", int, 0, help="pass N additional file descriptors (3..3+N-1)")
_BUNDLE = Flag("bundle", str, ".", aliases=("b",), help="path to the root of the bundle")
_NO_PIVOT = Flag("no-pivot", help="do not use pivot_root (chroot instead)")
_NO_KEYRING = Flag("no-new-keyring", help="do not create a new session keyring")

COMMANDS = {c.name: c for c in (
    Command("create", "create a container", "<container-id>",
            [_BUNDLE, _CONSOLE, _PID_FILE, _NO_PIVOT, _NO_KEYRING, _PRESERVE], 1, 1),
    Command("start", "execute the user process of a created container", "<container-id>",
            [], 1, 1),
    Command("run", "create and run a container", "<container-id>",
            [_BUNDLE, _CONSOLE, Flag("detach", aliases=("d",), help="detach from the container"),
             Flag("keep", help="do not delete the container after it exits"),
             _PID_FILE, Flag("no-subreaper", help="accepted for compatibility"),
             _NO_PIVOT, _NO_KEYRING, _PRESERVE], 1, 1),
    Command("state", "output the state of a container", "<container-id>", [], 1, 1),
    Command("kill", "send a signal to the container's init (default SIGTERM)",
            "<container-id> [signal]",
            [Flag("all", aliases=("a",), help="send the signal to all processes")], 1, 2),
    Command("delete", "delete a container and its resources", "<container-id>...",
            [Flag("force", aliases=("f",), help="kill the container first if it is running")],
            1, None),
    Command("list", "list containers", "",
            [Flag("format", str, "table", aliases=("f",), help="table or json"),
             Flag("quiet", aliases=("q",), help="display only container IDs")], 0, 0),
    Command("ps", "list the processes of a container", "<container-id> [ps options]",
            [Flag("format", str, "table", aliases=("f",), help="table or json")], 1, None),
    Command("exec", "execute a new process in a running container",
            "<container-id> <command> [args...]",
            [_CONSOLE, Flag("cwd", str, help="working directory in the container"),
             Flag("env", "list", aliases=("e",), help="set an environment variable"),
             Flag("tty", aliases=("t",), help="allocate a pseudo-TTY"),
             Flag("user", str, aliases=("u",), help="UID[:GID]"),
             Flag("additional-gids", "list", aliases=("g",), help="additional gids"),
             Flag("process", str, aliases=("p",), help="path to a process.json"),
             Flag("detach", aliases=("d",), help="detach from the process"),
             _PID_FILE,
             Flag("process-label", str, help="SELinux label (not supported)"),
             Flag("apparmor", str, help="AppArmor profile (not supported)"),
             Flag("no-new-privs", help="set no_new_privs for the process"),
             Flag("cap", "list", aliases=("c",), help="add a capability"),
             _PRESERVE,
             Flag("ignore-paused", help="allow exec in a paused container (the process "
                  "stays frozen with it until resume)"),
             Flag("cgroup", "list", help="run the process in an existing sub-cgroup of the "
                  "container's: [CONTROLLER[,CONTROLLER...]:]PATH")], 1, None),
    Command("spec", "create a new specification file (config.json)", "",
            [_BUNDLE, Flag("rootless", help="a spec for a rootless container")], 0, 0),
    Command("features", "show the enabled features", "", [], 0, 0),
    Command("pause", "pause all processes of a container", "<container-id>", [], 1, 1),
    Command("resume", "resume all processes of a paused container", "<container-id>", [], 1, 1),
    Command("update", "update the resource limits of a container", "<container-id>",
            UPDATE_FLAGS, 1, 1),
    Command("events", "display container events and statistics", "<container-id>",
            [Flag("stats"), Flag("interval", str, "5s")], 1, 1),
)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    early_init = _take_early_init()
    try:
        return _main(argv, early_init)
    finally:
        if early_init is not None:
            early_init.discard()  # unless `create` or `run` adopted it


def _take_early_init():
    """The init the launcher started for a `create` or `run` (pyruntime.oci.early_init),
    or None."""
    if "PYRUNTIME_EARLY_INIT" not in os.environ:
        return None
    from pyruntime.oci.early_init import EarlyInit

    return EarlyInit.from_environment()


def _main(argv: list[str], early_init) -> int:
    options = Parsed(GLOBAL_FLAGS)
    try:
        options, rest = parse_flags(argv, GLOBAL_FLAGS, "global options", options)
    except PyruntimeError as error:
        from pyruntime.cli.log import RuntimeLog

        # Logged where the --log and --log-format given before the bad flag say.
        log_format = options.log_format if options.log_format in ("text", "json") else "text"
        RuntimeLog(options.log, log_format).error(str(error))
        return error.exit_code
    from pyruntime.cli.log import RuntimeLog

    log = RuntimeLog(options.log, options.log_format, options.debug)
    try:
        if options.log_format not in ("text", "json"):
            raise UsageError(f"invalid log format {options.log_format!r}: use text or json")
        if options.version:
            return _print_version()
        if options.help or not rest:
            sys.stdout.write(help_text(COMMANDS, GLOBAL_FLAGS))
            return 0 if options.help else 1
        name, command_argv = rest[0], rest[1:]
        if name in ("help", "h"):
            return _help(command_argv)
        if name == "image":
            from pyruntime.cli.image_cli import image_main

            return image_main(command_argv)
        command = COMMANDS.get(name)
        if command is None:
            raise UsageError(f"no such command: {name}")
        if "--help" in command_argv[:1] or "-h" in command_argv[:1]:
            sys.stdout.write(command_help(command))
            return 0
        parsed = parse_command(command, command_argv)
        log.debug(f"pyruntime {name} {' '.join(command_argv)} (root {options.root})")
        parsed.early_init = early_init if name in ("create", "run") else None
        code = _dispatch(name, parsed, options, log)
        log.debug(f"{name} finished with exit code {code}")
        return code
    except PyruntimeError as error:
        log.error(str(error))
        return error.exit_code
    except KeyboardInterrupt:
        return 130


def _help(topics: list[str]) -> int:
    """runc's `help [COMMAND]`: the command list, or one command's help."""
    if not topics:
        sys.stdout.write(help_text(COMMANDS, GLOBAL_FLAGS))
        return 0
    topic = topics[0]
    if topic == "image":
        from pyruntime.cli.image_cli import image_main

        return image_main(["--help"])
    if topic in ("help", "h"):
        sys.stdout.write("usage: pyruntime help [command]\n\nshow the commands, or the "
                         "help of one command\n")
        return 0
    if topic not in COMMANDS:
        raise UnknownHelpTopic(f"No help topic for '{topic}'")
    sys.stdout.write(command_help(COMMANDS[topic]))
    return 0


def _print_version() -> int:
    from pyruntime import OCI_VERSION, __version__

    sys.stdout.write(f"pyruntime version {__version__}\nspec: {OCI_VERSION}\n")
    return 0


def _dispatch(name: str, parsed, options, log) -> int:
    from pyruntime.oci.runtime import Runtime

    if name == "spec":
        from pyruntime.oci.spec_defaults import write_default_spec

        write_default_spec(parsed.bundle, parsed.rootless)
        return 0
    if name == "features":
        from pyruntime import jsonlite
        from pyruntime.oci.features import features

        sys.stdout.write(jsonlite.dumps_pretty(features()) + "\n")
        return 0
    parsed.listen_fds = 0
    if name in ("create", "run") and "LISTEN_FDS" in os.environ:
        from pyruntime.cli.socket_activation import listen_fds

        parsed.listen_fds = listen_fds()
        # The activation's fds come first, then --preserve-fds' (runc's order).
        parsed.preserve_fds += parsed.listen_fds
    runtime = Runtime(options.root, warn=log.warning, debug=log.debug,
                      systemd_cgroup=options.systemd_cgroup)
    handler = globals()[f"_cmd_{name}"]
    return handler(runtime, parsed, log)


def _cmd_create(runtime, parsed, log) -> int:
    runtime.create(parsed.args[0], parsed.bundle, pid_file=parsed.pid_file,
                   console_socket=parsed.console_socket, preserve_fds=parsed.preserve_fds,
                   no_pivot=parsed.no_pivot, no_new_keyring=parsed.no_new_keyring,
                   listen_fds=parsed.listen_fds, early_init=parsed.early_init)
    return 0


def _cmd_start(runtime, parsed, log) -> int:
    runtime.start(parsed.args[0])
    return 0


def _cmd_run(runtime, parsed, log) -> int:
    status = runtime.run(parsed.args[0], parsed.bundle, detach=parsed.detach, keep=parsed.keep,
                         pid_file=parsed.pid_file, console_socket=parsed.console_socket,
                         preserve_fds=parsed.preserve_fds, no_pivot=parsed.no_pivot,
                         no_new_keyring=parsed.no_new_keyring,
                         listen_fds=parsed.listen_fds, early_init=parsed.early_init)
    return 0 if status is None else status.code


def _cmd_state(runtime, parsed, log) -> int:
    from pyruntime import jsonlite

    sys.stdout.write(jsonlite.dumps_pretty(runtime.state(parsed.args[0])) + "\n")
    return 0


def _cmd_kill(runtime, parsed, log) -> int:
    from pyruntime.linux.signals import parse_signal

    signal_number = parse_signal(parsed.args[1]) if len(parsed.args) > 1 else 15
    runtime.kill(parsed.args[0], signal_number, all_processes=parsed.all)
    return 0


def _cmd_delete(runtime, parsed, log) -> int:
    from pyruntime.oci.errors import ContainerNotFound

    failed = 0
    for container_id in parsed.args:
        try:
            runtime.delete(container_id, force=parsed.force)
        except ContainerNotFound as error:
            if not parsed.force:
                log.error(str(error))
                failed = 255
        except PyruntimeError as error:
            log.error(str(error))
            failed = error.exit_code
    return failed


def _cmd_list(runtime, parsed, log) -> int:
    from pyruntime.cli.output import container_table

    states = runtime.list()
    for state in states:
        # `state` leaves the owner empty; runc's `list` names the state directory's.
        state["owner"] = _owner_name(runtime.store.directory(state["id"]))
    if parsed.quiet:
        sys.stdout.write("".join(f"{s['id']}\n" for s in states))
    elif parsed.format == "json":
        from pyruntime import jsonlite

        sys.stdout.write(jsonlite.dumps(states) + "\n")
    elif parsed.format == "table":
        sys.stdout.write(container_table(states))
    else:
        raise UsageError(f"invalid format option {parsed.format!r}: use table or json")
    return 0


def _owner_name(directory: str) -> str:
    """The user name of the directory's owner, or "#UID" without one (runc's form)."""
    import pwd

    try:
        uid = os.stat(directory).st_uid
    except FileNotFoundError:
        return ""  # deleted while we listed
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def _cmd_ps(runtime, parsed, log) -> int:
    from pyruntime.cli.output import process_table

    pids = runtime.ps(parsed.args[0])
    if parsed.format == "json":
        from pyruntime import jsonlite

        sys.stdout.write(jsonlite.dumps(pids) + "\n")
    elif parsed.format == "table":
        sys.stdout.write(process_table(pids, parsed.args[1:] or ["-ef"]))
    else:
        raise UsageError(f"invalid format option {parsed.format!r}: use table or json")
    return 0


def _cmd_exec(runtime, parsed, log) -> int:
    from pyruntime.cli.exec_process import process_from_flags, sub_cgroups_from_flags

    container_id = parsed.args[0]
    record = runtime.store.load(container_id)
    process = process_from_flags(parsed, record.config)
    if parsed.detach and process.get("terminal") and not parsed.console_socket:
        raise UsageError("cannot allocate a tty for a detached exec without --console-socket")
    result = runtime.exec(container_id, process, detach=parsed.detach,
                          console_socket=parsed.console_socket, pid_file=parsed.pid_file,
                          preserve_fds=parsed.preserve_fds,
                          ignore_paused=parsed.ignore_paused,
                          sub_cgroups=sub_cgroups_from_flags(parsed.cgroup))
    return 0 if parsed.detach else result.code


def _cmd_pause(runtime, parsed, log) -> int:
    runtime.pause(parsed.args[0])
    return 0


def _cmd_resume(runtime, parsed, log) -> int:
    runtime.resume(parsed.args[0])
    return 0


def _cmd_update(runtime, parsed, log) -> int:
    from pyruntime.cli.update_flags import resources_from_flags

    runtime.update(parsed.args[0], resources_from_flags(parsed))
    return 0


def _cmd_events(runtime, parsed, log) -> int:
    import gc

    from pyruntime import jsonlite
    from pyruntime.cli.update_flags import parse_duration

    container_id = parsed.args[0]
    if parsed.stats:
        event = {"type": "stats", "id": container_id, "data": runtime.stats(container_id)}
        sys.stdout.write(jsonlite.dumps(event) + "\n")
        return 0
    interval = parse_duration(parsed.interval, "interval")
    if interval <= 0:
        raise UsageError("--interval must be greater than 0")
    gc.enable()  # long-running: see the `pyruntime` script
    events = runtime.events(container_id, interval)
    try:
        for event in events:
            sys.stdout.write(jsonlite.dumps(event) + "\n")
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader is gone (`events ID | head -1`): stop quietly, with the status a
        # shell shows for a command a closed pipe ended (128 + SIGPIPE), as runc's.
        _discard_stdout()
        return 141
    finally:
        events.close()
    return 0


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that what is still buffered for a closed pipe is
    not written (and failed) again on the way out."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
