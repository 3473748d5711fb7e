/*
 * The native `exec` (native_exec.h): step for step the direct path of
 * pyruntime/oci/enter.py and the shared last steps of pyruntime/oci/process.py, which
 * stay the reference. A change there must be made here too, or must make this return
 * PYTHON_NEEDED.
 *
 * Done here: a created or running (not paused) container that shares our user and time
 * namespaces, has no AppArmor profile or SELinux label, and no systemd unit (its seccomp
 * profile is built with libseccomp as Python builds it: seccomp_filter.c); a process
 * that is the container's own with the command, --env, --cwd and --user of the command
 * line, or one from a --process file (in the forms Python's validate_process takes,
 * with no terminal), in the foreground or --detach, with or without --pid-file: what
 * engines run for `exec` and exec probes. Everything else,
 * and every error, is the Python CLI's: the checks come before anything is changed, and a
 * process that fails before its program runs (a setns refused, a command not found)
 * reports only an errno over a close-on-exec pipe, is reaped, and the Python CLI then
 * does the whole command again, as the reference, with its own error message.
 *
 * The process: forked into the container's PID namespace (our namespace for children
 * pointed there for the one fork, and we non-dumpable for it, so that it is from its
 * first instant), it joins init's other namespaces and root, and waits until we have
 * written its pid to every cgroup.procs of the container; then rlimits, the seccomp
 * filter when no_new_privs is off (it needs CAP_SYS_ADMIN then), cwd (proved inside the
 * root), bounding set, groups and ids keeping capabilities, umask, capability sets,
 * no_new_privs, the command looked up in the container's PATH as the new user, the
 * seccomp filter when no_new_privs is on, every fd but stdio close-on-exec, execve. We
 * forward the signals the Python runtime forwards and exit with the process's status.
 */
#define _GNU_SOURCE
#include "native_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "command_line.h"
#include "json_reader.h"
#include "native_commands.h"
#include "seccomp_filter.h"
#include "state_record.h"

#define MAX_ARGS 4096
#define MAX_ENV 1024
#define MAX_GROUPS 64
#define MAX_RLIMITS 16
#define ENTRY_MAX 8192
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

/* pyruntime.oci.namespaces.NAMESPACES, in its order (the order of the setns calls). */
static const struct {
    const char *name;
    int flag;
} NAMESPACES[] = {
    {"user", CLONE_NEWUSER}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},
    {"net", CLONE_NEWNET},   {"pid", CLONE_NEWPID}, {"cgroup", CLONE_NEWCGROUP},
    {"mnt", CLONE_NEWNS},    {"time", 0x80 /* CLONE_NEWTIME */},
};
#define NAMESPACE_COUNT (sizeof NAMESPACES / sizeof NAMESPACES[0])
#define PID_NAMESPACE 4

/* pyruntime.linux.capabilities.CAPABILITIES */
static const char *const CAPABILITY_NAMES[] = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
};
#define CAPABILITY_COUNT (sizeof CAPABILITY_NAMES / sizeof CAPABILITY_NAMES[0])

/* pyruntime.oci.process._RLIMITS */
static const char *const RLIMIT_NAMES[] = {
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
    "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
    "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
};

/* The signals a foreground runtime passes on (pyruntime.oci.foreground._FORWARDED). */
static const int FORWARDED[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT};

enum capability_set { BOUNDING, EFFECTIVE, PERMITTED, INHERITABLE, AMBIENT, SET_COUNT };
static const char *const SET_NAMES[SET_COUNT] = {
    "bounding", "effective", "permitted", "inheritable", "ambient",
};

/* The process to run, as pyruntime.cli.exec_process.process_from_flags builds it. */
struct exec_process {
    char *args[MAX_ARGS + 1];
    size_t arg_count;
    char *env[MAX_ENV + 1];
    size_t env_count;
    char cwd[PATH_MAX];
    long long uid, gid, umask;
    gid_t groups[MAX_GROUPS];
    size_t group_count;
    int has_capabilities;
    unsigned long long capabilities[SET_COUNT];
    int no_new_privileges;
    struct {
        int resource;
        long long soft, hard;
    } rlimits[MAX_RLIMITS];
    size_t rlimit_count;
    int has_seccomp;
    struct seccomp_filter seccomp;  /* the container's linux.seccomp, built by us */
};

/* What the forked process needs, opened by us before the fork. */
struct entry {
    int namespace_fds[NAMESPACE_COUNT];  /* -1: the same as ours, not joined */
    int root_fd;
    int placed_fds[2];  /* we write a byte once it is in the cgroup */
    int error_fds[2];   /* it writes an errno when it fails; exec closes it */
};

