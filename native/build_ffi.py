"""cffi (API mode) build of `pyruntime._native`: the syscalls Python's os module lacks.

Each C function here is a thin, errno-preserving call of one kernel interface (or of
libseccomp); policy lives in `pyruntime.linux`, never here. Functions return -1 (or a
negative errno, for libseccomp) and leave `ffi.errno` set, so the Python side can raise.
"""
from cffi import FFI

CDEF = r"""
int pyrt_mount(const char *source, const char *target, const char *fstype,
               unsigned long flags, const char *data);
int pyrt_umount2(const char *target, int flags);
int pyrt_pivot_root(const char *new_root, const char *put_old);
int pyrt_unshare(int flags);
int pyrt_setns(int fd, int nstype);
int pyrt_sethostname(const char *name, size_t len);
int pyrt_setdomainname(const char *name, size_t len);
int pyrt_personality(unsigned long persona);
int pyrt_close_range(unsigned int first, unsigned int last, unsigned int flags);
int pyrt_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
int pyrt_ambient_clear_all(void);
int pyrt_ambient_raise(int cap);
int pyrt_capset(uint32_t eff_lo, uint32_t eff_hi, uint32_t prm_lo, uint32_t prm_hi,
                uint32_t inh_lo, uint32_t inh_hi);
int pyrt_pty_unlock(int master_fd);
int pyrt_pty_peer(int master_fd, int flags);
int pyrt_set_controlling_tty(int fd);
int pyrt_set_winsize(int fd, unsigned short rows, unsigned short cols);
int pyrt_link_up(const char *ifname);
long pyrt_join_session_keyring(const char *name);
int pyrt_mount_setattr(int dirfd, const char *path, unsigned int flags,
                       uint64_t attr_set, uint64_t attr_clr, uint64_t propagation);

typedef void *scmp_filter_ctx;
struct scmp_arg_cmp { unsigned int arg; int op; uint64_t datum_a; uint64_t datum_b; };
scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
uint32_t seccomp_arch_resolve_name(const char *arch_name);
uint32_t seccomp_arch_native(void);
int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_arch_remove(scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_syscall_resolve_name(const char *name);
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                           unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
int pyrt_seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);
int seccomp_load(scmp_filter_ctx ctx);
int pyrt_capbset_drop(int cap);
int pyrt_setrlimit(int resource, uint64_t soft, uint64_t hard);
int pyrt_ioprio_set(int which, int who, int ioprio);
int pyrt_sched_setattr(int pid, uint32_t policy, uint64_t flags, int32_t nice,
                       uint32_t priority, uint64_t runtime, uint64_t deadline,
                       uint64_t period);
long pyrt_bpf(int cmd, void *attr, unsigned int size);
int pyrt_background_write(const char *path, const char *data);
"""

SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <termios.h>
#include <net/if.h>
#include <sys/socket.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <seccomp.h>
#include <pthread.h>
#include <stdlib.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

int pyrt_mount(const char *source, const char *target, const char *fstype,
               unsigned long flags, const char *data)
{ return mount(source, target, fstype, flags, data); }

int pyrt_umount2(const char *target, int flags) { return umount2(target, flags); }

int pyrt_pivot_root(const char *new_root, const char *put_old)
{ return (int)syscall(SYS_pivot_root, new_root, put_old); }

int pyrt_unshare(int flags) { return unshare(flags); }
int pyrt_setns(int fd, int nstype) { return setns(fd, nstype); }
int pyrt_sethostname(const char *name, size_t len) { return sethostname(name, len); }
int pyrt_setdomainname(const char *name, size_t len) { return setdomainname(name, len); }
int pyrt_personality(unsigned long persona) { return personality(persona) == -1 ? -1 : 0; }

int pyrt_close_range(unsigned int first, unsigned int last, unsigned int flags)
{ return (int)syscall(SYS_close_range, first, last, flags); }

int pyrt_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

int pyrt_ambient_clear_all(void)
{ return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); }

int pyrt_ambient_raise(int cap)
{ return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0); }

int pyrt_capset(uint32_t eff_lo, uint32_t eff_hi, uint32_t prm_lo, uint32_t prm_hi,
                uint32_t inh_lo, uint32_t inh_hi)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = {
        { eff_lo, prm_lo, inh_lo },
        { eff_hi, prm_hi, inh_hi },
    };
    return (int)syscall(SYS_capset, &hdr, data);
}

int pyrt_pty_unlock(int master_fd)
{
    int unlock = 0;
    return ioctl(master_fd, TIOCSPTLCK, &unlock);
}

int pyrt_pty_peer(int master_fd, int flags) { return ioctl(master_fd, TIOCGPTPEER, flags); }
int pyrt_set_controlling_tty(int fd) { return ioctl(fd, TIOCSCTTY, 0); }

