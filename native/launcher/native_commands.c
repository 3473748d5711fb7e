/*
 * The native `start` and `delete` (native_commands.h): step for step the plain path of
 * Runtime.start and Runtime.delete in pyruntime/oci/runtime.py, which stays the reference.
 * A change there must be made here too, or must make these return PYTHON_NEEDED.
 */
#define _GNU_SOURCE
#include "native_commands.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "state_record.h"

#define MAX_CGROUP_DEPTH 32

/*
 * Runtime._open_exec_fifo: open the FIFO init is blocked on; init writes a byte (it got
 * the start), runs the startContainer hooks and execs, which closes its end, and the read
 * returns EOF. Non-blocking until init has opened its end, so that a dead init cannot
 * hang us; then blocking. Returns 0, or 255 after logging why the process did not start.
 */
static int release_init(struct state_record *record, const char *id,
                        const struct runtime_log *log)
{
    int fd = openat(record->directory_fd, "exec.fifo", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return PYTHON_NEEDED;
    const struct timespec nap = {.tv_sec = 0, .tv_nsec = 100000};
    int received = 0;
    int failed = 0;
    for (;;) {
        char data[16];
        ssize_t count = read(fd, data, sizeof data);
        if (count > 0) {
            received = 1;
            failed |= memchr(data, '!', (size_t)count) != NULL;
            continue;
        }
        if (count < 0 && errno == EINTR)
            continue;
        if (count < 0 && errno != EAGAIN) {
            int error = errno;
            close(fd);
            if (!received)
                return PYTHON_NEEDED;  /* init has not been let go: Python may try again */
            char message[1300];
            snprintf(message, sizeof message, "container %s: reading the exec FIFO: %s", id,
                     strerror(error));
            log_error(log, message);
            return 255;
        }
        if (count == 0 && received)
            break;  /* init's end closed: exec'd, or gave up */
        if (process_start_time(record->pid) != record->pid_start) {
            if (!received) {
                close(fd);
                char message[1200];
                snprintf(message, sizeof message, "container %s: init exited before start", id);
                log_error(log, message);
                return 255;
            }
            break;
        }
        if (received)
            fcntl(fd, F_SETFL, O_RDONLY);  /* init's next byte, or its end closing */
        else
            nanosleep(&nap, NULL);  /* before init's open the FIFO reads as EOF */
    }
    close(fd);
    unlinkat(record->directory_fd, "exec.fifo", 0);
    if (failed) {
        char message[1400];
        snprintf(message, sizeof message,
                 "container %s: the process was not started (a startContainer hook or the "
                 "last setup step failed; see the container's stderr)", id);
        log_error(log, message);
        return 255;
    }
    return 0;
}

int native_start(const char *root, const char *id, const struct runtime_log *log)
{
    struct state_record record;
    if (state_record_load(root, id, &record) != 0)
        return PYTHON_NEEDED;
    int code = PYTHON_NEEDED;
    if (state_record_status(&record) == STATUS_CREATED &&
        !state_record_has_hooks(&record, "poststart"))
        code = release_init(&record, id, log);
    state_record_release(&record);
    return code;
}

/* Remove a cgroup directory and the cgroups below it, deepest first. */
static int remove_cgroup_tree(const char *path, int depth)
{
    if (depth > MAX_CGROUP_DEPTH)
        return -1;
    DIR *directory = opendir(path);
    if (!directory)
        return errno == ENOENT ? 0 : -1;
    int result = 0;
    struct dirent *entry;
    while (result == 0 && (entry = readdir(directory)) != NULL) {
        if (entry->d_type != DT_DIR || strcmp(entry->d_name, ".") == 0 ||
            strcmp(entry->d_name, "..") == 0)
            continue;
        char below[PATH_MAX];
        if ((size_t)snprintf(below, sizeof below, "%s/%s", path, entry->d_name) >= sizeof below)
            result = -1;
        else
            result = remove_cgroup_tree(below, depth + 1);
    }
    closedir(directory);
    if (result == 0 && rmdir(path) != 0 && errno != ENOENT)
        result = -1;
    return result;
}

static int longer_first(const void *a, const void *b)
{
    size_t length_a = strlen(*(char *const *)a);
    size_t length_b = strlen(*(char *const *)b);
    return length_a < length_b ? 1 : length_a > length_b ? -1 : 0;
}

/*
 * CgroupPlacement.remove for a container whose processes are all gone: its directories,
 * then the parents its create made, each only if empty. A directory that is still busy
 * (a process left behind) is Python's to kill and retry.
 */
static int remove_cgroups(const struct state_record *record)
{
    for (size_t i = 0; i < record->cgroup_count; i++)
        if (remove_cgroup_tree(record->cgroup_paths[i], 0) != 0)
            return PYTHON_NEEDED;
    char *parents[MAX_CGROUP_DIRECTORIES];
    size_t count = record->created_count;
    memcpy(parents, record->created_parents, count * sizeof *parents);
    qsort(parents, count, sizeof *parents, longer_first);
    for (size_t i = 0; i < count; i++)
        rmdir(parents[i]);  /* gone already, or another container still uses it */
    return 0;
}

static int is_directory(int parent_fd, const struct dirent *entry)
{
    struct stat info;
    if (entry->d_type != DT_UNKNOWN)
        return entry->d_type == DT_DIR;
    return fstatat(parent_fd, entry->d_name, &info, AT_SYMLINK_NOFOLLOW) != 0 ||
           S_ISDIR(info.st_mode);
}

/*
 * _remove_state_dir: the files in the container's directory, state.json last, then the
 * directory. Anything but files in it is left to Python, before anything is removed: once
 * state.json is gone, the container no longer exists for a second try.
 */
static int remove_state_directory(struct state_record *record)
{
    int fd = dup(record->directory_fd);
    DIR *directory = fd >= 0 ? fdopendir(fd) : NULL;
    if (!directory) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int result = 0;
    struct dirent *entry;
    for (int pass = 0; pass < 2 && result == 0; pass++) {
        rewinddir(directory);
        while (result == 0 && (entry = readdir(directory)) != NULL) {
            if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0 ||
                strcmp(entry->d_name, "state.json") == 0)
                continue;
            if (pass == 0)
                result = is_directory(record->directory_fd, entry) ? -1 : 0;
            else if (unlinkat(record->directory_fd, entry->d_name, 0) != 0 && errno != ENOENT)
                result = -1;
        }
    }
    closedir(directory);
    if (result == 0 && unlinkat(record->directory_fd, "state.json", 0) != 0)
        result = -1;
    if (result == 0 && rmdir(record->directory) != 0)
        result = -1;
    return result;
}

