/*
 * The cgroup attach warm-up of the `pyruntime` command (see main.c and
 * pyruntime/cgroups/attach_warmup.py): the first write to any cgroup.procs after a quiet
 * spell waits for an RCU grace period, 10-15 ms on the test hosts, while holding the
 * kernel's cgroup_mutex. Started from Python, that wait begins only once the interpreter
 * is up, about 10 ms in, and the creation of the container's cgroup then waits for the
 * rest of it. Started here, it is over before the runtime needs the lock; but the lock
 * cools again one grace period after its last writer, so it must also be kept warm until
 * then.
 *
 * So a forked child closes every descriptor and writes "0" (itself) to the cgroup.procs
 * of the cgroup it is already in (a move that moves nothing but takes the lock) every few
 * milliseconds, until the runtime, which finds its pid in PYRUNTIME_WARMUP_PID, kills and
 * reaps it once the container's first process is in its cgroup (or the command ends).
 * Whatever fails in the warm-up is ignored: it only costs the time it would have saved.
 */
#define _GNU_SOURCE
#include "cgroup_warmup.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Well under a grace period (10-15 ms here), and few writes. */
#define WARM_INTERVAL_MS 4
/* A safety net: the runtime stops the child within milliseconds, or is gone. */
#define WARM_LIMIT_MS 1000

/* Whether comma-separated `wanted` items all appear in comma-separated `options`. */
static int all_in(const char *wanted, const char *options)
{
    char buffer[256];
    if (strlen(wanted) >= sizeof buffer)
        return 0;
    strcpy(buffer, wanted);
    for (char *save = NULL, *item = strtok_r(buffer, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        size_t length = strlen(item);
        const char *at = options;
        int found = 0;
        while ((at = strstr(at, item)) != NULL) {
            if ((at == options || at[-1] == ',') && (at[length] == ',' || at[length] == '\0')) {
                found = 1;
                break;
            }
            at += length;
        }
        if (!found)
            return 0;
    }
    return 1;
}

/*
 * The mount point of the hierarchy that /proc/self/cgroup names `controllers` ("" for
 * cgroup v2), and its root, from /proc/self/mountinfo. Returns 0 when found.
 */
static int find_mount(const char *controllers, char *mount_point, char *mount_root)
{
    FILE *mountinfo = fopen("/proc/self/mountinfo", "re");
    if (!mountinfo)
        return -1;
    char line[4096];
    int result = -1;
    while (result != 0 && fgets(line, sizeof line, mountinfo)) {
        /* id parent major:minor root mount-point options [optional...] - type source super */
        char root[PATH_MAX], point[PATH_MAX], type[64], super[1024];
        const char *separator = strstr(line, " - ");
        if (!separator || sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) != 2 ||
            sscanf(separator + 3, "%63s %*s %1023s", type, super) != 2)
            continue;
        int v2 = controllers[0] == '\0';
        if (v2 ? strcmp(type, "cgroup2") == 0
               : strcmp(type, "cgroup") == 0 && all_in(controllers, super)) {
            strcpy(mount_point, point);
            strcpy(mount_root, root);
            result = 0;
        }
    }
    fclose(mountinfo);
    return result;
}

/* The cgroup.procs file of this process's own cgroup in the first hierarchy found. */
static int own_procs_file(char *path, size_t size)
{
    FILE *cgroups = fopen("/proc/self/cgroup", "re");
    if (!cgroups)
        return -1;
    char line[PATH_MAX + 256];
    int result = -1;
    while (result != 0 && fgets(line, sizeof line, cgroups)) {
        line[strcspn(line, "\n")] = '\0';
        char *controllers = strchr(line, ':');
        char *cgroup = controllers ? strchr(controllers + 1, ':') : NULL;
        if (!cgroup)
            continue;
        *controllers++ = '\0';
        *cgroup++ = '\0';
        char mount_point[PATH_MAX], mount_root[PATH_MAX];
        if (find_mount(controllers, mount_point, mount_root) != 0)
            continue;
        /* Inside a cgroup namespace or a bind-mounted subtree the mount's root is not "/". */
        size_t root_length = strcmp(mount_root, "/") == 0 ? 0 : strlen(mount_root);
        if (strncmp(cgroup, mount_root, root_length) != 0)
            continue;
        const char *below = cgroup + root_length;
        const char *slash = below[0] && below[strlen(below) - 1] == '/' ? "" : "/";
        if ((size_t)snprintf(path, size, "%s%s%scgroup.procs", mount_point, below, slash) < size)
            result = 0;
    }
    fclose(cgroups);
    return result;
}

static long elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000L + (now.tv_nsec - since->tv_nsec) / 1000000L;
}

/*
 * In the child: move itself into its own cgroup every few milliseconds, so that the lock
 * stays warm (one grace period after the last writer it cools again) until the runtime
 * has placed the container's first process and kills this child. Gives up after a second
 * (the first write alone can take longer under emulation), or when the runtime is gone.
 */
static void keep_warm(const char *path, pid_t runtime)
{
    /* The caller's pipes must not be held open by this child. */
    syscall(SYS_close_range, 0U, ~0U, 0U);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        _exit(0);
    const struct timespec pause = {.tv_sec = 0, .tv_nsec = WARM_INTERVAL_MS * 1000000L};
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (getppid() == runtime && write(fd, "0", 1) == 1 && elapsed_ms(&start) < WARM_LIMIT_MS)
        nanosleep(&pause, NULL);
    _exit(0);
}

pid_t start_cgroup_warmup(void)
{
    char path[PATH_MAX + 64];
    if (own_procs_file(path, sizeof path) != 0)
        return -1;
    pid_t runtime = getpid();
    pid_t pid = fork();
    if (pid == 0)
        keep_warm(path, runtime);
    return pid;
}