static volatile sig_atomic_t forward_to;

static void forward(int number)
{
    if (forward_to > 0)
        kill((pid_t)forward_to, number);
}

/* `handler` (forward, or SIG_DFL) for every signal of FORWARDED. */
static void handle_forwarded(void (*handler)(int))
{
    struct sigaction action = {.sa_handler = handler};
    sigemptyset(&action.sa_mask);
    for (size_t s = 0; s < sizeof FORWARDED / sizeof FORWARDED[0]; s++)
        sigaction(FORWARDED[s], &action, NULL);
}

/* ------------------------------------------------------------------ the command line */

static int parse_ids(const char *text, struct exec_process *process)
{
    /* Python's int() takes more forms ("+1", " 1", "1_0"): those go to it. */
    char *end;
    if (text[0] < '0' || text[0] > '9')
        return -1;
    long long uid = strtoll(text, &end, 10);
    if (*end != '\0' && *end != ':')
        return -1;
    process->uid = uid;
    if (*end == ':' && end[1] != '\0') {
        const char *gid_text = end + 1;
        if (gid_text[0] < '0' || gid_text[0] > '9')
            return -1;
        process->gid = strtoll(gid_text, &end, 10);
        if (*end != '\0')
            return -1;
    }
    return process->uid <= 0xFFFFFFFE && process->gid <= 0xFFFFFFFE ? 0 : -1;
}

/* Set KEY=VALUE in the environment, keeping the place of an earlier KEY (a dict's). */
static int set_env(struct exec_process *process, const char *item)
{
    const char *equals = strchr(item, '=');
    size_t key_length = equals ? (size_t)(equals - item) : strlen(item);
    char *entry = malloc(strlen(item) + 2);
    if (!entry)
        return -1;
    memcpy(entry, item, key_length);
    strcpy(entry + key_length, "=");
    if (equals)
        strcat(entry, equals + 1);
    for (size_t i = 0; i < process->env_count; i++) {
        if (strncmp(process->env[i], entry, key_length + 1) == 0) {
            free(process->env[i]);
            process->env[i] = entry;
            return 0;
        }
    }
    if (process->env_count == MAX_ENV) {
        free(entry);
        return -1;
    }
    process->env[process->env_count++] = entry;
    process->env[process->env_count] = NULL;
    return 0;
}

/* ---------------------------------------------------------------------- the config */

static int capability_number(const char *name)
{
    for (size_t i = 0; i < CAPABILITY_COUNT; i++)
        if (strcmp(CAPABILITY_NAMES[i], name) == 0)
            return (int)i;
    return -1;
}

static int add_capability(const char *name, void *set)
{
    int number = capability_number(name);
    if (number < 0)
        return -1;
    *(unsigned long long *)set |= 1ULL << number;
    return 0;
}

static int read_capabilities(const char *object, const char *end,
                             struct exec_process *process)
{
    if (*object != '{')
        return -1;
    process->has_capabilities = 1;
    for (int set = 0; set < SET_COUNT; set++)
        if (json_each_string(json_member(object, end, SET_NAMES[set]), end, 64,
                             add_capability, &process->capabilities[set]) != 0)
            return -1;
    return 0;
}

static int add_rlimit(const char *item, const char *end, void *data)
{
    struct exec_process *process = data;
    char type[32];
    const char *type_value = json_member(item, end, "type");
    const char *soft = json_member(item, end, "soft");
    const char *hard = json_member(item, end, "hard");
    if (process->rlimit_count == MAX_RLIMITS || !type_value || !soft || !hard ||
        json_string(type_value, end, type, sizeof type) != 0)
        return -1;
    int resource = -1;
    for (int i = 0; i < (int)(sizeof RLIMIT_NAMES / sizeof RLIMIT_NAMES[0]); i++)
        if (strcmp(RLIMIT_NAMES[i], type) == 0)
            resource = i;
    /* Values beyond a long long (unlimited written as 2^64-1) go to Python. */
    size_t at = process->rlimit_count;
    if (resource < 0 || json_integer(soft, end, &process->rlimits[at].soft) != 0 ||
        json_integer(hard, end, &process->rlimits[at].hard) != 0 ||
        process->rlimits[at].soft < 0 || process->rlimits[at].hard < 0)
        return -1;
    for (size_t seen = 0; seen < at; seen++)
        if (process->rlimits[seen].resource == resource)
            return -1;  /* Python refuses a duplicate type */
    if (process->rlimits[at].soft > process->rlimits[at].hard)
        return -1;
    process->rlimits[at].resource = resource;
    process->rlimit_count++;
    return 0;
}

