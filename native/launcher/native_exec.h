/*
 * `exec` of a plain process without Python (native_exec.c says which ones): the command
 * engines and users run most often against a running container, whose own work (join the
 * namespaces and the cgroup, become the process's user, exec) is a few milliseconds while
 * an interpreter start alone is 7-10.
 */
#ifndef PYRUNTIME_NATIVE_EXEC_H
#define PYRUNTIME_NATIVE_EXEC_H

#include "runtime_log.h"

/*
 * `exec [--env|-e K=V]... [--cwd DIR] [--user|-u UID[:GID]] [--detach|-d]
 * [--pid-file FILE] [--] ID COMMAND [ARG...]` or `exec --process|-p FILE [--detach|-d]
 * [--pid-file FILE] ID`, the arguments after the command name starting at argv[first];
 * errors after the process has started are logged to `log`. Returns the process's
 * exit code as the Python runtime reports it (128+N when killed by signal N), or
 * PYTHON_NEEDED when the Python CLI must do the command: before anything has changed,
 * or after an attempt that failed before the user's program ran and left nothing
 * behind (the Python CLI then repeats it and reports the error in its own words).
 */
int native_exec(const char *root, int argc, char **argv, int first,
                const struct runtime_log *log);

#endif
