/*
 * Error lines of the native commands in the shape of pyruntime/cli/log.py: to `--log FILE`
 * (or stderr) in `--log-format text|json`, and with a log file also to stderr, as runc.
 */
#ifndef PYRUNTIME_RUNTIME_LOG_H
#define PYRUNTIME_RUNTIME_LOG_H

struct runtime_log {
    const char *path;   /* NULL: stderr */
    int json;           /* --log-format json */
};

void log_error(const struct runtime_log *log, const char *message);

#endif
