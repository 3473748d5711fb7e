/*
 * `start`, `delete` and `kill` without Python, for the containers where they are plain:
 * the commands that make no process, each of which would otherwise pay for an interpreter
 * (main.c says why). Each returns the command's exit code, or PYTHON_NEEDED before it
 * has changed anything when the container needs more than this file knows (hooks, a
 * systemd unit, a running container to kill, an error to explain): the Python CLI then
 * does the whole command, as it does every other one.
 */
#ifndef PYRUNTIME_NATIVE_COMMANDS_H
#define PYRUNTIME_NATIVE_COMMANDS_H

#include "runtime_log.h"

#define PYTHON_NEEDED (-1)

int native_start(const char *root, const char *id, const struct runtime_log *log);
int native_delete(const char *root, const char *id);

/* `kill ID [SIGNAL]` of a created, running or paused container (no --all). */
int native_kill(const char *root, const char *id, const char *signal_text);

#endif
