/*
 * Reading a container's state.json (state_record.h), the C twin of the parts of
 * pyruntime/oci/state.py that `start` and `delete` use.
 */
#define _GNU_SOURCE
#include "state_record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json_reader.h"

#define MAX_ID_LENGTH 1024
/* state.json holds the whole config: a seccomp profile makes it tens of KiB. */
#define MAX_STATE_SIZE (4 * 1024 * 1024)

int valid_container_id(const char *id)
{
    size_t length = strlen(id);
    if (length == 0 || length > MAX_ID_LENGTH || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return 0;
    return strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.") ==
           length;
}

char *read_whole_file(int directory_fd, const char *name, size_t *length)
{
    int fd = openat(directory_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat info;
    char *text = NULL;
    if (fstat(fd, &info) == 0 && S_ISREG(info.st_mode) && info.st_size > 0 &&
        info.st_size <= MAX_STATE_SIZE)
        text = malloc((size_t)info.st_size);
    size_t done = 0;
    while (text && done < (size_t)info.st_size) {
        ssize_t got = read(fd, text + done, (size_t)info.st_size - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            free(text);
            text = NULL;
            break;
        }
        done += (size_t)got;
    }
    close(fd);
    *length = done;
    return text;
}

/* Decode a JSON string into a new C string; NULL when it is not a path-sized string. */
static char *new_string(const char *value, const char *end)
{
    char buffer[PATH_MAX];
    if (json_string(value, end, buffer, sizeof buffer) != 0)
        return NULL;
    return strdup(buffer);
}

/*
 * The strings of `member` (an object's values, or an array's items, as `kind` says) into
 * `strings`, at most MAX_CGROUP_DIRECTORIES. An absent or false member is no strings.
 */
static int read_strings(const char *document, const char *end, const char *member, char kind,
                        char **strings, size_t *count)
{
    const char *container = json_member(document, end, member);
    if (!container || json_is_falsy(container, end))
        return 0;
    struct json_walk walk;
    const char *key;
    const char *value;
    int more;
    if (*container != kind || json_enter(&walk, container, end) != 0)
        return -1;
    while ((more = json_next(&walk, &key, &value)) == 1) {
        if (*count == MAX_CGROUP_DIRECTORIES || !(strings[(*count)++] = new_string(value, end)))
            return -1;
    }
    return more;
}

static int read_cgroups(struct state_record *record, const char *document, const char *end)
{
    if (read_strings(document, end, "cgroup_paths", '{', record->cgroup_paths,
                     &record->cgroup_count) != 0 ||
        read_strings(document, end, "cgroup_created", '[', record->created_parents,
                     &record->created_count) != 0)
        return -1;
    const char *unit = json_member(document, end, "cgroup_unit");
    record->systemd_unit = unit != NULL && !json_is_falsy(unit, end);
    return 0;
}

static int parse(struct state_record *record)
{
    const char *end = record->text + record->length;
    const char *document = json_document(record->text, end);
    if (!document || *document != '{')
        return -1;
    const char *pid = json_member(document, end, "pid");
    const char *pid_start = json_member(document, end, "pid_start");
    if (!pid || json_integer(pid, end, &record->pid) != 0)
        return -1;
    record->pid_start = -1;
    if (pid_start && json_integer(pid_start, end, &record->pid_start) != 0)
        return -1;
    if (record->pid > 0 && record->pid_start < 0)
        return -1;  /* a pid without its start time: not a record create wrote */
    record->config = json_member(document, end, "config");
    if (!record->config || *record->config != '{')
        return -1;
    return read_cgroups(record, document, end);
}

int state_record_load(const char *root, const char *id, struct state_record *record)
{
    memset(record, 0, sizeof *record);
    record->directory_fd = -1;
    if (!valid_container_id(id) ||
        (size_t)snprintf(record->directory, sizeof record->directory, "%s/%s", root, id) >=
            sizeof record->directory)
        return -1;
    record->directory_fd = open(record->directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (record->directory_fd < 0)
        return -1;
    while (flock(record->directory_fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            state_record_release(record);
            return -1;
        }
    }
    record->text = read_whole_file(record->directory_fd, "state.json", &record->length);
    if (!record->text || parse(record) != 0) {
        state_record_release(record);
        return -1;
    }
    return 0;
}

void state_record_release(struct state_record *record)
{
    if (record->directory_fd >= 0)
        close(record->directory_fd);  /* which releases the flock */
    record->directory_fd = -1;
    free(record->text);
    record->text = NULL;
    for (size_t i = 0; i < record->cgroup_count; i++)
        free(record->cgroup_paths[i]);
    for (size_t i = 0; i < record->created_count; i++)
        free(record->created_parents[i]);
    record->cgroup_count = record->created_count = 0;
}

long long process_start_time(long long pid)
{
    char path[64];
    char stat_line[1024];
    snprintf(path, sizeof path, "/proc/%lld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t length = read(fd, stat_line, sizeof stat_line - 1);
    close(fd);
    if (length <= 0)
        return -1;
    stat_line[length] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: fields 3.. follow the
     * last ')'. */
    char *after_name = strrchr(stat_line, ')');
    if (!after_name || after_name[1] != ' ')
        return -1;
    char state = after_name[2];
    if (state == 'Z' || state == 'X')
        return -1;
    char *field = after_name + 2;
    for (int skip = 0; skip < 19; skip++) {  /* field 3 (state) to field 22 (starttime) */
        field = strchr(field, ' ');
        if (!field)
            return -1;
        field++;
    }
    return strtoll(field, NULL, 10);
}

enum container_status state_record_status(const struct state_record *record)
{
    if (record->pid <= 0)
        return STATUS_NO_INIT;
    /* Still being created (or a create that crashed): Python tells which. */
    if (faccessat(record->directory_fd, "creating", F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return STATUS_NO_INIT;
    if (process_start_time(record->pid) != record->pid_start)
        return STATUS_STOPPED;
    if (faccessat(record->directory_fd, "exec.fifo", F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return STATUS_CREATED;
    return STATUS_STARTED;
}

int state_record_has_hooks(const struct state_record *record, const char *kind)
{
    const char *end = record->text + record->length;
    const char *hooks = json_member(record->config, end, "hooks");
    if (!hooks || json_is_falsy(hooks, end))
        return 0;
    if (*hooks != '{')
        return 1;
    const char *list = json_member(hooks, end, kind);
    return list != NULL && !json_is_falsy(list, end);
}

int state_record_frozen(const struct state_record *record)
{
    for (size_t i = 0; i < record->cgroup_count; i++) {
        static const char *const FILES[] = {"freezer.state", "cgroup.freeze"};
        for (int f = 0; f < 2; f++) {
            char path[PATH_MAX + 32];
            snprintf(path, sizeof path, "%s/%s", record->cgroup_paths[i], FILES[f]);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                if (errno == ENOENT)
                    continue;
                return -1;
            }
            char state[32] = "";
            ssize_t length = read(fd, state, sizeof state - 1);
            close(fd);
            if (length <= 0)
                return -1;
            if (strncmp(state, f == 0 ? "THAWED" : "0", f == 0 ? 6 : 1) != 0)
                return 1;
        }
    }
    return 0;
}