static int add_group(const char *value, const char *end, void *data)
{
    struct exec_process *process = data;
    long long group;
    if (process->group_count == MAX_GROUPS || json_integer(value, end, &group) != 0 ||
        group < 0 || group > 0xFFFFFFFE)
        return -1;
    process->groups[process->group_count++] = (gid_t)group;
    return 0;
}

static int read_user(const char *user, const char *end, struct exec_process *process)
{
    const char *uid = json_member(user, end, "uid");
    const char *gid = json_member(user, end, "gid");
    const char *umask_value = json_member(user, end, "umask");
    const char *groups = json_member(user, end, "additionalGids");
    if ((uid && json_integer(uid, end, &process->uid) != 0) ||
        (gid && json_integer(gid, end, &process->gid) != 0))
        return -1;
    /* (uid_t)-1 would tell setresuid to change nothing: never a uid to run as. */
    if (process->uid < 0 || process->uid > 0xFFFFFFFE || process->gid < 0 ||
        process->gid > 0xFFFFFFFE)
        return -1;
    if (!json_is_null(umask_value, end) &&
        (json_integer(umask_value, end, &process->umask) != 0 || process->umask < 0 ||
         process->umask > 0777))
        return -1;
    return json_each(groups, end, add_group, process);
}

/* A literal true or false (1, 0), null or absent (`otherwise`), else -1: Python's
 * validation takes no other JSON value for a boolean field of a process file. */
static int json_boolean(const char *value, const char *end, int otherwise)
{
    if (json_is_null(value, end))
        return otherwise;
    if (strncmp(value, "true", 4) == 0)
        return 1;
    return strncmp(value, "false", 5) == 0 ? 0 : -1;
}

/* The members of a process file (`exec --process`) read here; any other one, even one
 * Python would accept and ignore, leaves the command to Python. */
static const char *const PROCESS_FILE_MEMBERS[] = {
    "args", "env", "cwd", "terminal", "consoleSize", "user", "capabilities", "rlimits",
    "noNewPrivileges", "oomScoreAdj", "apparmorProfile", "selinuxLabel", "ioPriority",
    "scheduler", NULL,
};

static int only_known_members(const char *object, const char *end,
                              const char *const *names)
{
    struct json_walk walk;
    const char *key;
    const char *value;
    int more;
    if (json_enter(&walk, object, end) != 0)
        return -1;
    while ((more = json_next(&walk, &key, &value)) == 1) {
        char name[32];
        int known = 0;
        if (json_string(key, end, name, sizeof name) != 0)
            return -1;
        for (const char *const *known_name = names; *known_name && !known; known_name++)
            known = strcmp(*known_name, name) == 0;
        if (!known)
            return -1;
    }
    return more;
}

/* What a process file may hold beyond what a container's own process does (which Python
 * validated at create), in the forms Python's validate_process takes; -1 otherwise. */
static int check_process_file(const char *base, const char *end)
{
    static const char *const USER_MEMBERS[] = {"uid", "gid", "umask", "additionalGids", NULL};
    if (only_known_members(base, end, PROCESS_FILE_MEMBERS) != 0 ||
        json_boolean(json_member(base, end, "terminal"), end, 0) != 0 ||
        json_boolean(json_member(base, end, "noNewPrivileges"), end, 0) < 0 ||
        !json_is_null(json_member(base, end, "consoleSize"), end))
        return -1;
    const char *user = json_member(base, end, "user");
    if (!json_is_null(user, end) &&
        (*user != '{' || only_known_members(user, end, USER_MEMBERS) != 0))
        return -1;
    const char *oom_score_adj = json_member(base, end, "oomScoreAdj");
    long long adjustment;
    /* Validated, and not applied to an exec (as in Python). */
    if (!json_is_null(oom_score_adj, end) &&
        (json_integer(oom_score_adj, end, &adjustment) != 0 || adjustment < -1000 ||
         adjustment > 1000))
        return -1;
    static const char *const LABELS[] = {"apparmorProfile", "selinuxLabel"};
    for (int i = 0; i < 2; i++) {
        const char *label = json_member(base, end, LABELS[i]);
        char text[2];
        if (!json_is_null(label, end) && json_string(label, end, text, sizeof text) != 0)
            return -1;  /* not a string, or a label: Python's */
    }
    return 0;
}