int native_delete(const char *root, const char *id)
{
    struct state_record record;
    if (state_record_load(root, id, &record) != 0)
        return PYTHON_NEEDED;
    int code = PYTHON_NEEDED;
    /* Only a stopped container: the others have processes to kill (created ones too, and
     * --force is then needed for running ones), which Python does. */
    if (state_record_status(&record) == STATUS_STOPPED && !record.systemd_unit &&
        !state_record_has_hooks(&record, "poststop") && remove_cgroups(&record) == 0 &&
        remove_state_directory(&record) == 0)
        code = 0;
    state_record_release(&record);
    return code;
}

/* pyruntime.linux.signals' names, in signal(7)'s order; real-time ones by number only. */
static const struct {
    const char *name;
    int number;
} SIGNAL_NAMES[] = {
    {"HUP", SIGHUP},     {"INT", SIGINT},       {"QUIT", SIGQUIT},   {"ILL", SIGILL},
    {"TRAP", SIGTRAP},   {"ABRT", SIGABRT},     {"IOT", SIGIOT},     {"BUS", SIGBUS},
    {"FPE", SIGFPE},     {"KILL", SIGKILL},     {"USR1", SIGUSR1},   {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2},   {"PIPE", SIGPIPE},     {"ALRM", SIGALRM},   {"TERM", SIGTERM},
    {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD},   {"CLD", SIGCHLD},    {"CONT", SIGCONT},
    {"STOP", SIGSTOP},   {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN},   {"TTOU", SIGTTOU},
    {"URG", SIGURG},     {"XCPU", SIGXCPU},     {"XFSZ", SIGXFSZ},   {"VTALRM", SIGVTALRM},
    {"PROF", SIGPROF},   {"WINCH", SIGWINCH},   {"IO", SIGIO},       {"POLL", SIGPOLL},
    {"PWR", SIGPWR},     {"SYS", SIGSYS},
};

/* parse_signal's answer for the forms read here (a number, or a name with or without
 * SIG in any case); -1 for any other text, which Python parses or refuses. 0 is the
 * null signal, kill(2)'s liveness check, which runc takes too. */
static int signal_number(const char *text)
{
    if (text[0] >= '0' && text[0] <= '9') {
        char *end;
        long number = strtol(text, &end, 10);
        return *end == '\0' && number >= 0 && number <= SIGRTMAX ? (int)number : -1;
    }
    char name[16];
    size_t length = strlen(text);
    if (length >= sizeof name)
        return -1;
    for (size_t i = 0; i <= length; i++)
        name[i] = (char)(text[i] >= 'a' && text[i] <= 'z' ? text[i] - 'a' + 'A' : text[i]);
    const char *bare = strncmp(name, "SIG", 3) == 0 ? name + 3 : name;
    for (size_t i = 0; i < sizeof SIGNAL_NAMES / sizeof SIGNAL_NAMES[0]; i++)
        if (strcmp(SIGNAL_NAMES[i].name, bare) == 0)
            return SIGNAL_NAMES[i].number;
    return -1;
}

int native_kill(const char *root, const char *id, const char *signal_text)
{
    int number = signal_text ? signal_number(signal_text) : SIGTERM;
    if (number < 0)
        return PYTHON_NEEDED;
    struct state_record record;
    if (state_record_load(root, id, &record) != 0)
        return PYTHON_NEEDED;
    int code = PYTHON_NEEDED;
    enum container_status status = state_record_status(&record);
    /* Runtime.kill: a stopped container is an error; SIGKILL to a paused one needs a thaw
     * after it. Both are Python's, as is a pid gone since (its "not running"). */
    if ((status == STATUS_CREATED || status == STATUS_STARTED) &&
        !(number == SIGKILL && status == STATUS_STARTED && state_record_frozen(&record) != 0) &&
        kill((pid_t)record.pid, number) == 0)
        code = 0;
    state_record_release(&record);
    return code;
}
