/*
 * The `pyruntime` command as .ci/setup installs it (build.sh compiles this directory):
 * a small C front to the Python CLI, which is PYRUNTIME_PYTHON -S PYRUNTIME_SCRIPT ARGS...
 * (both paths compiled in).
 *
 * Why a C front, for two reasons that the start-up benchmark measured:
 *
 * - `create`, `run` and `exec` start the kernel's wait for a cgroup attach here, before
 *   Python starts (cgroup_warmup.c), and then run the Python CLI (an `exec` done here
 *   places its process at once and needs no warm-up).
 *
 * - `start`, `delete` and `kill` of a plain container are done here, without Python
 *   (native_commands.c). They make no process and do little: open a FIFO, remove a few
 *   directories, send a signal. An interpreter start alone (about 7-10 ms here) costs
 *   more than runc's whole `start` or `delete`, and an engine runs both for every
 *   container, so that create + start + delete could never come near runc's while
 *   each paid for one.
 *   The Python runtime stays the reference and does everything else: these commands
 *   hand over to it, before changing anything, for a container with hooks to run, a
 *   systemd unit, processes to kill, or anything unexpected in its record, for any flag
 *   but --root, --log, --log-format, --systemd-cgroup, --rootless and --criu, and for
 *   every error but the two that `start` can only report after it has acted.
 *   PYRUNTIME_PYTHON_ONLY=1 in the environment sends every command to Python.
 *
 * - `exec` of a plain process is done here too (native_exec.c): the container's own
 *   process with the command line's command, --env, --cwd and --user, or a --process
 *   file (as engines pass it), without a terminal, in the foreground or detached, in a
 *   container with no LSM label, user or time namespace or systemd unit (a seccomp
 *   profile it builds with libseccomp, opened only then). Its own work (join the
 *   namespaces and the cgroup, become the process's user with its capabilities, exec)
 *   takes a few milliseconds, while the interpreter start and the imports it pays for
 *   in Python took 12-14 ms, which no amount of trimming in Python brought under runc's
 *   two Go starts. Every other exec, and every error, goes to Python, which the native
 *   path is checked against output for output (tests/integration/test_native_commands.py);
 *   a process that fails before its program runs is reaped and the Python CLI does the
 *   exec again, as the reference.
 *
 * - `create` and `run` of a config whose init the runtime would fork itself get that
 *   init started here, before the runtime's interpreter (early_init.c): a fresh
 *   interpreter running the Python init, as runc runs `runc init`, so that the two
 *   interpreter starts and import phases overlap on two CPUs instead of following each
 *   other. Forked init spent ~2.5 ms importing after the runtime's fork and the fork
 *   itself ~1 ms; `run` of /bin/true went from 1.16-1.20x runc's time to ~1.0x.
 *   architecture.md's process model allows re-executing a fresh interpreter for init;
 *   what is new is only who starts it, and when.
 *
 * This is not a second runtime: each command is still one short process, as runc's,
 * and state.json stays what the Python runtime writes. The Python runtime alone creates
 * containers, and alone decides what they are; the C front reads only as much of
 * config.json as it needs to leave a config to Python.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgroup_warmup.h"
#include "early_init.h"
#include "command_line.h"
#include "native_commands.h"
#include "native_exec.h"
#include "runtime_log.h"

#ifndef PYRUNTIME_PYTHON
#error "build with -DPYRUNTIME_PYTHON=\"/path/to/venv/bin/python\""
#endif
#ifndef PYRUNTIME_SCRIPT
#error "build with -DPYRUNTIME_SCRIPT=\"/path/to/pyruntime/cli/scripts/pyruntime\""
#endif

#define DEFAULT_ROOT "/run/pyruntime"  /* pyruntime.oci.runtime.DEFAULT_ROOT */

/* runc's global flags that take a value as the next argument (pyruntime.cli.main). */
static const char *const VALUE_FLAGS[] = {
    "--root", "--log", "--log-format", "--criu", "--rootless", NULL,
};

/* The global flags as far as the native commands need them. */
struct global_options {
    const char *root;
    struct runtime_log log;
    int unusual;      /* a flag, or a form of one, that only the Python CLI handles */
    int debug;        /* --debug: its lines only Python writes */
    int systemd_cgroup;
    int command;      /* argv index of the command name; argc when there is none */
};

static int takes_value(const char *name, size_t length)
{
    for (const char *const *flag = VALUE_FLAGS; *flag; flag++)
        if (is_flag(name, length, *flag + 2))
            return 1;
    return 0;
}