static int add_arg(const char *arg, void *data)
{
    struct exec_process *process = data;
    if (process->arg_count == MAX_ARGS || !(process->args[process->arg_count] = strdup(arg)))
        return -1;
    process->args[++process->arg_count] = NULL;
    return 0;
}

/* Python's env list items are NAME=VALUE. */
static int add_env(const char *item, void *process)
{
    return strchr(item, '=') ? set_env(process, item) : -1;
}

/*
 * The process object at `base` (the container's own, from its recorded config, or a
 * process file): -1 for anything to leave to Python. A process file's args are read too,
 * and it is held to the forms validate_process takes; the config's was validated at
 * create.
 */
static int read_process(const char *base, const char *end, int from_file,
                        struct exec_process *process)
{
    if (!base || *base != '{' || (from_file && check_process_file(base, end) != 0))
        return -1;
    /* An I/O priority or a scheduler, the config's or the file's: Python sets them
     * (pyruntime.oci.process), this path does not. */
    if (!json_is_null(json_member(base, end, "ioPriority"), end) ||
        !json_is_null(json_member(base, end, "scheduler"), end))
        return -1;
    if (from_file && (json_each_string(json_member(base, end, "args"), end, ENTRY_MAX,
                                       add_arg, process) != 0 || process->arg_count == 0))
        return -1;
    const char *apparmor = json_member(base, end, "apparmorProfile");
    const char *selinux = json_member(base, end, "selinuxLabel");
    if ((apparmor && !json_is_falsy(apparmor, end)) || (selinux && !json_is_falsy(selinux, end)))
        return -1;
    const char *cwd = json_member(base, end, "cwd");
    if (!cwd || json_string(cwd, end, process->cwd, sizeof process->cwd) != 0 ||
        process->cwd[0] != '/')
        return -1;
    if (json_each_string(json_member(base, end, "env"), end, ENTRY_MAX, add_env, process) != 0)
        return -1;
    const char *user = json_member(base, end, "user");
    if (user && !json_is_falsy(user, end) && (*user != '{' || read_user(user, end, process) != 0))
        return -1;
    const char *capabilities = json_member(base, end, "capabilities");
    if (!json_is_null(capabilities, end) && read_capabilities(capabilities, end, process) != 0)
        return -1;
    const char *rlimits = json_member(base, end, "rlimits");
    if (json_each(rlimits, end, add_rlimit, process) != 0)
        return -1;
    const char *no_new_privileges = json_member(base, end, "noNewPrivileges");
    process->no_new_privileges = no_new_privileges && !json_is_falsy(no_new_privileges, end);
    return 0;
}

/* ------------------------------------------------------------------- the container */

static void close_entry(struct entry *entry)
{
    for (size_t i = 0; i < NAMESPACE_COUNT; i++)
        if (entry->namespace_fds[i] >= 0)
            close(entry->namespace_fds[i]);
    if (entry->root_fd >= 0)
        close(entry->root_fd);
}

/* init's namespaces that differ from ours, and its root. -1 (nothing open) when init has
 * a user or time namespace of its own, or anything fails. */
static int open_entry(long long init_pid, struct entry *entry)
{
    for (size_t i = 0; i < NAMESPACE_COUNT; i++)
        entry->namespace_fds[i] = -1;
    entry->root_fd = -1;
    for (size_t i = 0; i < NAMESPACE_COUNT; i++) {
        char theirs[64], ours[64];
        struct stat their_info, our_info;
        snprintf(theirs, sizeof theirs, "/proc/%lld/ns/%s", init_pid, NAMESPACES[i].name);
        snprintf(ours, sizeof ours, "/proc/self/ns/%s", NAMESPACES[i].name);
        if (stat(theirs, &their_info) != 0) {
            if (errno == ENOENT && stat(ours, &our_info) != 0)
                continue;  /* a namespace type this kernel does not have */
            goto fail;
        }
        if (stat(ours, &our_info) != 0)
            goto fail;
        if (their_info.st_ino == our_info.st_ino && their_info.st_dev == our_info.st_dev)
            continue;
        if (NAMESPACES[i].flag == CLONE_NEWUSER || NAMESPACES[i].flag == 0x80)
            goto fail;  /* entered by stage 1 in Python: ids, children only */
        entry->namespace_fds[i] = open(theirs, O_RDONLY | O_CLOEXEC);
        if (entry->namespace_fds[i] < 0)
            goto fail;
    }
    char root[64];
    snprintf(root, sizeof root, "/proc/%lld/root", init_pid);
    entry->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (entry->root_fd >= 0)
        return 0;
fail:
    close_entry(entry);
    return -1;
}

/* ------------------------------------------------------------------- the process */

