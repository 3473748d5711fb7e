/*
 * The early init of `create` and `run` (see main.c and pyruntime/oci/early_init.py).
 *
 * The runtime forks a container's init once its interpreter has started, imported its
 * modules and validated the config, and init then spends milliseconds importing what it
 * needs and making its namespaces before it can build the rootfs: two stretches of
 * Python one after the other, on a machine with a CPU to spare. So for a config whose
 * init the runtime would fork itself (no user or time namespace, no PID namespace joined
 * by path, no terminal) and a command line that hands init nothing else (no console
 * socket, no preserved fds), this starts init first, as a fresh interpreter running
 * `pyruntime init BUNDLE`, in a new PID namespace when the config asks for one, and the
 * runtime's own interpreter right after.
 *
 * config.json is read once, here, into a sealed memfd that both read: init and runtime
 * validate the same bytes, whatever happens to the file meanwhile. Init acts on nothing
 * before it has validated them, and waits for the runtime's `placed` before it touches
 * the container's cgroup. The channel is two pipes; init gets
 * PYRUNTIME_EARLY_INIT=READ,WRITE,CONFIG, the runtime PID,READ,WRITE,CONFIG. Nothing
 * here decides what the container is: anything unexpected and no init is started.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "command_line.h"
#include "early_init.h"
#include "json_reader.h"
#include "state_record.h"

#define ENVIRONMENT "PYRUNTIME_EARLY_INIT"

/* The bundle of `create|run [FLAGS] ID` (pyruntime.cli.main's flags), or NULL for a form
 * that hands init more than the config (a console socket, preserved fds) or that the
 * Python CLI is to read (anything unusual). */
static const char *bundle_of(int argc, char **argv, int first, int is_run)
{
    const char *bundle = ".";
    int ids = 0;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-') {
            ids++;
            continue;
        }
        if (ids || strcmp(arg, "-") == 0 || strcmp(arg, "--") == 0)
            return NULL;
        size_t length;
        const char *name = flag_name(arg, &length);
        int has_value = name[length] == '=';
        int is_bundle = is_flag(name, length, "bundle") || is_flag(name, length, "b");
        if (is_bundle || is_flag(name, length, "pid-file")) {
            const char *value = has_value ? name + length + 1 : i + 1 < argc ? argv[++i] : NULL;
            if (!value || !value[0])
                return NULL;
            if (is_bundle)
                bundle = value;
            continue;
        }
        int is_switch = is_flag(name, length, "no-pivot") ||
                        is_flag(name, length, "no-new-keyring") ||
                        (is_run && (is_flag(name, length, "detach") || is_flag(name, length, "d") ||
                                    is_flag(name, length, "keep") ||
                                    is_flag(name, length, "no-subreaper")));
        if (!is_switch || has_value)
            return NULL;
    }
    return ids == 1 ? bundle : NULL;
}

/* The clone flags of an early init for this config.json (CLONE_NEWPID or 0), or -1 when
 * the runtime would not fork its init itself, or the text is not what it expects. */
static int clone_flags_for(const char *text, size_t length)
{
    const char *end = text + length;
    const char *config = json_document(text, end);
    const char *process = config ? json_member(config, end, "process") : NULL;
    if (!process || *process != '{')
        return -1;
    const char *terminal = json_member(process, end, "terminal");
    if (terminal && !json_is_falsy(terminal, end))
        return -1;
    const char *linux_section = json_member(config, end, "linux");
    const char *namespaces = linux_section ? json_member(linux_section, end, "namespaces")
                                           : NULL;
    if (json_is_null(namespaces, end))
        return 0;
    struct json_walk walk;
    if (json_enter(&walk, namespaces, end) != 0)
        return -1;
    int flags = 0, more;
    const char *key, *namespace;
    while ((more = json_next(&walk, &key, &namespace)) == 1) {
        char type[16];
        if (json_string(json_member(namespace, end, "type"), end, type, sizeof type) != 0)
            return -1;
        const char *path = json_member(namespace, end, "path");
        int joined = path && !json_is_falsy(path, end);
        if (strcmp(type, "user") == 0 || strcmp(type, "time") == 0 ||
            (strcmp(type, "pid") == 0 && joined))
            return -1;
        if (strcmp(type, "pid") == 0)
            flags |= CLONE_NEWPID;
    }
    return more == 0 ? flags : -1;
}

/* A sealed memfd holding `text`, or -1. Not close-on-exec: both interpreters read it. */
static int sealed_copy(const char *text, size_t length)
{
    int fd = memfd_create("config.json", MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    if (write(fd, text, length) != (ssize_t)length ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void start_early_init(int argc, char **argv, int first, int is_run)
{
    const char *bundle = bundle_of(argc, argv, first, is_run);
    char path[PATH_MAX];
    if (!bundle || snprintf(path, sizeof path, "%s/config.json", bundle) >= (int)sizeof path)
        return;
    size_t length;
    char *text = read_whole_file(AT_FDCWD, path, &length);
    if (!text)
        return;
    int flags = clone_flags_for(text, length);
    int config_fd = flags < 0 ? -1 : sealed_copy(text, length);
    free(text);
    if (config_fd < 0)
        return;
    int to_init[2], from_init[2];
    if (pipe(to_init) != 0) {
        close(config_fd);
        return;
    }
    if (pipe(from_init) != 0) {
        close(to_init[0]);
        close(to_init[1]);
        close(config_fd);
        return;
    }
    /* clone rather than unshare + fork: this process becomes the runtime, whose own
     * children (hooks) must stay in its PID namespace. */
    pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)flags | SIGCHLD, 0, 0, 0, 0);
    char value[64];
    if (pid == 0) {
        close(to_init[1]);
        close(from_init[0]);
        snprintf(value, sizeof value, "%d,%d,%d", to_init[0], from_init[1], config_fd);
        setenv(ENVIRONMENT, value, 1);
        unsetenv("PYRUNTIME_WARMUP_PID");  /* the runtime's to stop, not init's */
        char *init_argv[] = {PYRUNTIME_PYTHON, "-S", PYRUNTIME_SCRIPT, "init", (char *)bundle,
                             NULL};
        execv(PYRUNTIME_PYTHON, init_argv);
        _exit(255);
    }
    close(to_init[0]);
    close(from_init[1]);
    if (pid < 0) {
        close(to_init[1]);
        close(from_init[0]);
        close(config_fd);
        return;
    }
    /* The runtime's `run` waits as a child subreaper, as runc's does; set here, where it
     * costs a system call, rather than by the runtime, where python-prctl's import costs
     * half a millisecond before init can be placed. It survives the execve. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    snprintf(value, sizeof value, "%d,%d,%d,%d", (int)pid, from_init[0], to_init[1], config_fd);
    setenv(ENVIRONMENT, value, 1);
}
