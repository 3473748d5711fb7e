/*
 * The runtime log for the native commands (runtime_log.h): the same lines as the Python
 * CLI's RuntimeLog, text `time="..." level=error msg="..."` or JSON
 * `{"level":"error","msg":"...","time":"..."}` with ASCII escapes as json.dumps makes them.
 */
#define _GNU_SOURCE
#include "runtime_log.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* RFC 3339 in UTC with nanoseconds, as pyruntime.oci.state.now_rfc3339. */
static void timestamp(char *out, size_t size)
{
    struct timespec now;
    struct tm utc;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &utc);
    size_t length = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(out + length, size - length, ".%09ldZ", now.tv_nsec);
}

/* `message` escaped for a JSON string (json.dumps) or a text line's msg="..." (only \ and
 * "), truncated to fit. */
/* The short escapes json.dumps uses for control characters. */
static char short_escape(unsigned char c)
{
    switch (c) {
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

/* `message` escaped for a JSON string (json.dumps with ASCII output) or for a text
 * line's msg="..." (only \ and "), truncated to fit. */
static void escape(const char *message, int json, char *out, size_t size)
{
    size_t used = 0;
    for (const unsigned char *at = (const unsigned char *)message; *at; at++) {
        char piece[8];
        if (*at == '"' || *at == '\\')
            snprintf(piece, sizeof piece, "\\%c", *at);
        else if (json && short_escape(*at))
            snprintf(piece, sizeof piece, "\\%c", short_escape(*at));
        else if (json && (*at < 0x20 || *at >= 0x7f))
            snprintf(piece, sizeof piece, "\\u%04x", *at);  /* our messages are ASCII */
        else
            snprintf(piece, sizeof piece, "%c", *at);
        size_t length = strlen(piece);
        if (used + length >= size)
            break;
        memcpy(out + used, piece, length);
        used += length;
    }
    out[used] = '\0';
}

static void write_all(int fd, const char *text)
{
    size_t left = strlen(text);
    while (left > 0) {
        ssize_t done = write(fd, text, left);
        if (done <= 0)
            return;  /* a log that cannot be written must not hide the real error */
        text += done;
        left -= (size_t)done;
    }
}

void log_error(const struct runtime_log *log, const char *message)
{
    char stamp[64];
    char escaped[2048];
    char line[2304];
    timestamp(stamp, sizeof stamp);
    escape(message, log->json, escaped, sizeof escaped);
    if (log->json)
        snprintf(line, sizeof line, "{\"level\":\"error\",\"msg\":\"%s\",\"time\":\"%s\"}\n",
                 escaped, stamp);
    else
        snprintf(line, sizeof line, "time=\"%s\" level=error msg=\"%s\"\n", stamp, escaped);
    if (!log->path) {
        write_all(2, line);
        return;
    }
    int fd = open(log->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        write_all(fd, line);
        close(fd);
    }
    char plain[2048];
    snprintf(plain, sizeof plain, "pyruntime: %s\n", message);
    write_all(2, plain);
}
