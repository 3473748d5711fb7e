/*
 * A container's record as the native commands see it: the fields of <root>/<id>/state.json
 * that `start` and `delete` need, and the container's status derived from it and /proc
 * the way pyruntime.oci.state does. Loading fails (-1) on anything unexpected, and the
 * command is then left to Python, which knows every field and reports every error.
 */
#ifndef PYRUNTIME_STATE_RECORD_H
#define PYRUNTIME_STATE_RECORD_H

#include <limits.h>
#include <stddef.h>

/* A v1 host has a dozen hierarchies; more than this is left to Python. */
#define MAX_CGROUP_DIRECTORIES 32

enum container_status {
    STATUS_CREATED,   /* init alive and the exec FIFO still there */
    STATUS_STARTED,   /* init alive: running or paused (which, only Python asks) */
    STATUS_STOPPED,   /* init gone, a zombie, or its pid reused */
    STATUS_NO_INIT,   /* no pid recorded, or the `creating` mark there: creating, or a
                       * create that failed */
};

struct state_record {
    char directory[PATH_MAX];
    int directory_fd;   /* holds the container's lock (an flock), or -1 */
    char *text;         /* state.json, which the pointers below point into */
    size_t length;
    long long pid;
    long long pid_start;
    const char *config;   /* the bundle's config as recorded */
    int systemd_unit;     /* the cgroup is a systemd unit's (--systemd-cgroup) */
    size_t cgroup_count;
    char *cgroup_paths[MAX_CGROUP_DIRECTORIES];
    size_t created_count;
    char *created_parents[MAX_CGROUP_DIRECTORIES];
};

/* runc's rule for IDs: letters, digits and _+-., not "." or "..". */
int valid_container_id(const char *id);

/*
 * Lock the container's directory under `root` (an exclusive flock on it, as the Python
 * runtime takes) and read its record. Returns 0, or -1 with nothing held when the
 * container does not exist or its record is not one this reader understands.
 */
int state_record_load(const char *root, const char *id, struct state_record *record);

/* Release the lock and the memory. */
void state_record_release(struct state_record *record);

enum container_status state_record_status(const struct state_record *record);

/* Whether a freezer of the container (v1 freezer.state, v2 cgroup.freeze) says frozen or
 * freezing: 1, 0, or -1 when one cannot be read. Python calls such a container paused. */
int state_record_frozen(const struct state_record *record);

/* Whether the recorded config has hooks of this kind (e.g. "poststart"); 1 also when
 * that cannot be told, so that the caller leaves the command to Python. */
int state_record_has_hooks(const struct state_record *record, const char *kind);

/* The whole text of the regular file `name` (relative to `directory_fd`, or AT_FDCWD),
 * at most a few MiB, as malloc'd memory (not NUL-terminated); NULL when it cannot be
 * read. */
char *read_whole_file(int directory_fd, const char *name, size_t *length);

/* The start time of process `pid` (field 22 of /proc/PID/stat), or -1 when it does
 * not exist or is a zombie. */
long long process_start_time(long long pid);

#endif