int pyrt_set_winsize(int fd, unsigned short rows, unsigned short cols)
{
    struct winsize ws;
    memset(&ws, 0, sizeof(ws));
    ws.ws_row = rows;
    ws.ws_col = cols;
    return ioctl(fd, TIOCSWINSZ, &ws);
}

int pyrt_link_up(const char *ifname)
{
    struct ifreq ifr;
    int fd, ret;

    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ret = ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (ret == 0) {
        ifr.ifr_flags |= IFF_UP;
        ret = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    if (ret < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    close(fd);
    return 0;
}

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
struct pyrt_mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };

int pyrt_mount_setattr(int dirfd, const char *path, unsigned int flags,
                       uint64_t attr_set, uint64_t attr_clr, uint64_t propagation)
{
    struct pyrt_mount_attr attr = { attr_set, attr_clr, propagation, 0 };
    return (int)syscall(SYS_mount_setattr, dirfd, path, flags, &attr, sizeof(attr));
}

long pyrt_join_session_keyring(const char *name)
{ return syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, name); }

int pyrt_seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value)
{ return seccomp_attr_set(ctx, (enum scmp_filter_attr)attr, value); }

/* python-prctl refuses caps above the CAP_LAST_CAP it was built with; a newer kernel may
   have more, and they must still leave the bounding set. */
int pyrt_capbset_drop(int cap) { return prctl(PR_CAPBSET_DROP, cap, 0, 0, 0); }

/* The stdlib's `resource` module would do, but it is an extension of its own that costs
 * more to load (0.6 ms) than the whole of what init does with it. */
int pyrt_setrlimit(int resource, uint64_t soft, uint64_t hard)
{
    struct rlimit limit = {.rlim_cur = soft, .rlim_max = hard};
    return setrlimit(resource, &limit);
}

/* ioprio_set(2) and sched_setattr(2) have no glibc wrappers. */
int pyrt_ioprio_set(int which, int who, int ioprio)
{ return (int)syscall(SYS_ioprio_set, which, who, ioprio); }

/* struct sched_attr as of Linux 5.3 (SCHED_ATTR_SIZE_VER1), the size runc passes, with
   the utilization clamps 0 as runc leaves them. Spelled out rather than taken from
   <linux/sched/types.h>, whose layout follows the installed kernel headers. */
struct pyrt_sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
    uint32_t sched_util_min, sched_util_max;
};

int pyrt_sched_setattr(int pid, uint32_t policy, uint64_t flags, int32_t nice,
                       uint32_t priority, uint64_t runtime, uint64_t deadline,
                       uint64_t period)
{
    struct pyrt_sched_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.sched_policy = policy;
    attr.sched_flags = flags;
    attr.sched_nice = nice;
    attr.sched_priority = priority;
    attr.sched_runtime = runtime;
    attr.sched_deadline = deadline;
    attr.sched_period = period;
    return (int)syscall(SYS_sched_setattr, pid, &attr, 0);
}

/* bpf(2), for the cgroup v2 device filter: `attr` is a union bpf_attr that the Python side
   packs (and reads back, for BPF_PROG_QUERY). */
long pyrt_bpf(int cmd, void *attr, unsigned int size)
{
#ifdef SYS_bpf
    return syscall(SYS_bpf, cmd, attr, size);
#else
    errno = ENOSYS;
    return -1;
#endif
}

/* One write to a file on a detached thread of its own. A thread that never runs Python
   code never waits for the GIL, so the write starts at once (pyruntime.cgroups.
   attach_warmup says why that matters); it holds no lock a forked child could need. */
struct background_write { char *path; char *data; };

static void free_background_write(struct background_write *job)
{
    free(job->path);
    free(job->data);
    free(job);
}

static void *background_write_main(void *arg)
{
    struct background_write *job = arg;
    int fd = open(job->path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t ignored = write(fd, job->data, strlen(job->data));
        (void)ignored;
        close(fd);
    }
    free_background_write(job);
    return NULL;
}

int pyrt_background_write(const char *path, const char *data)
{
    pthread_attr_t attr;
    pthread_t thread;
    struct background_write *job = calloc(1, sizeof(*job));
    int err;
    if (job == NULL)
        return -1;
    job->path = strdup(path);
    job->data = strdup(data);
    if (job->path == NULL || job->data == NULL) {
        free_background_write(job);
        errno = ENOMEM;
        return -1;
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    err = pthread_create(&thread, &attr, background_write_main, job);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        free_background_write(job);
        errno = err;
        return -1;
    }
    return 0;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("pyruntime._native", SOURCE, libraries=["seccomp"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