static int last_capability(void)
{
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    char text[16] = "";
    if (fd >= 0) {
        ssize_t length = read(fd, text, sizeof text - 1);
        close(fd);
        if (length > 0)
            return atoi(text);
    }
    return (int)CAPABILITY_COUNT - 1;
}

/* pyruntime.linux.capabilities: bounding set (before the ids change). */
static int drop_bounding_set(const struct exec_process *process, int last)
{
    for (int cap = 0; cap <= last; cap++) {
        if (cap < 64 && process->capabilities[BOUNDING] >> cap & 1)
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
            return -1;
    }
    return 0;
}

/* The effective, permitted and inheritable sets exactly, then the ambient set (a cap
 * not in both permitted and inheritable, or that the kernel refuses, is skipped). */
static int set_capabilities(const struct exec_process *process, int last)
{
    unsigned long long known = last >= 63 ? ~0ULL : (1ULL << (last + 1)) - 1;
    unsigned long long effective = process->capabilities[EFFECTIVE] & known;
    unsigned long long permitted = process->capabilities[PERMITTED] & known;
    unsigned long long inheritable = process->capabilities[INHERITABLE] & known;
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2] = {
        {(__u32)effective, (__u32)permitted, (__u32)inheritable},
        {(__u32)(effective >> 32), (__u32)(permitted >> 32), (__u32)(inheritable >> 32)},
    };
    if (syscall(SYS_capset, &header, data) != 0)
        return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        return -1;
    for (int cap = 0; cap <= last && cap < 64; cap++) {
        if ((process->capabilities[AMBIENT] & permitted & inheritable) >> cap & 1)
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
    }
    return 0;
}

/* execvp's look-up of args[0] in the process's PATH, as its own user; 0 or an errno. */
static int find_executable(const struct exec_process *process, char *path, size_t size)
{
    const char *name = process->args[0];
    if (strchr(name, '/')) {
        if ((size_t)snprintf(path, size, "%s", name) >= size)
            return ENAMETOOLONG;
        struct stat info;
        if (stat(path, &info) != 0)
            return errno;
        return S_ISDIR(info.st_mode) || access(path, X_OK) != 0 ? EACCES : 0;
    }
    const char *search = DEFAULT_PATH;
    for (size_t i = 0; i < process->env_count; i++)
        if (strncmp(process->env[i], "PATH=", 5) == 0)
            search = process->env[i] + 5;
    for (const char *start = search;;) {
        const char *colon = strchrnul(start, ':');
        int length = (int)(colon - start);
        const char *directory = length ? start : ".";
        int slash = length && start[length - 1] == '/' ? 0 : 1;  /* os.path.join's */
        if ((size_t)snprintf(path, size, "%.*s%s%s", length ? length : 1, directory,
                             slash ? "/" : "", name) >= size)
            return ENAMETOOLONG;
        struct stat info;
        /* Python's look-up stops at the first name that exists, or that it may not see. */
        if (stat(path, &info) == 0)
            return S_ISDIR(info.st_mode) || access(path, X_OK) != 0 ? EACCES : 0;
        if (errno != ENOENT && errno != ENOTDIR)
            return errno;
        if (*colon == '\0')
            return ENOENT;
        start = colon + 1;
    }
}

static void fail_with(int error_fd, int error)
{
    if (write(error_fd, &error, sizeof error) < 0) {
        /* Nothing more to tell: the exit below says it all. */
    }
    _exit(1);
}