/* The command name is the first argument that is neither a global flag nor its value. */
static struct global_options parse_global_options(int argc, char **argv)
{
    struct global_options options = {
        .root = DEFAULT_ROOT, .log = {.path = NULL, .json = 0}, .command = argc,
    };
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || strcmp(arg, "-") == 0 || strcmp(arg, "--") == 0) {
            options.command = arg[0] == '-' ? argc : i;
            options.unusual |= arg[0] == '-';
            break;
        }
        size_t length;
        const char *name = flag_name(arg, &length);
        if (!takes_value(name, length)) {
            int plain = name[length] != '=';
            int systemd_cgroup = plain && is_flag(name, length, "systemd-cgroup");
            int debug = plain && is_flag(name, length, "debug");
            options.unusual |= !systemd_cgroup && !debug;
            options.debug |= debug;
            options.systemd_cgroup |= systemd_cgroup;
            continue;
        }
        const char *value = name[length] == '=' ? name + length + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc) {
                options.unusual = 1;
                break;
            }
            value = argv[++i];
        }
        if (is_flag(name, length, "root"))
            options.root = value;
        else if (is_flag(name, length, "log"))
            options.log.path = value;
        else if (is_flag(name, length, "log-format"))
            options.log.json = strcmp(value, "json") == 0;
        if (value[0] == '\0' || (is_flag(name, length, "log-format") &&
                                 strcmp(value, "json") != 0 && strcmp(value, "text") != 0))
            options.unusual = 1;  /* for the Python CLI to refuse */
    }
    return options;
}

/* `start ID`, `delete [-f|--force] ID`: the ID, or NULL for any other form of them. */
static const char *container_id(int argc, char **argv, int first, int force_allowed)
{
    const char *id = NULL;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' && !id) {
            id = arg;
            continue;
        }
        size_t length;
        const char *name = flag_name(arg, &length);
        int is_force = is_flag(name, length, "force") || is_flag(name, length, "f");
        if (arg[0] != '-' || id || !force_allowed || !is_force || name[length] == '=')
            return NULL;
    }
    return id;
}

/* `kill ID [SIGNAL]`: 1 with `id` and `signal` (NULL: none given), 0 for any other form
 * (--all, a flag, more arguments), which the Python CLI reads. */
static int kill_arguments(int argc, char **argv, int first, const char **id,
                          const char **signal)
{
    int count = argc - first;
    if (count < 1 || count > 2)
        return 0;
    for (int i = first; i < argc; i++)
        if (argv[i][0] == '-')
            return 0;
    *id = argv[first];
    *signal = count == 2 ? argv[first + 1] : NULL;
    return 1;
}

/* PYRUNTIME_PYTHON_ONLY=1: every command to Python, with nothing done here first. */
static int python_only_asked(void)
{
    const char *value = getenv("PYRUNTIME_PYTHON_ONLY");
    return value && strcmp(value, "1") == 0;
}

/* The exit code of a command done here, or PYTHON_NEEDED. */
static int native_command(int argc, char **argv, const struct global_options *options)
{
    if (options->unusual || options->debug || options->command >= argc ||
        python_only_asked())
        return PYTHON_NEEDED;
    const char *command = argv[options->command];
    const char *id;
    const char *signal;
    if (strcmp(command, "start") == 0 &&
        (id = container_id(argc, argv, options->command + 1, 0)) != NULL)
        return native_start(options->root, id, &options->log);
    if (strcmp(command, "delete") == 0 &&
        (id = container_id(argc, argv, options->command + 1, 1)) != NULL)
        return native_delete(options->root, id);
    if (strcmp(command, "kill") == 0 &&
        kill_arguments(argc, argv, options->command + 1, &id, &signal))
        return native_kill(options->root, id, signal);
    if (strcmp(command, "exec") == 0)
        return native_exec(options->root, argc, argv, options->command + 1, &options->log);
    return PYTHON_NEEDED;
}

int main(int argc, char **argv)
{
    struct global_options options = parse_global_options(argc, argv);
    int code = native_command(argc, argv, &options);
    if (code != PYTHON_NEEDED)
        return code;
    const char *command = options.command < argc ? argv[options.command] : "";
    if (strcmp(command, "create") == 0 || strcmp(command, "run") == 0 ||
        strcmp(command, "exec") == 0) {
        /* The warm-up child first: besides its own job it gets the other CPU out of
         * idle before init is sent there (an A/B of 250 runs: `run` took 0.94-0.95 of
         * its time with init started first). */
        pid_t helper = start_cgroup_warmup();
        if (helper > 0) {
            char value[16];
            snprintf(value, sizeof value, "%d", (int)helper);
            setenv("PYRUNTIME_WARMUP_PID", value, 1);
        }
        /* $LISTEN_FDS: socket activation hands init fds 3.. as preserved fds, which an
         * early init is never given (pyruntime.cli.socket_activation). */
        if (strcmp(command, "exec") != 0 && !options.unusual && !options.systemd_cgroup &&
            !python_only_asked() && !getenv("LISTEN_FDS"))
            start_early_init(argc, argv, options.command + 1, strcmp(command, "run") == 0);
    }
    char **python_argv = calloc((size_t)argc + 3, sizeof *python_argv);
    if (!python_argv) {
        perror("pyruntime");
        return 255;
    }
    python_argv[0] = PYRUNTIME_PYTHON;
    python_argv[1] = "-S";
    python_argv[2] = PYRUNTIME_SCRIPT;
    for (int i = 1; i < argc; i++)
        python_argv[i + 2] = argv[i];
    execv(PYRUNTIME_PYTHON, python_argv);
    fprintf(stderr, "pyruntime: cannot run %s: %m\n", PYRUNTIME_PYTHON);
    return 255;
}