/* The forked process: never returns. */
static void become_process(const struct exec_process *process, const struct entry *entry)
{
    int error_fd = entry->error_fds[1];
#define CHECK(call) do { if ((call) != 0) fail_with(error_fd, errno ? errno : EINVAL); } while (0)
    /* The default actions until exec, as in a process the Python runtime forks: our
     * forwarding handlers are for the foreground wait. */
    handle_forwarded(SIG_DFL);
    /* Only our end: if we die, its read ends, and it must never run. */
    close(entry->placed_fds[1]);
    close(entry->error_fds[0]);
    CHECK(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0));
    for (size_t i = 0; i < NAMESPACE_COUNT; i++)
        if (entry->namespace_fds[i] >= 0 && i != PID_NAMESPACE)
            CHECK(setns(entry->namespace_fds[i], NAMESPACES[i].flag));
    CHECK(fchdir(entry->root_fd));
    CHECK(chroot("."));
    if (setsid() < 0)
        fail_with(error_fd, errno);
    char placed;
    if (read(entry->placed_fds[0], &placed, 1) != 1)
        _exit(1);  /* we failed to place it: it must never run */
    for (size_t i = 0; i < process->rlimit_count; i++) {
        struct rlimit limit = {(rlim_t)process->rlimits[i].soft, (rlim_t)process->rlimits[i].hard};
        CHECK(setrlimit(process->rlimits[i].resource, &limit));
    }
    /* Early while CAP_SYS_ADMIN is still there, unless no_new_privs lets it come last. */
    int error;
    if (process->has_seccomp && !process->no_new_privileges &&
        (error = seccomp_filter_load(&process->seccomp)) != 0)
        fail_with(error_fd, -error);
    CHECK(chdir(process->cwd));
    char where[PATH_MAX];
    if (!getcwd(where, sizeof where) || where[0] != '/')
        fail_with(error_fd, ENOENT);  /* outside the container's root (CVE-2024-21626) */
    int last = last_capability();
    if (process->has_capabilities)
        CHECK(drop_bounding_set(process, last));
    CHECK(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
    CHECK(setgroups(process->group_count, process->groups));
    CHECK(setresgid((gid_t)process->gid, (gid_t)process->gid, (gid_t)process->gid));
    CHECK(setresuid((uid_t)process->uid, (uid_t)process->uid, (uid_t)process->uid));
    CHECK(prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0));
    umask((mode_t)process->umask);
    if (process->has_capabilities)
        CHECK(set_capabilities(process, last));
    if (process->no_new_privileges)
        CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    char path[PATH_MAX];
    error = find_executable(process, path, sizeof path);
    if (error)
        fail_with(error_fd, error);
    if (process->has_seccomp && process->no_new_privileges &&
        (error = seccomp_filter_load(&process->seccomp)) != 0)
        fail_with(error_fd, -error);
    CHECK(syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC));
    signal(SIGPIPE, SIG_DFL);
    signal(SIGXFSZ, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(path, process->args, process->env);
    fail_with(error_fd, errno);
#undef CHECK
}

/* Write `pid` to every cgroup.procs of the container. */
static int place(const struct state_record *record, pid_t pid)
{
    char text[24];
    int length = snprintf(text, sizeof text, "%d", (int)pid);
    for (size_t i = 0; i < record->cgroup_count; i++) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/cgroup.procs", record->cgroup_paths[i]);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return -1;
        ssize_t written = write(fd, text, (size_t)length);
        close(fd);
        if (written != length)
            return -1;
    }
    return 0;
}

static void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

/*
 * Fork the process into init's PID namespace, place it, let it go, and learn whether it
 * exec'd. Returns its pid, 0 when it failed before its program ran (reaped: nothing is
 * left), or -1 when our own namespace for children could not be put back.
 */
static pid_t start_process(const struct state_record *record, const struct exec_process *process,
                           struct entry *entry)
{
    int *placed = entry->placed_fds, *errors = entry->error_fds;
    if (pipe2(placed, O_CLOEXEC) != 0)
        return 0;
    if (pipe2(errors, O_CLOEXEC) != 0) {
        close(placed[0]);
        close(placed[1]);
        return 0;
    }
    int pid_fd = entry->namespace_fds[PID_NAMESPACE];
    int ours = -1, was_dumpable = 0;
    pid_t pid = 0;
    if (pid_fd >= 0) {
        /* Non-dumpable for the fork: the flag is the mm's, so the child is from its first
         * instant, when init's PID namespace already shows it (the CVE-2019-5736 class;
         * pyruntime.oci.namespaces.fork_in_pid_namespace). */
        was_dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
        if (was_dumpable < 0 || (was_dumpable > 0 && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)) {
            was_dumpable = 0;
            goto out;
        }
        ours = open("/proc/self/ns/pid_for_children", O_RDONLY | O_CLOEXEC);
        if (ours < 0 || setns(pid_fd, CLONE_NEWPID) != 0)
            goto out;
    }
    pid = fork();
    if (pid == 0)
        become_process(process, entry);
    /* Back on at once, as Python does; 2 (SUID_DUMP_ROOT) cannot be set again, and stays
     * 0, stricter, for the little that is left of this command. */
    if (was_dumpable == 1)
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    was_dumpable = 0;
    if (ours >= 0 && setns(ours, CLONE_NEWPID) != 0) {
        if (pid > 0)
            kill_and_reap(pid);
        pid = -1;
        goto out;
    }
    if (pid < 0) {
        pid = 0;
        goto out;
    }
    close(placed[0]);
    placed[0] = -1;
    close(errors[1]);
    errors[1] = -1;
    if (place(record, pid) != 0 || write(placed[1], "", 1) != 1) {
        kill_and_reap(pid);  /* outside its cgroup: it must never run */
        pid = 0;
        goto out;
    }
    int error;
    ssize_t got;
    while ((got = read(errors[0], &error, sizeof error)) < 0 && errno == EINTR) {
    }
    if (got != 0) {
        kill_and_reap(pid);
        pid = 0;
    }
out:
    if (was_dumpable == 1)
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    if (ours >= 0)
        close(ours);
    for (int i = 0; i < 2; i++) {
        if (placed[i] >= 0)
            close(placed[i]);
        if (errors[i] >= 0)
            close(errors[i]);
    }
    return pid;
}

/* Forward signals, wait, reap what was reparented to us; the status as a shell gives it. */
static int wait_foreground(pid_t pid)
{
    forward_to = pid;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return 255;
    }
    forward_to = 0;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static void free_process(struct exec_process *process)
{
    for (size_t i = 0; i < process->env_count; i++)
        free(process->env[i]);
    for (size_t i = 0; i < process->arg_count; i++)
        free(process->args[i]);
    process->env_count = process->arg_count = 0;
    if (process->has_seccomp)
        seccomp_filter_release(&process->seccomp);
    process->has_seccomp = 0;
}

/* The command line after `exec`, as far as this file does it. */
struct exec_flags {
    const char *env[MAX_ENV];
    size_t env_count;
    const char *cwd, *user, *process_file, *pid_file;
    int detach;
    int id;  /* argv index of the container's ID */
};

/* 0, or -1 for a flag or form of one left to the Python CLI (which refuses or does it). */
static int parse_flags(int argc, char **argv, int first, struct exec_flags *flags)
{
    int i = first;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (arg[0] != '-' || strcmp(arg, "-") == 0)
            break;
        size_t length;
        const char *name = flag_name(arg, &length);
        if (name[length] == '=')
            return -1;  /* --flag=value and the like */
        if (is_flag(name, length, "detach") || is_flag(name, length, "d")) {
            flags->detach = 1;
            continue;
        }
        if (i + 1 >= argc)
            return -1;
        const char *value = argv[++i];
        if (is_flag(name, length, "env") || is_flag(name, length, "e")) {
            if (flags->env_count == MAX_ENV)
                return -1;
            flags->env[flags->env_count++] = value;
        } else if (is_flag(name, length, "cwd")) {
            flags->cwd = value;
        } else if (is_flag(name, length, "user") || is_flag(name, length, "u")) {
            flags->user = value;
        } else if (is_flag(name, length, "process") || is_flag(name, length, "p")) {
            flags->process_file = value;
        } else if (is_flag(name, length, "pid-file")) {
            flags->pid_file = value;
        } else {
            return -1;
        }
    }
    flags->id = i;
    int commands = argc - i - 1;
    if (i >= argc || (flags->cwd && flags->cwd[0] != '/') ||
        (flags->pid_file && flags->pid_file[0] == '\0'))
        return -1;
    if (flags->process_file)  /* the file is the whole process: no command, no changes */
        return commands == 0 && !flags->env_count && !flags->cwd && !flags->user ? 0 : -1;
    return commands >= 1 && commands <= MAX_ARGS ? 0 : -1;
}

/* The process as pyruntime.cli.exec_process.process_from_flags builds it; -1 to leave
 * it to Python. */
static int build_process(const struct state_record *record, const struct exec_flags *flags,
                         char **argv, int argc, struct exec_process *process)
{
    const char *end = record->text + record->length;
    const char *linux_object = json_member(record->config, end, "linux");
    const char *profile = linux_object ? json_member(linux_object, end, "seccomp") : NULL;
    if (!json_is_null(profile, end)) {
        if (seccomp_filter_build(profile, end, &process->seccomp) != 0)
            return -1;
        process->has_seccomp = 1;
    }
    if (flags->process_file) {
        size_t length = 0;
        char *text = read_whole_file(AT_FDCWD, flags->process_file, &length);
        const char *document = text ? json_document(text, text + length) : NULL;
        int result = document ? read_process(document, text + length, 1, process) : -1;
        free(text);
        return result;
    }
    if (read_process(json_member(record->config, end, "process"), end, 0, process) != 0)
        return -1;
    for (int a = flags->id + 1; a < argc; a++) {
        if (!(process->args[process->arg_count] = strdup(argv[a])))
            return -1;
        process->args[++process->arg_count] = NULL;
    }
    for (size_t e = 0; e < flags->env_count; e++)
        if (set_env(process, flags->env[e]) != 0)
            return -1;
    if (flags->cwd)
        snprintf(process->cwd, sizeof process->cwd, "%s", flags->cwd);
    return flags->user ? parse_ids(flags->user, process) : 0;
}

/*
 * The pid file as Runtime's write_pid_file writes it: PATH's directory/.NAME.tmp, then
 * renamed. The temporary file is made before the process starts (so that a path that
 * cannot be written goes to Python with nothing done) and filled after.
 */
struct pid_file {
    char path[PATH_MAX], temporary[PATH_MAX];
    int fd;
};

static int open_pid_file(const char *given, struct pid_file *file)
{
    char absolute[PATH_MAX];
    char cwd[PATH_MAX];
    if (given[0] == '/')
        snprintf(absolute, sizeof absolute, "%s", given);
    else if (!getcwd(cwd, sizeof cwd) ||
             (size_t)snprintf(absolute, sizeof absolute, "%s/%s", cwd, given) >= sizeof absolute)
        return -1;
    char *slash = strrchr(absolute, '/');
    if (slash[1] == '\0' || strstr(absolute, "/./") || strstr(absolute, "/../") ||
        strstr(absolute, "//") || (size_t)snprintf(file->path, sizeof file->path, "%s",
                                                   absolute) >= sizeof file->path)
        return -1;  /* a path os.path.abspath would rewrite: Python's */
    *slash = '\0';
    if ((size_t)snprintf(file->temporary, sizeof file->temporary, "%s/.%s.tmp",
                         absolute[0] ? absolute : "", slash + 1) >= sizeof file->temporary)
        return -1;
    file->fd = open(file->temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    return file->fd < 0 ? -1 : 0;
}

static int finish_pid_file(struct pid_file *file, pid_t pid)
{
    char text[24];
    int length = snprintf(text, sizeof text, "%d", (int)pid);
    int failed = write(file->fd, text, (size_t)length) != length;
    failed |= close(file->fd) != 0;
    file->fd = -1;
    return failed || rename(file->temporary, file->path) != 0 ? -1 : 0;
}

static void drop_pid_file(struct pid_file *file)
{
    if (file->fd >= 0) {
        close(file->fd);
        unlink(file->temporary);
        file->fd = -1;
    }
}

int native_exec(const char *root, int argc, char **argv, int first,
                const struct runtime_log *log)
{
    struct exec_flags flags = {0};
    if (parse_flags(argc, argv, first, &flags) != 0)
        return PYTHON_NEEDED;
    struct state_record record;
    if (state_record_load(root, argv[flags.id], &record) != 0)
        return PYTHON_NEEDED;
    static struct exec_process process;  /* large: off the stack */
    memset(&process, 0, sizeof process);
    process.umask = 022;
    struct entry entry;
    struct pid_file pid_file = {.fd = -1};
    int code = PYTHON_NEEDED;
    enum container_status status = state_record_status(&record);
    if (record.systemd_unit || record.cgroup_count == 0 ||
        (status != STATUS_CREATED && status != STATUS_STARTED) ||
        (status == STATUS_STARTED && state_record_frozen(&record) != 0) ||
        build_process(&record, &flags, argv, argc, &process) != 0)
        goto release;
    if (open_entry(record.pid, &entry) != 0)
        goto release;
    /* The namespaces opened are init's, not those of a process that took its pid. */
    if (process_start_time(record.pid) != record.pid_start ||
        (flags.pid_file && open_pid_file(flags.pid_file, &pid_file) != 0)) {
        close_entry(&entry);
        goto release;
    }
    handle_forwarded(forward);
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    pid_t pid = start_process(&record, &process, &entry);
    close_entry(&entry);
    if (pid > 0) {
        state_record_release(&record);  /* the lock is not held while the process runs */
        free_process(&process);
        if (pid_file.fd >= 0 && finish_pid_file(&pid_file, pid) != 0) {
            char message[PATH_MAX + 64];
            snprintf(message, sizeof message, "writing the pid file %s: %s", pid_file.path,
                     strerror(errno));
            log_error(log, message);
            return 255;  /* as Python: the process runs on */
        }
        return flags.detach ? 0 : wait_foreground(pid);
    }
    /* Put back what the Python CLI must find as it was. */
    handle_forwarded(SIG_DFL);
    prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
    if (pid < 0) {
        log_error(log, "exec: restoring the runtime's namespace for children failed");
        code = 255;
    }
release:
    drop_pid_file(&pid_file);
    state_record_release(&record);
    free_process(&process);
    return code;
}
